package redirector

import (
	"context"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
)

// manifestOverhead is the approximate memory of a manifestEntry beyond its
// bytes.
const manifestOverhead = 320

// manifestCache is the manifests of the server when caching is on: verified
// manifest bytes by digest, in front of the tree's, bounded in entries and
// bytes. Manifests are immutable, so it is never invalidated.
type manifestCache struct {
	backend manifests // the tree's, which it caches
	lru     *lru[digest.Digest, *manifestEntry]
	// hits counts the manifests found at hand, misses those read from the
	// backend instead (one of each per request at most).
	hits, misses atomic.Uint64
}

var (
	_ manifests     = (*manifestCache)(nil)
	_ cacheReporter = (*manifestCache)(nil)
)

// newManifestCache returns a cache of t's manifests, of at most entries
// manifests sharing budget.
func newManifestCache(t *tree, entries int, budget *cacheBudget) *manifestCache {
	return &manifestCache{backend: t, lru: newLRUIn[digest.Digest, *manifestEntry](entries, budget)}
}

// hotManifest returns the cached manifest d if it has the size the
// repository file lists; a repository that lists another size gets the
// backend's answer (an error), as without a cache.
func (c *manifestCache) hotManifest(d digest.Digest, size int64) (*manifestEntry, bool) {
	m, ok := c.lru.get(d)
	if !ok || int64(len(m.data)) != size {
		return nil, false
	}
	c.hits.Add(1)
	return m, true
}

// manifest returns manifest d from the cache, or read by the backend (and
// then cached).
func (c *manifestCache) manifest(ctx context.Context, d digest.Digest, size int64) (*manifestEntry, error) {
	if m, ok := c.hotManifest(d, size); ok {
		return m, nil
	}
	c.misses.Add(1)
	// d may be a part of a repository's view or of a request: the entry
	// keeps a copy of its own.
	d = digest.Digest(cloneKey(string(d)))
	m, err := c.backend.manifest(ctx, d, size)
	if err != nil {
		return nil, err
	}
	c.lru.add(d, m, int64(len(m.data))+manifestOverhead)
	return m, nil
}

// checkManifest reads and keeps manifest d for the GET that follows a
// HEAD, and answers as the backend does if it does not verify.
func (c *manifestCache) checkManifest(ctx context.Context, d digest.Digest, size int64) (*manifestEntry, error) {
	if m, err := c.manifest(ctx, d, size); err == nil {
		return m, nil
	}
	return c.backend.checkManifest(ctx, d, size)
}

func (c *manifestCache) cacheCounts() cacheCounts {
	n, w := c.lru.size()
	return cacheCounts{hits: c.hits.Load(), misses: c.misses.Load(), entries: n, weight: w}
}
