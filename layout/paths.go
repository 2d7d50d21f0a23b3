package layout

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Version is the layout version this package reads and writes.
const Version = 1

const (
	layoutFileName   = "heron-layout.json"
	repositoriesDir  = "repositories"
	repositoryExt    = ".json"
	catalogDir       = "catalog"
	catalogIndexName = "index.json"
	catalogShardsDir = "shards"
	writerStateDir   = ".heron"
	changesName      = "changes"
	locksDir         = "locks"
	shardsDir        = "_shards"
	lockExt          = ".lock"
)

// LayoutFileKey is the key of the file that names the layout version.
func LayoutFileKey() string { return layoutFileName }

// BlobKey is the key of the blob (or manifest) with digest d:
// blobs/<alg>/<hex>. The digest is validated first, so that no crafted
// reference can become a path outside blobs/.
func BlobKey(d digest.Digest) (string, error) {
	d, err := ParseDigest(string(d))
	if err != nil {
		return "", err
	}
	// Concatenated rather than path.Join'ed (which cleans what it joins):
	// the parts are validated, and this runs on every blob request.
	return v1.ImageBlobsDir + "/" + d.Algorithm().String() + "/" + d.Encoded(), nil
}

// BlobsDirKey is the folder of every blob and manifest; publish walks it
// for gc and verify, the server never does.
func BlobsDirKey() string { return v1.ImageBlobsDir }

// DigestFromBlobKey is the inverse of BlobKey: the digest whose key is key.
// It reports false for any other key (another folder, a temporary file, an
// algorithm heron does not store, uppercase or short hex), so that only a
// key BlobKey could have built is ever taken for a blob.
func DigestFromBlobKey(key string) (digest.Digest, bool) {
	const prefix = v1.ImageBlobsDir + "/"
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", false
	}
	alg, enc, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	d, err := ParseDigest(alg + ":" + enc)
	if err != nil {
		return "", false
	}
	if k, err := BlobKey(d); err != nil || k != key {
		return "", false
	}
	return d, true
}

// ManifestKey is the key of the manifest with digest d. Manifests are stored
// as blobs, so it is the same as BlobKey.
func ManifestKey(d digest.Digest) (string, error) { return BlobKey(d) }

// RepositoryKey is the key of the repository file of name:
// repositories/<name>.json.
func RepositoryKey(name string) (string, error) {
	if err := ValidateRepository(name); err != nil {
		return "", err
	}
	return repositoriesDir + "/" + name + repositoryExt, nil
}

// RepositoriesDirKey is the key of the folder that holds every repository
// file; publish walks it for gc and verify, the server never does.
func RepositoriesDirKey() string { return repositoriesDir }

// RepositoryNameFromKey is the inverse of RepositoryKey. It reports false
// for a key that is not a repository file of a valid name.
func RepositoryNameFromKey(key string) (string, bool) {
	const prefix = repositoriesDir + "/"
	if len(key) <= len(prefix)+len(repositoryExt) || key[:len(prefix)] != prefix || key[len(key)-len(repositoryExt):] != repositoryExt {
		return "", false
	}
	name := key[len(prefix) : len(key)-len(repositoryExt)]
	if ValidateRepository(name) != nil {
		return "", false
	}
	return name, true
}

// CatalogIndexKey is the key of the catalog's shard list.
func CatalogIndexKey() string { return catalogDir + "/" + catalogIndexName }

// CatalogShardKey is the key of the catalog shard with the given id, the
// lowercase hex SHA-256 of its content (shards are content addressed, so a
// reader holding an older index still finds the shards it names).
func CatalogShardKey(id string) (string, error) {
	if !validShardID(id) {
		return "", fmt.Errorf("layout: invalid catalog shard id %q", id)
	}
	return catalogDir + "/" + catalogShardsDir + "/" + id + ".json", nil
}

