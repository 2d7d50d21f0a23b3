package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// catalog is the catalog being changed: the index as read, the names of the
// shards read so far, and which of those names are protected (with the
// changes being made to that).
type catalog struct {
	sink      Sink
	version   store.Version // of the index read, on a sink that swaps
	idx       *layout.CatalogIndex
	shards    map[string][]string // shard id → names
	protected map[string]bool
}

func readCatalog(ctx context.Context, sink Sink) (*catalog, error) {
	c := &catalog{sink: sink, idx: &layout.CatalogIndex{LayoutVersion: layout.Version}, shards: map[string][]string{}, protected: map[string]bool{}}
	b, v, err := readVersion(ctx, sink, layout.CatalogIndexKey(), layout.MaxCatalogFileSize)
	if errors.Is(err, ErrNotFound) {
		return c, nil
	}
	c.version = v
	if err != nil {
		return nil, err
	}
	if c.idx, err = layout.DecodeCatalogIndex(b); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *catalog) shard(ctx context.Context, i int) ([]string, error) {
	id := c.idx.Shards[i].ID
	if names, ok := c.shards[id]; ok {
		return names, nil
	}
	key, err := layout.CatalogShardKey(id)
	if err != nil {
		return nil, err
	}
	b, err := c.sink.ReadFile(ctx, key, layout.MaxCatalogFileSize)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", stale(c.sink, err))
	}
	f, err := layout.DecodeCatalogShardFile(b, id)
	if err != nil {
		return nil, err
	}
	c.shards[id] = f.Repositories
	for _, n := range f.Protected {
		c.protected[n] = true
	}
	return f.Repositories, nil
}

