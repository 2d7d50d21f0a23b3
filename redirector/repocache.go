package redirector

import (
	"context"
	"sync"
	"time"

	"github.com/heron-registry/heron/layout"
)

// repoWeightFactor estimates the memory a parsed repository file takes from
// its size on disk. The benchmarks' 100-image repository file of 115 KiB
// parses into 146 KiB of maps and strings (1.3 times); 2 keeps the bound on
// the safe side. The catalog index is weighed the same way.
const repoWeightFactor = 2

// repoWeight is the approximate memory of a parsed repository file of size
// bytes.
func repoWeight(size int64) int64 { return repoWeightFactor*size + 1<<10 }

// repoCache is the repositories of the server when caching is on: a
// bounded cache of parsed repository files, by repository name, in front
// of the tree's (see fileCache).
type repoCache struct {
	backend repositories // the tree's, which it caches
	files   *fileCache[*repoFile]
}

var (
	_ repositories  = (*repoCache)(nil)
	_ cacheReporter = (*repoCache)(nil)
)

// repoFile is a parsed repository file, with its tags in order computed
// once, on the first tags/list.
type repoFile struct {
	repo     *layout.Repository
	tagsOnce sync.Once
	tags     []string
}

// repoFiles is the fileSource of a repoCache: the repository files that
// backend reads, by name.
type repoFiles struct{ backend repositories }

func (repoFiles) file(name string) (string, error) { return layout.RepositoryKey(name) }

func (f repoFiles) read(ctx context.Context, name string) (*repoFile, error) {
	repo, err := f.backend.repository(ctx, name)
	if err != nil {
		return nil, err
	}
	return &repoFile{repo: repo}, nil
}

func (repoFiles) weight(size int64) int64 { return repoWeight(size) }

// newRepoCache returns a cache of t's repository files, of at most entries
// files sharing budget (see fileCache for racyWindow).
func newRepoCache(t *tree, entries int, budget *cacheBudget, racyWindow time.Duration) *repoCache {
	return &repoCache{
		backend: t,
		files:   newFileCache[*repoFile](t, repoFiles{backend: t}, entries, budget, racyWindow),
	}
}

// repository returns the parsed repository file of a valid name: the cached
// copy if the file is still the one it was read from, else what the tree
// reads now. Errors are the tree's, never cached.
func (c *repoCache) repository(ctx context.Context, name string) (*layout.Repository, error) {
	f, err := c.files.get(ctx, name)
	if err != nil {
		return nil, err
	}
	return f.repo, nil
}

// sortedTags returns the tags of repo in order, computed once per cached
// file.
func (c *repoCache) sortedTags(repo *layout.Repository) []string {
	if f, ok := c.files.peek(repo.Name); ok && f.repo == repo {
		f.tagsOnce.Do(func() { f.tags = repo.SortedTags() })
		return f.tags
	}
	return c.backend.sortedTags(repo)
}

func (c *repoCache) cacheCounts() cacheCounts { return c.files.counts() }
