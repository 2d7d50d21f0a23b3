package publish_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
)

// TestFiller publishes an image on_demand, then fetches its blobs the way
// heron serve does through the Filler: OpenBlob reads them at the
// repository's upstream, StoreBlob stores them (verified) and marks them
// stored, so that the tree ends up as an immediate publish would leave it.
func TestFiller(t *testing.T) {
	u := newUpstream(t, false)
	img := ociImage(t, 300, 2)
	u.push("upstream/lazy:v1", img)
	root := filepath.Join(t.TempDir(), "tree")
	p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithPolicy(publish.PolicyOnDemand))
	if _, err := publishWith(t, p, "docker://"+u.host+"/upstream/lazy:v1", fast(), "app:v1"); err != nil {
		t.Fatal(err)
	}
	f := publish.NewFiller(publish.New(publish.NewFSSink(layout.Root(root))), fast()...)
	ctx := context.Background()
	r := readRepo(t, root, "app")
	lazy := 0
	for d, b := range r.Blobs {
		if b.IsStored() {
			continue
		}
		lazy++
		rc, err := f.OpenBlob(ctx, "app", d, b.Size)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(data) != d {
			t.Fatalf("blob %s: upstream gave other bytes", d)
		}
		if err := f.StoreBlob(ctx, "app", d, b.Size, strings.NewReader(string(data))); err != nil {
			t.Fatal(err)
		}
		if got := readBlob(t, root, d); string(got) != string(data) {
			t.Fatalf("blob %s stored with other bytes", d)
		}
	}
	if lazy == 0 {
		t.Fatal("the on_demand publish stored every blob: the test tests nothing")
	}
	for d, b := range readRepo(t, root, "app").Blobs {
		if !b.IsStored() {
			t.Errorf("blob %s is still listed as not stored", d)
		}
	}
	assertConsistent(t, root)

	// Wrong bytes are refused and leave the repository as it was.
	img2 := ociImage(t, 301, 1)
	u.push("upstream/lazy:v2", img2)
	if _, err := publishWith(t, p, "docker://"+u.host+"/upstream/lazy:v2", fast(), "app:v2"); err != nil {
		t.Fatal(err)
	}
	for d, b := range readRepo(t, root, "app").Blobs {
		if b.IsStored() {
			continue
		}
		before := snapshot(t, root, false)
		err := f.StoreBlob(ctx, "app", d, b.Size, strings.NewReader(strings.Repeat("x", int(b.Size))))
		if !errors.Is(err, publish.ErrDigestMismatch) {
			t.Fatalf("StoreBlob of wrong bytes: %v, want a digest mismatch", err)
		}
		if d := diffSnapshots(before, snapshot(t, root, false)); len(d) > 0 {
			t.Errorf("a refused StoreBlob changed the tree:\n%s", strings.Join(d, "\n"))
		}
		break
	}

	// A repository without an upstream, and one that does not exist.
	mustPublish(t, root, "oci:"+writeLayout(t, filepath.Join(t.TempDir(), "src"), entry{item: ociImage(t, 302, 1)}), "plain:1")
	if _, err := f.OpenBlob(ctx, "plain", digest.FromString("x"), 1); err == nil || !strings.Contains(err.Error(), "no upstream") {
		t.Errorf("OpenBlob in a repository without upstream: %v", err)
	}
	if _, err := f.OpenBlob(ctx, "nope", digest.FromString("x"), 1); !errors.Is(err, publish.ErrNotFound) {
		t.Errorf("OpenBlob in a missing repository: %v", err)
	}
}
