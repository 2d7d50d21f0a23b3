package publish_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
)

// catalogMarks returns the names the catalog of root marks protected, and
// checks that each shard's entry in the index counts them.
func catalogMarks(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(layout.Root(root).Path(layout.CatalogIndexKey()))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.DecodeCatalogIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	var marked []string
	for _, s := range idx.Shards {
		key, _ := layout.CatalogShardKey(s.ID)
		data, err := os.ReadFile(layout.Root(root).Path(key))
		if err != nil {
			t.Fatal(err)
		}
		f, err := layout.DecodeCatalogShardFile(data, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Protected) != s.Protected {
			t.Errorf("shard %s marks %d names, its entry counts %d", s.ID, len(f.Protected), s.Protected)
		}
		marked = append(marked, f.Protected...)
	}
	return marked
}

// TestCatalogMarksProtected: the catalog marks the repositories whose file
// is protected, as a batch makes them so or not, through shard splits and
// merges, and a publish into a protected repository keeps its mark.
func TestCatalogMarksProtected(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 2)
	root := filepath.Join(dir, "tree")
	batch := func(protected ...string) string {
		var s strings.Builder
		s.WriteString("repositories:\n")
		for i := range 10 {
			name := fmt.Sprintf("r%d", i)
			fmt.Fprintf(&s, "- name: %s\n  protected: %v\n  tags:\n    v1: %s\n", name, slices.Contains(protected, name), spec(0))
		}
		return s.String()
	}
	p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithCatalogShardSize(3))
	run := func(yaml string) {
		t.Helper()
		b, err := publish.ParseBatch([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.RunBatch(context.Background(), b, publish.BatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range [][]string{
		{"r1", "r5"},             // new repositories, protected from the start
		{"r1", "r2", "r5", "r9"}, // two more
		{"r2"},                   // three no longer
		{},
		{"r0", "r3", "r4", "r6", "r7", "r8"},
	} {
		run(batch(want...))
		if got := catalogMarks(t, root); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("catalog marks %v protected, want %v", got, want)
		}
	}
	// A publish into a protected repository, and a new repository, keep
	// the marks as they are.
	if _, err := publishWith(t, p, spec(1), nil, "r0:v2", "new:v1"); err != nil {
		t.Fatal(err)
	}
	if got := catalogMarks(t, root); !slices.Equal(got, []string{"r0", "r3", "r4", "r6", "r7", "r8"}) {
		t.Errorf("after a publish: catalog marks %v", got)
	}
	// Removing repositories (shards merge) keeps the others' marks.
	if _, err := p.RemoveRepositories(context.Background(), "r3", "r4", "r5"); err != nil {
		t.Fatal(err)
	}
	if got := catalogMarks(t, root); !slices.Equal(got, []string{"r0", "r6", "r7", "r8"}) {
		t.Errorf("after removals: catalog marks %v", got)
	}
	checkCatalog(t, root, 3, map[string]bool{"new": true, "r0": true, "r1": true, "r2": true, "r6": true, "r7": true, "r8": true, "r9": true})
}

// TestCatalogMarksStale: a catalog written before the marks existed lists a
// protected repository without its mark; the next batch that says it is
// protected, or a publish into it, marks it.
func TestCatalogMarksStale(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 2)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), "a:v1", "b:v1")
	for _, name := range []string{"a", "b"} {
		key, _ := layout.RepositoryKey(name)
		path := layout.Root(root).Path(key)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), `"name":`, `"protected": true, "name":`, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := catalogMarks(t, root); len(got) != 0 {
		t.Fatalf("marks %v before", got)
	}
	b, err := publish.ParseBatch([]byte(fmt.Sprintf("repositories:\n- name: a\n  protected: true\n  tags:\n    v1: %s\n", spec(0))))
	if err != nil {
		t.Fatal(err)
	}
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	if _, err := p.RunBatch(context.Background(), b, publish.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := catalogMarks(t, root); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after the batch: marks %v, want [a]", got)
	}
	mustPublish(t, root, spec(1), "b:v2")
	if got := catalogMarks(t, root); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after a publish into b: marks %v, want [a b]", got)
	}
}
