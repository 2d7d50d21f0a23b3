package redirector

import (
	"context"
	"strings"
	"time"

	"github.com/heron-registry/heron/layout"
)

// entryOverhead is the memory a cached file takes beside its value: the
// entry (its identity and validation record), the lru's item and its slot
// in the lru's map. 20,000 views of repositories of 3 tags and one image
// took 370 bytes each in all, 210 of them the view.
const entryOverhead = 176

// repoCache is the repositories of the server when caching is on: a
// bounded cache of the views of repository files (layout.RepositoryView),
// by repository name, in front of the tree's (see fileCache). A view is a
// few hundred bytes for a small repository, so the default budget holds
// tens of thousands.
type repoCache struct {
	files *fileCache[layout.RepositoryView]
}

var (
	_ repositories  = (*repoCache)(nil)
	_ cacheReporter = (*repoCache)(nil)
)

// repoFiles is the fileSource of a repoCache: the repository files that
// the tree reads, by name.
type repoFiles struct{ t *tree }

func (repoFiles) file(name string) (string, error) { return layout.RepositoryKey(name) }

func (f repoFiles) read(ctx context.Context, name string) (layout.RepositoryView, fileIdentity, error) {
	return f.t.repositoryID(ctx, name)
}

func (f repoFiles) readsIdentity() bool { return f.t.readsIdentity() }

func (repoFiles) weight(_ string, v layout.RepositoryView, _ int64) int64 {
	return v.Size() + entryOverhead
}

// ownKey is the view's own name: the entry's key shares its memory.
func (repoFiles) ownKey(_ string, v layout.RepositoryView) string { return v.Name() }

// newRepoCache returns a cache of t's repository files, of at most entries
// files sharing budget (see fileCache for racyWindow).
func newRepoCache(t *tree, entries int, budget *cacheBudget, racyWindow time.Duration) *repoCache {
	return &repoCache{files: newFileCache[layout.RepositoryView](t, repoFiles{t: t}, entries, budget, racyWindow)}
}

// repository returns the view of the repository file of a valid name: the
// cached one if the file is still the one it was read from, else what the
// tree reads now. Errors are the tree's, never cached.
func (c *repoCache) repository(ctx context.Context, name string) (layout.RepositoryView, error) {
	return c.files.get(ctx, name)
}

// forget drops the cached view of name: a shard it names is gone, so the
// file was replaced, whatever the change counter says yet.
func (c *repoCache) forget(name string) { c.files.forget(name) }

func (c *repoCache) cacheCounts() cacheCounts { return c.files.counts() }

// cloneKey returns a copy of a cache key taken from a request: a key is a
// part of the request's memory (the loop keeps a request's header block in
// one string), which a cache entry must not keep alive.
func cloneKey(key string) string { return strings.Clone(key) }
