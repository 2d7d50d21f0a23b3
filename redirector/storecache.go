package redirector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
)

// DefaultRevalidateAfter is how long a repository file or catalog index
// read from a store is used without asking the store again, without
// WithRevalidateAfter.
const DefaultRevalidateAfter = time.Second

// The caches of a tree in a store (NewFromStore) keep what the file-system
// caches keep, in the same budget, with the same lrus: manifests, catalog
// shards and repository shards, by digest, never revalidated (content
// addressed, verified when read); and parsed repository files and the
// catalog index, validated by the store's version of the file (a
// bucket's ETag), since there is no change counter or stat to use.
//
// A validation is a conditional read (store.Swapper.ReadIfChanged, a GET
// with If-None-Match): an unchanged file costs a round trip and no bytes,
// and is not parsed again; a store without versions is read again and
// compared by digest. A validation is trusted for revalidateAfter
// (WithRevalidateAfter): in that window the cached value is used without
// any request to the store, which makes a warm GET by tag cost what it
// costs on a file system. Concurrent requests for a file share one read
// (one validation per file per window, however many requests).
//
// Consistency: every answer is made from the file as the store returned
// it to a read that began at most revalidateAfter before the request
// arrived. A publish that has returned is therefore seen by every request
// that arrives revalidateAfter later, on every server reading the store,
// with no state shared between servers; servers behind a load balancer
// may disagree for at most that long (0: no window, every request asks
// the store, as --cache-size 0 does, but without transferring or parsing
// an unchanged file). The store's own consistency comes on top (S3 reads
// are strongly consistent after a write).

// versionSource is what a versionCache caches: values parsed from a
// store's mutable files, by key.
type versionSource[V any] interface {
	// read reads the file of key unless it has version have (not empty),
	// for which it returns store.ErrNotModified, and parses it; it
	// returns the version it read and the file's size.
	read(ctx context.Context, key string, have store.Version) (V, store.Version, int64, error)
	// weight is the memory an entry of key takes, with its value parsed
	// from a file of size bytes.
	weight(key string, v V, size int64) int64
	// ownKey returns key in memory of the entry's own (see fileSource).
	ownKey(key string, v V) string
}

// versionCache is a bounded cache of values parsed from a store's mutable
// files, validated by version (see above).
type versionCache[V any] struct {
	lru   *lru[string, *versionEntry[V]]
	src   versionSource[V]
	after time.Duration
	now   func() time.Time

	// hits counts the uses answered from the cache (in the window, or
	// validated unchanged), misses the others; reads counts the reads of
	// the store (validations and loads; concurrent requests share one).
	hits, misses, reads atomic.Uint64

	mu      sync.Mutex
	flights map[string]*versionFlight[V]
}

// versionEntry is one parsed file, of one version. Only checked changes.
type versionEntry[V any] struct {
	value   V
	version store.Version
	// checked is when (unix nanoseconds) the latest read that found this
	// version began.
	checked atomic.Int64
}

// versionFlight is one read of a file, shared by the requests that began
// at most after its start.
type versionFlight[V any] struct {
	start int64 // unix nanoseconds
	done  chan struct{}
	value V
	err   error
}

func newVersionCache[V any](src versionSource[V], entries int, budget *cacheBudget, after time.Duration) *versionCache[V] {
	return &versionCache[V]{
		lru:     newLRUIn[string, *versionEntry[V]](entries, budget),
		src:     src,
		after:   after,
		now:     time.Now,
		flights: map[string]*versionFlight[V]{},
	}
}

// get returns the value of the file of key, as of a read that began at
// most c.after before now.
func (c *versionCache[V]) get(ctx context.Context, key string) (V, error) {
	start := c.now().UnixNano()
	if e, ok := c.lru.get(key); ok && start-e.checked.Load() < int64(c.after) {
		c.hits.Add(1)
		return e.value, nil
	}
	c.mu.Lock()
	f, ok := c.flights[key]
	if ok && f.start >= start-int64(c.after) {
		// A read that began recently enough is under way: share it.
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.value, f.err
		case <-ctx.Done():
			var zero V
			return zero, ctx.Err()
		}
	}
	if e, ok := c.lru.peek(key); ok && start-e.checked.Load() < int64(c.after) {
		// A read that has just ended validated it.
		c.mu.Unlock()
		c.hits.Add(1)
		return e.value, nil
	}
	f = &versionFlight[V]{start: start, done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()
	c.fly(ctx, key, f)
	return f.value, f.err
}

