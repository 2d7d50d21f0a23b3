package redirector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// defaultRacyWindow is how old the status change of a file must be before
// a parsed copy of it is kept; see fileCache.
const defaultRacyWindow = 2 * time.Second

// errNotRegular is returned by tree.identity for anything but a regular
// file.
var errNotRegular = errors.New("not a regular file")

// fileIdentity tells two versions of a file apart without reading them.
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

// fileSource is what a fileCache caches: values parsed from the tree's
// mutable files, by key. A cache of one kind of file implements it by
// reading through the lookup it wraps (see repoFiles, indexFile).
type fileSource[V any] interface {
	// file returns the tree key of the file of key, or an error for a key
	// that names no file.
	file(key string) (string, error)
	// read reads the file of key and parses it, and returns the identity
	// of the version it read when readsIdentity says it knows it (zero
	// otherwise). Its errors are what the cache returns, never cached.
	read(ctx context.Context, key string) (V, fileIdentity, error)
	// readsIdentity reports whether read returns identities: then a key
	// not in the cache is read without a stat first.
	readsIdentity() bool
	// weight is the memory an entry of key takes, with its value parsed
	// from a file of size bytes.
	weight(key string, v V, size int64) int64
	// ownKey returns key in memory of the entry's own (a key comes from a
	// request, whose memory an entry must not keep alive): a copy, or
	// the same string kept in v.
	ownKey(key string, v V) string
}

// fileCache is a bounded cache of values parsed from the tree's mutable
// files (repository files, the catalog index), by key: what its fileSource
// reads.
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
	src        fileSource[V]
	racyWindow time.Duration
	now        func() time.Time
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
// that found the same identity share it, or, for a file read without a
// stat, the same change counter.
type flightKey struct {
	key string
	id  fileIdentity
	gen uint64
}

type flight[V any] struct {
	done  chan struct{}
	value V
	id    fileIdentity
	err   error
}

// newFileCache returns a cache of what src reads from t, of at most
// entries entries sharing budget, that keeps a file only once its status
// changed racyWindow ago.
func newFileCache[V any](t *tree, src fileSource[V], entries int, budget *cacheBudget, racyWindow time.Duration) *fileCache[V] {
	return &fileCache[V]{
		lru:        newLRUIn[string, *fileEntry[V]](entries, budget),
		src:        src,
		racyWindow: racyWindow,
		now:        time.Now,
		stat:       t.identity,
		changes:    t.changes.load,
		flights:    map[flightKey]*flight[V]{},
	}
}

// get returns the value of the file of key: the cached one if the file is
// still the one it was read from, else what the source reads now. Errors
// are the source's, never cached.
func (c *fileCache[V]) get(ctx context.Context, key string) (V, error) {
	e, cached := c.lru.get(key)
	start := c.now()
	gen, counted := uint64(0), false
	if c.changes != nil {
		gen, counted = c.changes(start.UnixNano())
	}
	if cached && counted && e.gen.Load() == gen {
		// Hot: no signalled file changed since the last stat found this
		// one, and that stat is recent.
		if checked := e.checked.Load(); checked != 0 && start.UnixNano()-checked < int64(trustWindow) {
			c.hits.Add(1)
			return e.value, nil
		}
	}
	if !cached && counted && c.src.readsIdentity() {
		// Not cached, and the tree has a change counter: read, and take
		// the identity of what was read from the open file itself,
		// without a stat before. Concurrent requests that read the same
		// counter share the read: no signalled file changed between the
		// first one's reading of the counter and theirs, so what it reads
		// is as new as what they would (see load).
		c.misses.Add(1)
		v, id, err := c.load(ctx, flightKey{key: key, gen: gen})
		if err == nil && id != (fileIdentity{}) {
			c.keep(key, v, id, gen, counted, start)
		}
		return v, err
	}
	// The tree key is not kept in the entry (tens of thousands of
	// entries): a stat is a system call anyway.
	file, err := c.src.file(key)
	if err != nil {
		c.misses.Add(1)
		if cached {
			c.lru.remove(key)
		}
		v, _, err := c.src.read(ctx, key)
		return v, err
	}
	id, err := c.stat(file)
	if err != nil {
		// Gone, a folder, unreadable: the source says what it is.
		c.misses.Add(1)
		if cached {
			c.lru.remove(key)
		}
		v, _, err := c.src.read(ctx, key)
		return v, err
	}
	if cached && e.id == id {
		e.validated(gen, counted, start.UnixNano())
		c.hits.Add(1)
		return e.value, nil
	}
	c.misses.Add(1)
	v, _, err := c.load(ctx, flightKey{key: key, id: id})
	if err != nil {
		if cached {
			c.lru.remove(key)
		}
		return v, err
	}
	if !c.keep(key, v, id, gen, counted, start) && cached {
		c.lru.remove(key)
	}
	return v, nil
}

// keep caches v, read from the version id of the file of key after the
// change counter read gen (counted: there is one) at start, unless the
// file changed less than racyWindow before start. It reports whether it
// did.
func (c *fileCache[V]) keep(key string, v V, id fileIdentity, gen uint64, counted bool, start time.Time) bool {
	if start.Sub(time.Unix(0, id.ctime)) < c.racyWindow {
		return false
	}
	if old, ok := c.lru.peek(key); ok && old.checked.Load() > start.UnixNano() {
		// A request that began after this one kept what it read (or
		// validated it) first: its entry, as new as this, stays.
		return true
	}
	key = c.src.ownKey(key, v)
	e := &fileEntry[V]{id: id, value: v}
	e.validated(gen, counted, start.UnixNano())
	c.lru.add(key, e, c.src.weight(key, v, id.size))
	return true
}

// peek returns the cached value of key, if there is one, without
// validating it or marking it as used.
func (c *fileCache[V]) peek(key string) (V, bool) {
	e, ok := c.lru.peek(key)
	if !ok {
		var zero V
		return zero, false
	}
	return e.value, true
}

// forget drops the entry of key, if there is one.
func (c *fileCache[V]) forget(key string) { c.lru.remove(key) }

// counts returns what the metrics report of c.
func (c *fileCache[V]) counts() cacheCounts {
	n, w := c.lru.size()
	return cacheCounts{hits: c.hits.Load(), misses: c.misses.Load(), entries: n, weight: w}
}

// load reads the file of fk.key, once for all the concurrent requests that
// found it with identity fk.id, or, not stat'ed, the change counter
// fk.gen. What it reads is that version of the file or a later one: the
// stat, or the reading of the counter, came first. It returns the identity
// of what it read when the source knows it.
func (c *fileCache[V]) load(ctx context.Context, fk flightKey) (V, fileIdentity, error) {
	key := fk.key
	c.mu.Lock()
	if f, ok := c.flights[fk]; ok {
		c.mu.Unlock()
		<-f.done
		return f.value, f.id, f.err
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
	f.value, f.id, f.err = c.src.read(ctx, key)
	return f.value, f.id, f.err
}

// errLoadFailed is what requests waiting for a load get if it never
// returned.
var errLoadFailed = errors.New("reading the file failed")
