package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// A large repository keeps a kind of entries in shard files (layout,
// shards.go). An edit reads the repository file, then only the shards that
// hold the keys it reads or writes (touchKeys), applies its mutation to
// what it read, and writes back the shards that changed (content
// addressed: new files), then the repository file, then removes the shard
// files the old repository file named and the new one does not. Adding a
// tag to a repository of 100,000 tags reads and writes the repository file
// and one tag shard.

// touchKeys are, per kind, the keys a mutation reads or writes: an edit
// reads the shards that hold them (or would hold them, for a new key)
// before the mutation runs. A nil *touchKeys reads every shard: the
// mutation sees the whole repository.
type touchKeys [4][]string

// add adds keys of kind.
func (t *touchKeys) add(kind layout.ShardKind, keys ...string) {
	t[kind] = append(t[kind], keys...)
}

// repoEdit is a repository being edited: its file, and what of its shards
// was read.
type repoEdit struct {
	name string
	key  string // of the repository file
	r    *layout.Repository
	old  []byte // the file's bytes; nil for a new repository
	// version is the version of old on a sink that swaps (see swap.go).
	version store.Version
	all     bool // every shard was read
	read    [4]map[int]bool
	known   map[digest.Digest]layout.ShardTag // the manifests of the tag shards read
	// files are the shard files to write, by id; drop the ids of shard
	// files to remove once the repository file is written.
	files map[string][]byte
	drop  []string
}

