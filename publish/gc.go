package publish

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// DefaultGCGrace is the grace period of heron gc: content written or
// touched less than this long ago is never deleted.
const DefaultGCGrace = time.Hour

// GCOptions configures [Publisher.GC].
type GCOptions struct {
	// Grace is how long content stays after it was last written or
	// touched, even when no repository file references it. It must be
	// longer than any publish takes between touching the content it
	// references and writing its repository file, which is milliseconds
	// unless the process stalls; the default hour leaves a wide margin,
	// also for clock differences between the machines writing a shared
	// file system. Negative is an error.
	Grace time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
}

// GC kinds of deleted files (GCItem.Kind).
const (
	GCBlob            = "blob"
	GCTemporary       = "temporary"
	GCCatalogShard    = "catalog shard"
	GCRepositoryShard = "repository shard"
)

// GCItem is one file gc deleted (or would delete, in a dry run).
type GCItem struct {
	// Key is the file's key in the tree.
	Key string `json:"key"`
	// Kind is GCBlob (a blob or manifest no repository file lists),
	// GCTemporary (a writer's temporary file, left by a writer that died),
	// GCCatalogShard (a shard the catalog index does not name) or
	// GCRepositoryShard (a shard file its repository file does not name).
	Kind string `json:"kind"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
}

// GCResult tells what a gc did.
type GCResult struct {
	// DryRun is set when nothing was deleted, only reported.
	DryRun bool `json:"dryRun"`
	// Deleted lists the files deleted (or that would be), by key.
	Deleted []GCItem `json:"deleted"`
	// Files and Bytes total Deleted.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Repositories is the number of repository files read, and
	// Referenced the number of distinct manifests and blobs they list.
	Repositories int `json:"repositories"`
	Referenced   int `json:"referenced"`
	// Young and YoungBytes count the unreferenced files kept because they
	// were written or touched within the grace period (or touched while
	// gc ran).
	Young      int   `json:"young"`
	YoungBytes int64 `json:"youngBytes"`
	// Listed names the repositories gc added to the catalog (or would,
	// with DryRun): repository files a publish killed before its catalog
	// step left unlisted.
	Listed []string `json:"listed"`
	// Uploads counts the blob upload sessions deleted (or that would be)
	// because nothing was written to them within the grace period (see
	// [Publisher.ExpireUploads]).
	Uploads int `json:"uploads"`
}

// GC deletes what no repository file references, by mark and sweep:
//
//  1. mark: every repository file under repositories/ is read, and every
//     manifest and blob it lists (tagged or not, index children, referrers,
//     blobs not stored yet) is marked. A repository file that cannot be
//     read or parsed stops gc before anything is deleted: a sweep after a
//     partial mark would delete content that file references;
//  2. catalog shards: holding the catalog's lock (when the sink is a
//     [LockSink]), the shard files that catalog/index.json does not name are
//     deleted;
//  3. sweep: every blob under blobs/ that is not marked, and every
//     writer's temporary file anywhere in the tree but the writer's private
//     .heron/ folder, is deleted;
//  4. uploads: the blob upload sessions nothing was written to since the
//     cutoff are deleted ([Publisher.ExpireUploads]).
//
// Nothing is deleted that was written or touched less than opts.Grace
// before gc started. The sink must be a [ListSink] and an [ExpireSink]
// (FSSink is).
//
// # Racing publishes
//
// gc may run while any number of publishes write the same tree. A publish
// writes content first and its repository file last, and a blob it found
// present and reuses may be unreferenced, and old, when it starts. So that
// gc never deletes content a repository file references:
//
//   - just before it writes a repository file, holding that file's lock,
//     publish touches (see [TouchSink]) every manifest and stored blob the
//     new file lists and the old one did not, and fails, writing nothing,
//     if one of them is missing. (Before that, right after its content is
//     written, it touches all of it once and writes again whatever a gc
//     deleted in the meantime, so that the failure needs a second gc to
//     strike in the milliseconds between the two.)
//   - gc deletes only content whose modification time is before its
//     cutoff, the time gc started minus the grace period, and checks that
//     time again as it deletes ([ExpireSink.DeleteIfOlder]: a touch before
//     the deletion keeps the file, a touch after it finds the file missing).
//
// Content gc deletes was therefore last touched before the cutoff, so any
// repository file that references it was written before gc started, and
// gc's mark read it. Unless a publish stalls for longer than the grace
// period between its last touch and the write of its repository file (a
// process stopped with SIGSTOP, a machine suspended, a clock that jumps
// back): that is the hazard the grace period bounds, and why it is an hour
// by default. A publish through a sink that cannot touch gets no
// protection but the grace period measured from when it wrote its content.
//
// gc also deletes a writer's temporary files older than the cutoff: a
// staged blob that waited longer than the grace period for the rest of its
// image is one of them, and its publish then fails (its repository file is
// not written). Catalog shards are deleted under the catalog's lock, which
// every catalog writer holds, so a shard a catalog writer is about to name
// is never deleted; without locks the grace period protects them too.
func (p *Publisher) GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	if opts.Grace < 0 {
		return nil, fmt.Errorf("gc: negative grace period %s", opts.Grace)
	}
	ls, ok := p.sink.(ListSink)
	if !ok {
		return nil, errors.New("gc: the sink cannot list its keys")
	}
	es, ok := p.sink.(ExpireSink)
	if !ok {
		return nil, errors.New("gc: the sink cannot delete content by age")
	}
	if err := CheckTree(ctx, p.sink); err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-opts.Grace)
	res := &GCResult{DryRun: opts.DryRun, Deleted: []GCItem{}}

	marked, shards, repos, err := markReferenced(ctx, ls)
	if err != nil {
		return nil, err
	}
	res.Repositories, res.Referenced = len(repos), len(marked)

	if res.Listed, err = p.relist(ctx, repos, opts.DryRun); err != nil {
		return res, err
	}

	if err := p.sweepCatalogShards(ctx, ls, es, cutoff, res); err != nil {
		return nil, err
	}

	var candidates []GCItem
	err = ls.List(ctx, "", func(key string, info Info) error {
		item := GCItem{Key: key, Size: info.Size}
		switch {
		case strings.HasPrefix(key, layout.WriterStateDirKey()+"/"):
			return nil
		case store.IsTempKey(key):
			item.Kind = GCTemporary
		case isRepositoryShard(key):
			if shards[key] {
				return nil
			}
			item.Kind = GCRepositoryShard
		default:
			d, ok := layout.DigestFromBlobKey(key)
			if !ok || marked[d] {
				return nil
			}
			item.Kind = GCBlob
		}
		if !info.ModTime.Before(cutoff) {
			res.Young++
			res.YoungBytes += info.Size
			return nil
		}
		candidates = append(candidates, item)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	for _, item := range candidates {
		if err := p.expire(ctx, es, item, cutoff, res); err != nil {
			return res, err
		}
	}
	if res.Uploads, err = p.gcUploads(ctx, cutoff, opts.DryRun); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	sort.Slice(res.Deleted, func(i, j int) bool { return res.Deleted[i].Key < res.Deleted[j].Key })
	p.log.DebugContext(ctx, "gc", "deleted", res.Files, "uploads", res.Uploads, "bytes", res.Bytes, "young", res.Young, "dryRun", opts.DryRun)
	return res, nil
}

// gcUploads expires the upload sessions idle since cutoff (with dryRun,
// only counts them). The sweep above skips .heron/, where they live.
func (p *Publisher) gcUploads(ctx context.Context, cutoff time.Time, dryRun bool) (int, error) {
	if dryRun {
		ids, err := p.staleUploads(ctx, cutoff)
		return len(ids), err
	}
	return p.ExpireUploads(ctx, cutoff)
}

// expire deletes item unless it was touched since cutoff, and records it.
func (p *Publisher) expire(ctx context.Context, es ExpireSink, item GCItem, cutoff time.Time, res *GCResult) error {
	if !res.DryRun {
		deleted, err := es.DeleteIfOlder(ctx, item.Key, cutoff)
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if !deleted {
			res.Young++
			res.YoungBytes += item.Size
			return nil
		}
		p.log.DebugContext(ctx, "delete", "key", item.Key, "kind", item.Kind, "size", item.Size)
	}
	res.Deleted = append(res.Deleted, item)
	res.Files++
	res.Bytes += item.Size
	return nil
}

// markReferenced reads every repository file and returns the digests of
// every manifest and blob they list, and how many files it read. Any
// repository file it cannot read or parse is an error: gc must not sweep
// after a partial mark. A repository file removed while it runs is skipped.
func markReferenced(ctx context.Context, ls ListSink) (map[digest.Digest]bool, map[string]bool, []string, error) {
	marked := map[digest.Digest]bool{}
	shards := map[string]bool{} // keys of the shard files repository files name
	var names []string
	err := ls.List(ctx, layout.RepositoriesDirKey(), func(key string, _ Info) error {
		if store.IsTempKey(key) {
			return nil
		}
		if _, ok := layout.RepositoryNameFromKey(key); !ok {
			// Not a repository file: the server never reads it, so
			// nothing it names is served. verify reports it.
			return nil
		}
		b, err := ls.ReadFile(ctx, key, layout.MaxRepositoryFileSize)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		r, err := layout.DecodeRepository(b)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		for _, kind := range layout.ShardKinds {
			for _, ref := range r.Shards(kind) {
				k, err := layout.RepositoryShardKey(r.Name, ref.ID)
				if err != nil {
					return err
				}
				shards[k] = true
			}
		}
		if err := r.LoadShards(func(id string) ([]byte, error) {
			k, err := layout.RepositoryShardKey(r.Name, id)
			if err != nil {
				return nil, err
			}
			return ls.ReadFile(ctx, k, layout.MaxRepositoryFileSize)
		}); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		names = append(names, r.Name)
		for d := range r.Manifests {
			marked[d] = true
		}
		for d := range r.Blobs {
			marked[d] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("gc: reading the repository files (nothing was deleted): %w", err)
	}
	return marked, shards, names, nil
}

// relist adds to the catalog the repositories that have a repository file
// but are not listed (a publish killed between the two), and returns their
// names; with dryRun it only returns them. Adding a name whose file exists
// is always safe: addToCatalog checks the file again under the catalog's
// lock, so a repository removed meanwhile is not listed.
func (p *Publisher) relist(ctx context.Context, repos []string, dryRun bool) ([]string, error) {
	// Read under the catalog's lock: a publish replaces shards as it goes.
	unlock, err := p.lockCatalog(ctx)
	if err != nil {
		return nil, err
	}
	listed, err := CatalogNames(ctx, p.sink)
	unlock()
	if err != nil {
		return nil, fmt.Errorf("gc: reading the catalog: %w", err)
	}
	sort.Strings(repos)
	missing := subtractSorted(repos, listed)
	if len(missing) == 0 || dryRun {
		return append([]string{}, missing...), nil
	}
	if _, err := p.addToCatalog(ctx, missing, nil, true); err != nil {
		return nil, fmt.Errorf("gc: listing %d unlisted repositories in the catalog: %w", len(missing), err)
	}
	return missing, nil
}

// sweepCatalogShards deletes the shard files catalog/index.json does not
// name, holding the catalog's lock. An unreadable index stops gc: its
// shards cannot be told from garbage.
func (p *Publisher) sweepCatalogShards(ctx context.Context, ls ListSink, es ExpireSink, cutoff time.Time, res *GCResult) error {
	unlock, err := p.lockCatalog(ctx)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	defer unlock()
	c, err := readCatalog(ctx, p.sink)
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	named := map[string]bool{}
	for _, s := range c.idx.Shards {
		named[s.ID] = true
	}
	var candidates []GCItem
	err = ls.List(ctx, layout.CatalogShardsDirKey(), func(key string, info Info) error {
		id, ok := layout.CatalogShardIDFromKey(key)
		if !ok || named[id] {
			return nil
		}
		if !info.ModTime.Before(cutoff) {
			res.Young++
			res.YoungBytes += info.Size
			return nil
		}
		candidates = append(candidates, GCItem{Key: key, Kind: GCCatalogShard, Size: info.Size})
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, item := range candidates {
		if err := p.expire(ctx, es, item, cutoff, res); err != nil {
			return err
		}
	}
	return nil
}

// isRepositoryShard reports whether key is the key of a repository's shard
// file.
func isRepositoryShard(key string) bool {
	_, _, ok := layout.RepositoryShardFromKey(key)
	return ok
}
