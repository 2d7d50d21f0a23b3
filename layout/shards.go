package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Large repositories: a repository file of schema version 2 keeps a kind
// of entries (tags, manifests, blobs, referrers) that has more than
// InlineMax of them in shard files instead of in itself, so that a request
// reads the repository file and at most one shard, whatever the size of the
// repository, and a publish rewrites the repository file and the shards it
// changes. docs/layout.md specifies the files.
const (
	// ShardedSchemaVersion is the schema version of a repository file
	// that has shards; one without any is of RepositorySchemaVersion,
	// byte for byte what it was before shards existed.
	ShardedSchemaVersion = 2
	// InlineMax is the most entries of one kind a repository file holds
	// itself: a kind with more is sharded.
	InlineMax = 1000
	// ShardMax is the most entries a shard holds: a fuller one is split.
	ShardMax = 1000
)

// ShardKind names the kinds of entries a repository shards.
type ShardKind int

// The kinds of entries, and the order of their shard lists.
const (
	TagKind ShardKind = iota
	ManifestKind
	BlobKind
	ReferrerKind
	shardKinds
)

// ShardKinds are the four kinds, in order.
var ShardKinds = []ShardKind{TagKind, ManifestKind, BlobKind, ReferrerKind}

var shardKindNames = [...]string{"tags", "manifests", "blobs", "referrers"}

func (k ShardKind) String() string { return shardKindNames[k] }

// ShardRef describes one shard of a repository file: its id (the hex
// SHA-256 of its bytes, as for catalog shards: content addressed, never
// rewritten in place), its first and last keys (tags, or digests for the
// other kinds) and the number of its entries. The shards of a kind are in
// order: every key of shard i sorts before every key of shard i+1.
type ShardRef struct {
	ID    string `json:"id"`
	First string `json:"first"`
	Last  string `json:"last"`
	Count int    `json:"count"`
}

// ShardTag is the entry of a tag in a shard: its manifest, with the media
// type and size a request needs, so that a GET by tag reads one shard.
type ShardTag struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
}

// RepositoryShard is the content of one shard file: the entries of one
// kind in one range of keys, in the form the repository file would hold
// them (tags with their manifest's media type and size).
type RepositoryShard struct {
	Tags      map[string]ShardTag               `json:"tags,omitempty"`
	Manifests map[digest.Digest]Manifest        `json:"manifests,omitempty"`
	Blobs     map[digest.Digest]Blob            `json:"blobs,omitempty"`
	Referrers map[digest.Digest][]v1.Descriptor `json:"referrers,omitempty"`
}

// Kind reports the kind of the shard's entries, and false for a shard
// that has none or entries of several kinds.
func (s *RepositoryShard) Kind() (ShardKind, bool) {
	kind, n := ShardKind(-1), 0
	for k, l := range [...]int{len(s.Tags), len(s.Manifests), len(s.Blobs), len(s.Referrers)} {
		if l > 0 {
			kind, n = ShardKind(k), n+1
		}
	}
	return kind, n == 1
}

// Keys returns the shard's keys, sorted.
func (s *RepositoryShard) Keys() []string {
	var keys []string
	for k := range s.Tags {
		keys = append(keys, k)
	}
	for d := range s.Manifests {
		keys = append(keys, string(d))
	}
	for d := range s.Blobs {
		keys = append(keys, string(d))
	}
	for d := range s.Referrers {
		keys = append(keys, string(d))
	}
	sort.Strings(keys)
	return keys
}

// Validate checks the shard's entries as Repository.Validate checks them
// (valid tags and digests, media types and sizes present), and that it
// holds entries of one kind.
func (s *RepositoryShard) Validate() error {
	if _, ok := s.Kind(); !ok {
		return errors.New("repository shard: not entries of one kind")
	}
	byDigest := map[digest.Digest]ShardTag{}
	for tag, t := range s.Tags {
		if err := ValidateTag(tag); err != nil {
			return fmt.Errorf("repository shard: %w", err)
		}
		if _, err := ParseDigest(string(t.Digest)); err != nil {
			return fmt.Errorf("repository shard: tag %s: %w", tag, err)
		}
		if t.MediaType == "" || t.Size < 0 {
			return fmt.Errorf("repository shard: tag %s: media type and size are required", tag)
		}
		if o, ok := byDigest[t.Digest]; ok && o != t {
			return fmt.Errorf("repository shard: tags of manifest %s give it different media types or sizes", t.Digest)
		}
		byDigest[t.Digest] = t
	}
	for d, m := range s.Manifests {
		if _, err := ParseDigest(string(d)); err != nil {
			return fmt.Errorf("repository shard: manifest: %w", err)
		}
		if m.MediaType == "" || m.Size < 0 {
			return fmt.Errorf("repository shard: manifest %s: media type and size are required", d)
		}
	}
	for d, b := range s.Blobs {
		if _, err := ParseDigest(string(d)); err != nil {
			return fmt.Errorf("repository shard: blob: %w", err)
		}
		if b.Size < 0 {
			return fmt.Errorf("repository shard: blob %s: negative size", d)
		}
	}
	for d := range s.Referrers {
		if _, err := ParseDigest(string(d)); err != nil {
			return fmt.Errorf("repository shard: referrers: %w", err)
		}
	}
	return nil
}

