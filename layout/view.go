package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// RepositoryView is a repository file as a reader that serves it needs it:
// its settings, each tag's manifest, each manifest's media type and size,
// each blob's size and whether it is stored, and the referrers. It is
// read-only and compact (a server keeps tens of thousands of them in a few
// megabytes): the tags and digests are packed in a few strings, sorted, and
// looked up by binary search; what only a writer needs (the children and
// blobs of each manifest, media types of blobs, unknown fields) is left
// out. DecodeRepositoryView builds one from a file, ViewOf from a decoded
// Repository; both give the same view for the same file.
type RepositoryView struct {
	Name        string
	BlobBaseURL string
	Upstream    *Upstream
	Protected   bool

	// text holds the name, the base URL, the tags one after the other,
	// then the manifests' digests and the blobs' digests (see
	// digestTable), from the offsets below.
	text                                    string
	tagsAt, m256, m512, b256, b512, textEnd uint32
	// ints holds, for tag i, the end of its text (from tagsAt) at i and
	// its manifest's index at nTags+i, then the media type (an index in
	// types) of each manifest.
	ints      []uint32
	sizes     []int64  // each manifest's, then each blob's
	types     []string // shared by the views of the same single type
	unstored  []uint64 // bit i: blob i is not stored; nil when all are
	referrers map[digest.Digest][]v1.Descriptor
}

func (v *RepositoryView) manifests() digestTable {
	return digestTable{sha256: v.text[v.m256:v.m512], sha512: v.text[v.m512:v.b256]}
}

func (v *RepositoryView) blobs() digestTable {
	return digestTable{sha256: v.text[v.b256:v.b512], sha512: v.text[v.b512:v.textEnd]}
}

func (v *RepositoryView) nTags() int { return (len(v.ints) - v.manifests().len()) / 2 }

// Tags returns the number of tags.
func (v *RepositoryView) Tags() int { return v.nTags() }

// TagAt returns tag i, in lexical order.
func (v *RepositoryView) TagAt(i int) string {
	start := uint32(0)
	if i > 0 {
		start = v.ints[i-1]
	}
	return v.text[v.tagsAt+start : v.tagsAt+v.ints[i]]
}

// TagsAfter returns the index of the first tag that sorts after last.
func (v *RepositoryView) TagsAfter(last string) int {
	return sort.Search(v.nTags(), func(i int) bool { return v.TagAt(i) > last })
}

// ManifestInfo is a listed manifest as a view gives it: the digest (a part
// of the view's memory), media type and size.
type ManifestInfo struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
}

// Resolve returns the manifest a reference (tag or digest) names in this
// repository, and whether it is listed.
func (v *RepositoryView) Resolve(ref string) (ManifestInfo, bool) {
	if IsDigest(ref) {
		return v.Manifest(digest.Digest(ref))
	}
	n := v.nTags()
	t := sort.Search(n, func(i int) bool { return v.TagAt(i) >= ref })
	if t == n || v.TagAt(t) != ref {
		return ManifestInfo{}, false
	}
	return v.manifestAt(int(v.ints[n+t])), true
}

// Manifest returns the listed manifest d.
func (v *RepositoryView) Manifest(d digest.Digest) (ManifestInfo, bool) {
	i, ok := v.manifests().find(string(d))
	if !ok {
		return ManifestInfo{}, false
	}
	return v.manifestAt(i), true
}

func (v *RepositoryView) manifestAt(i int) ManifestInfo {
	return ManifestInfo{
		Digest:    digest.Digest(v.manifests().at(i)),
		MediaType: v.types[v.ints[2*v.nTags()+i]],
		Size:      v.sizes[i],
	}
}

// Blob returns the size of listed blob d and whether it is stored.
func (v *RepositoryView) Blob(d digest.Digest) (size int64, stored, ok bool) {
	i, ok := v.blobs().find(string(d))
	if !ok {
		return 0, false, false
	}
	return v.sizes[v.manifests().len()+i], v.unstored == nil || v.unstored[i/64]&(1<<(i%64)) == 0, true
}