// fly reads the file of key for f and records what it found.
func (c *versionCache[V]) fly(ctx context.Context, key string, f *versionFlight[V]) {
	// Whatever happens to this request, those sharing the read get an
	// answer.
	f.err = errLoadFailed
	defer func() {
		c.mu.Lock()
		if c.flights[key] == f {
			delete(c.flights, key)
		}
		c.mu.Unlock()
		close(f.done)
	}()
	// The read is shared: the request that happens to make it must not
	// fail the others by going away.
	ctx = context.WithoutCancel(ctx)
	var have store.Version
	e, cached := c.lru.peek(key)
	if cached {
		have = e.version
	}
	c.reads.Add(1)
	v, version, size, err := c.src.read(ctx, key, have)
	switch {
	case cached && errors.Is(err, store.ErrNotModified):
		c.hits.Add(1)
		for {
			old := e.checked.Load()
			if old >= f.start || e.checked.CompareAndSwap(old, f.start) {
				break
			}
		}
		f.value, f.err = e.value, nil
		return
	case err != nil:
		c.misses.Add(1)
		if cached {
			c.lru.remove(key)
		}
		f.err = err
		return
	}
	c.misses.Add(1)
	f.value, f.err = v, nil
	if old, ok := c.lru.peek(key); ok && old.checked.Load() > f.start && old.version != version {
		// A read that began after this one kept what it found: as new
		// as this, it stays.
		return
	}
	k := c.src.ownKey(key, v)
	ne := &versionEntry[V]{value: v, version: version}
	ne.checked.Store(f.start)
	c.lru.add(k, ne, c.src.weight(k, v, size))
}

// forget drops the entry of key, if there is one.
func (c *versionCache[V]) forget(key string) { c.lru.remove(key) }

func (c *versionCache[V]) counts() cacheCounts {
	n, w := c.lru.size()
	return cacheCounts{hits: c.hits.Load(), misses: c.misses.Load(), entries: n, weight: w}
}

// storeRepoCache is the repositories of a server reading a store, when
// caching is on: parsed repository files by name, validated by version.
type storeRepoCache struct {
	files *versionCache[layout.RepositoryView]
}

var (
	_ repositories  = (*storeRepoCache)(nil)
	_ cacheReporter = (*storeRepoCache)(nil)
)

// storeRepoFiles is the versionSource of a storeRepoCache.
type storeRepoFiles struct{ t *storeTree }

func (f storeRepoFiles) read(ctx context.Context, name string, have store.Version) (layout.RepositoryView, store.Version, int64, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return layout.RepositoryView{}, "", 0, err
	}
	data, v, err := f.t.readChanged(ctx, key, layout.MaxRepositoryFileSize, have)
	if err != nil {
		return layout.RepositoryView{}, "", 0, err
	}
	repo, err := f.t.decodeRepository(key, name, data)
	return repo, v, int64(len(data)), err
}

func (storeRepoFiles) weight(_ string, v layout.RepositoryView, _ int64) int64 {
	return v.Size() + entryOverhead
}

// ownKey is the view's own name: the entry's key shares its memory.
func (storeRepoFiles) ownKey(_ string, v layout.RepositoryView) string { return v.Name() }

func newStoreRepoCache(t *storeTree, entries int, budget *cacheBudget, after time.Duration) *storeRepoCache {
	return &storeRepoCache{files: newVersionCache[layout.RepositoryView](storeRepoFiles{t: t}, entries, budget, after)}
}

func (c *storeRepoCache) repository(ctx context.Context, name string) (layout.RepositoryView, error) {
	return c.files.get(ctx, name)
}

// forget drops the cached view of name: a shard it names is gone, so the
// file was replaced, whatever the window says.
func (c *storeRepoCache) forget(name string) { c.files.forget(name) }

func (c *storeRepoCache) cacheCounts() cacheCounts { return c.files.counts() }

// storeIndexCache is the catalogIndexes of a server reading a store, when
// caching is on: the parsed catalog index, validated by version.
type storeIndexCache struct {
	files *versionCache[*layout.CatalogIndex]
}

var (
	_ catalogIndexes = (*storeIndexCache)(nil)
	_ cacheReporter  = (*storeIndexCache)(nil)
)

// storeIndexFile is the versionSource of a storeIndexCache.
type storeIndexFile struct{ t *storeTree }

func (f storeIndexFile) read(ctx context.Context, _ string, have store.Version) (*layout.CatalogIndex, store.Version, int64, error) {
	key := layout.CatalogIndexKey()
	data, v, err := f.t.readChanged(ctx, key, layout.MaxCatalogFileSize, have)
	if err != nil {
		return nil, "", 0, err
	}
	idx, err := f.t.decodeCatalogIndex(key, data)
	return idx, v, int64(len(data)), err
}

// weight is about twice the index file's size (see indexFile).
func (storeIndexFile) weight(_ string, _ *layout.CatalogIndex, size int64) int64 {
	return 2*size + entryOverhead
}

func (storeIndexFile) ownKey(key string, _ *layout.CatalogIndex) string { return cloneKey(key) }

// newStoreIndexCache returns a cache of t's catalog index, bounded by
// bytes on its own.
func newStoreIndexCache(t *storeTree, bytes int64, after time.Duration) *storeIndexCache {
	return &storeIndexCache{files: newVersionCache[*layout.CatalogIndex](storeIndexFile{t: t}, 1, newCacheBudget(bytes), after)}
}

func (c *storeIndexCache) catalogIndex(ctx context.Context) (*layout.CatalogIndex, error) {
	return c.files.get(ctx, "")
}

func (c *storeIndexCache) cacheCounts() cacheCounts { return c.files.counts() }
