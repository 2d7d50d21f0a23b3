package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The fuzz targets of this file hold the promise the whole layout rests on:
// whatever string a request or a source hands in, a key built from it is a
// clean relative path inside the tree, under the folder of its kind, or an
// error. FuzzScanners (names_oracle_test.go) checks the grammar itself
// against its regular expressions. scripts/fuzz.sh runs them all.

// fuzzRoot is a root for Root.Path; nothing is opened.
const fuzzRoot = "/srv/tree"

// checkKey fails unless key is a clean, relative, slash-separated key under
// dir whose OS path stays under fuzzRoot/dir.
func checkKey(t *testing.T, what, key, dir string) {
	t.Helper()
	if key == "" || key[0] == '/' || path.Clean(key) != key || strings.ContainsAny(key, "\\\x00") {
		t.Fatalf("%s: key %q is not clean and relative", what, key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			t.Fatalf("%s: key %q has segment %q", what, key, seg)
		}
	}
	if !strings.HasPrefix(key, dir+"/") {
		t.Fatalf("%s: key %q is not under %s/", what, key, dir)
	}
	rel, err := filepath.Rel(filepath.Join(fuzzRoot, dir), Root(fuzzRoot).Path(key))
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		t.Fatalf("%s: key %q leads to %s, outside %s", what, key, Root(fuzzRoot).Path(key), filepath.Join(fuzzRoot, dir))
	}
}

// FuzzName: a repository name either is refused or becomes
// repositories/<name>.json, which names it back.
func FuzzName(f *testing.F) {
	// Hostile names are in testdata/fuzz/FuzzName.
	for _, s := range []string{"library/alpine", "a", "team/app/api"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		verr := ValidateRepository(name)
		key, kerr := RepositoryKey(name)
		if (verr == nil) != (kerr == nil) {
			t.Fatalf("ValidateRepository(%q) = %v but RepositoryKey = %v", name, verr, kerr)
		}
		if verr != nil {
			if n, ok := RepositoryNameFromKey("repositories/" + name + ".json"); ok {
				t.Fatalf("RepositoryNameFromKey accepts the invalid name %q (as %q)", name, n)
			}
			return
		}
		if len(name) > MaxNameLength {
			t.Fatalf("%q is %d characters, more than %d", name, len(name), MaxNameLength)
		}
		if want := "repositories/" + name + ".json"; key != want {
			t.Fatalf("RepositoryKey(%q) = %q, want %q", name, key, want)
		}
		checkKey(t, "repository", key, RepositoriesDirKey())
		if n, ok := RepositoryNameFromKey(key); !ok || n != name {
			t.Fatalf("RepositoryNameFromKey(%q) = %q, %v; want %q", key, n, ok, name)
		}
		for _, other := range ConflictingRepositoryFolders(name) {
			if ValidateRepository(other) != nil || !strings.HasPrefix(name, other+".json/") {
				t.Fatalf("ConflictingRepositoryFolders(%q) lists %q", name, other)
			}
		}
		lk, err := LockKey(key)
		if err != nil {
			t.Fatalf("LockKey(%q): %v", key, err)
		}
		checkKey(t, "lock", lk, WriterStateDirKey())
	})
}

// FuzzReference: a manifest reference is a tag, a digest, or refused; a
// digest becomes blobs/<alg>/<hex>; a catalog shard id and a key to lock
// stay in their folders.
func FuzzReference(f *testing.F) {
	// Hostile references are in testdata/fuzz/FuzzReference.
	for _, s := range []string{"latest", "v1.0.0", "sha256:" + strings.Repeat("ab", 32), "repositories/a.json"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if ValidateTag(ref) == nil {
			if IsDigest(ref) || len(ref) > 128 || strings.ContainsAny(ref, "/:\\\x00") || ref == "." || ref == ".." {
				t.Fatalf("ValidateTag accepts %q", ref)
			}
		}
		d, perr := ParseDigest(ref)
		key, berr := BlobKey(digest.Digest(ref))
		if (perr == nil) != (berr == nil) {
			t.Fatalf("ParseDigest(%q) = %v but BlobKey = %v", ref, perr, berr)
		}
		if perr == nil {
			if !IsDigest(ref) || string(d) != ref {
				t.Fatalf("ParseDigest(%q) = %q, IsDigest = %v", ref, d, IsDigest(ref))
			}
			if err := d.Validate(); err != nil {
				t.Fatalf("ParseDigest accepts %q, which go-digest refuses: %v", ref, err)
			}
			if want := "blobs/" + d.Algorithm().String() + "/" + d.Encoded(); key != want {
				t.Fatalf("BlobKey(%q) = %q, want %q", ref, key, want)
			}
			checkKey(t, "blob", key, "blobs")
			if mk, err := ManifestKey(d); err != nil || mk != key {
				t.Fatalf("ManifestKey(%q) = %q, %v; BlobKey = %q", ref, mk, err, key)
			}
		}
		if sk, err := CatalogShardKey(ref); err == nil {
			checkKey(t, "catalog shard", sk, CatalogShardsDirKey())
		}
		if lk, err := LockKey(ref); err == nil {
			checkKey(t, "lock", lk, WriterStateDirKey())
			sum := sha256.Sum256([]byte(ref))
			if !strings.Contains(lk, hex.EncodeToString(sum[:])) {
				t.Fatalf("LockKey(%q) = %q, not named by the key's hash", ref, lk)
			}
		}
	})
}

