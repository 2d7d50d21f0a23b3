package layout

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	hex256 = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	// lockRepo and lockCatalog are the sha256 of the keys they lock,
	// computed with sha256sum, not with the code under test.
	lockRepo    = "ffb35097f21a2b96a7dd00282e54ce2459582220b6c75ee337d2bd96379251b6"
	lockCatalog = "fad6e5d9f714c0909c8c2a87b6917b85f1bd8c6562ec8b2df214da376c2b576c"
	hex512      = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)

// TestKeys pins every key kind to its exact string: the layout is a public
// contract between publish, the server and CDN configuration.
func TestKeys(t *testing.T) {
	shard := strings.Repeat("ab", 32)
	tests := []struct {
		desc string
		key  func() (string, error)
		want string
		err  error
	}{
		{"layout file", func() (string, error) { return LayoutFileKey(), nil }, "heron-layout.json", nil},
		{"sha256 blob", func() (string, error) { return BlobKey(digest.Digest("sha256:" + hex256)) }, "blobs/sha256/" + hex256, nil},
		{"sha512 blob", func() (string, error) { return BlobKey(digest.Digest("sha512:" + hex512)) }, "blobs/sha512/" + hex512, nil},
		{"manifest is a blob", func() (string, error) { return ManifestKey(digest.Digest("sha256:" + hex256)) }, "blobs/sha256/" + hex256, nil},
		{"repository", func() (string, error) { return RepositoryKey("library/alpine") }, "repositories/library/alpine.json", nil},
		{"deep repository", func() (string, error) { return RepositoryKey("team/app/api") }, "repositories/team/app/api.json", nil},
		{"repository with dots", func() (string, error) { return RepositoryKey("a/b.json/c") }, "repositories/a/b.json/c.json", nil},
		{"catalog index", func() (string, error) { return CatalogIndexKey(), nil }, "catalog/index.json", nil},
		{"catalog shard", func() (string, error) { return CatalogShardKey(shard) }, "catalog/shards/" + shard + ".json", nil},
		{"repositories dir", func() (string, error) { return RepositoriesDirKey(), nil }, "repositories", nil},
		{"shards dir", func() (string, error) { return CatalogShardsDirKey(), nil }, "catalog/shards", nil},
		{"blobs dir", func() (string, error) { return BlobsDirKey(), nil }, "blobs", nil},
		{"writer state dir", func() (string, error) { return WriterStateDirKey(), nil }, ".heron", nil},
		{"repository lock", func() (string, error) { return LockKey("repositories/library/alpine.json") }, ".heron/locks/" + lockRepo + ".lock", nil},
		{"catalog lock", func() (string, error) { return LockKey(CatalogIndexKey()) }, ".heron/locks/" + lockCatalog + ".lock", nil},

		{"digest traversal", func() (string, error) { return BlobKey("sha256:../../etc/passwd") }, "", ErrInvalidDigest},
		{"digest short", func() (string, error) { return BlobKey("sha256:abc") }, "", ErrInvalidDigest},
		{"digest uppercase", func() (string, error) { return BlobKey(digest.Digest("sha256:" + strings.ToUpper(hex256))) }, "", ErrInvalidDigest},
		{"digest unknown algorithm", func() (string, error) { return BlobKey("md5:d41d8cd98f00b204e9800998ecf8427e") }, "", ErrInvalidDigest},
		{"digest empty", func() (string, error) { return BlobKey("") }, "", ErrInvalidDigest},
		{"repository dotdot", func() (string, error) { return RepositoryKey("../etc") }, "", ErrInvalidName},
		{"repository absolute", func() (string, error) { return RepositoryKey("/etc/passwd") }, "", ErrInvalidName},
		{"repository inner dotdot", func() (string, error) { return RepositoryKey("a/../b") }, "", ErrInvalidName},
		{"repository uppercase", func() (string, error) { return RepositoryKey("Library/alpine") }, "", ErrInvalidName},
		{"repository NUL", func() (string, error) { return RepositoryKey("a\x00b") }, "", ErrInvalidName},
		{"repository backslash", func() (string, error) { return RepositoryKey(`a\b`) }, "", ErrInvalidName},
		{"repository trailing slash", func() (string, error) { return RepositoryKey("a/") }, "", ErrInvalidName},
		{"repository too long", func() (string, error) { return RepositoryKey(strings.Repeat("a", 256)) }, "", ErrInvalidName},
		{"shard id not hex", func() (string, error) { return CatalogShardKey(strings.Repeat("z", 64)) }, "", nil},
		{"shard id uppercase", func() (string, error) { return CatalogShardKey(strings.Repeat("AB", 32)) }, "", nil},
		{"shard id traversal", func() (string, error) { return CatalogShardKey("../index") }, "", nil},
		{"lock of nothing", func() (string, error) { return LockKey("") }, "", nil},
		{"lock of absolute key", func() (string, error) { return LockKey("/etc/passwd") }, "", nil},
		{"lock of unclean key", func() (string, error) { return LockKey("repositories//a.json") }, "", nil},
		{"lock of parent", func() (string, error) { return LockKey("../x") }, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := tc.key()
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got key %q, want an error", got)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("error %v is not %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRepositoryNameFromKey(t *testing.T) {
	for _, name := range []string{"a", "library/alpine", "team/app/api", "a/b.json/c"} {
		key, err := RepositoryKey(name)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := RepositoryNameFromKey(key)
		if !ok || got != name {
			t.Errorf("RepositoryNameFromKey(%q) = %q, %v; want %q", key, got, ok, name)
		}
	}
	for _, key := range []string{"repositories/.json", "repositories/A.json", "blobs/a.json", "repositories/a.txt", "repositories/a/../b.json", "repositories/"} {
		if got, ok := RepositoryNameFromKey(key); ok {
			t.Errorf("RepositoryNameFromKey(%q) = %q, want not ok", key, got)
		}
	}
}

// TestKeysFromKeys pins the inverses of BlobKey and CatalogShardKey, which
// gc and verify use to recognise what they walk: only a key the forward
// function could have built is recognised.
func TestKeysFromKeys(t *testing.T) {
	shard := strings.Repeat("ab", 32)
	blobs := []struct {
		key  string
		want digest.Digest // "" when not a blob key
	}{
		{"blobs/sha256/" + hex256, digest.Digest("sha256:" + hex256)},
		{"blobs/sha512/" + hex512, digest.Digest("sha512:" + hex512)},
		{"blobs", ""},
		{"blobs/sha256", ""},
		{"blobs/sha256/", ""},
		{"blobs/sha256/" + strings.ToUpper(hex256), ""},
		{"blobs/sha256/" + hex256[:63], ""},
		{"blobs/sha256/" + hex256 + "/x", ""},
		{"blobs/sha512/" + hex256, ""},
		{"blobs/md5/d41d8cd98f00b204e9800998ecf8427e", ""},
		{"blobs/sha256/.heron-tmp-123", ""},
		{"blobs//sha256/" + hex256, ""},
		{"/blobs/sha256/" + hex256, ""},
		{"x/blobs/sha256/" + hex256, ""},
		{"repositories/a.json", ""},
	}
	for _, tc := range blobs {
		got, ok := DigestFromBlobKey(tc.key)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("DigestFromBlobKey(%q) = %q, %v; want %q", tc.key, got, ok, tc.want)
		}
	}
	shards := []struct {
		key, want string
	}{
		{"catalog/shards/" + shard + ".json", shard},
		{"catalog/shards/" + strings.ToUpper(shard) + ".json", ""},
		{"catalog/shards/" + shard, ""},
		{"catalog/shards/" + shard[:62] + ".json", ""},
		{"catalog/shards/.heron-tmp-1", ""},
		{"catalog/index.json", ""},
		{"catalog/shards/x/" + shard + ".json", ""},
		{"blobs/sha256/" + hex256, ""},
	}
	for _, tc := range shards {
		got, ok := CatalogShardIDFromKey(tc.key)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("CatalogShardIDFromKey(%q) = %q, %v; want %q", tc.key, got, ok, tc.want)
		}
	}
}

func TestConflictingRepositoryFolders(t *testing.T) {
	tests := []struct {
		name string
		want []string
	}{
		{"a/b", nil},
		{"a/b.json/c", []string{"a/b"}},
		{"x.json/y.json/z", []string{"x", "x.json/y"}},
		{"a.json", nil},
	}
	for _, tc := range tests {
		got := ConflictingRepositoryFolders(tc.name)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("ConflictingRepositoryFolders(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRootPath(t *testing.T) {
	key, _ := BlobKey(digest.Digest("sha256:" + hex256))
	if got, want := Root("/srv/tree").Path(key), "/srv/tree/blobs/sha256/"+hex256; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
