package layout

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// RepositoryView is a repository file as a reader that serves it needs it:
// its settings, each tag's manifest, each manifest's media type and size,
// each blob's size and whether it is stored, and the referrers. It is
// read-only, compact and free of pointers: one string holds it all in a
// binary layout (below), digests as raw bytes, sorted, looked up by binary
// search without allocating. A server keeps tens of thousands of them in a
// few megabytes, which the garbage collector does not scan. What only a
// writer needs (the children and blobs of each manifest, media types of
// blobs, unknown fields) is left out. DecodeRepositoryView builds one from
// a file, ViewOf from a decoded Repository; both give the same view for the
// same file. The zero RepositoryView is not valid.
//
// The layout, integers little-endian:
//
//	header   flags u8 (1 protected, 2 upstream, 4 referrers), local types u8,
//	         name length u16, base URL length u16, tags u32, manifests of
//	         each algorithm u32 u32, blobs of each u32 u32, tag bytes u32
//	name, base URL
//	tags     the end of each (from the first) u32, its manifest's index u32,
//	         then their bytes, sorted
//	manifests  digests in DigestKey's form (sha256, then sha512), sorted; a
//	         media type u8 each (below 0x80: knownTypes, else a local type),
//	         a size i64 each
//	blobs    digests in DigestKey's form (sha256, then sha512), sorted; a
//	         size i64 each; a bit each, set for a blob not stored
//	local types   length u16 and bytes, each
//	upstream (flag 2)   registry and repository (length u16, bytes), insecure u8
//	shards (flag 8)     for each kind (tags, manifests, blobs, referrers): the
//	         table's length u32, the number of shards u32, the offset of each
//	         (from the table's start) u32, then each: its id (32 bytes), its
//	         count u32, its first and last keys (length u16, bytes; tags, or
//	         digests in DigestKey's form)
//	referrers (flag 4)  count u32, then each subject: its raw digest (algorithm
//	         u8 and sum), length u32 and the JSON array of its descriptors
type RepositoryView struct {
	s string
}

const (
	viewProtected = 1 << iota
	viewUpstream
	viewReferrers
	viewShards
)

// viewHeader is the size of the header.
const viewHeader = 1 + 1 + 2 + 2 + 4*6

// Algorithms of raw digests (DigestKey): their first byte; and the size
// of a digest in DigestKey's form, of each.
const (
	algSHA256 = 1
	algSHA512 = 2
	key256    = 1 + sha256.Size
	key512    = 1 + sha512.Size
)

func (v RepositoryView) u16(i int) int { return int(v.s[i]) | int(v.s[i+1])<<8 }

func (v RepositoryView) u32(i int) int {
	return int(v.s[i]) | int(v.s[i+1])<<8 | int(v.s[i+2])<<16 | int(v.s[i+3])<<24
}

func (v RepositoryView) i64(i int) int64 {
	var n uint64
	for j := 7; j >= 0; j-- {
		n = n<<8 | uint64(v.s[i+j])
	}
	return int64(n)
}

func (v RepositoryView) nTags() int      { return v.u32(6) }
func (v RepositoryView) nM256() int      { return v.u32(10) }
func (v RepositoryView) nM512() int      { return v.u32(14) }
func (v RepositoryView) nB256() int      { return v.u32(18) }
func (v RepositoryView) nB512() int      { return v.u32(22) }
func (v RepositoryView) nManifests() int { return v.nM256() + v.nM512() }
func (v RepositoryView) nBlobs() int     { return v.nB256() + v.nB512() }

// Offsets of the sections.
func (v RepositoryView) nameAt() int     { return viewHeader }
func (v RepositoryView) baseAt() int     { return viewHeader + v.u16(2) }
func (v RepositoryView) tagEndsAt() int  { return v.baseAt() + v.u16(4) }
func (v RepositoryView) tagTextAt() int  { return v.tagEndsAt() + 8*v.nTags() }
func (v RepositoryView) mDigestsAt() int { return v.tagTextAt() + v.u32(26) }
func (v RepositoryView) mTypesAt() int {
	return v.mDigestsAt() + key256*v.nM256() + key512*v.nM512()
}
func (v RepositoryView) mSizesAt() int   { return v.mTypesAt() + v.nManifests() }
func (v RepositoryView) bDigestsAt() int { return v.mSizesAt() + 8*v.nManifests() }
func (v RepositoryView) bSizesAt() int {
	return v.bDigestsAt() + key256*v.nB256() + key512*v.nB512()
}
func (v RepositoryView) unstoredAt() int { return v.bSizesAt() + 8*v.nBlobs() }
func (v RepositoryView) typesAt() int    { return v.unstoredAt() + (v.nBlobs()+7)/8 }