// Referrers returns the descriptors of the manifests whose subject is d,
// sorted by digest; they are shared and are not modified.
func (v *RepositoryView) Referrers(d digest.Digest) []v1.Descriptor { return v.referrers[d] }

// Size is the approximate memory of the view, in bytes: what its
// allocations take.
func (v *RepositoryView) Size() int64 {
	n := 192 + len(v.text) + 4*len(v.ints) + 8*len(v.sizes) + 8*len(v.unstored)
	if len(v.types) > 1 || (len(v.types) == 1 && singleTypes[v.types[0]] == nil) {
		n += 16 * len(v.types)
		for _, t := range v.types {
			if _, known := knownTypes[t]; !known {
				n += len(t)
			}
		}
	}
	for _, refs := range v.referrers {
		n += 160 + 240*len(refs)
		for _, r := range refs {
			for k, a := range r.Annotations {
				n += len(k) + len(a) + 32
			}
		}
	}
	return int64(n)
}

// knownTypes are the media types of the manifests of almost every
// repository: a view refers to these strings rather than keeping copies,
// and a view whose manifests are all of one of them shares its list of
// types (singleTypes).
var knownTypes, singleTypes = func() (map[string]string, map[string][]string) {
	known, single := map[string]string{}, map[string][]string{}
	for _, t := range []string{
		v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json",
	} {
		known[t] = t
		single[t] = []string{t}
	}
	return known, single
}()

// digestTable is a sorted list of digests of the algorithms heron stores,
// each written whole ("sha256:…") in the string of its algorithm, at a
// fixed width: a digest is a part of that string, and looking one up costs
// no allocation. "sha256:" sorts before "sha512:", so the sha256 digests
// come first in the table's order.
type digestTable struct {
	sha256, sha512 string
}

const (
	sha256Width = len("sha256:") + 64
	sha512Width = len("sha512:") + 128
)

func (t digestTable) n256() int { return len(t.sha256) / sha256Width }

func (t digestTable) len() int { return t.n256() + len(t.sha512)/sha512Width }

func (t digestTable) at(i int) string {
	if n := t.n256(); i >= n {
		i -= n
		return t.sha512[i*sha512Width : (i+1)*sha512Width]
	}
	return t.sha256[i*sha256Width : (i+1)*sha256Width]
}

func (t digestTable) find(d string) (int, bool) { return findDigest(t, d) }

// findDigest is digestTable.find for a digest in a string or in bytes.
func findDigest[S string | []byte](t digestTable, d S) (int, bool) {
	var part string
	var width, offset int
	switch len(d) {
	case sha256Width:
		part, width = t.sha256, sha256Width
	case sha512Width:
		part, width, offset = t.sha512, sha512Width, t.n256()
	default:
		return 0, false
	}
	n := len(part) / width
	i := sort.Search(n, func(i int) bool { return part[i*width:(i+1)*width] >= string(d) })
	if i < n && part[i*width:(i+1)*width] == string(d) {
		return offset + i, true
	}
	return 0, false
}

// viewTag, viewManifest and viewBlob are the entries a view is built
// from: parts of the file being decoded (or of a Repository's strings).
type viewTag struct{ tag, digest []byte }

type viewManifest struct {
	digest, mediaType []byte
	size              int64
}

type viewBlob struct {
	digest []byte
	size   int64
	stored bool
}

