package redirector

import (
	"context"
	"sync/atomic"

	"github.com/heron-registry/heron/layout"
)

// manifestOverhead is the approximate memory of a manifestEntry beyond its
// bytes.
const manifestOverhead = 320

// manifestCache is the manifests of the server when caching is on: verified
// manifest bytes by digest, in front of the tree's, bounded in entries and
// bytes. Manifests are immutable, so it is never invalidated.
type manifestCache struct {
	backend manifests // the tree's, which it caches
	// lru is keyed by the raw digest (layout.ManifestInfo.Key).
	lru *lru[string, *manifestEntry]
	// hits counts the manifests found at hand, misses those read from the
	// backend instead (one of each per request at most).
	hits, misses atomic.Uint64
}

var (
	_ manifests     = (*manifestCache)(nil)
	_ cacheReporter = (*manifestCache)(nil)
)

// newManifestCache returns a cache of backend's manifests, of at most entries
// manifests sharing budget.
func newManifestCache(backend manifests, entries int, budget *cacheBudget) *manifestCache {
	return &manifestCache{backend: backend, lru: newLRUIn[string, *manifestEntry](entries, budget)}
}

// hotManifest returns the cached manifest m if it has the size the
// repository file lists; a repository that lists another size gets the
// backend's answer (an error), as without a cache.
func (c *manifestCache) hotManifest(m layout.ManifestInfo) (*manifestEntry, bool) {
	e, ok := c.lru.get(m.Key)
	if !ok || int64(len(e.data)) != m.Size {
		return nil, false
	}
	c.hits.Add(1)
	return e, true
}

// manifest returns manifest m from the cache, or read by the backend (and
// then cached).
func (c *manifestCache) manifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error) {
	if e, ok := c.hotManifest(m); ok {
		return e, nil
	}
	c.misses.Add(1)
	e, err := c.backend.manifest(ctx, m)
	if err != nil {
		return nil, err
	}
	// The key is a part of a repository's view: the entry keeps a copy
	// of its own.
	c.lru.add(cloneKey(m.Key), e, int64(len(e.data))+manifestOverhead)
	return e, nil
}

// checkManifest reads and keeps manifest m for the GET that follows a
// HEAD, and answers as the backend does if it does not verify.
func (c *manifestCache) checkManifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error) {
	if e, err := c.manifest(ctx, m); err == nil {
		return e, nil
	}
	return c.backend.checkManifest(ctx, m)
}

func (c *manifestCache) cacheCounts() cacheCounts {
	n, w := c.lru.size()
	return cacheCounts{hits: c.hits.Load(), misses: c.misses.Load(), entries: n, weight: w}
}
