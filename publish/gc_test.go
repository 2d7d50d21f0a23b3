package publish_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageContent returns the keys of everything an image is stored as: its
// manifest, config and layers.
func imageContent(t *testing.T, img v1.Image) []string {
	t.Helper()
	ds := []digest.Digest{mustDigest(t, img)}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ds = append(ds, digest.Digest(cfg.String()))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		ds = append(ds, mustDigest(t, l))
	}
	var keys []string
	for _, d := range ds {
		keys = append(keys, blobKey(t, d))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func blobKey(t *testing.T, d digest.Digest) string {
	t.Helper()
	k, err := layout.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// backdate sets the modification time of keys under root to age ago.
func backdate(t *testing.T, root string, age time.Duration, keys ...string) {
	t.Helper()
	when := time.Now().Add(-age)
	for _, k := range keys {
		if err := os.Chtimes(layout.Root(root).Path(k), when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// backdateAll backdates every file of the tree.
func backdateAll(t *testing.T, root string, age time.Duration) {
	t.Helper()
	var keys []string
	err := publish.NewFSSink(layout.Root(root)).List(context.Background(), "", func(key string, _ publish.Info) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	backdate(t, root, age, keys...)
}

// gcTree publishes image a as one:1 and image b (a plus a layer) as
// two:1, then removes two: b's manifest, config and extra layer are
// garbage, its other layers are a's and still referenced.
func gcTree(t *testing.T) (root string, garbage []string) {
	t.Helper()
	dir := t.TempDir()
	a := ociImage(t, 7, 2)
	extra, err := random.Layer(300, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mutate.AppendLayers(a, extra)
	if err != nil {
		t.Fatal(err)
	}
	src := writeLayout(t, filepath.Join(dir, "src"), entry{item: a, ref: "a"}, entry{item: b, ref: "b"})
	root = filepath.Join(dir, "tree")
	mustPublish(t, root, "oci:"+src+":a", "one:1")
	mustPublish(t, root, "oci:"+src+":b", "two:1", "team/three:1")
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	if _, err := p.RemoveRepositories(context.Background(), "two", "team/three"); err != nil {
		t.Fatal(err)
	}
	keep := imageContent(t, a)
	for _, k := range imageContent(t, b) {
		if !slices.Contains(keep, k) {
			garbage = append(garbage, k)
		}
	}
	if len(garbage) != 3 {
		t.Fatalf("garbage %v: want 3 keys", garbage)
	}
	return root, garbage
}

func deletedKeys(res *publish.GCResult) []string {
	var keys []string
	for _, it := range res.Deleted {
		keys = append(keys, it.Key)
	}
	return keys
}

func sizeOf(t *testing.T, root string, keys ...string) int64 {
	t.Helper()
	var n int64
	for _, k := range keys {
		fi, err := os.Stat(layout.Root(root).Path(k))
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func runGC(t *testing.T, root string, opts publish.GCOptions) *publish.GCResult {
	t.Helper()
	res, err := publish.New(publish.NewFSSink(layout.Root(root))).GC(context.Background(), opts)
	if err != nil {
		t.Fatalf("gc: %v", err)
	}
	return res
}

// assertVerifies runs VerifyTree and fails on any problem.
func assertVerifies(t *testing.T, root string, deep bool) *publish.VerifyReport {
	t.Helper()
	rep, err := publish.VerifyTree(context.Background(), publish.NewFSSink(layout.Root(root)), publish.VerifyOptions{Deep: deep})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("verify: %s", p)
	}
	return rep
}

func TestGCDeletesUnreferencedBlobs(t *testing.T) {
	root, garbage := gcTree(t)
	backdateAll(t, root, 2*time.Hour)
	want := sizeOf(t, root, garbage...)
	res := runGC(t, root, publish.GCOptions{Grace: time.Hour})
	if got := deletedKeys(res); !slices.Equal(got, garbage) {
		t.Errorf("deleted %v, want %v", got, garbage)
	}
	for _, it := range res.Deleted {
		if it.Kind != publish.GCBlob {
			t.Errorf("%s: kind %q", it.Key, it.Kind)
		}
	}
	if res.Files != 3 || res.Bytes != want || res.DryRun || res.Repositories != 1 || res.Young != 0 {
		t.Errorf("result %+v: want 3 files, %d bytes, 1 repository", res, want)
	}
	for _, k := range garbage {
		if _, err := os.Stat(layout.Root(root).Path(k)); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", k, err)
		}
	}
	assertConsistent(t, root)
	if rep := assertVerifies(t, root, true); rep.Unreferenced != 0 {
		t.Errorf("verify counts %d unreferenced blobs after gc", rep.Unreferenced)
	}
	// A second gc finds nothing to do.
	if res := runGC(t, root, publish.GCOptions{Grace: time.Hour}); res.Files != 0 {
		t.Errorf("second gc deleted %v", deletedKeys(res))
	}
}

func TestGCGrace(t *testing.T) {
	root, garbage := gcTree(t)
	// Written just now: an hour of grace keeps them.
	res := runGC(t, root, publish.GCOptions{Grace: time.Hour})
	if res.Files != 0 || res.Young != 3 || res.YoungBytes != sizeOf(t, root, garbage...) {
		t.Errorf("fresh garbage: %+v; want nothing deleted, 3 young", res)
	}
	// Ten minutes old: kept by an hour, deleted by five minutes.
	backdateAll(t, root, 10*time.Minute)
	if res := runGC(t, root, publish.GCOptions{Grace: time.Hour}); res.Files != 0 {
		t.Errorf("10 minutes old, 1h grace: deleted %v", deletedKeys(res))
	}
	// One of them touched since: kept.
	backdate(t, root, 0, garbage[0])
	res = runGC(t, root, publish.GCOptions{Grace: 5 * time.Minute})
	if got := deletedKeys(res); !slices.Equal(got, garbage[1:]) || res.Young != 1 {
		t.Errorf("5m grace: deleted %v (young %d), want %v", got, res.Young, garbage[1:])
	}
	// Grace 0 deletes what is unreferenced now.
	if res := runGC(t, root, publish.GCOptions{}); !slices.Equal(deletedKeys(res), garbage[:1]) {
		t.Errorf("no grace: deleted %v, want %v", deletedKeys(res), garbage[:1])
	}
	if _, err := publish.New(publish.NewFSSink(layout.Root(root))).GC(context.Background(), publish.GCOptions{Grace: -time.Second}); err == nil {
		t.Error("negative grace accepted")
	}
	assertVerifies(t, root, true)
}

func TestGCDryRun(t *testing.T) {
	root, garbage := gcTree(t)
	backdateAll(t, root, 2*time.Hour)
	before := snapshot(t, root, true)
	res := runGC(t, root, publish.GCOptions{Grace: time.Hour, DryRun: true})
	if got := deletedKeys(res); !res.DryRun || !slices.Equal(got, garbage) || res.Bytes != sizeOf(t, root, garbage...) {
		t.Errorf("dry run: %+v, want %v", res, garbage)
	}
	if d := diffSnapshots(before, snapshot(t, root, true)); len(d) > 0 {
		t.Errorf("dry run changed the tree:\n%s", strings.Join(d, "\n"))
	}
}

// TestGCTemporaryFilesAndShards: writers' temporary files anywhere in the
// tree and catalog shards the index does not name are deleted once older
// than the grace period; the writer's private .heron/ folder is left alone.
func TestGCTemporaryFilesAndShards(t *testing.T) {
	root, garbage := gcTree(t)
	write := func(key string) string {
		p := layout.Root(root).Path(key)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
		return key
	}
	stale := []string{
		write(".heron-tmp-1"),
		write("blobs/sha256/.heron-tmp-2"),
		write("repositories/team/.heron-tmp-3"),
		write("catalog/.heron-tmp-4"),
		write("catalog/shards/" + strings.Repeat("0", 64) + ".json"),
	}
	other := []string{
		write(".heron/locks/.heron-tmp-5"),
		write("blobs/sha256/not-a-blob"),
		write("catalog/shards/not-a-shard.json"),
	}
	backdateAll(t, root, 2*time.Hour)
	fresh := []string{
		write("blobs/sha256/.heron-tmp-6"),
		write("catalog/shards/" + strings.Repeat("1", 64) + ".json"),
	}
	res := runGC(t, root, publish.GCOptions{Grace: time.Hour})
	want := slices.Sorted(slices.Values(append(slices.Clone(stale), garbage...)))
	if got := deletedKeys(res); !slices.Equal(got, want) {
		t.Errorf("deleted %v\nwant %v", got, want)
	}
	kinds := map[string]string{}
	for _, it := range res.Deleted {
		kinds[it.Key] = it.Kind
	}
	if kinds[stale[1]] != publish.GCTemporary || kinds[stale[4]] != publish.GCCatalogShard || kinds[garbage[0]] != publish.GCBlob {
		t.Errorf("kinds %v", kinds)
	}
	for _, k := range append(other, fresh...) {
		if _, err := os.Stat(layout.Root(root).Path(k)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if res.Young != 2 {
		t.Errorf("young %d, want 2", res.Young)
	}
	// The shards the index names are intact.
	if names, err := publish.CatalogNames(context.Background(), publish.NewFSSink(layout.Root(root))); err != nil || !slices.Equal(names, []string{"one"}) {
		t.Errorf("catalog %v, %v", names, err)
	}
}

// TestGCRefusals: gc never sweeps after a partial mark.
func TestGCRefusals(t *testing.T) {
	for _, tc := range []struct {
		desc string
		key  string
		data string
		want string
	}{
		{"malformed repository file", "repositories/one.json", `{"schemaVersion": 1, "name": "one", "tags": {`, "repositories/one.json"},
		{"repository file of another version", "repositories/one.json", `{"schemaVersion": 3}`, "version 3 is not supported"},
		{"invalid repository file", "repositories/x.json", `{"schemaVersion": 1, "name": "x", "tags": {"t": "sha256:` + strings.Repeat("0", 64) + `"}}`, "not listed"},
		{"unreadable catalog", layout.CatalogIndexKey(), `{`, "catalog"},
		{"layout version", layout.LayoutFileKey(), `{"layoutVersion": 2}`, "layout version 2"},
		{"not a tree", layout.LayoutFileKey(), "", "not a heron tree"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root, _ := gcTree(t)
			p := layout.Root(root).Path(tc.key)
			var err error
			if tc.data == "" {
				err = os.Remove(p)
			} else {
				err = os.WriteFile(p, []byte(tc.data), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			backdateAll(t, root, 2*time.Hour)
			before := snapshot(t, root, true)
			_, err = publish.New(publish.NewFSSink(layout.Root(root))).GC(context.Background(), publish.GCOptions{Grace: time.Hour})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
			if d := diffSnapshots(before, snapshot(t, root, true)); len(d) > 0 {
				t.Errorf("gc changed the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestFSSinkDeleteIfOlder(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := publish.NewFSSink(layout.Root(root))
	put := func(key string) {
		if err := s.Put(ctx, key, strings.NewReader("x"), publish.Want{}); err != nil {
			t.Fatal(err)
		}
	}
	put("a/old")
	put("a/new")
	backdate(t, root, time.Hour, "a/old")
	cutoff := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		key  string
		want bool
	}{{"a/new", false}, {"a/old", true}, {"a/old", false}, {"a/missing", false}} {
		got, err := s.DeleteIfOlder(ctx, tc.key, cutoff)
		if err != nil || got != tc.want {
			t.Errorf("DeleteIfOlder(%s) = %v, %v; want %v", tc.key, got, err, tc.want)
		}
	}
	if _, err := s.DeleteIfOlder(ctx, "a", cutoff); err == nil {
		t.Error("DeleteIfOlder of a folder succeeded")
	}
	// Touched: kept.
	put("b")
	backdate(t, root, time.Hour, "b")
	if err := s.Touch(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.DeleteIfOlder(ctx, "b", cutoff); got || err != nil {
		t.Errorf("touched file: %v, %v", got, err)
	}
	if err := s.Touch(ctx, "nothing"); !errors.Is(err, publish.ErrNotFound) {
		t.Errorf("Touch of a missing key: %v", err)
	}
	if d := leftovers(t, root); len(d) > 0 {
		t.Errorf("left %v", d)
	}
	var keys []string
	if err := s.List(ctx, "", func(key string, info publish.Info) error {
		keys = append(keys, fmt.Sprintf("%s:%d", key, info.Size))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"a/new:1", "b:1"}) {
		t.Errorf("List = %v", keys)
	}
	if err := s.List(ctx, "missing", func(string, publish.Info) error { return errors.New("called") }); err != nil {
		t.Errorf("List of a missing prefix: %v", err)
	}
}

// slowSource is a source whose blobs take a while to read, so that a
// publish spends time between finding content present and writing its
// repository file: the window a racing gc could strike in. Manifests,
// read before publish looks at the tree, are read at once.
type slowSource struct{ source.Source }

func (s slowSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != ocispec.MediaTypeImageIndex {
		time.Sleep(10 * time.Millisecond)
	}
	return s.Source.Fetch(ctx, d)
}

func (s slowSource) Stat(ctx context.Context, d ocispec.Descriptor) (int64, error) {
	time.Sleep(5 * time.Millisecond)
	return s.Source.Stat(ctx, d)
}

func publishSlowly(ctx context.Context, p *publish.Publisher, spec string, target publish.Target) (*publish.Result, error) {
	src, err := source.Parse(spec)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return p.Publish(ctx, slowSource{src}, []publish.Target{target})
}

// TestGCRacingPublish runs gc in a loop, with a short grace period, while
// a publisher removes repositories whose images share a layer and
// publishes them again at once. Removed content is aged past the grace
// period and its own layer deleted, so that the next publish of the image
// finds the rest present, old and unreferenced, then spends a while
// fetching the layer (see slowSource): exactly when a gc may delete what
// it found. Every repository must list only content that exists, after
// each publish and at the end. (Without publish's touches, this fails
// within a few publishes.)
func TestGCRacingPublish(t *testing.T) {
	dir := t.TempDir()
	const k = 4
	base := ociImage(t, 42, 1)
	var entries []entry
	var imgs []v1.Image
	var uniqueLayer []string
	for i := range k {
		l, err := random.Layer(500+int64(i), types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, l)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
		uniqueLayer = append(uniqueLayer, blobKey(t, mustDigest(t, l)))
		entries = append(entries, entry{item: img, ref: fmt.Sprintf("img%d", i)})
	}
	src := writeLayout(t, filepath.Join(dir, "src"), entries...)
	root := filepath.Join(dir, "tree")
	ctx := context.Background()
	sink := publish.NewFSSink(layout.Root(root))
	p := publish.New(sink)
	mustPublish(t, root, "oci:"+src+":img0", "app0:seed")

	// checkListed reports content repository name lists that is missing.
	checkListed := func(name string) error {
		r, err := publish.ReadRepository(ctx, sink, name)
		if err != nil {
			return err
		}
		for d := range r.Manifests {
			if _, err := sink.Stat(ctx, blobKey(t, d)); err != nil {
				return fmt.Errorf("%s lists manifest %s: %w", name, d, err)
			}
		}
		for d := range r.Blobs {
			if _, err := sink.Stat(ctx, blobKey(t, d)); err != nil {
				return fmt.Errorf("%s lists blob %s: %w", name, d, err)
			}
		}
		return nil
	}

	const grace = 2 * time.Second
	var (
		stop     atomic.Bool
		deleted  atomic.Int64
		gcRuns   atomic.Int64
		gcErr    error
		wg       sync.WaitGroup
		retries  int
		iters    int
		deadline = time.Now().Add(1500 * time.Millisecond)
	)
	wg.Go(func() {
		for !stop.Load() {
			res, err := p.GC(ctx, publish.GCOptions{Grace: grace})
			if err != nil {
				gcErr = err
				return
			}
			deleted.Add(int64(res.Files))
			gcRuns.Add(1)
		}
	})
	var pubErr error
	for i := 1; pubErr == nil && (time.Now().Before(deadline) || iters < 3*k); i++ {
		iters++
		n := i % k
		name := fmt.Sprintf("app%d", n)
		for attempt := 0; ; attempt++ {
			_, err := publishSlowly(ctx, p, fmt.Sprintf("oci:%s:img%d", src, n), publish.Target{Repository: name, Tag: fmt.Sprintf("t%d", i)})
			// The one failure a racing gc may cause: content deleted
			// in the milliseconds between the two touches. Nothing
			// was written; publishing again is the answer.
			if errors.Is(err, publish.ErrContentDeleted) && attempt < 5 {
				retries++
				continue
			}
			if err != nil {
				pubErr = fmt.Errorf("publish %s: %w", name, err)
			}
			break
		}
		if pubErr != nil {
			break
		}
		if pubErr = checkListed(name); pubErr != nil {
			break
		}
		// Remove the next repository, and age its content, the shared
		// base layer included, past the grace period: it is published
		// again at the next iteration.
		next := fmt.Sprintf("app%d", (i+1)%k)
		if _, err := publish.ReadRepository(ctx, sink, next); err == nil {
			if pubErr = checkListed(next); pubErr != nil {
				break
			}
			if _, err := p.RemoveRepositories(ctx, next); err != nil {
				pubErr = err
				break
			}
		}
		for _, key := range imageContent(t, imgs[(i+1)%k]) {
			when := time.Now().Add(-time.Hour)
			if err := os.Chtimes(layout.Root(root).Path(key), when, when); err != nil && !os.IsNotExist(err) {
				pubErr = err
			}
		}
		// Its own layer goes, as a gc would delete it: publishing the
		// image again then fetches it (slowly) while the rest, found
		// present, old and unreferenced, is at gc's mercy.
		if err := os.Remove(layout.Root(root).Path(uniqueLayer[(i+1)%k])); err != nil && !os.IsNotExist(err) {
			pubErr = err
		}
	}
	stop.Store(true)
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	if gcErr != nil {
		t.Fatalf("gc: %v", gcErr)
	}
	t.Logf("%d publishes, %d gc runs deleted %d files, %d publishes retried", iters, gcRuns.Load(), deleted.Load(), retries)
	if deleted.Load() == 0 {
		t.Error("gc never deleted anything: the test did not race")
	}
	rep := assertVerifies(t, root, true)
	if rep.Repositories == 0 {
		t.Error("no repository left")
	}
	assertConsistent(t, root)
}
