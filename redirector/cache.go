package redirector

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// The server's caches change nothing but speed: a request answered from
// them gets the answer the files give (WithCacheSize(0) turns them off,
// and the tests run every table both ways).
//
//   - repoCache keeps parsed repository files, each validated on every
//     use (see fileCache): without a system call while the tree's change
//     counter is unchanged and the file was stat'ed less than trustWindow
//     ago, by one stat of the file otherwise. A file renamed into place
//     is seen by the next request.
//   - indexCache keeps the parsed catalog index, validated in the same
//     way by every catalog request.
//   - manifestCache keeps manifest bytes by digest. They are immutable and
//     were verified against their digest when read, so it is never
//     invalidated, only bounded.
//   - shardCache keeps catalog shards by id, immutable and verified in the
//     same way.
//
// The repository, manifest and shard caches share one memory budget
// (WithCacheBytes, see cacheBudget): whichever the traffic needs gets the
// memory. The catalog index, a single entry needed by every catalog page,
// is bounded on its own by the same number.
//
// File-system events (fsnotify) are deliberately not used to skip the
// stat: an event reaches the server some time after the rename that caused
// it, so a request arriving in between would be answered from the old file
// after publish has returned. What skips the stat is the change counter
// that heron's writers increment before they return (changes.go): read
// from memory, it is as synchronous as the stat. Where there is no counter
// to trust (a tree written by another tool, a network file system), the
// stat is the price of read-after-publish consistency.

// Default bounds of the caches.
const (
	// DefaultCacheSize is the number of entries of each cache.
	DefaultCacheSize = 1000
	// DefaultCacheBytes is the approximate memory of all the caches
	// together: what their repository files weigh (see repoWeight), their
	// manifests' bytes and their catalog shards' names. It holds a
	// thousand parsed repository files of a few KB (the entries bound)
	// with room to spare, or a third of the catalog of a tree of 1,000,000
	// repositories; with the default memory limit, heron serve stays under
	// 40 MB of RSS (docs/benchmarks.md).
	DefaultCacheBytes = 8 << 20
	// MemoryHeadroom is what the server needs beside its caches, under
	// load, before the garbage collector must work harder: the requests in
	// flight, their garbage, the runtime. See MemoryLimit.
	MemoryHeadroom = 16 << 20
)

// MemoryLimit is the soft memory limit (runtime/debug.SetMemoryLimit) that
// heron serve sets by default for caches of cacheBytes: that plus
// MemoryHeadroom. Without a limit the garbage collector lets the heap grow
// to twice what is live, and full caches are most of what is live.
func MemoryLimit(cacheBytes int64) int64 { return cacheBytes + MemoryHeadroom }

// defaultRacyWindow is how old the status change of a file must be before
// a parsed copy of it is kept; see fileCache.
const defaultRacyWindow = 2 * time.Second

// repoWeightFactor estimates the memory a parsed repository file takes from
// its size on disk. The benchmarks' 100-image repository file of 115 KiB
// parses into 146 KiB of maps and strings (1.3 times); 2 keeps the bound on
// the safe side. The catalog index is weighed the same way.
const repoWeightFactor = 2

// errNotRegular is returned by statIdentity for anything but a regular file.
var errNotRegular = errors.New("not a regular file")

// fileIdentity tells two versions of a file apart without reading them.
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