// validShardID reports whether id is a catalog shard id: 64 lowercase hex
// digits. It allocates nothing, so that decoding a catalog index of a
// thousand shards does not allocate a thousand times to check them.
func validShardID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CatalogShardIDFromKey is the inverse of CatalogShardKey: the id of the
// shard whose key is key, or false for any other key.
func CatalogShardIDFromKey(key string) (string, bool) {
	const prefix = catalogDir + "/" + catalogShardsDir + "/"
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, ".json")
	if !ok {
		return "", false
	}
	if k, err := CatalogShardKey(id); err != nil || k != key {
		return "", false
	}
	return id, true
}

// CatalogShardsDirKey is the folder of the catalog shards.
func CatalogShardsDirKey() string { return catalogDir + "/" + catalogShardsDir }

// WriterStateDirKey is the folder of the writers' state: lock files, and
// the change counter (ChangesKey). No request serves a file from it (the
// server only maps the counter), and a tree copied without it is the same
// tree.
func WriterStateDirKey() string { return writerStateDir }

// ChangesKey is the key of the change counter, .heron/changes: a file of
// ChangesFileSize bytes (zeros when created) whose first 8 bytes hold an
// unsigned little-endian counter. A writer increments it atomically, on
// the shared memory of the file (mmap(2) and an atomic add, so that
// writers in several processes never lose an increment), after each
// change to a file that IsSignalled reports, and before it reports the
// change done. A server that maps the file, on a local file system, may
// then keep using what it parsed from such files while the counter does
// not change, without a stat per request (docs/layout.md, ".heron/changes").
func ChangesKey() string { return writerStateDir + "/" + changesName }

// ChangesFileSize is the size of the change counter's file: one page, the
// unit of mmap(2).
const ChangesFileSize = 4096

// EncodeChanges returns the content of a change counter's file holding n:
// what a writer that creates a whole tree at once (rather than changing
// one) writes, with n = 1.
func EncodeChanges(n uint64) []byte {
	b := make([]byte, ChangesFileSize)
	binary.LittleEndian.PutUint64(b, n)
	return b
}

// IsSignalled reports whether a change to the file at key must increment
// the change counter: repository files and the catalog index, the files
// that writers replace in place. Blobs and catalog shards are immutable.
func IsSignalled(key string) bool {
	if key == CatalogIndexKey() {
		return true
	}
	_, ok := RepositoryNameFromKey(key)
	return ok
}

// LockKey is the key of the lock file that writers hold while they
// read-modify-write the file at key (a repository file, the catalog index):
// .heron/locks/<hex>.lock, where <hex> is the lowercase hex SHA-256 of key.
// Hashing keeps every lock file in one flat folder: lock files are never
// removed (removing a lock file that another writer waits on would break
// the exclusion), and a flat name can never clash with the folder of a
// repository created later. key must be a clean, relative, slash-separated
// key.
func LockKey(key string) (string, error) {
	if key == "" || len(key) > 4096 || key[0] == '/' || path.Clean(key) != key || key == ".." ||
		strings.HasPrefix(key, "../") || strings.ContainsAny(key, "\\\x00") {
		return "", fmt.Errorf("layout: invalid key %q to lock", key)
	}
	sum := sha256.Sum256([]byte(key))
	return writerStateDir + "/" + locksDir + "/" + hex.EncodeToString(sum[:]) + lockExt, nil
}

// ConflictingRepositoryFolders returns, for repository name, the keys whose
// existence as a repository file would clash with name on a file system:
// the repository "a/b" (file repositories/a/b.json) and the repository
// "a/b.json/c" (folder repositories/a/b.json/) cannot both exist. The result
// is the list of repository names that are a prefix of name ending in
// ".json" with the suffix removed (those whose file would be one of name's
// folders). A repository whose own file key is a folder of another
// repository is found by checking for the folder repositories/<name>.json/.
func ConflictingRepositoryFolders(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		prefix := name[:i]
		if len(prefix) > len(repositoryExt) && prefix[len(prefix)-len(repositoryExt):] == repositoryExt {
			other := prefix[:len(prefix)-len(repositoryExt)]
			if ValidateRepository(other) == nil {
				out = append(out, other)
			}
		}
	}
	return out
}
