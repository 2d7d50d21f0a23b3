package layout

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// bigRepository returns a whole repository of n tags, each naming its own
// image manifest of one blob, with a referrer of the first manifest; some
// digests are sha512 ones, so that shards cross algorithms.
func bigRepository(n int) *Repository {
	r := NewRepository("ci/app")
	for i := range n {
		md, bd := numbered("m", i), numbered("b", i)
		r.Tags[fmt.Sprintf("build-%06d", i)] = md
		r.Manifests[md] = Manifest{MediaType: v1.MediaTypeImageManifest, Size: int64(400 + i%7), Blobs: []digest.Digest{bd}}
		r.Blobs[bd] = Blob{Size: int64(i + 1), MediaType: v1.MediaTypeImageLayerGzip}
	}
	sig := numbered("s", 0)
	first := numbered("m", 0)
	r.Manifests[sig] = Manifest{MediaType: v1.MediaTypeImageManifest, Size: 300, ArtifactType: "application/vnd.example.sig", Subject: first, Blobs: []digest.Digest{numbered("b", 0)}}
	r.Referrers = map[digest.Digest][]v1.Descriptor{
		first: {{MediaType: v1.MediaTypeImageManifest, Digest: sig, Size: 300, ArtifactType: "application/vnd.example.sig"}},
	}
	return r
}

// numbered is a distinct digest for (kind, i): sha512 for every tenth.
func numbered(kind string, i int) digest.Digest {
	if i%10 == 9 {
		sum := sha512.Sum512([]byte(fmt.Sprint(kind, i)))
		return digest.NewDigestFromEncoded(digest.SHA512, hex.EncodeToString(sum[:]))
	}
	sum := sha256.Sum256([]byte(fmt.Sprint(kind, i)))
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))
}

// shardAll shards every kind of r with more than limit entries into
// shards of at most size, as a writer would, and returns the shard files
// by id.
func shardAll(t testing.TB, r *Repository, limit, size int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	kinds := []ShardKind{ManifestKind, TagKind, BlobKind, ReferrerKind}
	sharded := map[ShardKind]bool{}
	for _, kind := range kinds {
		keys := r.Keys(kind)
		if len(keys) <= limit && !(kind == TagKind && sharded[ManifestKind]) {
			continue
		}
		sharded[kind] = true
		var refs []ShardRef
		for len(keys) > 0 {
			part := keys[:min(size, len(keys))]
			keys = keys[len(part):]
			s, err := r.ShardOf(kind, part, nil)
			if err != nil {
				t.Fatal(err)
			}
			data, id, err := EncodeRepositoryShard(s)
			if err != nil {
				t.Fatal(err)
			}
			files[id] = data
			refs = append(refs, ShardRef{ID: id, First: part[0], Last: part[len(part)-1], Count: len(part)})
		}
		r.SetShards(kind, refs)
	}
	return files
}