// EncodeRepositoryShard returns the bytes of a shard file (compact JSON,
// keys sorted, a final newline) and its id. The same entries always
// encode to the same bytes, so a shard that does not change keeps its id.
func EncodeRepositoryShard(s *RepositoryShard) (data []byte, id string, err error) {
	if err := s.Validate(); err != nil {
		return nil, "", err
	}
	for _, refs := range s.Referrers {
		sortDescriptors(refs)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, "", err
	}
	b = append(b, '\n')
	if len(b) > MaxRepositoryFileSize {
		return nil, "", fmt.Errorf("repository shard of %d entries: %d bytes, more than the %d a reader accepts", len(s.Keys()), len(b), MaxRepositoryFileSize)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:]), nil
}

// DecodeRepositoryShard parses a shard file and checks it against its id
// and its entry in the repository file: the kind, the keys within
// [ref.First, ref.Last], their number.
func DecodeRepositoryShard(data []byte, kind ShardKind, ref ShardRef) (*RepositoryShard, error) {
	if err := checkShardID(data, ref.ID); err != nil {
		return nil, err
	}
	var s RepositoryShard
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("repository shard %s: %w", ref.ID, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("repository shard %s: %w", ref.ID, err)
	}
	if k, _ := s.Kind(); k != kind {
		return nil, fmt.Errorf("repository shard %s: holds %s, the repository file lists it among its %s", ref.ID, k, kind)
	}
	keys := s.Keys()
	if len(keys) != ref.Count || keys[0] != ref.First || keys[len(keys)-1] != ref.Last {
		return nil, fmt.Errorf("repository shard %s: holds %d %s from %q to %q, the repository file says %d from %q to %q",
			ref.ID, len(keys), kind, keys[0], keys[len(keys)-1], ref.Count, ref.First, ref.Last)
	}
	return &s, nil
}

