package publish_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tagTargets returns the targets app:<prefix>NNNNN for i in [from, to).
func tagTargets(repo, prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s:%s%05d", repo, prefix, i))
	}
	return out
}

// shardFiles lists the shard files of repository name, by id.
func shardFiles(t *testing.T, root, name string) []string {
	t.Helper()
	dir, err := layout.RepositoryShardsDirKey(name)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(layout.Root(root).Path(dir))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, strings.TrimSuffix(e.Name(), ".json"))
	}
	return ids
}

// entryOf reads the repository file of name alone, without its shards.
func entryOf(t *testing.T, root, name string) *layout.Repository {
	t.Helper()
	key, err := layout.RepositoryKey(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(layout.Root(root).Path(key))
	if err != nil {
		t.Fatal(err)
	}
	r, err := layout.DecodeRepositoryFile(name, b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// changedFiles is what changed between two snapshots of a tree, without
// the change counter: keys new, gone and rewritten.
func changedFiles(before, after map[string]string) (added, removed, changed []string) {
	for k, v := range after {
		if k == filepath.FromSlash(layout.ChangesKey()) || strings.HasPrefix(v, "dir") {
			continue
		}
		old, ok := before[k]
		switch {
		case !ok:
			added = append(added, filepath.ToSlash(k))
		case old != v:
			changed = append(changed, filepath.ToSlash(k))
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok && !strings.HasPrefix(v, "dir") {
			removed = append(removed, filepath.ToSlash(k))
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}

func TestShardedTags(t *testing.T) {
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 2)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), tagTargets("app", "b", 0, 2500)...)

	e := entryOf(t, root, "app")
	if e.SchemaVersion != layout.ShardedSchemaVersion || len(e.TagShards) != 3 || len(e.Tags) != 0 || e.Sharded(layout.ManifestKind) {
		t.Fatalf("2500 tags: version %d, %d tag shards, %d tags in the file", e.SchemaVersion, len(e.TagShards), len(e.Tags))
	}
	for _, ref := range e.TagShards {
		if ref.Count < 800 || ref.Count > layout.ShardMax {
			t.Errorf("shard %s of %d tags", ref.ID, ref.Count)
		}
	}
	if got := shardFiles(t, root, "app"); len(got) != 3 {
		t.Fatalf("shard files %v", got)
	}
	if r := readRepo(t, root, "app"); len(r.Tags) != 2500 || r.Tags["b01234"] != digests[0] {
		t.Fatalf("%d tags read back", len(r.Tags))
	}
	assertConsistent(t, root)
	assertVerifies(t, root, true)

	// One more tag, of a new image: the repository file, one shard (the
	// last, replaced), and the new image's content.
	before := snapshot(t, root, false)
	mustPublish(t, root, spec(1), "app:zz-new")
	added, removed, changed := changedFiles(before, snapshot(t, root, false))
	var addedShards, otherAdded []string
	for _, k := range added {
		if _, _, ok := layout.RepositoryShardFromKey(k); ok {
			addedShards = append(addedShards, k)
		} else if !strings.HasPrefix(k, "blobs/") {
			otherAdded = append(otherAdded, k)
		}
	}
	if len(addedShards) != 1 || len(otherAdded) != 0 || len(removed) != 1 || !slices.Equal(changed, []string{"repositories/app.json"}) {
		t.Fatalf("publishing one tag: added %v, removed %v, changed %v", added, removed, changed)
	}
	if _, _, ok := layout.RepositoryShardFromKey(removed[0]); !ok {
		t.Fatalf("removed %s", removed[0])
	}
	// The untouched shards kept their ids.
	after := entryOf(t, root, "app")
	if after.TagShards[0].ID != e.TagShards[0].ID || after.TagShards[1].ID != e.TagShards[1].ID || after.TagShards[2].ID == e.TagShards[2].ID {
		t.Errorf("shards %v, then %v", e.TagShards, after.TagShards)
	}

	// Tag moves a tag within one shard.
	ctx := context.Background()
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	before = snapshot(t, root, false)
	if _, err := p.Tag(ctx, "app", "zz-new", "b00010"); err != nil {
		t.Fatal(err)
	}
	added, removed, changed = changedFiles(before, snapshot(t, root, false))
	if len(added) != 1 || len(removed) != 1 || len(changed) != 1 {
		t.Fatalf("tagging: added %v, removed %v, changed %v", added, removed, changed)
	}
	if r := readRepo(t, root, "app"); r.Tags["b00010"] != digests[1] || r.Tags["b00011"] != digests[0] || len(r.Tags) != 2501 {
		t.Fatalf("after tagging: %d tags", len(r.Tags))
	}

	// Removing most tags empties shards: their files go.
	var gone []string
	for i := range 2400 {
		gone = append(gone, fmt.Sprintf("b%05d", i))
	}
	if _, _, err := p.RemoveTags(ctx, "app", gone...); err != nil {
		t.Fatal(err)
	}
	r := readRepo(t, root, "app")
	if len(r.Tags) != 101 {
		t.Fatalf("%d tags left", len(r.Tags))
	}
	e = entryOf(t, root, "app")
	if got := shardFiles(t, root, "app"); len(got) != len(e.TagShards) {
		t.Errorf("%d shard files for %d shards", len(got), len(e.TagShards))
	}
	assertConsistent(t, root)
	assertVerifies(t, root, false)
	if res := runGC(t, root, publish.GCOptions{}); len(res.Deleted) != 0 {
		t.Errorf("gc deleted %v", deletedKeys(res))
	}
}

func TestShardSplits(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 1)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), tagTargets("app", "a", 0, 1001)...)
	e := entryOf(t, root, "app")
	if len(e.TagShards) != 2 {
		t.Fatalf("1001 tags: %d shards", len(e.TagShards))
	}
	// Tags that all fall into the first shard grow it past the limit: it
	// is split, the other stays.
	mustPublish(t, root, spec(0), tagTargets("app", "a0", 0, 600)...) // a000000…a000599 sort first
	after := entryOf(t, root, "app")
	if len(after.TagShards) != 3 || after.TagShards[2].ID != e.TagShards[1].ID {
		t.Fatalf("shards %+v, then %+v", e.TagShards, after.TagShards)
	}
	total := 0
	for _, ref := range after.TagShards {
		total += ref.Count
		if ref.Count > layout.ShardMax {
			t.Errorf("shard of %d tags", ref.Count)
		}
	}
	if total != 1601 || len(readRepo(t, root, "app").Tags) != 1601 {
		t.Fatalf("%d tags in the shards", total)
	}
	assertConsistent(t, root)
}

