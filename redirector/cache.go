package redirector

// The server's caches change nothing but speed: a request answered from
// them gets the answer the files give (WithCacheSize(0) turns them off,
// and the tests run every table both ways).
//
// Each one is a lookup of lookups.go that wraps the tree, the lookup that
// reads the files (as distribution's cachedBlobStatter wraps a
// BlobDescriptorService), and the server holds it in the tree's place:
// nothing above a cache knows whether it is there. A cache that is off is
// the tree itself.
//
//   - repoCache (repocache.go) keeps parsed repository files, each
//     validated on every use (see fileCache, filecache.go): without a
//     system call while the tree's change counter is unchanged and the
//     file was stat'ed less than trustWindow ago, by one stat of the file
//     otherwise. A file renamed into place is seen by the next request.
//   - indexCache (catalogcache.go) keeps the parsed catalog index,
//     validated in the same way by every catalog request.
//   - manifestCache (manifestcache.go) keeps manifest bytes by digest.
//     They are immutable and were verified against their digest when
//     read, so it is never invalidated, only bounded.
//   - shardCache (catalogcache.go) keeps catalog shards by id, immutable
//     and verified in the same way.
//
// The repository, manifest and shard caches share one memory budget
// (WithCacheBytes, see cacheBudget in lru.go): whichever the traffic needs
// gets the memory. The catalog index, a single entry needed by every
// catalog page, is bounded on its own by the same number.
//
// File-system events (fsnotify) are deliberately not used to skip the
// stat: an event reaches the server some time after the rename that caused
// it, so a request arriving in between would be answered from the old file
// after publish has returned. What skips the stat is the change counter
// that heron's writers increment before they return (changes.go): read
// from memory, it is as synchronous as the stat. Where there is no counter
// to trust (a tree written by another tool, a network file system), the
// stat is the price of read-after-publish consistency.
//
// A tree in a store (NewFromStore) has neither a stat nor a counter: its
// repository files and catalog index are validated by version instead, in
// the same budget (storecache.go).

// Default bounds of the caches.
const (
	// DefaultCacheSize is the number of entries of each cache: enough
	// that the memory bound is the one that binds.
	DefaultCacheSize = 100_000
	// DefaultCacheBytes is the approximate memory of all the caches
	// together: the views of repository files (layout.RepositoryView,
	// with its entry about 370 bytes for a repository of a few tags and
	// one image, measured), the manifests' bytes and the catalog shards'
	// names, with each entry's overhead. It holds the views of about
	// 21,000 such repositories, or a third of the catalog of a tree of
	// 1,000,000 repositories; with the default memory limit, heron serve
	// stays under 40 MB of RSS (docs/benchmarks.md).
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

// withCaches puts caches bounded by o in front of s's tree, in the place
// of the tree's own lookups, unless o turns them off.
func (s *Server) withCaches(o options) {
	if o.cacheSize <= 0 || o.cacheBytes <= 0 {
		return
	}
	budget := newCacheBudget(o.cacheBytes)
	s.manifests = newManifestCache(s.manifests, o.cacheSize, budget)
	s.shards = newShardCache(s.shards, o.cacheSize, budget)
	s.repoShards = newRepoShardCache(s.repoShards, o.cacheSize, budget)
	if identitySupported {
		s.repos = newRepoCache(s.tree, o.cacheSize, budget, o.racyWindow)
		s.index = newIndexCache(s.tree, o.cacheBytes, o.racyWindow)
	}
}
