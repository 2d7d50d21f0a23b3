package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
)

// TestTagManyAndReshard: tag adds thousands of tags in one edit (the
// repository is then sharded), and reshard rewrites a repository file
// written in the old form, then has nothing to do.
func TestTagManyAndReshard(t *testing.T) {
	img, _ := fixtureSource(t, "oci-image")
	root := filepath.Join(t.TempDir(), "tree")
	if _, _, err := heron(t, "publish", img, "--root", root, "--to", "app:latest", "--to", "small:latest"); err != nil {
		t.Fatal(err)
	}
	var tags []string
	for i := range 2500 {
		tags = append(tags, fmt.Sprintf("b%05d", i))
	}
	out, _, err := heron(t, append([]string{"tag", "--root", root, "app:latest"}, tags...)...)
	if err != nil || strings.Count(out, "\n") != 2500 {
		t.Fatalf("tag: %v; %d lines", err, strings.Count(out, "\n"))
	}
	key, _ := layout.RepositoryKey("app")
	entry := func() *layout.Repository {
		b, err := os.ReadFile(layout.Root(root).Path(key))
		if err != nil {
			t.Fatal(err)
		}
		r, err := layout.DecodeRepositoryFile("app", b)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := entry(); len(r.TagShards) != 3 {
		t.Fatalf("%d tag shards after tagging", len(r.TagShards))
	}
	// A file in the old form: every tag in it.
	whole := entry()
	if err := whole.LoadShards(func(id string) ([]byte, error) {
		k, _ := layout.RepositoryShardKey("app", id)
		return os.ReadFile(layout.Root(root).Path(k))
	}); err != nil {
		t.Fatal(err)
	}
	whole.TagShards = nil
	b, err := whole.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(layout.Root(root).Path(key), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = heron(t, "reshard", "--root", root)
	if err != nil || out != "rewrote app\n" {
		t.Fatalf("reshard: %q, %v", out, err)
	}
	if r := entry(); len(r.TagShards) != 3 || len(r.Tags) != 0 {
		t.Fatalf("after reshard: %d tag shards, %d tags in the file", len(r.TagShards), len(r.Tags))
	}
	if out, _, err = heron(t, "reshard", "--root", root, "app", "small"); err != nil || out != "" {
		t.Fatalf("reshard again: %q, %v", out, err)
	}
	if _, _, err = heron(t, "reshard", "--root", root, "nothere"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("reshard of a repository that does not exist: %v", err)
	}
	if out, _, err = heron(t, "verify", "--root", root); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}