func checkShardID(data []byte, id string) error {
	if !validShardID(id) {
		return fmt.Errorf("layout: invalid shard id %q", id)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != id {
		return fmt.Errorf("repository shard %s: content does not match its id", id)
	}
	return nil
}

// Shards returns the shard list of kind.
func (r *Repository) Shards(kind ShardKind) []ShardRef {
	switch kind {
	case TagKind:
		return r.TagShards
	case ManifestKind:
		return r.ManifestShards
	case BlobKind:
		return r.BlobShards
	}
	return r.ReferrerShards
}

// SetShards sets the shard list of kind.
func (r *Repository) SetShards(kind ShardKind, refs []ShardRef) {
	switch kind {
	case TagKind:
		r.TagShards = refs
	case ManifestKind:
		r.ManifestShards = refs
	case BlobKind:
		r.BlobShards = refs
	default:
		r.ReferrerShards = refs
	}
}

// Sharded reports whether the repository keeps its entries of kind in
// shards.
func (r *Repository) Sharded(kind ShardKind) bool { return len(r.Shards(kind)) > 0 }

// HasShards reports whether the repository keeps any kind in shards.
func (r *Repository) HasShards() bool {
	for _, k := range ShardKinds {
		if r.Sharded(k) {
			return true
		}
	}
	return false
}

// ShardFor returns the index of the shard of kind whose range holds key:
// the first whose last key sorts at or after key, or the last one; -1 when
// the kind has no shards.
func ShardFor(refs []ShardRef, key string) int {
	if len(refs) == 0 {
		return -1
	}
	i := sort.Search(len(refs), func(i int) bool { return refs[i].Last >= key })
	return min(i, len(refs)-1)
}

// ShardContaining returns the index of the shard of refs whose range
// [First, Last] holds key, or false: a lookup reads that shard only.
func ShardContaining(refs []ShardRef, key string) (int, bool) {
	i := sort.Search(len(refs), func(i int) bool { return refs[i].Last >= key })
	return i, i < len(refs) && refs[i].First <= key
}

// ShardOf returns the entries of kind of r of keys: what a shard of them
// holds. Tags take their manifest's media type and size from r.Manifests,
// else from known (by digest: the manifests of tag shards read before,
// which r may not hold when it shards its manifests).
func (r *Repository) ShardOf(kind ShardKind, keys []string, known map[digest.Digest]ShardTag) (*RepositoryShard, error) {
	s := &RepositoryShard{}
	for _, k := range keys {
		switch kind {
		case TagKind:
			d := r.Tags[k]
			if m, ok := r.Manifests[d]; ok {
				if s.Tags == nil {
					s.Tags = map[string]ShardTag{}
				}
				s.Tags[k] = ShardTag{Digest: d, MediaType: m.MediaType, Size: m.Size}
			} else if t, ok := known[d]; ok {
				if s.Tags == nil {
					s.Tags = map[string]ShardTag{}
				}
				s.Tags[k] = t
			} else {
				return nil, fmt.Errorf("repository %s: tag %q names manifest %s, which is not listed", r.Name, k, d)
			}
		case ManifestKind:
			if s.Manifests == nil {
				s.Manifests = map[digest.Digest]Manifest{}
			}
			s.Manifests[digest.Digest(k)] = r.Manifests[digest.Digest(k)]
		case BlobKind:
			if s.Blobs == nil {
				s.Blobs = map[digest.Digest]Blob{}
			}
			s.Blobs[digest.Digest(k)] = r.Blobs[digest.Digest(k)]
		case ReferrerKind:
			if s.Referrers == nil {
				s.Referrers = map[digest.Digest][]v1.Descriptor{}
			}
			s.Referrers[digest.Digest(k)] = slices.Clone(r.Referrers[digest.Digest(k)])
		}
	}
	return s, nil
}

// Keys returns r's keys of kind, sorted: those it holds (all of them for
// a kind it does not shard, those of the shards read so far otherwise).
func (r *Repository) Keys(kind ShardKind) []string {
	var keys []string
	switch kind {
	case TagKind:
		for k := range r.Tags {
			keys = append(keys, k)
		}
	case ManifestKind:
		for d := range r.Manifests {
			keys = append(keys, string(d))
		}
	case BlobKind:
		for d := range r.Blobs {
			keys = append(keys, string(d))
		}
	case ReferrerKind:
		for d := range r.Referrers {
			keys = append(keys, string(d))
		}
	}
	sort.Strings(keys)
	return keys
}

// AddShard merges the entries of shard s into r's maps. It returns the tag
// entries (with their manifests' media types and sizes) for ShardOf.
func (r *Repository) AddShard(s *RepositoryShard) {
	for t, st := range s.Tags {
		r.Tags[t] = st.Digest
	}
	for d, m := range s.Manifests {
		r.Manifests[d] = m
	}
	for d, b := range s.Blobs {
		r.Blobs[d] = b
	}
	for d, refs := range s.Referrers {
		if r.Referrers == nil {
			r.Referrers = map[digest.Digest][]v1.Descriptor{}
		}
		r.Referrers[d] = refs
	}
}

// ValidateWhole is Validate for a repository that holds every entry of
// every kind (its shards read): every check is made.
func (r *Repository) ValidateWhole() error { return r.validate(true) }

// LoadShards reads every shard of r with read (given a shard's id, its
// bytes) into r's maps, so that r holds the whole repository, and checks
// it whole (Repository.Validate's rules across all its entries). r keeps
// its shard lists.
func (r *Repository) LoadShards(read func(id string) ([]byte, error)) error {
	for _, kind := range ShardKinds {
		for _, ref := range r.Shards(kind) {
			data, err := read(ref.ID)
			if err != nil {
				return fmt.Errorf("repository %s: %s shard %s: %w", r.Name, kind, ref.ID, err)
			}
			s, err := DecodeRepositoryShard(data, kind, ref)
			if err != nil {
				return fmt.Errorf("repository %s: %w", r.Name, err)
			}
			r.AddShard(s)
		}
	}
	return r.validate(true)
}

// checkShardRefs checks a shard list: valid ids and keys of the kind
// (tags, or digests), each range non-empty and in order, no id twice.
func checkShardRefs(kind ShardKind, refs []ShardRef) error {
	seen := map[string]bool{}
	for i, ref := range refs {
		if !validShardID(ref.ID) || seen[ref.ID] {
			return fmt.Errorf("%s shard %d: invalid or repeated id %q", kind, i, ref.ID)
		}
		seen[ref.ID] = true
		for _, key := range []string{ref.First, ref.Last} {
			var err error
			if kind == TagKind {
				err = ValidateTag(key)
			} else {
				_, err = ParseDigest(key)
			}
			if err != nil {
				return fmt.Errorf("%s shard %d: %w", kind, i, err)
			}
		}
		if ref.Count < 1 || ref.Count > ShardMax || ref.First > ref.Last || (ref.Count == 1) != (ref.First == ref.Last) {
			return fmt.Errorf("%s shard %d: %d entries from %q to %q", kind, i, ref.Count, ref.First, ref.Last)
		}
		if i > 0 && !(refs[i-1].Last < ref.First) {
			return fmt.Errorf("%s shards %d and %d are not in order", kind, i-1, i)
		}
	}
	return nil
}

// RepositoryShardKey is the key of the shard file id of repository name:
// repositories/<name>/_shards/<id>.json. "_shards" can be no component of
// a repository name (a component starts with a letter or digit), so no
// repository's file or folder is ever there.
func RepositoryShardKey(name, id string) (string, error) {
	if err := ValidateRepository(name); err != nil {
		return "", err
	}
	if !validShardID(id) {
		return "", fmt.Errorf("layout: invalid shard id %q", id)
	}
	return repositoriesDir + "/" + name + "/" + shardsDir + "/" + id + ".json", nil
}

// RepositoryShardsDirKey is the folder of the shard files of repository
// name.
func RepositoryShardsDirKey(name string) (string, error) {
	if err := ValidateRepository(name); err != nil {
		return "", err
	}
	return repositoriesDir + "/" + name + "/" + shardsDir, nil
}

// RepositoryShardFromKey is the inverse of RepositoryShardKey.
func RepositoryShardFromKey(key string) (name, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, repositoriesDir+"/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/"+shardsDir+"/")
	if i < 0 {
		return "", "", false
	}
	name = rest[:i]
	id, ok = strings.CutSuffix(rest[i+len(shardsDir)+2:], ".json")
	if !ok {
		return "", "", false
	}
	if k, err := RepositoryShardKey(name, id); err != nil || k != key {
		return "", "", false
	}
	return name, id, true
}