// TestShardedManifests publishes an index of 1,200 images: manifests and
// blobs are sharded, and tags with them.
func TestShardedManifests(t *testing.T) {
	l := newRawLayout(t)
	var children []ocispec.Descriptor
	for i := range 1200 {
		m, _, _ := rawImage(l, fmt.Sprint("img", i), nil)
		m.Platform = &ocispec.Platform{Architecture: "amd64", OS: "linux", Variant: fmt.Sprint("v", i)}
		children = append(children, m)
	}
	idx := l.json(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: children,
	})
	src := l.index(withRef(idx, "all"))
	root := filepath.Join(t.TempDir(), "tree")
	mustPublish(t, root, "oci:"+src+":all", "app:all", "app:latest")
	e := entryOf(t, root, "app")
	if len(e.ManifestShards) != 2 || len(e.BlobShards) != 3 || len(e.TagShards) != 1 || len(e.Tags)+len(e.Manifests)+len(e.Blobs) != 0 {
		t.Fatalf("%d manifest shards, %d blob shards, %d tag shards", len(e.ManifestShards), len(e.BlobShards), len(e.TagShards))
	}
	r := readRepo(t, root, "app")
	if len(r.Manifests) != 1201 || len(r.Blobs) != 2400 || r.Tags["all"] != idx.Digest {
		t.Fatalf("read back %d manifests, %d blobs, tags %v", len(r.Manifests), len(r.Blobs), r.Tags)
	}
	assertConsistent(t, root)
	rep := assertVerifies(t, root, true)
	if rep.Manifests != 1201 || rep.Blobs != 2400 {
		t.Errorf("verify counted %d manifests and %d blobs", rep.Manifests, rep.Blobs)
	}
	if res := runGC(t, root, publish.GCOptions{}); len(res.Deleted) != 0 {
		t.Errorf("gc deleted %v", deletedKeys(res))
	}
	// Untagging the index leaves everything listed (manifests stay until
	// removed), and the tag shard holds one tag.
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	if _, _, err := p.RemoveTags(context.Background(), "app", "latest"); err != nil {
		t.Fatal(err)
	}
	assertConsistent(t, root)
}