// fileCache is a bounded cache of values parsed from the tree's mutable
// files (repository files, the catalog index), by key.
//
// file gives the tree key of the file of a key, fetch reads and parses it,
// weight is the memory of a value parsed from a file of a given size.
//
// A use stats the file (one syscall) and uses the cached value only if the
// file's identity (device, inode, size, modification and change times) is
// the one it had when it was read. Publish renames a new file into place,
// so the next request sees a new identity and reads the new file; nothing
// is ever served from a file that was replaced. The stat is skipped while
// the tree's change counter has the value it had at the entry's last stat
// and that stat is less than trustWindow old (see changes.go): then no
// signalled file has changed since, and the use costs no syscall.
//
// The inode number alone is not enough: ext4 hands the inode of a replaced
// file to the next new one, so two publishes in a row can put back a file
// with the inode, size and times of a copy still in the cache, if they all
// fall within one tick of the file system's clock. As git does with its
// "racily clean" index entries, a file is therefore only kept when its
// status changed at least racyWindow before the stat that preceded the
// read: any later file, on that inode or another, then has a later change
// time. A file published less than racyWindow ago is read by every request,
// exactly as without a cache.
type fileCache[V any] struct {
	lru        *lru[string, *fileEntry[V]]
	racyWindow time.Duration
	now        func() time.Time
	// file returns an error for a key that names no file.
	file   func(key string) (string, error)
	fetch  func(ctx context.Context, key string) (V, error)
	weight func(size int64) int64
	// stat is tree.identity; tests replace it to simulate other file
	// systems.
	stat func(file string) (fileIdentity, error)
	// changes returns the tree's change counter at a time (unix
	// nanoseconds), or false if there is none to trust; it is
	// changeSignal.load, nil for none.
	changes func(now int64) (uint64, bool)

	// hits and misses count the uses answered from the cache and the
	// others; loads counts the reads of files (concurrent misses share
	// one). Tests and the metrics read them.
	hits, misses, loads atomic.Uint64

	mu      sync.Mutex
	flights map[flightKey]*flight[V]
}

// fileEntry is one parsed file. It is shared by every request that uses
// it; only its validation record (gen, checked) changes, atomically.
type fileEntry[V any] struct {
	file  string // its key in the tree
	id    fileIdentity
	value V
	// gen is the change counter read before the latest stat that found
	// id, at checked (unix nanoseconds; 0: never, the tree had no counter
	// then). See changeSignal.
	gen     atomic.Uint64
	checked atomic.Int64
}

// validated records that a stat made at start (unix nanoseconds), after
// the change counter read gen (ok: the tree has one), found e's identity.
func (e *fileEntry[V]) validated(gen uint64, ok bool, start int64) {
	if !ok {
		e.checked.Store(0)
		return
	}
	e.gen.Store(gen)
	e.checked.Store(start)
}

// flightKey names one load of one version of a file; concurrent requests
// that found the same identity share it.
type flightKey struct {
	key string
	id  fileIdentity
}

type flight[V any] struct {
	done  chan struct{}
	value V
	err   error
}

// init sets up c in front of t, bounded to entries sharing budget.
func (c *fileCache[V]) init(t *tree, entries int, budget *cacheBudget, racyWindow time.Duration) {
	c.lru = newLRUIn[string, *fileEntry[V]](entries, budget)
	c.racyWindow = racyWindow
	c.now = time.Now
	c.stat = t.identity
	c.changes = t.changes.load
	c.flights = map[flightKey]*flight[V]{}
}

// get returns the value of the file of key: the cached one if the file is
// still the one it was read from, else what fetch returns now. Errors are
// fetch's, never cached.
func (c *fileCache[V]) get(ctx context.Context, key string) (V, error) {
	e, cached := c.lru.get(key)
	start := c.now()
	gen, counted := uint64(0), false
	if c.changes != nil {
		gen, counted = c.changes(start.UnixNano())
	}
	var file string
	if cached {
		// Hot: no signalled file changed since the last stat found this
		// one, and that stat is recent.
		if counted && e.gen.Load() == gen {
			if checked := e.checked.Load(); checked != 0 && start.UnixNano()-checked < int64(trustWindow) {
				c.hits.Add(1)
				return e.value, nil
			}
		}
		file = e.file
	} else {
		var err error
		if file, err = c.file(key); err != nil {
			c.misses.Add(1)
			return c.fetch(ctx, key)
		}
	}
	id, err := c.stat(file)
	if err != nil {
		// Gone, a folder, unreadable: fetch says what it is.
		c.misses.Add(1)
		if cached {
			c.lru.remove(key)
		}
		return c.fetch(ctx, key)
	}
	if cached && e.id == id {
		e.validated(gen, counted, start.UnixNano())
		c.hits.Add(1)
		return e.value, nil
	}
	c.misses.Add(1)
	v, err := c.load(ctx, key, id)
	if err != nil {
		if cached {
			c.lru.remove(key)
		}
		return v, err
	}
	if start.Sub(time.Unix(0, id.ctime)) >= c.racyWindow {
		e := &fileEntry[V]{file: file, id: id, value: v}
		e.validated(gen, counted, start.UnixNano())
		c.lru.add(key, e, c.weight(id.size))
	} else if cached {
		c.lru.remove(key)
	}
	return v, nil
}