// ViewOfShard returns the view of a shard: a RepositoryView without
// settings whose lookups (Resolve for a tag shard, Manifest, Blob,
// Referrers) answer for the shard's entries. s must be valid.
func ViewOfShard(s *RepositoryShard) RepositoryView {
	var tags []viewTag
	targets := map[digest.Digest]viewManifest{}
	for t, st := range s.Tags {
		tags = append(tags, viewTag{tag: []byte(t), digest: []byte(st.Digest)})
		targets[st.Digest] = viewManifest{digest: []byte(st.Digest), mediaType: []byte(st.MediaType), size: st.Size}
	}
	sortTags(tags)
	for d, m := range s.Manifests {
		targets[d] = viewManifest{digest: []byte(d), mediaType: []byte(m.MediaType), size: m.Size}
	}
	manifests := make([]viewManifest, 0, len(targets))
	for _, m := range targets {
		manifests = append(manifests, m)
	}
	sortManifests(manifests)
	blobs := make([]viewBlob, 0, len(s.Blobs))
	for d, b := range s.Blobs {
		blobs = append(blobs, viewBlob{digest: []byte(d), size: b.Size, stored: b.IsStored()})
	}
	sortBlobs(blobs)
	var refs map[digest.Digest][]v1.Descriptor
	if len(s.Referrers) > 0 {
		refs = make(map[digest.Digest][]v1.Descriptor, len(s.Referrers))
		for d, ds := range s.Referrers {
			ds = slices.Clone(ds)
			sortDescriptors(ds)
			refs[d] = ds
		}
	}
	return encodeView(viewSettings{}, tags, manifests, blobs, refs)
}