// CatalogNames returns every repository name in the catalog of the tree
// behind sink, sorted. An absent catalog is empty.
func CatalogNames(ctx context.Context, sink Sink) ([]string, error) {
	c, err := readCatalog(ctx, sink)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range c.idx.Shards {
		names, err := c.shard(ctx, i)
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

// AddToCatalog adds repository names to the catalog and reports whether it
// changed. Each name goes into the shard CatalogIndex.ShardFor picks; a
// shard that grows past the shard size is split. New shard files are
// written first, then the index, then the replaced shards are deleted, so
// that a reader holding the old index finds its shards until it re-reads.
// It holds the catalog's lock (see LockSink) while it does. A name whose
// repository file exists is listed with that file's protection; others
// are listed as public.
func (p *Publisher) AddToCatalog(ctx context.Context, names ...string) (bool, error) {
	return p.addToCatalog(ctx, names, nil, false)
}

// addToCatalog is AddToCatalog; with existing, a name is added only if its
// repository file exists when the catalog's lock is held. Publish adds its
// repositories that way: a repository removed (under the catalog's lock)
// between the write of its file and the catalog update is not listed
// again, so that a listed name is always servable.
//
// The catalog marks the names of protected repositories (see
// layout.CatalogShardFile), and the repository file is the truth: a name
// is added with the protection its file has when the catalog's lock is
// held. known holds the protection of names as the caller last saw their
// files (nil: none known); where a listed name's mark disagrees, the file
// is read again, under the lock, and its protection is the mark. Making a
// repository protected writes its file under the catalog's lock (see
// protectRepository), so that the file read here and the mark agree.
func (p *Publisher) addToCatalog(ctx context.Context, names []string, known map[string]bool, existing bool) (bool, error) {
	unlock, err := p.lockCatalog(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	return p.addToCatalogLocked(ctx, names, known, existing)
}

// addToCatalogLocked is addToCatalog for a caller that holds the catalog's
// lock.
func (p *Publisher) addToCatalogLocked(ctx context.Context, names []string, known map[string]bool, existing bool) (changed bool, err error) {
	err = p.swapped(ctx, layout.CatalogIndexKey(), func() error {
		changed, err = p.addToCatalogOnce(ctx, names, known, existing)
		return err
	})
	return changed, err
}

// addToCatalogOnce is one read-modify-write of addToCatalogLocked.
func (p *Publisher) addToCatalogOnce(ctx context.Context, names []string, known map[string]bool, existing bool) (bool, error) {
	add, err := sortedUnique(names)
	if err != nil || len(add) == 0 {
		return false, err
	}
	c, err := readCatalog(ctx, p.sink)
	if err != nil {
		return false, err
	}
	// Group the names by the shard they belong in (-1: no shard yet).
	groups := map[int][]string{}
	var order []int
	for _, n := range add {
		i := c.idx.ShardFor(n)
		if _, ok := groups[i]; !ok {
			order = append(order, i)
		}
		groups[i] = append(groups[i], n)
	}
	replace := map[int][][]string{}
	for _, i := range order {
		var cur []string
		if i >= 0 {
			if cur, err = c.shard(ctx, i); err != nil {
				return false, err
			}
		}
		g := groups[i]
		fresh := subtractSorted(g, cur)
		marks := map[string]bool{}
		if existing {
			if fresh, err = p.protection(ctx, fresh, marks); err != nil {
				return false, err
			}
		} else {
			for _, n := range fresh {
				marks[n] = known[n]
				if _, err := p.protection(ctx, []string{n}, marks); err != nil {
					return false, err
				}
			}
		}
		// Listed names whose mark the caller saw disagree with their
		// file: the file, read again, decides.
		var recheck []string
		for _, n := range subtractSorted(g, fresh) {
			if k, ok := known[n]; ok && k != c.protected[n] && slices.Contains(cur, n) {
				recheck = append(recheck, n)
			}
		}
		if _, err := p.protection(ctx, recheck, marks); err != nil {
			return false, err
		}
		remarked := false
		for n, prot := range marks {
			if c.protected[n] != prot {
				remarked = remarked || slices.Contains(cur, n)
				c.protected[n] = prot
			}
		}
		merged := mergeSorted(cur, fresh)
		if len(merged) == len(cur) && !remarked {
			continue
		}
		replace[i] = splitNames(merged, p.shardSize)
	}
	if len(replace) == 0 {
		return false, p.signalIfRecent(ctx, layout.CatalogIndexKey())
	}
	return true, p.writeCatalog(ctx, c, replace)
}

// RemoveFromCatalog removes repository names from the catalog and reports
// whether it changed. A shard left empty is dropped; a shard left with
// fewer than a quarter of the shard size is merged with a neighbour when
// the two fit in one shard. It holds the catalog's lock while it does.
func (p *Publisher) RemoveFromCatalog(ctx context.Context, names ...string) (bool, error) {
	unlock, err := p.lockCatalog(ctx)
	if err != nil {
		return false, err
	}
	defer unlock()
	return p.removeFromCatalogLocked(ctx, names)
}

// removeFromCatalogLocked is RemoveFromCatalog for a caller that holds the
// catalog's lock.
func (p *Publisher) removeFromCatalogLocked(ctx context.Context, names []string) (changed bool, err error) {
	err = p.swapped(ctx, layout.CatalogIndexKey(), func() error {
		changed, err = p.removeFromCatalogOnce(ctx, names)
		return err
	})
	return changed, err
}

// removeFromCatalogOnce is one read-modify-write of
// removeFromCatalogLocked.
func (p *Publisher) removeFromCatalogOnce(ctx context.Context, names []string) (bool, error) {
	del, err := sortedUnique(names)
	if err != nil || len(del) == 0 {
		return false, err
	}
	c, err := readCatalog(ctx, p.sink)
	if err != nil {
		return false, err
	}
	groups := map[int][]string{}
	for _, n := range del {
		if i := c.idx.ShardFor(n); i >= 0 {
			groups[i] = append(groups[i], n)
		}
	}
	left := map[int][]string{}
	for i, g := range groups {
		cur, err := c.shard(ctx, i)
		if err != nil {
			return false, err
		}
		rest := subtractSorted(cur, g)
		if len(rest) != len(cur) {
			left[i] = rest
		}
	}
	if len(left) == 0 {
		return false, p.signalIfRecent(ctx, layout.CatalogIndexKey())
	}
	replace := map[int][][]string{}
	for i, rest := range left {
		replace[i] = [][]string{rest}
	}
	// Merge small shards with their next neighbour, left to right.
	for i := 0; i < len(c.idx.Shards)-1; i++ {
		cur, changed := replace[i]
		if !changed || len(cur[0]) >= p.shardSize/4 {
			continue
		}
		next, ok := replace[i+1]
		if !ok {
			names, err := c.shard(ctx, i+1)
			if err != nil {
				return false, err
			}
			next = [][]string{names}
		}
		if len(cur[0])+len(next[0]) > p.shardSize {
			continue
		}
		replace[i] = [][]string{nil}
		replace[i+1] = [][]string{append(append([]string{}, cur[0]...), next[0]...)}
	}
	for i, parts := range replace {
		if len(parts[0]) == 0 {
			replace[i] = nil
		}
	}
	return true, p.writeCatalog(ctx, c, replace)
}

// writeCatalog replaces shard i of the index by the shards in replace[i]
// (none drops it; i = -1 is the first shard of an empty catalog), writes
// the new shard files, then the index, then deletes the shard files no
// longer named.
func (p *Publisher) writeCatalog(ctx context.Context, c *catalog, replace map[int][][]string) error {
	type newShard struct {
		meta layout.CatalogShard
		data []byte
	}
	var fresh []newShard
	encode := func(names []string) (layout.CatalogShard, error) {
		f := &layout.CatalogShardFile{Repositories: names}
		for _, n := range names {
			if c.protected[n] {
				f.Protected = append(f.Protected, n)
			}
		}
		data, id, err := layout.EncodeCatalogShardFile(f)
		if err != nil {
			return layout.CatalogShard{}, err
		}
		s := layout.CatalogShard{ID: id, First: names[0], Last: names[len(names)-1], Count: len(names), Protected: len(f.Protected)}
		fresh = append(fresh, newShard{meta: s, data: data})
		return s, nil
	}
	var shards []layout.CatalogShard
	emit := func(i int) error {
		parts, ok := replace[i]
		if !ok {
			shards = append(shards, c.idx.Shards[i])
			return nil
		}
		for _, names := range parts {
			s, err := encode(names)
			if err != nil {
				return err
			}
			shards = append(shards, s)
		}
		return nil
	}
	if len(c.idx.Shards) == 0 {
		if err := emit(-1); err != nil {
			return err
		}
	} else {
		if _, ok := replace[-1]; ok {
			return errors.New("catalog: internal error: a name without a shard in a non-empty catalog")
		}
		for i := range c.idx.Shards {
			if err := emit(i); err != nil {
				return err
			}
		}
	}

	for _, s := range fresh {
		key, err := layout.CatalogShardKey(s.meta.ID)
		if err != nil {
			return err
		}
		if present, err := p.present(ctx, key, int64(len(s.data))); err != nil {
			return err
		} else if present {
			continue
		}
		want := Want{Digest: digest.NewDigestFromEncoded(digest.SHA256, s.meta.ID), Size: int64(len(s.data))}
		if err := p.sink.Put(ctx, key, bytes.NewReader(s.data), want); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	idx := &layout.CatalogIndex{Shards: shards}
	b, err := layout.EncodeCatalogIndex(idx)
	if err != nil {
		return err
	}
	if _, err := layout.DecodeCatalogIndex(b); err != nil {
		return fmt.Errorf("catalog: internal error: %w", err)
	}
	if err := p.putFile(ctx, layout.CatalogIndexKey(), b, c.version); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if p.swaps() {
		// Another writer may have read the index this one replaced and
		// still read the shards it named: gc removes them.
		return nil
	}
	keep := map[string]bool{}
	for _, s := range shards {
		keep[s.ID] = true
	}
	for _, s := range c.idx.Shards {
		if keep[s.ID] {
			continue
		}
		key, err := layout.CatalogShardKey(s.ID)
		if err != nil {
			return err
		}
		if err := p.sink.Delete(ctx, key); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	return nil
}

// protectRepository applies mutate, which makes repository name protected,
// to its file while it holds the catalog's lock, and marks the name
// protected in the catalog (listing it if it is not): a writer that reads
// the file under the catalog's lock (addToCatalog) then never finds it
// public while the catalog marks it protected, or the reverse, and a
// protected name is never listed as public. It reports whether the file
// was written, and whether the catalog was.
func (p *Publisher) protectRepository(ctx context.Context, name string, mutate func(*layout.Repository) error) (written, listed bool, err error) {
	unlock, err := p.lockCatalog(ctx)
	if err != nil {
		return false, false, err
	}
	defer unlock()
	if written, err = p.updateRepository(ctx, name, &touchKeys{}, mutate); err != nil {
		return written, false, err
	}
	if listed, err = p.addToCatalogLocked(ctx, []string{name}, map[string]bool{name: true}, true); err != nil {
		return written, false, fmt.Errorf("marking %s protected in the catalog: %w", name, err)
	}
	return written, listed, nil
}

// protection reads the repository files of names and records in marks
// whether each is protected; it returns the names, in order, whose file
// exists (the others are not recorded).
func (p *Publisher) protection(ctx context.Context, names []string, marks map[string]bool) ([]string, error) {
	out := names[:0:0]
	for _, n := range names {
		key, err := layout.RepositoryKey(n)
		if err != nil {
			return nil, err
		}
		if ok, dir, err := p.exists(ctx, key); err != nil {
			return nil, err
		} else if !ok || dir {
			continue
		}
		r, _, err := readRepository(ctx, p.sink, n)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, n)
			marks[n] = r.Protected
		}
	}
	return out, nil
}

// splitNames cuts sorted names into shards of at most size names: one shard
// if they fit, else the fewest (at least two) shards of equal length.
func splitNames(names []string, size int) [][]string {
	if len(names) <= size {
		return [][]string{names}
	}
	k := max(2, (len(names)+size-1)/size)
	out := make([][]string, 0, k)
	for j := range k {
		lo, hi := j*len(names)/k, (j+1)*len(names)/k
		out = append(out, names[lo:hi])
	}
	return out
}

func sortedUnique(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if err := layout.ValidateRepository(n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	sort.Strings(out)
	j := 0
	for i, n := range out {
		if i == 0 || n != out[j-1] {
			out[j] = n
			j++
		}
	}
	return out[:j], nil
}

// mergeSorted returns the union of two sorted, duplicate-free lists.
func mergeSorted(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// subtractSorted returns a without the names of b; both are sorted.
func subtractSorted(a, b []string) []string {
	out := make([]string, 0, len(a))
	j := 0
	for _, n := range a {
		for j < len(b) && b[j] < n {
			j++
		}
		if j < len(b) && b[j] == n {
			continue
		}
		out = append(out, n)
	}
	return out
}
