package publish_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
)

// imageSet is an OCI layout of n small images, with refs img0, img1, …
func imageSet(t *testing.T, dir string, n int) (spec func(i int) string, digests []digest.Digest) {
	t.Helper()
	var entries []entry
	for i := range n {
		img := ociImage(t, int64(1000+i), 1)
		entries = append(entries, entry{item: img, ref: fmt.Sprintf("img%d", i)})
		digests = append(digests, mustDigest(t, img))
	}
	src := writeLayout(t, dir, entries...)
	return func(i int) string { return fmt.Sprintf("oci:%s:img%d", src, i) }, digests
}

// TestConcurrentPublishers runs many publishers at once, in goroutines of
// this process, into a new tree: all into one repository (each its own
// tag) and each into a repository of its own. Every update must be there.
func TestConcurrentPublishers(t *testing.T) {
	dir := t.TempDir()
	const n = 12
	spec, digests := imageSet(t, filepath.Join(dir, "src"), n)
	root := filepath.Join(dir, "tree")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithCatalogShardSize(4))
			if _, err := publishWith(t, p, spec(i), nil, fmt.Sprintf("shared:t%d", i), fmt.Sprintf("own%d:latest", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	shared := readRepo(t, root, "shared")
	if len(shared.Tags) != n {
		t.Errorf("shared has %d tags, want %d: %v", len(shared.Tags), n, shared.Tags)
	}
	for i := range n {
		if d := shared.Tags[fmt.Sprintf("t%d", i)]; d != digests[i] {
			t.Errorf("shared:t%d = %q, want %s", i, d, digests[i])
		}
		if d := readRepo(t, root, fmt.Sprintf("own%d", i)).Tags["latest"]; d != digests[i] {
			t.Errorf("own%d:latest = %q, want %s", i, d, digests[i])
		}
	}
	assertConsistent(t, root)
	names, err := publish.CatalogNames(context.Background(), publish.NewFSSink(layout.Root(root)))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n+1 {
		t.Errorf("catalog %v: want %d names", names, n+1)
	}
}

// TestConcurrentPublisherProcesses runs publishers as separate processes,
// each publishing several tags of one repository in turn.
func TestConcurrentPublisherProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 4, 3
	spec, digests := imageSet(t, filepath.Join(dir, "src"), procs*each)
	root := filepath.Join(dir, "tree")
	var cmds []*strings.Builder
	errs := make(chan error, procs)
	var wg sync.WaitGroup
	for p := range procs {
		var args []string
		for j := range each {
			i := p*each + j
			args = append(args, fmt.Sprintf("%s=app:t%d", spec(i), i), fmt.Sprintf("%s=p%d:t%d", spec(i), p, i))
		}
		cmd := helper(t, "publish", root, nil, args...)
		var out strings.Builder
		cmd.Stderr = &out
		cmds = append(cmds, &out)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("publisher %d: %v: %s", p, err, out.String())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	app := readRepo(t, root, "app")
	for i := range procs * each {
		if d := app.Tags[fmt.Sprintf("t%d", i)]; d != digests[i] {
			t.Errorf("app:t%d = %q, want %s", i, d, digests[i])
		}
	}
	if len(app.Tags) != procs*each {
		t.Errorf("app has %d tags, want %d", len(app.Tags), procs*each)
	}
	assertConsistent(t, root)
}

// TestConcurrentEdits runs publishers, heron tag and heron rm NAME:TAG on
// one repository at once; the result is the same whatever their order.
func TestConcurrentEdits(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 2*n)
	root := filepath.Join(dir, "tree")
	for i := range n {
		mustPublish(t, root, spec(i), fmt.Sprintf("app:old%d", i))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			p := publish.New(publish.NewFSSink(layout.Root(root)))
			if _, err := publishWith(t, p, spec(n+i), nil, fmt.Sprintf("app:new%d", i)); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			p := publish.New(publish.NewFSSink(layout.Root(root)))
			old := fmt.Sprintf("old%d", i)
			if _, err := p.Tag(ctx, "app", old, fmt.Sprintf("copy%d", i)); err != nil {
				errs <- err
				return
			}
			if i%2 == 1 {
				if _, _, err := p.RemoveTags(ctx, "app", old); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{}
	for i := range n {
		want[fmt.Sprintf("new%d", i)] = digests[n+i]
		want[fmt.Sprintf("copy%d", i)] = digests[i]
		if i%2 == 0 {
			want[fmt.Sprintf("old%d", i)] = digests[i]
		}
	}
	app := readRepo(t, root, "app")
	if fmt.Sprint(app.Tags) != fmt.Sprint(want) {
		t.Errorf("tags\n got %v\nwant %v", app.Tags, want)
	}
	if len(app.Manifests) != 2*n {
		t.Errorf("%d manifests listed, want %d", len(app.Manifests), 2*n)
	}
	assertConsistent(t, root)
}

// TestConcurrentRemoveAndPublish removes repositories while others publish
// into them: whatever the order, a listed repository has its file and a
// repository file is listed.
func TestConcurrentRemoveAndPublish(t *testing.T) {
	dir := t.TempDir()
	const n = 6
	spec, _ := imageSet(t, filepath.Join(dir, "src"), n)
	root := filepath.Join(dir, "tree")
	ctx := context.Background()
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			name := fmt.Sprintf("team/r%d/app", i)
			mustPublish(t, root, spec(i), name+":v0")
			wg.Go(func() {
				p := publish.New(publish.NewFSSink(layout.Root(root)))
				if _, err := publishWith(t, p, spec((i+round)%n), nil, fmt.Sprintf("%s:v%d", name, round+1)); err != nil {
					errs <- err
				}
			})
			wg.Go(func() {
				p := publish.New(publish.NewFSSink(layout.Root(root)))
				if _, err := p.RemoveRepositories(ctx, name); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		assertConsistent(t, root)
	}
	var left []string
	names, err := publish.CatalogNames(ctx, publish.NewFSSink(layout.Root(root)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		r := readRepo(t, root, name)
		// A publish that came after the removal created the
		// repository anew: it holds that one tag only.
		if len(r.Tags) != 1 {
			t.Errorf("%s: tags %v", name, r.Tags)
		}
		left = append(left, name)
	}
	sort.Strings(left)
	t.Logf("left after the last round: %v", left)
}