// TestShardConversion: a repository file of schema version 1 with more
// entries than a file keeps (written before shards existed) is sharded
// by the next publish to it, and a whole read that finds few entries puts
// them back into the file.
func TestShardConversion(t *testing.T) {
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 1)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), "app:first")
	r := readRepo(t, root, "app")
	for i := range 1500 {
		r.Tags[fmt.Sprintf("old%05d", i)] = digests[0]
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"schemaVersion": 1`) {
		t.Fatal("not a version 1 file")
	}
	key, _ := layout.RepositoryKey("app")
	if err := os.WriteFile(layout.Root(root).Path(key), b, 0o644); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, root, spec(0), "app:second")
	e := entryOf(t, root, "app")
	if e.SchemaVersion != layout.ShardedSchemaVersion || len(e.TagShards) != 2 {
		t.Fatalf("after a publish: version %d, %d tag shards", e.SchemaVersion, len(e.TagShards))
	}
	if got := readRepo(t, root, "app"); len(got.Tags) != 1502 {
		t.Fatalf("%d tags", len(got.Tags))
	}

	// A publish reads only the shards it touches: a repository that
	// shrank stays sharded through it. Removing tags reads the whole
	// repository (it removes what no tag names any more): one of 500 or
	// fewer tags goes back into the file.
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	remove := func(from, to int) {
		t.Helper()
		var gone []string
		for i := from; i < to; i++ {
			gone = append(gone, fmt.Sprintf("old%05d", i))
		}
		if _, _, err := p.RemoveTags(context.Background(), "app", gone...); err != nil {
			t.Fatal(err)
		}
	}
	remove(0, 1000) // 502 left
	if e := entryOf(t, root, "app"); !e.Sharded(layout.TagKind) {
		t.Fatal("502 tags: unsharded")
	}
	remove(1000, 1400) // 102 left
	mustPublish(t, root, spec(0), "app:third")
	e = entryOf(t, root, "app")
	if e.SchemaVersion != layout.RepositorySchemaVersion || e.HasShards() || len(e.Tags) != 103 {
		t.Fatalf("after removing tags: version %d, shards %v, %d tags", e.SchemaVersion, e.HasShards(), len(e.Tags))
	}
	if got := shardFiles(t, root, "app"); len(got) != 0 {
		t.Errorf("shard files left: %v", got)
	}
	assertConsistent(t, root)
}

// TestShardGC: a shard file no repository file names (a writer died
// between writing it and the repository file, or before removing it) is
// reported by verify and deleted by gc after the grace period; named
// shards are kept.
func TestShardGC(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 1)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), tagTargets("app", "t", 0, 1500)...)
	named := shardFiles(t, root, "app")
	stray := layout.Root(root).Path("repositories/app/_shards/" + strings.Repeat("0", 64) + ".json")
	if err := os.WriteFile(stray, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := publish.VerifyTree(context.Background(), publish.NewFSSink(layout.Root(root)), publish.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UnnamedRepositoryShards != 1 || len(rep.Problems) != 0 {
		t.Fatalf("verify: %d unnamed shards, problems %v", rep.UnnamedRepositoryShards, rep.Problems)
	}
	if res := runGC(t, root, publish.GCOptions{Grace: time.Hour}); len(res.Deleted) != 0 {
		t.Fatalf("gc deleted a new file: %v", deletedKeys(res))
	}
	backdateAll(t, root, 2*time.Hour)
	res := runGC(t, root, publish.GCOptions{Grace: time.Hour})
	if got := deletedKeys(res); len(got) != 1 || !strings.HasSuffix(got[0], strings.Repeat("0", 64)+".json") || res.Deleted[0].Kind != publish.GCRepositoryShard {
		t.Fatalf("gc deleted %v", got)
	}
	if got := shardFiles(t, root, "app"); !slices.Equal(got, named) {
		t.Fatalf("shards %v, then %v", named, got)
	}
	assertConsistent(t, root)

	// A named shard that is gone, or altered, is a problem.
	if err := os.Remove(layout.Root(root).Path("repositories/app/_shards/" + named[0] + ".json")); err != nil {
		t.Fatal(err)
	}
	rep, err = publish.VerifyTree(context.Background(), publish.NewFSSink(layout.Root(root)), publish.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || !strings.Contains(fmt.Sprint(rep.Problems), named[0]) {
		t.Fatalf("verify of a tree missing a shard: %v", rep.Problems)
	}
	if _, err := publish.New(publish.NewFSSink(layout.Root(root))).GC(context.Background(), publish.GCOptions{}); err == nil {
		t.Fatal("gc of a tree missing a shard: no error")
	}
}

// TestShardedPublishRefusesBrokenShard: a publish that must read a shard
// that is gone or altered fails with an error naming it, and leaves the
// tree as it was.
func TestShardedPublishRefusesBrokenShard(t *testing.T) {
	for _, tc := range []struct {
		desc, want string
		breakIt    func(p string) error
	}{
		{"gone", "not found", os.Remove},
		{"altered", "does not match its id", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, append(b, ' '), 0o644)
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			spec, _ := imageSet(t, filepath.Join(dir, "src"), 1)
			root := filepath.Join(dir, "tree")
			mustPublish(t, root, spec(0), tagTargets("app", "t", 0, 1500)...)
			e := entryOf(t, root, "app")
			last := e.TagShards[len(e.TagShards)-1]
			key, _ := layout.RepositoryShardKey("app", last.ID)
			if err := tc.breakIt(layout.Root(root).Path(key)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, root, false)
			_, err := publishTo(t, root, spec(0), "app:zzz")
			if err == nil || !strings.Contains(err.Error(), last.ID) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("publish into a broken shard: %v", err)
			}
			if d := diffSnapshots(withoutCounter(before), withoutCounter(snapshot(t, root, false))); len(d) > 0 {
				t.Errorf("a refused publish changed the tree:\n%s", strings.Join(d, "\n"))
			}
			// A publish that reads another shard is not concerned.
			mustPublish(t, root, spec(0), "app:a")
		})
	}
}