// Name is the repository's name.
func (v RepositoryView) Name() string { return v.s[v.nameAt():v.baseAt()] }

// BlobBaseURL is the repository's blob base URL, without trailing
// slashes, or "".
func (v RepositoryView) BlobBaseURL() string { return v.s[v.baseAt():v.tagEndsAt()] }

// Protected reports whether the repository needs credentials.
func (v RepositoryView) Protected() bool { return v.s[0]&viewProtected != 0 }

// Tags returns the number of tags.
func (v RepositoryView) Tags() int { return v.nTags() }

// TagAt returns tag i, in lexical order.
func (v RepositoryView) TagAt(i int) string {
	ends, text := v.tagEndsAt(), v.tagTextAt()
	start := 0
	if i > 0 {
		start = v.u32(ends + 4*(i-1))
	}
	return v.s[text+start : text+v.u32(ends+4*i)]
}

// TagsAfter returns the index of the first tag that sorts after last.
func (v RepositoryView) TagsAfter(last string) int {
	return sort.Search(v.nTags(), func(i int) bool { return v.TagAt(i) > last })
}

// ManifestInfo is a listed manifest as a view gives it.
type ManifestInfo struct {
	// Key is the manifest's raw digest (see DigestKey), a part of the
	// view's memory: a key for caches that costs no allocation.
	Key       string
	MediaType string
	Size      int64
}

// Digest returns the manifest's digest.
func (m ManifestInfo) Digest() digest.Digest { return DigestOfKey(m.Key) }

// DigestKey returns the raw form of a digest of the algorithms heron
// stores: the algorithm in a byte, then the sum; it sorts as the digest
// does. It returns false for any other string. The key is written into
// buf, which must be at least 1+sha512.Size bytes.
func DigestKey(d string, buf []byte) ([]byte, bool) {
	var alg byte
	var n int
	switch {
	case len(d) == sha256Width && d[:7] == "sha256:":
		alg, n = algSHA256, sha256.Size
	case len(d) == sha512Width && d[:7] == "sha512:":
		alg, n = algSHA512, sha512.Size
	default:
		return nil, false
	}
	buf = buf[:1+n]
	buf[0] = alg
	for i := range n {
		hi, lo := unhex(d[7+2*i]), unhex(d[8+2*i])
		if hi > 15 || lo > 15 {
			return nil, false
		}
		buf[1+i] = hi<<4 | lo
	}
	return buf, true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 255
}

// DigestOfKey is the inverse of DigestKey.
func DigestOfKey(key string) digest.Digest {
	if len(key) == 0 {
		return ""
	}
	alg := "sha256:"
	if key[0] == algSHA512 {
		alg = "sha512:"
	}
	return digest.Digest(alg + hex.EncodeToString([]byte(key[1:])))
}

// Resolve returns the manifest a reference (tag or digest) names in this
// repository, and whether it is listed.
func (v RepositoryView) Resolve(ref string) (ManifestInfo, bool) {
	if IsDigest(ref) {
		return v.Manifest(digest.Digest(ref))
	}
	n := v.nTags()
	t := sort.Search(n, func(i int) bool { return v.TagAt(i) >= ref })
	if t == n || v.TagAt(t) != ref {
		return ManifestInfo{}, false
	}
	return v.manifestAt(v.u32(v.tagEndsAt() + 4*n + 4*t)), true
}

// Manifest returns the listed manifest d.
func (v RepositoryView) Manifest(d digest.Digest) (ManifestInfo, bool) {
	var buf [1 + sha512.Size]byte
	key, ok := DigestKey(string(d), buf[:])
	if !ok {
		return ManifestInfo{}, false
	}
	i, ok := v.find(v.mDigestsAt(), v.nM256(), v.nM512(), key)
	if !ok {
		return ManifestInfo{}, false
	}
	return v.manifestAt(i), true
}

