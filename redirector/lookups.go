package redirector

import (
	"context"
	"strconv"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// The lookups the handlers read the tree through, one per kind of file a
// request needs. The tree implements every one of them by reading its
// files on each call; a cache implements one by wrapping the tree's (see
// cache.go). The server holds one value of each and never checks which it
// has: a cache that is off is the tree itself.
var (
	_ repositories   = (*tree)(nil)
	_ manifests      = (*tree)(nil)
	_ catalogShards  = (*tree)(nil)
	_ catalogIndexes = (*tree)(nil)
)

// repositories gives repository files, by name.
type repositories interface {
	// repository returns the repository file of a valid name, or an error
	// wrapping errNotFound if the repository does not exist. The file is
	// shared and is not modified.
	repository(ctx context.Context, name string) (layout.RepositoryView, error)
	// forget drops what is kept of the repository file of name, if
	// anything: the next repository call reads the file.
	forget(name string)
}

// manifests gives manifests, by digest, verified against it.
type manifests interface {
	// hotManifest returns manifest m, of the size the repository file
	// lists, if it is at hand without any I/O.
	hotManifest(m layout.ManifestInfo) (*manifestEntry, bool)
	// manifest returns manifest m of the listed size, read whole and
	// verified.
	manifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error)
	// checkManifest checks manifest m for a HEAD, which sends no bytes:
	// nil once its file is there with the listed size, or the manifest
	// if it read it anyway (a cache does, for the GET that follows).
	checkManifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error)
}

// catalogShards gives the shards of the catalog, by id.
type catalogShards interface {
	// catalogShard returns the names of shard id, verified against it, or
	// an error wrapping errNotFound if it is gone. They are shared and
	// are not modified.
	catalogShard(ctx context.Context, id string) (*layout.CatalogNames, error)
}

// catalogIndexes gives the catalog's index (there is one; the plural
// names the kind of lookup, as for the others).
type catalogIndexes interface {
	// catalogIndex returns the parsed catalog index, or an error wrapping
	// errNotFound when there is none. It is shared and is not modified.
	catalogIndex(ctx context.Context) (*layout.CatalogIndex, error)
}

// cacheReporter is the optional extension of a lookup that is a cache:
// the counts the metrics report of it (see cacheCollector). The tree's
// lookups have none.
type cacheReporter interface {
	cacheCounts() cacheCounts
}

// cacheCounts are a cache's lookups answered from it (hits) and from the
// files (misses), and what it holds now.
type cacheCounts struct {
	hits, misses uint64
	entries      int
	weight       int64
}

// manifestEntry is a manifest's bytes, verified against its digest, with
// the header values every response of it sends. The values are shared by
// all those responses, which only read them.
type manifestEntry struct {
	data                 []byte
	digest, etag, length []string
}

// newManifestEntry returns manifest d of size bytes; data is nil for an
// entry that only carries the header values.
func newManifestEntry(d digest.Digest, size int64, data []byte) *manifestEntry {
	return &manifestEntry{
		data:   data,
		digest: []string{d.String()},
		etag:   []string{etag(d)},
		length: []string{strconv.FormatInt(size, 10)},
	}
}