func TestShardedRoundTrip(t *testing.T) {
	whole := bigRepository(2500)
	r := bigRepository(2500)
	files := shardAll(t, r, InlineMax, ShardMax)
	if len(r.TagShards) != 3 || len(r.ManifestShards) != 3 || len(r.BlobShards) != 3 || r.Sharded(ReferrerKind) {
		t.Fatalf("shards: %d tags, %d manifests, %d blobs, %d referrers", len(r.TagShards), len(r.ManifestShards), len(r.BlobShards), len(r.ReferrerShards))
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"schemaVersion": 2`)) || bytes.Contains(b, []byte(`"build-000001"`)) {
		t.Fatalf("sharded file: version 2 without its sharded entries expected:\n%.600s", b)
	}
	if len(b) > 4096 {
		t.Errorf("entry of 2500 tags is %d bytes", len(b))
	}
	entry, err := DecodeRepositoryFile("ci/app", b)
	if err != nil {
		t.Fatal(err)
	}
	if len(entry.Tags) != 0 || len(entry.Manifests) != 0 || len(entry.Blobs) != 0 || len(entry.Referrers) != 1 {
		t.Fatalf("entry holds %d tags, %d manifests, %d blobs, %d referrers", len(entry.Tags), len(entry.Manifests), len(entry.Blobs), len(entry.Referrers))
	}
	reads := 0
	if err := entry.LoadShards(func(id string) ([]byte, error) {
		reads++
		data, ok := files[id]
		if !ok {
			return nil, fmt.Errorf("no shard %s", id)
		}
		return data, nil
	}); err != nil {
		t.Fatal(err)
	}
	if reads != 9 {
		t.Errorf("LoadShards read %d shards, want 9", reads)
	}
	if len(entry.Tags) != len(whole.Tags) || len(entry.Manifests) != len(whole.Manifests) || len(entry.Blobs) != len(whole.Blobs) {
		t.Fatalf("loaded %d tags, %d manifests, %d blobs", len(entry.Tags), len(entry.Manifests), len(entry.Blobs))
	}
	for tag, d := range whole.Tags {
		if entry.Tags[tag] != d {
			t.Fatalf("tag %s: %s, want %s", tag, entry.Tags[tag], d)
		}
	}
	// The same entries give the same bytes: a rewrite keeps every id.
	again := bigRepository(2500)
	if files2 := shardAll(t, again, InlineMax, ShardMax); len(files2) != len(files) {
		t.Fatalf("%d shard files, then %d", len(files), len(files2))
	}
	b2, _ := again.Encode()
	if !bytes.Equal(b, b2) {
		t.Fatal("the same repository encoded to other bytes")
	}
}

func TestShardedView(t *testing.T) {
	r := bigRepository(2500)
	files := shardAll(t, r, InlineMax, 700)
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeRepositoryView("ci/app", b)
	if err != nil {
		t.Fatal(err)
	}
	// The fast path reads sharded files, and reads them as the slow one.
	if _, ok := sameView(t, "ci/app", b); !ok {
		t.Fatal("the fast path refuses a sharded repository file")
	}
	for _, kind := range ShardKinds {
		if v.Shards(kind) != len(r.Shards(kind)) {
			t.Fatalf("%s: %d shards in the view, %d in the file", kind, v.Shards(kind), len(r.Shards(kind)))
		}
		for i, ref := range r.Shards(kind) {
			sh := v.Shard(kind, i)
			first, last := sh.First, sh.Last
			if kind != TagKind {
				first, last = string(DigestOfKey(first)), string(DigestOfKey(last))
			}
			if sh.HexID() != ref.ID || sh.Count != ref.Count || first != ref.First || last != ref.Last {
				t.Fatalf("%s shard %d: %+v in the view, %+v in the file", kind, i, sh, ref)
			}
		}
	}
	whole := bigRepository(2500)
	views := map[string]RepositoryView{}
	shardView := func(kind ShardKind, ref ShardRef) RepositoryView {
		if v, ok := views[ref.ID]; ok {
			return v
		}
		v, err := DecodeShardView(files[ref.ID], kind, ref)
		if err != nil {
			t.Fatal(err)
		}
		views[ref.ID] = v
		return v
	}
	// Every tag is found in the shard its range names, and resolves there.
	for tag, d := range whole.Tags {
		i, ok := v.ShardIndex(TagKind, tag)
		if !ok {
			t.Fatalf("tag %s: no shard", tag)
		}
		m, ok := shardView(TagKind, r.TagShards[i]).Resolve(tag)
		if !ok || m.Digest() != d || m.MediaType != v1.MediaTypeImageManifest || m.Size != whole.Manifests[d].Size {
			t.Fatalf("tag %s in shard %d: %+v, %v", tag, i, m, ok)
		}
	}
	// Every manifest and blob, by digest, across sha256 and sha512.
	var buf [1 + sha512.Size]byte
	for kind, keys := range map[ShardKind][]string{ManifestKind: whole.Keys(ManifestKind), BlobKind: whole.Keys(BlobKind)} {
		for _, k := range keys {
			key, _ := DigestKey(k, buf[:])
			i, ok := v.ShardIndex(kind, string(key))
			if !ok {
				t.Fatalf("%s %s: no shard", kind, k)
			}
			sv := shardView(kind, r.Shards(kind)[i])
			if kind == ManifestKind {
				if m, ok := sv.Manifest(digest.Digest(k)); !ok || m.Size != whole.Manifests[digest.Digest(k)].Size {
					t.Fatalf("manifest %s in shard %d: %+v, %v", k, i, m, ok)
				}
			} else if size, stored, ok := sv.Blob(digest.Digest(k)); !ok || !stored || size != whole.Blobs[digest.Digest(k)].Size {
				t.Fatalf("blob %s in shard %d: %d, %v, %v", k, i, size, stored, ok)
			}
		}
	}
	// Keys in no range: before the first, between two shards, after the
	// last.
	for _, tag := range []string{"a", "build-000699a", "zzz"} {
		if i, ok := v.ShardIndex(TagKind, tag); ok {
			t.Errorf("tag %s: in shard %d", tag, i)
		}
	}
	// ShardAfter: the shard a page after last starts in.
	for _, tc := range []struct {
		last string
		want int
	}{{"", 0}, {"a", 0}, {"build-000699", 1}, {"build-000698", 0}, {"build-002499", 4}, {"zzz", 4}} {
		if got := v.ShardAfter(TagKind, tc.last); got != tc.want {
			t.Errorf("ShardAfter(%q) = %d, want %d", tc.last, got, tc.want)
		}
	}
	// The referrers stayed in the file.
	if refs := v.Referrers(numbered("m", 0)); len(refs) != 1 {
		t.Errorf("referrers in the file: %v", refs)
	}
}

func TestShardOfRefusals(t *testing.T) {
	r := bigRepository(10)
	if _, err := r.ShardOf(TagKind, []string{"build-000001"}, nil); err != nil {
		t.Fatal(err)
	}
	delete(r.Manifests, r.Tags["build-000001"])
	if _, err := r.ShardOf(TagKind, []string{"build-000001"}, nil); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Fatalf("a tag of an unlisted manifest: %v", err)
	}
	known := map[digest.Digest]ShardTag{r.Tags["build-000001"]: {Digest: r.Tags["build-000001"], MediaType: v1.MediaTypeImageManifest, Size: 9}}
	s, err := r.ShardOf(TagKind, []string{"build-000001"}, known)
	if err != nil || s.Tags["build-000001"].Size != 9 {
		t.Fatalf("a tag whose manifest a shard read before lists: %+v, %v", s, err)
	}
}

func TestDecodeRepositoryShardRefusals(t *testing.T) {
	r := bigRepository(5)
	s, err := r.ShardOf(TagKind, r.Keys(TagKind), nil)
	if err != nil {
		t.Fatal(err)
	}
	data, id, err := EncodeRepositoryShard(s)
	if err != nil {
		t.Fatal(err)
	}
	ref := ShardRef{ID: id, First: "build-000000", Last: "build-000004", Count: 5}
	if _, err := DecodeRepositoryShard(data, TagKind, ref); err != nil {
		t.Fatal(err)
	}
	rehash := func(b []byte) (ShardRef, []byte) {
		sum := sha256.Sum256(b)
		r := ref
		r.ID = hex.EncodeToString(sum[:])
		return r, b
	}
	for _, tc := range []struct {
		desc string
		data func() (ShardRef, []byte)
		kind ShardKind
		want string
	}{
		{"other bytes than its id", func() (ShardRef, []byte) { return ref, append(bytes.Clone(data), ' ') }, TagKind, "does not match its id"},
		{"invalid id", func() (ShardRef, []byte) { r := ref; r.ID = "../x"; return r, data }, TagKind, "invalid shard id"},
		{"another kind", func() (ShardRef, []byte) { return ref, data }, BlobKind, "among its blobs"},
		{"fewer than listed", func() (ShardRef, []byte) { r := ref; r.Count = 6; return r, data }, TagKind, "holds 5 tags"},
		{"another range", func() (ShardRef, []byte) { r := ref; r.Last = "build-000009"; return r, data }, TagKind, "holds 5 tags"},
		{"unknown field", func() (ShardRef, []byte) { return rehash([]byte(`{"tags":{},"x":1}` + "\n")) }, TagKind, "unknown field"},
		{"no entries", func() (ShardRef, []byte) { return rehash([]byte(`{}` + "\n")) }, TagKind, "not entries of one kind"},
		{"two kinds", func() (ShardRef, []byte) {
			return rehash([]byte(`{"tags":{"a":{"digest":"` + string(d('1')) + `","mediaType":"x","size":1}},"blobs":{"` + string(d('2')) + `":{"size":1}}}`))
		}, TagKind, "not entries of one kind"},
		{"invalid tag", func() (ShardRef, []byte) {
			return rehash([]byte(`{"tags":{"-a":{"digest":"` + string(d('1')) + `","mediaType":"x","size":1}}}`))
		}, TagKind, "tag"},
		{"tag without media type", func() (ShardRef, []byte) {
			return rehash([]byte(`{"tags":{"a":{"digest":"` + string(d('1')) + `","size":1}}}`))
		}, TagKind, "media type and size are required"},
		{"invalid digest", func() (ShardRef, []byte) {
			return rehash([]byte(`{"blobs":{"sha256:abc":{"size":1}}}`))
		}, BlobKind, "blob"},
		{"not JSON", func() (ShardRef, []byte) { return rehash([]byte(`{"tags":`)) }, TagKind, "repository shard"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ref, b := tc.data()
			_, err := DecodeRepositoryShard(b, tc.kind, ref)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestShardedFileRefusals(t *testing.T) {
	r := bigRepository(3)
	shardAll(t, r, 1, 2)
	good, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeRepositoryFile("ci/app", good); err != nil {
		t.Fatal(err)
	}
	ref := r.TagShards[0]
	for _, tc := range []struct {
		desc, old, new, want string
	}{
		{"shards in a version 1 file", `"schemaVersion": 2`, `"schemaVersion": 1`, "shards in a file of schema version 1"},
		{"invalid id", ref.ID, "nothex", "invalid or repeated id"},
		{"id twice", r.TagShards[1].ID, ref.ID, "invalid or repeated id"},
		{"count beyond the shard limit", `"count": 2`, `"count": 1001`, "entries from"},
		{"no entries", `"count": 2`, `"count": 0`, "entries from"},
		{"ranges out of order", `"build-000002"`, `"build-000001"`, "not in order"},
		{"invalid tag key", `"first": "build-000002"`, `"first": "-x"`, "tag"},
		{"invalid digest key", `"first": "sha256:`, `"first": "sha256:0`, "shard 0: invalid digest"},
		{"a kind both in the file and in shards", `"schemaVersion": 2,`, `"schemaVersion": 2, "tags": {"a": "` + string(numbered("m", 0)) + `"},`, "both in the file and in shards"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			b := bytes.ReplaceAll(good, []byte(tc.old), []byte(tc.new))
			if bytes.Equal(b, good) {
				t.Fatalf("%q is not in the file:\n%s", tc.old, good)
			}
			_, err := DecodeRepositoryFile("ci/app", b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if _, err := DecodeRepositoryView("ci/app", b); err == nil {
				t.Fatal("the view decoder accepts it")
			}
		})
	}
	// Manifests in shards, tags in the file: a tag would name a manifest
	// the file does not hold.
	m := bigRepository(3)
	shardAll(t, m, 1, 2)
	m.TagShards = nil
	m.Tags = bigRepository(3).Tags
	if _, err := m.Encode(); err == nil || !strings.Contains(err.Error(), "manifests in shards and tags in the file") {
		t.Fatalf("manifests sharded, tags not: %v", err)
	}
}

func TestRepositoryShardKey(t *testing.T) {
	id := strings.Repeat("ab", 32)
	key, err := RepositoryShardKey("team/app", id)
	if err != nil || key != "repositories/team/app/_shards/"+id+".json" {
		t.Fatalf("%q, %v", key, err)
	}
	name, got, ok := RepositoryShardFromKey(key)
	if !ok || name != "team/app" || got != id {
		t.Fatalf("RepositoryShardFromKey(%q) = %q, %q, %v", key, name, got, ok)
	}
	for _, bad := range []struct{ name, id string }{
		{"team/app", "../../x"}, {"team/app", strings.Repeat("AB", 32)}, {"team/app", id[:63]},
		{"../x", id}, {"team/_shards", id}, {"", id},
	} {
		if k, err := RepositoryShardKey(bad.name, bad.id); err == nil {
			t.Errorf("RepositoryShardKey(%q, %q) = %q", bad.name, bad.id, k)
		}
	}
	for _, k := range []string{
		"repositories/team/app.json", "repositories/team/app/_shards/" + id, "repositories/_shards/" + id + ".json",
		"repositories/team/app/_shards/x/" + id + ".json", "catalog/_shards/" + id + ".json", "repositories/team/app/_shards/" + id + ".json/",
	} {
		if name, id, ok := RepositoryShardFromKey(k); ok {
			t.Errorf("RepositoryShardFromKey(%q) = %q, %q", k, name, id)
		}
	}
	// A shard's folder is no repository's: a repository named like it
	// cannot be.
	if err := ValidateRepository("team/app/_shards"); err == nil {
		t.Error("team/app/_shards is a valid repository name")
	}
}

func TestShardFor(t *testing.T) {
	refs := []ShardRef{{First: "b", Last: "d"}, {First: "f", Last: "h"}}
	for _, tc := range []struct {
		key     string
		for_    int
		in      int
		contain bool
	}{
		{"a", 0, 0, false}, {"b", 0, 0, true}, {"c", 0, 0, true}, {"d", 0, 0, true},
		{"e", 1, 1, false}, {"g", 1, 1, true}, {"h", 1, 1, true}, {"z", 1, 2, false},
	} {
		if got := ShardFor(refs, tc.key); got != tc.for_ {
			t.Errorf("ShardFor(%q) = %d, want %d", tc.key, got, tc.for_)
		}
		if got, ok := ShardContaining(refs, tc.key); got != tc.in || ok != tc.contain {
			t.Errorf("ShardContaining(%q) = %d, %v", tc.key, got, ok)
		}
	}
	if ShardFor(nil, "a") != -1 {
		t.Error("ShardFor of no shards")
	}
}