// digestAt returns digest i (in DigestKey's form) of the table at at,
// whose first n256 digests are sha256 digests.
func (v RepositoryView) digestAt(at, n256, i int) string {
	if i < n256 {
		at += key256 * i
		return v.s[at : at+key256]
	}
	at += key256*n256 + key512*(i-n256)
	return v.s[at : at+key512]
}

// find looks key (DigestKey's form) up in the table at at.
func (v RepositoryView) find(at, n256, n512 int, key []byte) (int, bool) {
	lo, n, width := 0, n256, key256
	if key[0] == algSHA512 {
		lo, n, width = n256, n512, key512
		at += key256 * n256
	}
	i := sort.Search(n, func(i int) bool { return v.s[at+width*i:at+width*(i+1)] >= string(key) })
	if i < n && v.s[at+width*i:at+width*(i+1)] == string(key) {
		return lo + i, true
	}
	return 0, false
}

func (v RepositoryView) manifestAt(i int) ManifestInfo {
	return ManifestInfo{
		Key:       v.digestAt(v.mDigestsAt(), v.nM256(), i),
		MediaType: v.typeOf(v.s[v.mTypesAt()+i]),
		Size:      v.i64(v.mSizesAt() + 8*i),
	}
}

// typeOf returns the media type of index t.
func (v RepositoryView) typeOf(t byte) string {
	if t < 0x80 {
		return knownTypeList[t]
	}
	at := v.typesAt()
	for range int(t - 0x80) {
		at += 2 + v.u16(at)
	}
	return v.s[at+2 : at+2+v.u16(at)]
}

// Blob returns the size of listed blob d and whether it is stored.
func (v RepositoryView) Blob(d digest.Digest) (size int64, stored, ok bool) {
	var buf [1 + sha512.Size]byte
	key, ok := DigestKey(string(d), buf[:])
	if !ok {
		return 0, false, false
	}
	i, ok := v.find(v.bDigestsAt(), v.nB256(), v.nB512(), key)
	if !ok {
		return 0, false, false
	}
	return v.i64(v.bSizesAt() + 8*i), v.s[v.unstoredAt()+i/8]&(1<<(i%8)) == 0, true
}

// afterTypes returns the offset after the local types.
func (v RepositoryView) afterTypes() int {
	at := v.typesAt()
	for range int(v.s[1]) {
		at += 2 + v.u16(at)
	}
	return at
}

// Upstream returns where blobs that are listed but not stored can be
// fetched, or nil.
func (v RepositoryView) Upstream() *Upstream {
	if v.s[0]&viewUpstream == 0 {
		return nil
	}
	at := v.afterTypes()
	u := &Upstream{}
	n := v.u16(at)
	u.Registry = v.s[at+2 : at+2+n]
	at += 2 + n
	n = v.u16(at)
	u.Repository = v.s[at+2 : at+2+n]
	u.Insecure = v.s[at+2+n] != 0
	return u
}

// Referrers returns the descriptors of the manifests whose subject is d,
// sorted by digest, decoded anew on each call (requests for referrers are
// rare, and decoded descriptors would hold pointers).
func (v RepositoryView) Referrers(d digest.Digest) []v1.Descriptor {
	if v.s[0]&viewReferrers == 0 {
		return nil
	}
	var buf [1 + sha512.Size]byte
	key, ok := DigestKey(string(d), buf[:])
	if !ok {
		return nil
	}
	at := v.afterShards()
	n := v.u32(at)
	at += 4
	for range n {
		klen := key256
		if v.s[at] == algSHA512 {
			klen = key512
		}
		k := v.s[at : at+klen]
		size := v.u32(at + klen)
		body := v.s[at+klen+4 : at+klen+4+size]
		if k == string(key) {
			var refs []v1.Descriptor
			if json.Unmarshal([]byte(body), &refs) != nil {
				return nil
			}
			return refs
		}
		at += klen + 4 + size
	}
	return nil
}