// buildView packs what a file lists into a view, whose Name and
// BlobBaseURL are set. The entries must be valid and consistent
// (Repository.Validate's rules), tags sorted by tag, manifests and blobs
// by digest.
func buildView(v *RepositoryView, tags []viewTag, manifests []viewManifest, blobs []viewBlob) {
	n := len(v.Name) + len(v.BlobBaseURL)
	for _, t := range tags {
		n += len(t.tag)
	}
	for _, m := range manifests {
		n += len(m.digest)
	}
	for _, b := range blobs {
		n += len(b.digest)
	}
	text := make([]byte, 0, n)
	text = append(append(text, v.Name...), v.BlobBaseURL...)
	v.tagsAt = uint32(len(text))
	v.ints = make([]uint32, 2*len(tags)+len(manifests))
	for i, t := range tags {
		text = append(text, t.tag...)
		v.ints[i] = uint32(len(text)) - v.tagsAt
	}
	appendDigests := func(n int, digest func(int) []byte) (at256, at512 uint32) {
		at256 = uint32(len(text))
		for _, width := range []int{sha256Width, sha512Width} {
			if width == sha512Width {
				at512 = uint32(len(text))
			}
			for i := range n {
				if d := digest(i); len(d) == width {
					text = append(text, d...)
				}
			}
		}
		return at256, at512
	}
	v.m256, v.m512 = appendDigests(len(manifests), func(i int) []byte { return manifests[i].digest })
	v.b256, v.b512 = appendDigests(len(blobs), func(i int) []byte { return blobs[i].digest })
	v.textEnd = uint32(len(text))
	v.text = string(text)
	v.Name = v.text[:len(v.Name)]
	v.BlobBaseURL = v.text[len(v.Name):v.tagsAt]

	v.sizes = make([]int64, len(manifests)+len(blobs))
	types := 2 * len(tags)
	for i, m := range manifests {
		v.sizes[i] = m.size
		t := slices.IndexFunc(v.types, func(t string) bool { return t == string(m.mediaType) })
		if t < 0 {
			t = len(v.types)
			if known, ok := knownTypes[string(m.mediaType)]; ok {
				v.types = append(v.types, known)
			} else {
				v.types = append(v.types, string(m.mediaType))
			}
		}
		v.ints[types+i] = uint32(t)
	}
	if len(v.types) == 1 && singleTypes[v.types[0]] != nil {
		v.types = singleTypes[v.types[0]]
	}
	ms := v.manifests()
	for i, t := range tags {
		j, _ := findDigest(ms, t.digest)
		v.ints[len(tags)+i] = uint32(j)
	}
	for i, b := range blobs {
		v.sizes[len(manifests)+i] = b.size
		if !b.stored {
			if v.unstored == nil {
				v.unstored = make([]uint64, (len(blobs)+63)/64)
			}
			v.unstored[i/64] |= 1 << (i % 64)
		}
	}
}

// sortTags sorts entries by tag, sortManifests and sortBlobs by digest.
func sortTags(ts []viewTag) {
	slices.SortFunc(ts, func(a, b viewTag) int { return bytes.Compare(a.tag, b.tag) })
}

func sortManifests(ms []viewManifest) {
	slices.SortFunc(ms, func(a, b viewManifest) int { return bytes.Compare(a.digest, b.digest) })
}

func sortBlobs(bs []viewBlob) {
	slices.SortFunc(bs, func(a, b viewBlob) int { return bytes.Compare(a.digest, b.digest) })
}

// ViewOf returns the view of a valid repository file.
func ViewOf(r *Repository) *RepositoryView {
	v := &RepositoryView{Name: r.Name, BlobBaseURL: strings.TrimRight(r.BlobBaseURL, "/"), Protected: r.Protected}
	if r.Upstream != nil {
		u := *r.Upstream
		v.Upstream = &u
	}
	tags := make([]viewTag, 0, len(r.Tags))
	for t, d := range r.Tags {
		tags = append(tags, viewTag{tag: []byte(t), digest: []byte(d)})
	}
	sortTags(tags)
	manifests := make([]viewManifest, 0, len(r.Manifests))
	for d, m := range r.Manifests {
		manifests = append(manifests, viewManifest{digest: []byte(d), mediaType: []byte(m.MediaType), size: m.Size})
	}
	sortManifests(manifests)
	blobs := make([]viewBlob, 0, len(r.Blobs))
	for d, b := range r.Blobs {
		blobs = append(blobs, viewBlob{digest: []byte(d), size: b.Size, stored: b.IsStored()})
	}
	sortBlobs(blobs)
	buildView(v, tags, manifests, blobs)
	if len(r.Referrers) > 0 {
		v.referrers = make(map[digest.Digest][]v1.Descriptor, len(r.Referrers))
		for s, refs := range r.Referrers {
			refs = slices.Clone(refs)
			sortDescriptors(refs)
			v.referrers[s] = refs
		}
	}
	return v
}

