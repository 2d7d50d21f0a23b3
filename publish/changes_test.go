package publish_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
)

// changes reads the tree's change counter (0 if there is none).
func changes(t *testing.T, root string) uint64 {
	t.Helper()
	f, err := os.Open(layout.Root(root).Path(layout.ChangesKey()))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := layout.MapChangeCounter(f, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Unmap()
	return c.Load()
}

// TestSignalChange checks which writes increment the change counter:
// repository files and the catalog index, written or deleted, and not
// blobs or catalog shards; and that concurrent writers lose no increment.
func TestSignalChange(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no change counter here")
	}
	ctx := context.Background()
	root := t.TempDir()
	s := publish.NewFSSink(layout.Root(root))
	put := func(key, content string) {
		t.Helper()
		if err := s.Put(ctx, key, strings.NewReader(content), publish.Want{}); err != nil {
			t.Fatal(err)
		}
	}
	blob, _ := layout.BlobKey(digest.FromString("blob"))
	repo, _ := layout.RepositoryKey("team/app")
	shard, _ := layout.CatalogShardKey(strings.Repeat("a", 64))
	steps := []struct {
		what string
		do   func()
		want uint64
	}{
		{"a blob", func() { put(blob, "blob") }, 0},
		{"a catalog shard", func() { put(shard, "[]") }, 0},
		{"a repository file", func() { put(repo, "{}") }, 1},
		{"the same again", func() { put(repo, "{}") }, 2},
		{"the catalog index", func() { put(layout.CatalogIndexKey(), "{}") }, 3},
		{"a deleted repository file", func() {
			if err := s.Delete(ctx, repo); err != nil {
				t.Fatal(err)
			}
		}, 4},
		{"a deleted blob", func() {
			if err := s.Delete(ctx, blob); err != nil {
				t.Fatal(err)
			}
		}, 4},
	}
	for _, st := range steps {
		st.do()
		if got := changes(t, root); got != st.want {
			t.Fatalf("after %s: counter %d, want %d", st.what, got, st.want)
		}
	}
	if fi, err := os.Stat(layout.Root(root).Path(layout.ChangesKey())); err != nil || fi.Size() != layout.ChangesFileSize {
		t.Fatalf("counter file: %v, %v", fi, err)
	}

	// Writers in parallel, each with its own sink (its own mapping).
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			s := publish.NewFSSink(layout.Root(root))
			key, _ := layout.RepositoryKey(fmt.Sprintf("team/app%d", g))
			for i := range 20 {
				if err := s.Put(ctx, key, strings.NewReader(fmt.Sprint(i)), publish.Want{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := changes(t, root); got != 4+8*20 {
		t.Errorf("after 160 concurrent writes: counter %d, want %d", got, 4+8*20)
	}
}

// TestSignalIfRecent checks that a publish that writes nothing increments
// the counter when the repository file it found changed in the last
// seconds (its writer may have died before incrementing it), and not when
// it is older.
func TestSignalIfRecent(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("no change counter here")
	}
	dir := t.TempDir()
	spec, _, _, _, _ := sourceCases()[0].setup(t, filepath.Join(dir, "src"))
	root := filepath.Join(dir, "tree")
	publishOnce := func() {
		t.Helper()
		mustPublish(t, root, spec, "team/app:v1")
	}
	publishOnce()
	first := changes(t, root)
	if first != 2 {
		t.Fatalf("counter after the first publish: %d, want 2 (the repository file, the catalog)", first)
	}
	publishOnce() // the files changed a moment ago
	if got := changes(t, root); got != first+2 {
		t.Errorf("counter after a re-publish right after: %d, want %d", got, first+2)
	}
	old := time.Now().Add(-time.Hour)
	for _, key := range []string{mustKey(t, "team/app"), layout.CatalogIndexKey()} {
		if err := os.Chtimes(layout.Root(root).Path(key), old, old); err != nil {
			t.Fatal(err)
		}
	}
	before := changes(t, root)
	publishOnce()
	if got := changes(t, root); got != before {
		t.Errorf("counter after a re-publish of files an hour old: %d, want %d", got, before)
	}
}

func mustKey(t *testing.T, name string) string {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
