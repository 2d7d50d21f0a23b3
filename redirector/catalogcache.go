package redirector

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
)

// indexCache is the catalogIndexes of the server when caching is on: it
// keeps the parsed catalog index (see fileCache), so that a catalog page
// costs a binary search in it (and a stat when the change counter cannot
// skip it), not the decoding of an index of a thousand shards (a tree of a
// million repositories).
type indexCache struct {
	files *fileCache[*layout.CatalogIndex]
}

var (
	_ catalogIndexes = (*indexCache)(nil)
	_ cacheReporter  = (*indexCache)(nil)
)

// indexFile is the fileSource of an indexCache: the catalog index that
// backend reads, under any key.
type indexFile struct{ t *tree }

func (indexFile) file(string) (string, error) { return layout.CatalogIndexKey(), nil }

func (f indexFile) read(ctx context.Context, _ string) (*layout.CatalogIndex, fileIdentity, error) {
	return f.t.catalogIndexID(ctx)
}

func (f indexFile) readsIdentity() bool { return f.t.readsIdentity() }

// ownKey copies the key, a part of a request.
func (indexFile) ownKey(key string, _ *layout.CatalogIndex) string { return cloneKey(key) }

// weight is about twice the index file's size: its shards' ids and names
// as strings, in a slice of structs.
func (indexFile) weight(_ string, _ *layout.CatalogIndex, size int64) int64 {
	return 2*size + entryOverhead
}

// newIndexCache returns a cache of t's catalog index, bounded by bytes on
// its own (see fileCache for racyWindow).
func newIndexCache(t *tree, bytes int64, racyWindow time.Duration) *indexCache {
	return &indexCache{files: newFileCache[*layout.CatalogIndex](t, indexFile{t: t}, 1, newCacheBudget(bytes), racyWindow)}
}

// catalogIndex returns the parsed catalog index from the cache if its file
// has not changed, else from the tree.
func (c *indexCache) catalogIndex(ctx context.Context) (*layout.CatalogIndex, error) {
	return c.files.get(ctx, "")
}

func (c *indexCache) cacheCounts() cacheCounts { return c.files.counts() }

// shardCache is the catalogShards of the server when caching is on: catalog
// shards by id, in front of the tree's, bounded in entries and bytes, each
// packed in one string (see layout.CatalogNames) so that the budget holds
// as many as it can. Shards are immutable, so it is never invalidated.
type shardCache struct {
	backend      catalogShards // the tree's, which it caches
	lru          *lru[string, *layout.CatalogNames]
	hits, misses atomic.Uint64
}

var (
	_ catalogShards = (*shardCache)(nil)
	_ cacheReporter = (*shardCache)(nil)
)

// newShardCache returns a cache of backend's catalog shards, of at most entries
// shards sharing budget.
func newShardCache(backend catalogShards, entries int, budget *cacheBudget) *shardCache {
	return &shardCache{backend: backend, lru: newLRUIn[string, *layout.CatalogNames](entries, budget)}
}

// catalogShard returns the names of the catalog shard id from the cache, or
// read by the backend (and then cached).
func (c *shardCache) catalogShard(ctx context.Context, id string) (*layout.CatalogNames, error) {
	if names, ok := c.lru.get(id); ok {
		c.hits.Add(1)
		return names, nil
	}
	c.misses.Add(1)
	names, err := c.backend.catalogShard(ctx, id)
	if err != nil {
		return nil, err
	}
	c.lru.add(id, names, names.Size())
	return names, nil
}

func (c *shardCache) cacheCounts() cacheCounts {
	n, w := c.lru.size()
	return cacheCounts{hits: c.hits.Load(), misses: c.misses.Load(), entries: n, weight: w}
}