// DecodeRepositoryView decodes the repository file of name (as
// DecodeRepositoryFile does, with the same errors) into its view. Files
// written as heron writes them are read in one pass by a scanner that
// builds the view directly (see jsonScanner); anything else, and any file
// that is not valid, is decoded by DecodeRepositoryFile, which says what
// is wrong with it.
func DecodeRepositoryView(name string, data []byte) (*RepositoryView, error) {
	if len(data) <= MaxRepositoryFileSize {
		if v, ok := scanRepositoryView(name, data); ok {
			return v, nil
		}
	}
	r, err := DecodeRepositoryFile(name, data)
	if err != nil {
		return nil, err
	}
	return ViewOf(r), nil
}

// Fields of the repository file, as bits, to find duplicates.
const (
	fieldSchemaVersion = 1 << iota
	fieldName
	fieldBlobBaseURL
	fieldProtected
	fieldUpstream
	fieldTags
	fieldManifests
	fieldBlobs
	fieldReferrers
)

// scanRepositoryView is DecodeRepositoryView's fast path: it reports false
// for anything it does not read exactly as the slow path would, including
// every file that is not valid (whose error the slow path gives).
func scanRepositoryView(name string, data []byte) (*RepositoryView, bool) {
	s := newJSONScanner(data)
	v := &RepositoryView{}
	var seen int
	version := int64(-1)
	var tags []viewTag
	var manifests []viewManifest
	var blobs []viewBlob
	// The children and blobs of each manifest: they must be listed.
	var mustManifest, mustBlob [][]byte
	var referrers []byte
	once := func(f int) bool {
		if seen&f != 0 {
			return s.fail()
		}
		seen |= f
		return true
	}
	s.object(func(key []byte) bool {
		switch {
		case s.keyIs(key, "schemaVersion"):
			version = s.int()
			return once(fieldSchemaVersion)
		case s.keyIs(key, "name"):
			v.Name = string(s.str())
			return once(fieldName)
		case s.keyIs(key, "blobBaseURL"):
			v.BlobBaseURL = strings.TrimRight(string(s.str()), "/")
			return once(fieldBlobBaseURL)
		case s.keyIs(key, "protected"):
			v.Protected = s.bool()
			return once(fieldProtected)
		case s.keyIs(key, "upstream"):
			v.Upstream = scanUpstream(s)
			return once(fieldUpstream)
		case s.keyIs(key, "tags"):
			s.object(func(tag []byte) bool {
				tags = append(tags, viewTag{tag: tag, digest: s.str()})
				return s.ok
			})
			return once(fieldTags)
		case s.keyIs(key, "manifests"):
			s.object(func(d []byte) bool {
				m := viewManifest{digest: d, size: -1}
				var mseen int
				s.object(func(k []byte) bool {
					f := 0
					switch {
					case s.keyIs(k, "mediaType"):
						m.mediaType, f = s.str(), 1
					case s.keyIs(k, "size"):
						m.size, f = s.int(), 2
					case s.keyIs(k, "artifactType"):
						s.str()
						f = 4
					case s.keyIs(k, "subject"):
						s.str()
						f = 8
					case s.keyIs(k, "children"), s.keyIs(k, "blobs"):
						list := &mustManifest
						if string(k) == "blobs" {
							list, f = &mustBlob, 32
						} else {
							f = 16
						}
						s.array(func() bool {
							*list = append(*list, s.str())
							return s.ok
						})
					default:
						s.raw()
					}
					if mseen&f != 0 {
						return s.fail()
					}
					mseen |= f
					return s.ok
				})
				if m.size < 0 || len(m.mediaType) == 0 {
					return s.fail() // the slow path says what is missing
				}
				manifests = append(manifests, m)
				return s.ok
			})
			return once(fieldManifests)
		case s.keyIs(key, "blobs"):
			s.object(func(d []byte) bool {
				b := viewBlob{digest: d, stored: true}
				var bseen int
				s.object(func(k []byte) bool {
					f := 0
					switch {
					case s.keyIs(k, "size"):
						b.size, f = s.int(), 1
					case s.keyIs(k, "mediaType"):
						s.str()
						f = 2
					case s.keyIs(k, "stored"):
						b.stored, f = s.bool(), 4
					default:
						s.raw()
					}
					if bseen&f != 0 {
						return s.fail()
					}
					bseen |= f
					return s.ok
				})
				blobs = append(blobs, b)
				return s.ok
			})
			return once(fieldBlobs)
		case s.keyIs(key, "referrers"):
			referrers = s.raw()
			return once(fieldReferrers)
		}
		s.raw()
		return s.ok
	})
	if !s.end() || version != RepositorySchemaVersion || v.Name != name || ValidateRepository(name) != nil {
		return nil, false
	}
	if v.BlobBaseURL != "" && ValidateBlobBaseURL(v.BlobBaseURL) != nil {
		return nil, false
	}
	sortTags(tags)
	sortManifests(manifests)
	sortBlobs(blobs)
	for i, t := range tags {
		if (i > 0 && bytes.Equal(tags[i-1].tag, t.tag)) || !matchTag(string(t.tag)) {
			return nil, false
		}
	}
	for i, m := range manifests {
		if (i > 0 && bytes.Equal(manifests[i-1].digest, m.digest)) || !isCanonicalDigest(m.digest) {
			return nil, false
		}
	}
	for i, b := range blobs {
		if (i > 0 && bytes.Equal(blobs[i-1].digest, b.digest)) || !isCanonicalDigest(b.digest) {
			return nil, false
		}
	}
	listed := func(d []byte) bool {
		_, ok := slices.BinarySearchFunc(manifests, d, func(m viewManifest, d []byte) int { return bytes.Compare(m.digest, d) })
		return ok
	}
	for _, t := range tags {
		if !listed(t.digest) {
			return nil, false
		}
	}
	for _, d := range mustManifest {
		if !listed(d) {
			return nil, false
		}
	}
	for _, d := range mustBlob {
		if _, ok := slices.BinarySearchFunc(blobs, d, func(b viewBlob, d []byte) int { return bytes.Compare(b.digest, d) }); !ok {
			return nil, false
		}
	}
	if referrers != nil {
		var refs map[digest.Digest][]v1.Descriptor
		if json.Unmarshal(referrers, &refs) != nil {
			return nil, false
		}
		for subject, ds := range refs {
			if _, err := ParseDigest(string(subject)); err != nil {
				return nil, false
			}
			for _, d := range ds {
				if !listed([]byte(d.Digest)) {
					return nil, false
				}
			}
			sortDescriptors(ds)
		}
		if len(refs) > 0 {
			v.referrers = refs
		}
	}
	buildView(v, tags, manifests, blobs)
	return v, true
}

// scanUpstream reads the upstream object.
func scanUpstream(s *jsonScanner) *Upstream {
	u := &Upstream{}
	var seen int
	s.object(func(k []byte) bool {
		f := 0
		switch {
		case s.keyIs(k, "registry"):
			u.Registry, f = string(s.str()), 1
		case s.keyIs(k, "repository"):
			u.Repository, f = string(s.str()), 2
		case s.keyIs(k, "insecure"):
			u.Insecure, f = s.bool(), 4
		default:
			s.raw()
		}
		if seen&f != 0 {
			return s.fail()
		}
		seen |= f
		return s.ok
	})
	return u
}

// String describes the view for messages and tests.
func (v *RepositoryView) String() string {
	return fmt.Sprintf("repository %s: %d tags, %d manifests, %d blobs", v.Name, v.nTags(), v.manifests().len(), v.blobs().len())
}