// afterUpstream returns the offset after the upstream, where the shard
// tables start.
func (v RepositoryView) afterUpstream() int {
	at := v.afterTypes()
	if v.s[0]&viewUpstream != 0 {
		at += 2 + v.u16(at)
		at += 2 + v.u16(at) + 1
	}
	return at
}

// shardTable returns the offset of the shard table of kind, and false when
// the view has no shards.
func (v RepositoryView) shardTable(kind ShardKind) (int, bool) {
	if v.s[0]&viewShards == 0 {
		return 0, false
	}
	at := v.afterUpstream()
	for range int(kind) {
		at += 4 + v.u32(at)
	}
	return at + 4, true
}

// afterShards returns the offset after the shard tables.
func (v RepositoryView) afterShards() int {
	at := v.afterUpstream()
	if v.s[0]&viewShards != 0 {
		for range int(shardKinds) {
			at += 4 + v.u32(at)
		}
	}
	return at
}

// Shards returns the number of shards of kind (0: the file holds its
// entries of kind itself).
func (v RepositoryView) Shards(kind ShardKind) int {
	t, ok := v.shardTable(kind)
	if !ok {
		return 0
	}
	return v.u32(t)
}

// ViewShard is a shard as a view lists it: its id (raw, 32 bytes, a part
// of the view), its count, its first and last keys (tags, or digests in
// DigestKey's form).
type ViewShard struct {
	ID          string
	Count       int
	First, Last string
}

// HexID is the shard's id as its file is named.
func (s ViewShard) HexID() string { return hex.EncodeToString([]byte(s.ID)) }

// Shard returns shard i of kind.
func (v RepositoryView) Shard(kind ShardKind, i int) ViewShard {
	t, _ := v.shardTable(kind)
	at := t + v.u32(t+4+4*i)
	s := ViewShard{ID: v.s[at : at+sha256.Size], Count: v.u32(at + sha256.Size)}
	at += sha256.Size + 4
	n := v.u16(at)
	s.First = v.s[at+2 : at+2+n]
	at += 2 + n
	n = v.u16(at)
	s.Last = v.s[at+2 : at+2+n]
	return s
}

// ShardIndex returns the index of the shard of kind whose range holds key
// (a tag, or a digest in DigestKey's form), and false when none does (key
// is then not in the repository).
func (v RepositoryView) ShardIndex(kind ShardKind, key string) (int, bool) {
	n := v.Shards(kind)
	i := sort.Search(n, func(i int) bool { return v.Shard(kind, i).Last >= key })
	return i, i < n && v.Shard(kind, i).First <= key
}

// ShardAfter returns the index of the first shard of kind that may hold a
// key sorting after last.
func (v RepositoryView) ShardAfter(kind ShardKind, last string) int {
	return sort.Search(v.Shards(kind), func(i int) bool { return v.Shard(kind, i).Last > last })
}

// Size is the approximate memory of the view, in bytes.
func (v RepositoryView) Size() int64 { return int64(len(v.s)) }

// knownTypeList are the media types of the manifests of almost every
// repository, which a view refers to by their index (below 0x80) rather
// than keeping copies; knownTypes maps each to its index.
var knownTypeList = []string{
	v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}

var knownTypes = func() map[string]byte {
	m := map[string]byte{}
	for i, t := range knownTypeList {
		m[t] = byte(i)
	}
	return m
}()

const (
	sha256Width = len("sha256:") + 2*sha256.Size
	sha512Width = len("sha512:") + 2*sha512.Size
)

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

// viewSettings are the settings a view holds.
type viewSettings struct {
	name, blobBaseURL string
	protected         bool
	upstream          *Upstream
	shards            [shardKinds][]ShardRef
}