// DecodeShardView decodes a shard file (DecodeRepositoryShard, with the
// same errors) into its view. A shard of tags, manifests or blobs as heron
// writes it is read in one pass by the scanner (see jsonScanner); anything
// else, and anything not valid, by DecodeRepositoryShard.
func DecodeShardView(data []byte, kind ShardKind, ref ShardRef) (RepositoryView, error) {
	if err := checkShardID(data, ref.ID); err != nil {
		return RepositoryView{}, err
	}
	if v, ok := scanShardView(data, kind, ref); ok {
		return v, nil
	}
	s, err := DecodeRepositoryShard(data, kind, ref)
	if err != nil {
		return RepositoryView{}, err
	}
	return ViewOfShard(s), nil
}

// scanShardView is the fast path of DecodeShardView: false for anything it
// is not sure to read as DecodeRepositoryShard would (see jsonScanner),
// for a shard of referrers, and for a shard that is not valid.
func scanShardView(data []byte, kind ShardKind, ref ShardRef) (RepositoryView, bool) {
	if kind == ReferrerKind {
		return RepositoryView{}, false
	}
	s := newJSONScanner(data)
	var tags []viewTag
	var manifests []viewManifest
	var blobs []viewBlob
	fields := 0
	s.object(func(key []byte) bool {
		if fields++; fields > 1 || !s.keyIs(key, kind.String()) {
			return s.fail()
		}
		return s.object(func(k []byte) bool {
			switch kind {
			case TagKind:
				t := viewTag{tag: k}
				m := viewManifest{size: -1}
				seen := 0
				s.object(func(f []byte) bool {
					bit := 0
					switch {
					case s.keyIs(f, "digest"):
						t.digest, bit = s.str(), 1
					case s.keyIs(f, "mediaType"):
						m.mediaType, bit = s.str(), 2
					case s.keyIs(f, "size"):
						m.size, bit = s.int(), 4
					default:
						return s.fail()
					}
					if seen&bit != 0 {
						return s.fail()
					}
					seen |= bit
					return s.ok
				})
				if seen != 7 || len(m.mediaType) == 0 {
					return s.fail()
				}
				m.digest = t.digest
				tags = append(tags, t)
				manifests = append(manifests, m)
			case ManifestKind:
				var children, layers [][]byte // listed elsewhere: not checked here
				m, ok := scanManifestEntry(s, k, true, &children, &layers)
				if !ok {
					return false
				}
				manifests = append(manifests, m)
			case BlobKind:
				b, ok := scanBlobEntry(s, k, true)
				if !ok {
					return false
				}
				blobs = append(blobs, b)
			}
			return s.ok
		})
	})
	if !s.end() || fields != 1 {
		return RepositoryView{}, false
	}
	// The keys: valid, each once, ref.Count of them from ref.First to
	// ref.Last.
	var keys [][]byte
	switch kind {
	case TagKind:
		sortTags(tags)
		for _, t := range tags {
			if !matchTag(string(t.tag)) || !isCanonicalDigest(t.digest) {
				return RepositoryView{}, false
			}
			keys = append(keys, t.tag)
		}
		// The manifests of the tags: one entry per digest, all alike.
		sortManifests(manifests)
		out := manifests[:0]
		for _, m := range manifests {
			if n := len(out); n > 0 && bytes.Equal(out[n-1].digest, m.digest) {
				if !bytes.Equal(out[n-1].mediaType, m.mediaType) || out[n-1].size != m.size {
					return RepositoryView{}, false
				}
				continue
			}
			out = append(out, m)
		}
		manifests = out
	case ManifestKind:
		sortManifests(manifests)
		for _, m := range manifests {
			if !isCanonicalDigest(m.digest) {
				return RepositoryView{}, false
			}
			keys = append(keys, m.digest)
		}
	case BlobKind:
		sortBlobs(blobs)
		for _, b := range blobs {
			if !isCanonicalDigest(b.digest) {
				return RepositoryView{}, false
			}
			keys = append(keys, b.digest)
		}
	}
	if len(keys) == 0 || len(keys) != ref.Count || string(keys[0]) != ref.First || string(keys[len(keys)-1]) != ref.Last {
		return RepositoryView{}, false
	}
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(keys[i-1], keys[i]) {
			return RepositoryView{}, false
		}
	}
	var locals []string
	for _, m := range manifests {
		if _, known := knownTypes[string(m.mediaType)]; !known && !slices.Contains(locals, string(m.mediaType)) {
			if locals = append(locals, string(m.mediaType)); len(locals) > 0x7f {
				return RepositoryView{}, false
			}
		}
	}
	return encodeView(viewSettings{}, tags, manifests, blobs, nil), true
}