// load reads the file of key, once for all the concurrent requests that
// found it with identity id. What it reads is that version of the file or
// a later one: the stat came first.
func (c *fileCache[V]) load(ctx context.Context, key string, id fileIdentity) (V, error) {
	fk := flightKey{key, id}
	c.mu.Lock()
	if f, ok := c.flights[fk]; ok {
		c.mu.Unlock()
		<-f.done
		return f.value, f.err
	}
	f := &flight[V]{done: make(chan struct{})}
	c.flights[fk] = f
	c.mu.Unlock()

	// Whatever happens to this request (a panic is recovered by the
	// router), the requests waiting for it get an answer.
	f.err = errLoadFailed
	defer func() {
		c.mu.Lock()
		delete(c.flights, fk)
		c.mu.Unlock()
		close(f.done)
	}()
	c.loads.Add(1)
	f.value, f.err = c.fetch(ctx, key)
	return f.value, f.err
}

// errLoadFailed is what requests waiting for a load get if it never
// returned.
var errLoadFailed = errors.New("reading the file failed")

// repoCache is a bounded cache of parsed repository files in front of the
// tree, by repository name (see fileCache); the server uses it as its
// repositories.
type repoCache struct {
	fileCache[*repoFile]
	// read is tree.repository; tests replace it to count and delay reads.
	read func(ctx context.Context, name string) (*layout.Repository, error)
}

var _ repositories = (*repoCache)(nil)

// repoFile is a parsed repository file, with its tags in order computed
// once, on the first tags/list.
type repoFile struct {
	repo     *layout.Repository
	tagsOnce sync.Once
	tags     []string
}

func newRepoCache(t *tree, entries int, budget *cacheBudget, racyWindow time.Duration) *repoCache {
	c := &repoCache{read: t.repository}
	c.init(t, entries, budget, racyWindow)
	c.file = layout.RepositoryKey
	c.fetch = func(ctx context.Context, name string) (*repoFile, error) {
		repo, err := c.read(ctx, name)
		if err != nil {
			return nil, err
		}
		return &repoFile{repo: repo}, nil
	}
	c.weight = repoWeight
	return c
}

// repository returns the parsed repository file of a valid name: the cached
// copy if the file is still the one it was read from, else what the tree
// reads now. Errors are the tree's, never cached.
func (c *repoCache) repository(ctx context.Context, name string) (*layout.Repository, error) {
	f, err := c.get(ctx, name)
	if err != nil {
		return nil, err
	}
	return f.repo, nil
}

// sortedTags returns the tags of repo in order, computed once per cached
// file.
func (c *repoCache) sortedTags(repo *layout.Repository) []string {
	if e, ok := c.lru.peek(repo.Name); ok && e.value.repo == repo {
		f := e.value
		f.tagsOnce.Do(func() { f.tags = repo.SortedTags() })
		return f.tags
	}
	return repo.SortedTags()
}

// repoWeight is the approximate memory of a parsed repository file of size
// bytes.
func repoWeight(size int64) int64 { return repoWeightFactor*size + 1<<10 }

// indexCache keeps the parsed catalog index (see fileCache), so that a
// catalog page costs a binary search in it (and a stat when the change
// counter cannot skip it), not the decoding of an index of a thousand
// shards (a tree of a million repositories).
type indexCache struct {
	fileCache[*layout.CatalogIndex]
}

func newIndexCache(t *tree, bytes int64, racyWindow time.Duration) *indexCache {
	c := &indexCache{}
	c.init(t, 1, newCacheBudget(bytes), racyWindow)
	c.file = func(string) (string, error) { return layout.CatalogIndexKey(), nil }
	c.fetch = func(context.Context, string) (*layout.CatalogIndex, error) { return t.catalogIndex() }
	c.weight = repoWeight
	return c
}

