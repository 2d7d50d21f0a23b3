package redirector

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/heron-registry/heron/layout"
)

// Large repositories keep a kind of entries (tags, manifests, blobs,
// referrers) in shard files (layout, shards.go): a request reads the
// repository file and the one shard that holds what it asks for. Shards
// are content addressed, so a cached shard is never stale: the repository
// file, validated as always, says which shards are current.

// repositoryShards gives the shards of repositories.
type repositoryShards interface {
	// repositoryShard returns the view of shard sh of kind of repository
	// name, read whole and verified against its id and its entry in the
	// repository file; an error wrapping errNotFound if it is gone.
	repositoryShard(ctx context.Context, name string, kind layout.ShardKind, sh layout.ViewShard) (layout.RepositoryView, error)
}

var _ repositoryShards = (*tree)(nil)

// repositoryShard reads shard sh of repository name.
func (t *tree) repositoryShard(_ context.Context, name string, kind layout.ShardKind, sh layout.ViewShard) (layout.RepositoryView, error) {
	id := sh.HexID()
	key, err := layout.RepositoryShardKey(name, id)
	if err != nil {
		return layout.RepositoryView{}, err
	}
	data, err := t.readFile(key, layout.MaxRepositoryFileSize)
	if err != nil {
		return layout.RepositoryView{}, err
	}
	ref := layout.ShardRef{ID: id, First: sh.First, Last: sh.Last, Count: sh.Count}
	if kind != layout.TagKind {
		ref.First, ref.Last = string(layout.DigestOfKey(sh.First)), string(layout.DigestOfKey(sh.Last))
	}
	v, err := layout.DecodeShardView(data, kind, ref)
	if err != nil {
		return layout.RepositoryView{}, t.fileError(key, err)
	}
	return v, nil
}

// repoShardCache is the repositoryShards of the server when caching is on:
// shard views by id, in front of the tree's, in the caches' budget.
type repoShardCache struct {
	backend      repositoryShards
	lru          *lru[string, layout.RepositoryView]
	hits, misses atomic.Uint64
}

var (
	_ repositoryShards = (*repoShardCache)(nil)
	_ cacheReporter    = (*repoShardCache)(nil)
)

func newRepoShardCache(backend repositoryShards, entries int, budget *cacheBudget) *repoShardCache {
	return &repoShardCache{backend: backend, lru: newLRUIn[string, layout.RepositoryView](entries, budget)}
}

// repositoryShard returns shard sh of repository name from the cache, or
// read by the backend. The key is the repository's name and the shard's
// raw id: two repositories with a shard of the same bytes each read their
// own file (a repository is answered from its own files only, whatever
// the cache holds).
func (c *repoShardCache) repositoryShard(ctx context.Context, name string, kind layout.ShardKind, sh layout.ViewShard) (layout.RepositoryView, error) {
	var buf [256 + 1 + 32]byte
	key := append(append(append(buf[:0], name...), 0), sh.ID...)
	if v, ok := c.lru.get(string(key)); ok {
		c.hits.Add(1)
		return v, nil
	}
	c.misses.Add(1)
	v, err := c.backend.repositoryShard(ctx, name, kind, sh)
	if err != nil {
		return v, err
	}
	c.lru.add(string(key), v, v.Size()+int64(len(key))+entryOverhead)
	return v, nil
}

func (c *repoShardCache) cacheCounts() cacheCounts {
	n, w := c.lru.size()
	return cacheCounts{hits: c.hits.Load(), misses: c.misses.Load(), entries: n, weight: w}
}

// errRepoShardGone is returned when a shard a repository file names is not
// there: a publish replaced the file (and removed the shard) since it was
// read. The request is answered again, once, from the new file.
var errRepoShardGone = errors.New("repository shard named by the repository file is gone")

// holder returns the view that holds ref (a tag, or a valid digest) of
// kind in repository name: repo itself when it keeps that kind in its
// file, else the shard whose range holds ref. It reports false when no
// shard's range does (ref is not listed).
func (s *Server) holder(ctx context.Context, name string, repo layout.RepositoryView, kind layout.ShardKind, ref string) (layout.RepositoryView, bool, error) {
	if repo.Shards(kind) == 0 {
		return repo, true, nil
	}
	key := ref
	if kind != layout.TagKind {
		var buf [1 + sha512.Size]byte
		k, ok := layout.DigestKey(ref, buf[:])
		if !ok {
			return layout.RepositoryView{}, false, nil
		}
		key = string(k)
	}
	i, ok := repo.ShardIndex(kind, key)
	if !ok {
		return layout.RepositoryView{}, false, nil
	}
	return s.shard(ctx, name, repo, kind, i)
}

// shard returns shard i of kind of repo.
func (s *Server) shard(ctx context.Context, name string, repo layout.RepositoryView, kind layout.ShardKind, i int) (layout.RepositoryView, bool, error) {
	if s.beforeRepoShard != nil {
		s.beforeRepoShard()
	}
	v, err := s.repoShards.repositoryShard(ctx, name, kind, repo.Shard(kind, i))
	if errors.Is(err, errNotFound) {
		return v, false, fmt.Errorf("%w: %w", errRepoShardGone, err)
	}
	return v, err == nil, err
}