// FuzzRepositoryFile: a repository file decodes to a repository that
// validates, encodes, and encodes to the same bytes once decoded again; no
// name or digest in it can become a key outside its folder.
func FuzzRepositoryFile(f *testing.F) {
	// Hostile repository files are in testdata/fuzz/FuzzRepositoryFile.
	d1 := "sha256:" + strings.Repeat("ab", 32)
	d2 := "sha256:" + strings.Repeat("cd", 32)
	f.Add([]byte(`{"schemaVersion":1,"name":"a","tags":{},"manifests":{},"blobs":{}}`))
	f.Add([]byte(`{"schemaVersion":1,"name":"library/alpine","tags":{"latest":"` + d1 + `"},"manifests":{"` + d1 +
		`":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":10,"blobs":["` + d2 + `"]}},"blobs":{"` + d2 + `":{"size":5}}}`))
	id := strings.Repeat("0f", 32)
	f.Add([]byte(`{"schemaVersion":2,"name":"a","manifests":{"` + d1 + `":{"mediaType":"m","size":1}},"blobShards":[{"id":"` + id + `","first":"` + d2 + `","last":"` + d2 + `","count":1}]}`))
	f.Add([]byte(`{"schemaVersion":2,"name":"a","tagShards":[{"id":"` + id + `","first":"a","last":"b","count":2}],"manifestShards":[{"id":"` + strings.Repeat("1f", 32) + `","first":"` + d1 + `","last":"` + d2 + `","count":2}],"referrers":{"` + d1 + `":[{"mediaType":"m","digest":"` + d2 + `","size":3}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The view, fast path and slow, of the file under the name it
		// gives (or any name, if it gives none).
		var probe struct{ Name string }
		_ = json.Unmarshal(data, &probe)
		if ValidateRepository(probe.Name) != nil {
			probe.Name = "library/alpine"
		}
		sameView(t, probe.Name, data)
		r, err := DecodeRepository(data)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded repository does not validate: %v", err)
		}
		key, err := RepositoryKey(r.Name)
		if err != nil {
			t.Fatalf("decoded repository has name %q: %v", r.Name, err)
		}
		checkKey(t, "repository", key, RepositoriesDirKey())
		for d := range r.Manifests {
			k, err := ManifestKey(d)
			if err != nil {
				t.Fatalf("manifest %q: %v", d, err)
			}
			checkKey(t, "manifest", k, "blobs")
		}
		for d := range r.Blobs {
			k, err := BlobKey(d)
			if err != nil {
				t.Fatalf("blob %q: %v", d, err)
			}
			checkKey(t, "blob", k, "blobs")
		}
		for tag, d := range r.Tags {
			if got, ok := r.Resolve(tag); !ok || got != d {
				t.Fatalf("tag %q resolves to %q, %v; the file says %q", tag, got, ok, d)
			}
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("a decoded repository does not encode: %v", err)
		}
		r2, err := DecodeRepository(enc)
		if err != nil {
			t.Fatalf("an encoded repository does not decode: %v\n%s", err, enc)
		}
		enc2, err := r2.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n---\n%s", enc, enc2)
		}
	})
}

// FuzzCatalog: the layout marker, the catalog index and a catalog shard
// decode or are refused; a decoded index names shards by valid keys, and
// its lookups stay in range whatever name a request asks after.
func FuzzCatalog(f *testing.F) {
	idx := `{"layoutVersion":1,"shards":[{"id":"` + strings.Repeat("ab", 32) + `","first":"a","last":"m","count":2},` +
		`{"id":"` + strings.Repeat("cd", 32) + `","first":"n","last":"z","count":1}]}`
	// Hostile catalog files are in testdata/fuzz/FuzzCatalog.
	for _, s := range []struct{ data, last string }{
		{idx, ""}, {idx, "m"}, {idx, "zz"}, {`{"layoutVersion":1}`, "a"}, {`{"layoutVersion": 1}` + "\n", ""}, {`{"repositories":["a","b"]}`, "a"},
	} {
		f.Add([]byte(s.data), s.last)
	}
	f.Fuzz(func(t *testing.T, data []byte, last string) {
		if _, err := DecodeLayoutFile(data); err == nil && !bytes.Contains(data, []byte("1")) {
			t.Fatalf("DecodeLayoutFile accepts %q", data)
		}
		if idx, err := DecodeCatalogIndex(data); err == nil {
			for i, s := range idx.Shards {
				k, err := CatalogShardKey(s.ID)
				if err != nil {
					t.Fatalf("shard %d: %v", i, err)
				}
				checkKey(t, "catalog shard", k, CatalogShardsDirKey())
			}
			if i := idx.ShardAfter(last); i < 0 || i > len(idx.Shards) {
				t.Fatalf("ShardAfter(%q) = %d of %d shards", last, i, len(idx.Shards))
			}
			if i := idx.ShardFor(last); i < -1 || i >= len(idx.Shards) || (i == -1) != (len(idx.Shards) == 0) {
				t.Fatalf("ShardFor(%q) = %d of %d shards", last, i, len(idx.Shards))
			}
			enc, err := EncodeCatalogIndex(idx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeCatalogIndex(enc); err != nil {
				t.Fatalf("an encoded index does not decode: %v\n%s", err, enc)
			}
		}
		sum := sha256.Sum256(data)
		f, err := DecodeCatalogShardFile(data, hex.EncodeToString(sum[:]))
		if err != nil {
			return
		}
		if enc, id, err := EncodeCatalogShardFile(f); err == nil {
			got, err := DecodeCatalogShardFile(enc, id)
			if err != nil || len(got.Repositories) != len(f.Repositories) || len(got.Protected) != len(f.Protected) {
				t.Fatalf("an encoded shard does not decode: %v", err)
			}
			packed, err := DecodeCatalogNames(enc, id)
			if err != nil || len(packed.ProtectedStrings()) != len(f.Protected) {
				t.Fatalf("an encoded shard does not decode packed: %v", err)
			}
		}
	})
}

// FuzzRepositoryShard: the scanner reads a shard file as
// DecodeRepositoryShard and ViewOfShard do, or leaves it to them; it never
// accepts a shard they refuse.
func FuzzRepositoryShard(f *testing.F) {
	d1 := "sha256:" + strings.Repeat("ab", 32)
	d2 := "sha256:" + strings.Repeat("cd", 32)
	f.Add(byte(0), []byte(`{"tags":{"a":{"digest":"`+d1+`","mediaType":"application/vnd.oci.image.manifest.v1+json","size":10},"b":{"digest":"`+d1+`","mediaType":"application/vnd.oci.image.manifest.v1+json","size":10}}}`+"\n"))
	f.Add(byte(0), []byte(`{"tags":{"a":{"digest":"`+d1+`","mediaType":"x","size":10},"b":{"digest":"`+d1+`","mediaType":"x","size":11}}}`))
	f.Add(byte(1), []byte(`{"manifests":{"`+d1+`":{"mediaType":"m","size":1,"children":["`+d2+`"],"artifactType":"t","subject":"`+d2+`"}}}`))
	f.Add(byte(2), []byte(`{"blobs":{"`+d1+`":{"size":1,"mediaType":"b","stored":false},"`+d2+`":{"size":2}}}`))
	f.Add(byte(3), []byte(`{"referrers":{"`+d1+`":[{"mediaType":"m","digest":"`+d2+`","size":3}]}}`))
	f.Fuzz(func(t *testing.T, k byte, data []byte) {
		kind := ShardKind(k % byte(shardKinds))
		// The ref the data would need: its keys, as encoding/json reads
		// them.
		var loose RepositoryShard
		if json.Unmarshal(data, &loose) != nil {
			return
		}
		keys := loose.Keys()
		if len(keys) == 0 {
			return
		}
		sum := sha256.Sum256(data)
		ref := ShardRef{ID: hex.EncodeToString(sum[:]), First: keys[0], Last: keys[len(keys)-1], Count: len(keys)}
		fast, ok := scanShardView(data, kind, ref)
		s, err := DecodeRepositoryShard(data, kind, ref)
		if err != nil {
			if ok {
				t.Fatalf("the fast path accepts a shard the slow path refuses (%v): %s", err, data)
			}
			return
		}
		slow := ViewOfShard(s)
		if ok && fast != slow {
			t.Fatalf("fast path:\n%q\nslow path:\n%q", fast.s, slow.s)
		}
		v, err := DecodeShardView(data, kind, ref)
		if err != nil || v != slow {
			t.Fatalf("DecodeShardView: %v", err)
		}
	})
}