// catalogIndex returns the parsed catalog index, errNotFound when there is
// none: from the cache if its file has not changed, else from the tree.
// The index is shared and is not modified.
func (s *Server) catalogIndex(ctx context.Context) (*layout.CatalogIndex, error) {
	if s.index == nil {
		return s.tree.catalogIndex()
	}
	return s.index.get(ctx, "")
}

// manifestOverhead is the approximate memory of a manifestEntry beyond its
// bytes.
const manifestOverhead = 320

// manifestCache keeps verified manifest bytes by digest, bounded in entries
// and bytes. A nil *manifestCache is a cache that is off.
type manifestCache struct {
	lru *lru[digest.Digest, *manifestEntry]
	// hits counts the manifests get found, misses those the server read
	// from the tree instead (one of each per request at most).
	hits, misses atomic.Uint64
}

// manifestEntry is a manifest's bytes, verified against its digest, with
// the header values every response of it sends. The values are shared by
// all those responses, which only read them.
type manifestEntry struct {
	data                 []byte
	digest, etag, length []string
}

func newManifestEntry(d digest.Digest, size int64, data []byte) *manifestEntry {
	return &manifestEntry{
		data:   data,
		digest: []string{d.String()},
		etag:   []string{etag(d)},
		length: []string{strconv.FormatInt(size, 10)},
	}
}

func newManifestCache(entries int, budget *cacheBudget) *manifestCache {
	return &manifestCache{lru: newLRUIn[digest.Digest, *manifestEntry](entries, budget)}
}

// get returns the cached manifest d if it has the size the repository file
// lists; a repository that lists another size gets the tree's answer (an
// error), as without a cache.
func (c *manifestCache) get(d digest.Digest, size int64) (*manifestEntry, bool) {
	if c == nil {
		return nil, false
	}
	m, ok := c.lru.get(d)
	if !ok || int64(len(m.data)) != size {
		return nil, false
	}
	c.hits.Add(1)
	return m, true
}

// add keeps data, the verified bytes of manifest d.
func (c *manifestCache) add(d digest.Digest, data []byte) *manifestEntry {
	m := newManifestEntry(d, int64(len(data)), data)
	if c != nil {
		c.lru.add(d, m, int64(len(data))+manifestOverhead)
	}
	return m
}

// manifest returns manifest d of the listed size, verified: from the cache,
// or read from the tree (and then cached).
func (s *Server) manifest(d digest.Digest, size int64) (*manifestEntry, error) {
	if m, ok := s.manifests.get(d, size); ok {
		return m, nil
	}
	if s.manifests != nil {
		s.manifests.misses.Add(1)
	}
	data, err := s.tree.readManifest(d, size)
	if err != nil {
		return nil, err
	}
	return s.manifests.add(d, data), nil
}

// sortedTags returns repo's tags in lexical order; repo is shared and is not
// modified.
func (s *Server) sortedTags(repo *layout.Repository) []string {
	if c, ok := s.repos.(*repoCache); ok {
		return c.sortedTags(repo)
	}
	return repo.SortedTags()
}

// shardCache keeps catalog shards by id, bounded in entries and bytes,
// each packed in one string (see layout.CatalogNames) so that the budget
// holds as many as it can. A nil *shardCache is a cache that is off.
type shardCache struct {
	lru          *lru[string, *layout.CatalogNames]
	hits, misses atomic.Uint64
}

func newShardCache(entries int, budget *cacheBudget) *shardCache {
	return &shardCache{lru: newLRUIn[string, *layout.CatalogNames](entries, budget)}
}

// catalogShard returns the names of the catalog shard id, verified: from
// the cache, or read from the tree (and then cached). They are shared and
// are not modified.
func (s *Server) catalogShard(id string) (*layout.CatalogNames, error) {
	if s.shards != nil {
		if names, ok := s.shards.lru.get(id); ok {
			s.shards.hits.Add(1)
			return names, nil
		}
		s.shards.misses.Add(1)
	}
	names, err := s.tree.catalogShard(id)
	if err != nil {
		return nil, err
	}
	if s.shards != nil {
		s.shards.lru.add(id, names, names.Size())
	}
	return names, nil
}