// encodeView packs what a file lists into a view (see RepositoryView for
// the layout). The entries must be valid and consistent
// (Repository.Validate's rules), tags sorted by tag, manifests and blobs
// by digest; refs are the referrers of each subject, sorted by digest.
func encodeView(st viewSettings, tags []viewTag, manifests []viewManifest, blobs []viewBlob, refs map[digest.Digest][]v1.Descriptor) RepositoryView {
	var locals []string
	mtype := make([]byte, len(manifests))
	for i, m := range manifests {
		if t, ok := knownTypes[string(m.mediaType)]; ok {
			mtype[i] = t
			continue
		}
		t := slices.Index(locals, string(m.mediaType))
		if t < 0 {
			t = len(locals)
			locals = append(locals, string(m.mediaType))
		}
		mtype[i] = byte(0x80 + t)
	}
	count := func(n int, digest func(int) []byte) (n256, n512 int) {
		for i := range n {
			if len(digest(i)) == sha256Width {
				n256++
			} else {
				n512++
			}
		}
		return n256, n512
	}
	m256, m512 := count(len(manifests), func(i int) []byte { return manifests[i].digest })
	b256, b512 := count(len(blobs), func(i int) []byte { return blobs[i].digest })
	tagBytes := 0
	for _, t := range tags {
		tagBytes += len(t.tag)
	}
	var flags byte
	if st.protected {
		flags |= viewProtected
	}
	if st.upstream != nil {
		flags |= viewUpstream
	}
	if len(refs) > 0 {
		flags |= viewReferrers
	}
	for _, s := range st.shards {
		if len(s) > 0 {
			flags |= viewShards
		}
	}
	b := make([]byte, 0, viewHeader+len(st.name)+len(st.blobBaseURL)+8*len(tags)+tagBytes+
		(key256+9)*m256+(key512+9)*m512+(key256+8)*b256+(key512+8)*b512+(len(blobs)+7)/8)
	b = append(b, flags, byte(len(locals)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(st.name)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(st.blobBaseURL)))
	for _, n := range []int{len(tags), m256, m512, b256, b512, tagBytes} {
		b = binary.LittleEndian.AppendUint32(b, uint32(n))
	}
	b = append(append(b, st.name...), st.blobBaseURL...)
	end := 0
	for _, t := range tags {
		end += len(t.tag)
		b = binary.LittleEndian.AppendUint32(b, uint32(end))
	}
	for _, t := range tags {
		i, _ := slices.BinarySearchFunc(manifests, t.digest, func(m viewManifest, d []byte) int { return bytes.Compare(m.digest, d) })
		b = binary.LittleEndian.AppendUint32(b, uint32(i))
	}
	var kb [key512]byte
	for _, t := range tags {
		b = append(b, t.tag...)
	}
	for _, m := range manifests {
		key, _ := DigestKey(string(m.digest), kb[:])
		b = append(b, key...)
	}
	b = append(b, mtype...)
	for _, m := range manifests {
		b = binary.LittleEndian.AppendUint64(b, uint64(m.size))
	}
	for _, bl := range blobs {
		key, _ := DigestKey(string(bl.digest), kb[:])
		b = append(b, key...)
	}
	for _, bl := range blobs {
		b = binary.LittleEndian.AppendUint64(b, uint64(bl.size))
	}
	unstored := make([]byte, (len(blobs)+7)/8)
	for i, bl := range blobs {
		if !bl.stored {
			unstored[i/8] |= 1 << (i % 8)
		}
	}
	b = append(b, unstored...)
	for _, t := range locals {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(t)))
		b = append(b, t...)
	}
	if u := st.upstream; u != nil {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(u.Registry)))
		b = append(b, u.Registry...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(u.Repository)))
		b = append(b, u.Repository...)
		insecure := byte(0)
		if u.Insecure {
			insecure = 1
		}
		b = append(b, insecure)
	}
	if flags&viewShards != 0 {
		for kind, shards := range st.shards {
			b = appendShardTable(b, ShardKind(kind), shards)
		}
	}
	if len(refs) > 0 {
		subjects := slices.Sorted(maps.Keys(refs))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(subjects)))
		for _, subject := range subjects {
			key, _ := DigestKey(string(subject), kb[:])
			js, _ := json.Marshal(refs[subject])
			b = append(b, key...)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(js)))
			b = append(b, js...)
		}
	}
	return RepositoryView{s: string(b)}
}