// openEdit reads the repository file of name (an empty repository when
// there is none and create is set, else ErrNotFound) and the shards touch
// names (all of them for a nil touch).
func (p *Publisher) openEdit(ctx context.Context, name string, create bool, touch *touchKeys) (*repoEdit, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return nil, err
	}
	if create {
		if err := p.checkNameConflict(ctx, name); err != nil {
			return nil, err
		}
	}
	r, old, version, err := readRepositoryVersion(ctx, p.sink, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		if !create {
			return nil, fmt.Errorf("repository %s: %w", name, ErrNotFound)
		}
		r = layout.NewRepository(name)
	}
	e := &repoEdit{name: name, key: key, r: r, old: old, version: version, all: touch == nil, known: map[digest.Digest]layout.ShardTag{}}
	for _, kind := range layout.ShardKinds {
		e.read[kind] = map[int]bool{}
		refs := r.Shards(kind)
		if touch == nil {
			for i := range refs {
				if err := p.readShard(ctx, e, kind, i); err != nil {
					return nil, err
				}
			}
			continue
		}
		for _, k := range touch[kind] {
			if i := layout.ShardFor(refs, k); i >= 0 && !e.read[kind][i] {
				if err := p.readShard(ctx, e, kind, i); err != nil {
					return nil, err
				}
			}
		}
	}
	if touch == nil {
		// Whole: checked whole, as the shards were written.
		if err := r.ValidateWhole(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// readShard reads shard i of kind into e.
func (p *Publisher) readShard(ctx context.Context, e *repoEdit, kind layout.ShardKind, i int) error {
	ref := e.r.Shards(kind)[i]
	key, err := layout.RepositoryShardKey(e.name, ref.ID)
	if err != nil {
		return err
	}
	data, err := p.sink.ReadFile(ctx, key, layout.MaxRepositoryFileSize)
	if err != nil {
		return fmt.Errorf("repository %s: %s shard %s: %w", e.name, kind, ref.ID, stale(p.sink, err))
	}
	s, err := layout.DecodeRepositoryShard(data, kind, ref)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	e.r.AddShard(s)
	for _, st := range s.Tags {
		e.known[st.Digest] = st
	}
	e.read[kind][i] = true
	return nil
}

// reshard lays out the entries of e after its mutation: for each kind, the
// shards read are encoded anew from what e holds in their ranges (split
// when fuller than layout.ShardMax, gone when empty; a shard whose entries
// did not change keeps its id and file), the others stay as they are; a
// kind the file holds itself and that grew past layout.InlineMax is
// sharded; a sharded kind read whole that shrank to half of that goes back
// into the file. It records the files to write and to remove.
func (e *repoEdit) reshard() error {
	e.files, e.drop = map[string][]byte{}, nil
	var want [4]bool
	for _, kind := range layout.ShardKinds {
		want[kind] = e.wantShards(kind)
	}
	// A tag in the file finds its manifest in the file: tags are sharded
	// when manifests are (a tag shard carries its manifests' media types
	// and sizes).
	want[layout.TagKind] = want[layout.TagKind] || want[layout.ManifestKind]
	for _, kind := range layout.ShardKinds {
		old := e.r.Shards(kind)
		keys := e.r.Keys(kind)
		if !want[kind] {
			// In the file (read whole, if it was sharded: its maps hold
			// every entry).
			for _, ref := range old {
				e.drop = append(e.drop, ref.ID)
			}
			e.r.SetShards(kind, nil)
			continue
		}
		var refs []layout.ShardRef
		add := func(part []string) error {
			s, err := e.r.ShardOf(kind, part, e.known)
			if err != nil {
				return err
			}
			data, id, err := layout.EncodeRepositoryShard(s)
			if err != nil {
				return fmt.Errorf("repository %s: %w", e.name, err)
			}
			refs = append(refs, layout.ShardRef{ID: id, First: part[0], Last: part[len(part)-1], Count: len(part)})
			if !slices.ContainsFunc(old, func(r layout.ShardRef) bool { return r.ID == id }) {
				e.files[id] = data
			}
			return nil
		}
		if len(old) == 0 {
			for _, part := range splitKeys(keys, layout.ShardMax) {
				if err := add(part); err != nil {
					return err
				}
			}
			e.r.SetShards(kind, refs)
			continue
		}
		assigned := make([][]string, len(old))
		for _, k := range keys {
			i := layout.ShardFor(old, k)
			if !e.read[kind][i] {
				return fmt.Errorf("repository %s: internal error: %s %q belongs in a shard not read", e.name, kind, k)
			}
			assigned[i] = append(assigned[i], k)
		}
		for i, ref := range old {
			if !e.read[kind][i] {
				refs = append(refs, ref)
				continue
			}
			for _, part := range splitKeys(assigned[i], layout.ShardMax) {
				if err := add(part); err != nil {
					return err
				}
			}
		}
		e.r.SetShards(kind, refs)
		for _, ref := range old {
			if !slices.ContainsFunc(refs, func(r layout.ShardRef) bool { return r.ID == ref.ID }) {
				e.drop = append(e.drop, ref.ID)
			}
		}
	}
	return nil
}

// wantShards reports whether kind is to be kept in shards after the edit:
// a kind in the file is sharded once it has more than layout.InlineMax
// entries; a sharded one goes back into the file when it was read whole
// and has half of that or fewer (so that a repository near the limit does
// not go back and forth).
func (e *repoEdit) wantShards(kind layout.ShardKind) bool {
	n := len(e.r.Keys(kind))
	if !e.r.Sharded(kind) {
		return n > layout.InlineMax
	}
	return !e.all || n > layout.InlineMax/2
}

// splitKeys cuts sorted keys into parts of at most size: none for no keys,
// one if they fit, else the fewest parts of equal length.
func splitKeys(keys []string, size int) [][]string {
	if len(keys) == 0 {
		return nil
	}
	if len(keys) <= size {
		return [][]string{keys}
	}
	k := (len(keys) + size - 1) / size
	out := make([][]string, 0, k)
	for j := range k {
		out = append(out, keys[j*len(keys)/k:(j+1)*len(keys)/k])
	}
	return out
}

// encode returns the repository file's new bytes and whether it or a
// shard changed.
func (e *repoEdit) encode() ([]byte, bool, error) {
	if err := e.reshard(); err != nil {
		return nil, false, err
	}
	b, err := e.r.Encode()
	if err != nil {
		return nil, false, fmt.Errorf("repository %s: %w", e.name, err)
	}
	return b, !bytes.Equal(b, e.old) || len(e.files) > 0, nil
}

// commit writes what encode found changed: the new shard files, then the
// repository file (the commit point), then it removes the shard files no
// longer named. A shard file left by a writer killed before the repository
// file names it, or after, is gc's.
func (p *Publisher) commit(ctx context.Context, e *repoEdit, b []byte) error {
	for _, id := range slices.Sorted(mapsKeys(e.files)) {
		data := e.files[id]
		key, err := layout.RepositoryShardKey(e.name, id)
		if err != nil {
			return err
		}
		want := Want{Digest: digest.NewDigestFromEncoded(digest.SHA256, id), Size: int64(len(data))}
		if err := p.sink.Put(ctx, key, bytes.NewReader(data), want); err != nil {
			return fmt.Errorf("repository %s: %w", e.name, err)
		}
	}
	if err := p.putFile(ctx, e.key, b, e.version); err != nil {
		return err
	}
	p.log.DebugContext(ctx, "write", "key", e.key, "shards", len(e.files))
	if p.swaps() {
		// Another writer may have read the file this one replaced and
		// still read the shards it named: gc removes them.
		return nil
	}
	var errs []error
	for _, id := range e.drop {
		key, err := layout.RepositoryShardKey(e.name, id)
		if err == nil {
			err = p.sink.Delete(ctx, key)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("repository %s is written; removing the shards it no longer names (gc will): %w", e.name, err)
	}
	return nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// loadRepository reads the repository file of name and every shard it
// names: the whole repository, checked whole. A repository that does not
// exist is (nil, nil).
func loadRepository(ctx context.Context, sink Sink, name string) (*layout.Repository, error) {
	r, _, err := readRepository(ctx, sink, name)
	if err != nil || r == nil {
		return r, err
	}
	if !r.HasShards() {
		return r, nil
	}
	err = r.LoadShards(func(id string) ([]byte, error) {
		key, err := layout.RepositoryShardKey(name, id)
		if err != nil {
			return nil, err
		}
		return sink.ReadFile(ctx, key, layout.MaxRepositoryFileSize)
	})
	return r, err
}

// touchOf is what publishing the image of pl to tags reads and writes in a
// repository: the tags, the image's manifests and blobs, the subjects of
// its referrers. An on_demand publish that leaves blobs upstream reads the
// whole repository: it checks that no blob of another upstream is lost.
func touchOf(pl *plan, tags []string) *touchKeys {
	if len(pl.lazy) > 0 {
		return nil
	}
	t := &touchKeys{}
	t.add(layout.TagKind, tags...)
	for _, m := range pl.manifests {
		t.add(layout.ManifestKind, string(m.desc.Digest))
		if m.subject != nil {
			t.add(layout.ReferrerKind, string(m.subject.Digest))
		}
	}
	for _, b := range pl.blobs {
		t.add(layout.BlobKind, string(b.Digest))
	}
	return t
}

// Reshard rewrites the repository files of names (every repository in the
// catalog when names is empty) in the form this version writes: a kind of
// more than layout.InlineMax entries in shards, one of half that or fewer
// back in the file. It reads each repository whole, under its lock, and
// writes only those whose form changes. A publish into a repository does
// the same for the kinds it adds to; Reshard is for a tree written before
// shards existed, or by another writer. It returns the names rewritten.
func (p *Publisher) Reshard(ctx context.Context, names ...string) ([]string, error) {
	if err := CheckTree(ctx, p.sink); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		all, err := CatalogNames(ctx, p.sink)
		if err != nil {
			return nil, err
		}
		names = all
	}
	var rewritten []string
	for _, name := range names {
		if err := layout.ValidateRepository(name); err != nil {
			return rewritten, err
		}
		changed, err := p.editRepository(ctx, name, false, nil, func(*layout.Repository) error { return nil })
		if err != nil {
			return rewritten, fmt.Errorf("repository %s: %w", name, err)
		}
		if changed {
			rewritten = append(rewritten, name)
		}
	}
	return rewritten, nil
}