// appendShardTable appends the shard table of kind (see RepositoryView).
func appendShardTable(b []byte, kind ShardKind, shards []ShardRef) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, 0) // the length, set below
	table := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(shards)))
	offsets := len(b)
	b = append(b, make([]byte, 4*len(shards))...)
	var kb [key512]byte
	for i, s := range shards {
		binary.LittleEndian.PutUint32(b[offsets+4*i:], uint32(len(b)-table))
		id, _ := hex.DecodeString(s.ID)
		b = append(b, id...)
		b = binary.LittleEndian.AppendUint32(b, uint32(s.Count))
		for _, key := range []string{s.First, s.Last} {
			if kind != TagKind {
				k, _ := DigestKey(key, kb[:])
				key = string(k)
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(len(key)))
			b = append(b, key...)
		}
	}
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-table))
	return b
}

// viewable reports whether the settings fit a view's header: lengths of
// the name and base URL, counts of local media types, of the upstream's
// names. A repository file that does not (a base URL of 64 KiB) is not
// served.
func (st viewSettings) viewable() bool {
	return len(st.name) <= 0xffff && len(st.blobBaseURL) <= 0xffff &&
		(st.upstream == nil || (len(st.upstream.Registry) <= 0xffff && len(st.upstream.Repository) <= 0xffff))
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
func ViewOf(r *Repository) (RepositoryView, error) {
	st := viewSettings{name: r.Name, blobBaseURL: strings.TrimRight(r.BlobBaseURL, "/"), protected: r.Protected, upstream: r.Upstream}
	for _, kind := range ShardKinds {
		st.shards[kind] = r.Shards(kind)
	}
	if !st.viewable() {
		return RepositoryView{}, fmt.Errorf("repository %s: a name, base URL or upstream longer than 65,535 bytes", r.Name)
	}
	tags := make([]viewTag, 0, len(r.Tags))
	for t, d := range r.Tags {
		tags = append(tags, viewTag{tag: []byte(t), digest: []byte(d)})
	}
	sortTags(tags)
	manifests := make([]viewManifest, 0, len(r.Manifests))
	types := map[string]bool{}
	for d, m := range r.Manifests {
		manifests = append(manifests, viewManifest{digest: []byte(d), mediaType: []byte(m.MediaType), size: m.Size})
		if _, known := knownTypes[m.MediaType]; !known {
			types[m.MediaType] = true
		}
	}
	if len(types) > 0x7f {
		return RepositoryView{}, fmt.Errorf("repository %s: manifests of %d media types, more than the 127 served", r.Name, len(types))
	}
	sortManifests(manifests)
	blobs := make([]viewBlob, 0, len(r.Blobs))
	for d, b := range r.Blobs {
		blobs = append(blobs, viewBlob{digest: []byte(d), size: b.Size, stored: b.IsStored()})
	}
	sortBlobs(blobs)
	var refs map[digest.Digest][]v1.Descriptor
	if len(r.Referrers) > 0 {
		refs = make(map[digest.Digest][]v1.Descriptor, len(r.Referrers))
		for s, ds := range r.Referrers {
			ds = slices.Clone(ds)
			sortDescriptors(ds)
			refs[s] = ds
		}
	}
	return encodeView(st, tags, manifests, blobs, refs), nil
}

// DecodeRepositoryView decodes the repository file of name (as
// DecodeRepositoryFile does, with the same errors) into its view. Files
// written as heron writes them are read in one pass by a scanner that
// builds the view directly (see jsonScanner); anything else, and any file
// that is not valid, is decoded by DecodeRepositoryFile, which says what
// is wrong with it.
func DecodeRepositoryView(name string, data []byte) (RepositoryView, error) {
	if len(data) <= MaxRepositoryFileSize {
		if v, ok := scanRepositoryView(name, data); ok {
			return v, nil
		}
	}
	r, err := DecodeRepositoryFile(name, data)
	if err != nil {
		return RepositoryView{}, err
	}
	return ViewOf(r)
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
	fieldTagShards
	fieldManifestShards
	fieldBlobShards
	fieldReferrerShards
)

// scanRepositoryView is DecodeRepositoryView's fast path: it reports false
// for anything it does not read exactly as the slow path would, including
// every file that is not valid (whose error the slow path gives).
func scanRepositoryView(name string, data []byte) (RepositoryView, bool) {
	s := newJSONScanner(data)
	var st viewSettings
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
			st.name = string(s.str())
			return once(fieldName)
		case s.keyIs(key, "blobBaseURL"):
			st.blobBaseURL = strings.TrimRight(string(s.str()), "/")
			return once(fieldBlobBaseURL)
		case s.keyIs(key, "protected"):
			st.protected = s.bool()
			return once(fieldProtected)
		case s.keyIs(key, "upstream"):
			st.upstream = scanUpstream(s)
			return once(fieldUpstream)
		case s.keyIs(key, "tags"):
			s.object(func(tag []byte) bool {
				tags = append(tags, viewTag{tag: tag, digest: s.str()})
				return s.ok
			})
			return once(fieldTags)
		case s.keyIs(key, "manifests"):
			s.object(func(d []byte) bool {
				m, ok := scanManifestEntry(s, d, false, &mustManifest, &mustBlob)
				manifests = append(manifests, m)
				return ok
			})
			return once(fieldManifests)
		case s.keyIs(key, "blobs"):
			s.object(func(d []byte) bool {
				b, ok := scanBlobEntry(s, d, false)
				blobs = append(blobs, b)
				return ok
			})
			return once(fieldBlobs)
		case s.keyIs(key, "referrers"):
			referrers = s.raw()
			return once(fieldReferrers)
		case s.keyIs(key, "tagShards"), s.keyIs(key, "manifestShards"), s.keyIs(key, "blobShards"), s.keyIs(key, "referrerShards"):
			kind := map[string]ShardKind{"tagShards": TagKind, "manifestShards": ManifestKind, "blobShards": BlobKind, "referrerShards": ReferrerKind}[string(key)]
			st.shards[kind] = scanShardRefs(s)
			return once(fieldTagShards << kind)
		}
		s.raw()
		return s.ok
	})
	sharded := func(kind ShardKind) bool { return len(st.shards[kind]) > 0 }
	hasShards := sharded(TagKind) || sharded(ManifestKind) || sharded(BlobKind) || sharded(ReferrerKind)
	want := int64(RepositorySchemaVersion)
	if hasShards {
		want = ShardedSchemaVersion
	}
	if !s.ok || version != want {
		return RepositoryView{}, false
	}
	for _, kind := range ShardKinds {
		// A kind both in the file and in shards, an empty or invalid
		// list: the slow path says what is wrong.
		inFile := [...]bool{len(tags) > 0, len(manifests) > 0, len(blobs) > 0, referrers != nil && !bytes.Equal(referrers, []byte("{}"))}[kind]
		if seen&(fieldTagShards<<kind) != 0 && (!sharded(kind) || inFile || checkShardRefs(kind, st.shards[kind]) != nil) {
			return RepositoryView{}, false
		}
	}
	if sharded(ManifestKind) && !sharded(TagKind) && len(tags) > 0 {
		return RepositoryView{}, false
	}
	if !s.end() || st.name != name || ValidateRepository(name) != nil || !st.viewable() {
		return RepositoryView{}, false
	}
	if st.blobBaseURL != "" && ValidateBlobBaseURL(st.blobBaseURL) != nil {
		return RepositoryView{}, false
	}
	sortTags(tags)
	sortManifests(manifests)
	var locals []string
	for _, m := range manifests {
		if _, known := knownTypes[string(m.mediaType)]; !known && !slices.Contains(locals, string(m.mediaType)) {
			if locals = append(locals, string(m.mediaType)); len(locals) > 0x7f {
				return RepositoryView{}, false // ViewOf says how many
			}
		}
	}
	sortBlobs(blobs)
	for i, t := range tags {
		if (i > 0 && bytes.Equal(tags[i-1].tag, t.tag)) || !matchTag(string(t.tag)) {
			return RepositoryView{}, false
		}
	}
	for i, m := range manifests {
		if (i > 0 && bytes.Equal(manifests[i-1].digest, m.digest)) || !isCanonicalDigest(m.digest) {
			return RepositoryView{}, false
		}
	}
	for i, b := range blobs {
		if (i > 0 && bytes.Equal(blobs[i-1].digest, b.digest)) || !isCanonicalDigest(b.digest) {
			return RepositoryView{}, false
		}
	}
	listed := func(d []byte) bool {
		_, ok := slices.BinarySearchFunc(manifests, d, func(m viewManifest, d []byte) int { return bytes.Compare(m.digest, d) })
		return ok
	}
	// A check that needs the entries of a kind in shards is the shards'
	// (Repository.Validate).
	if !sharded(ManifestKind) {
		for _, t := range tags {
			if !listed(t.digest) {
				return RepositoryView{}, false
			}
		}
		for _, d := range mustManifest {
			if !listed(d) {
				return RepositoryView{}, false
			}
		}
	} else if len(mustManifest) > 0 {
		return RepositoryView{}, false // manifests in the file and in shards
	}
	if !sharded(BlobKind) {
		for _, d := range mustBlob {
			if _, ok := slices.BinarySearchFunc(blobs, d, func(b viewBlob, d []byte) int { return bytes.Compare(b.digest, d) }); !ok {
				return RepositoryView{}, false
			}
		}
	}
	var refs map[digest.Digest][]v1.Descriptor
	if referrers != nil {
		if json.Unmarshal(referrers, &refs) != nil {
			return RepositoryView{}, false
		}
		for subject, ds := range refs {
			if _, err := ParseDigest(string(subject)); err != nil {
				return RepositoryView{}, false
			}
			for _, d := range ds {
				if !sharded(ManifestKind) && !listed([]byte(d.Digest)) {
					return RepositoryView{}, false
				}
			}
			sortDescriptors(ds)
		}
	}
	return encodeView(st, tags, manifests, blobs, refs), true
}

// scanManifestEntry reads the object of manifest d (layout.Manifest),
// appending its children and blobs (which must be listed) to the lists
// given. strict: a field it does not know fails the scanner (a shard file
// is decoded with unknown fields refused); else it is skipped. The media
// type and size are required.
func scanManifestEntry(s *jsonScanner, d []byte, strict bool, children, blobs *[][]byte) (viewManifest, bool) {
	m := viewManifest{digest: d, size: -1}
	var seen int
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
			list := children
			if f = 16; string(k) == "blobs" {
				list, f = blobs, 32
			}
			s.array(func() bool {
				*list = append(*list, s.str())
				return s.ok
			})
		case strict:
			return s.fail()
		default:
			s.raw()
		}
		if seen&f != 0 {
			return s.fail()
		}
		seen |= f
		return s.ok
	})
	if m.size < 0 || len(m.mediaType) == 0 {
		return m, s.fail() // the slow path says what is missing
	}
	return m, s.ok
}

// scanBlobEntry reads the object of blob d (layout.Blob); strict as for
// scanManifestEntry.
func scanBlobEntry(s *jsonScanner, d []byte, strict bool) (viewBlob, bool) {
	b := viewBlob{digest: d, stored: true}
	var seen int
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
		case strict:
			return s.fail()
		default:
			s.raw()
		}
		if seen&f != 0 {
			return s.fail()
		}
		seen |= f
		return s.ok
	})
	return b, s.ok
}

// scanShardRefs reads a shard list: objects of exactly the four fields.
func scanShardRefs(s *jsonScanner) []ShardRef {
	var refs []ShardRef
	s.array(func() bool {
		var ref ShardRef
		var seen int
		s.object(func(k []byte) bool {
			f := 0
			switch {
			case s.keyIs(k, "id"):
				ref.ID, f = string(s.str()), 1
			case s.keyIs(k, "first"):
				ref.First, f = string(s.str()), 2
			case s.keyIs(k, "last"):
				ref.Last, f = string(s.str()), 4
			case s.keyIs(k, "count"):
				var n int64
				n, f = s.int(), 8
				ref.Count = int(min(n, 1<<31))
			default:
				return s.fail() // an unknown field: the slow path's to judge
			}
			if seen&f != 0 {
				return s.fail()
			}
			seen |= f
			return s.ok
		})
		if seen != 15 {
			return s.fail()
		}
		refs = append(refs, ref)
		return s.ok
	})
	if refs == nil {
		s.fail() // empty, or null: the slow path's
	}
	return refs
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
func (v RepositoryView) String() string {
	return fmt.Sprintf("repository %s: %d tags, %d manifests, %d blobs", v.Name(), v.nTags(), v.nManifests(), v.nBlobs())
}
