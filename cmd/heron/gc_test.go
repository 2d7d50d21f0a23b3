package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
)

// TestGCAndVerify drives gc and verify through the command line: a fresh
// tree verifies clean, a removed repository leaves blobs that gc deletes
// (not before the grace period, not in a dry run), and a corrupted blob is
// reported by verify --deep with a non-zero exit.
func TestGCAndVerify(t *testing.T) {
	img, _ := fixtureSource(t, "oci-image")
	idx, _ := fixtureSource(t, "oci-index")
	root := filepath.Join(t.TempDir(), "tree")
	for _, args := range [][]string{
		{"publish", img, "--root", root, "--to", "app:1"},
		{"publish", idx, "--root", root, "--to", "multi:1"},
	} {
		if _, _, err := heron(t, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	stdout, stderr, err := heron(t, "verify", "--root", root, "--deep")
	if err != nil || stdout != "" || !strings.Contains(stderr, "2 repositories") || !strings.Contains(stderr, "0 unreferenced") {
		t.Fatalf("verify of a fresh tree: %v\n%s%s", err, stdout, stderr)
	}
	if _, _, err := heron(t, "rm", "--root", root, "multi"); err != nil {
		t.Fatal(err)
	}
	// An index of two images: 3 manifests, 2 configs, 2 layers at least.
	_, stderr, err = heron(t, "verify", "--root", root)
	if err != nil || strings.Contains(stderr, " 0 unreferenced") {
		t.Fatalf("verify after rm: %v %s", err, stderr)
	}

	before := listTree(t, root)
	stdout, stderr, err = heron(t, "gc", "--root", root)
	if err != nil || stdout != "" || !strings.Contains(stderr, "deleted 0 file(s)") || !strings.Contains(stderr, "younger than 1h0m0s") {
		t.Fatalf("gc with the default grace: %v\n%s%s", err, stdout, stderr)
	}
	stdout, _, err = heron(t, "gc", "--root", root, "--grace", "0s", "--dry-run")
	would := strings.Count(stdout, "would delete "+root+"/blobs/sha256/")
	if err != nil || would < 7 || would != strings.Count(stdout, "\n") {
		t.Fatalf("gc --dry-run: %v\n%s", err, stdout)
	}
	if after := listTree(t, root); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("the dry run changed the tree")
	}
	stdout, _, err = heron(t, "gc", "--root", root, "--grace", "0s", "--output", "json")
	var res publish.GCResult
	if err != nil || json.Unmarshal([]byte(stdout), &res) != nil || res.Files != would || res.DryRun || res.Repositories != 1 {
		t.Fatalf("gc --output json: %v\n%s", err, stdout)
	}
	for _, it := range res.Deleted {
		if _, err := os.Stat(layout.Root(root).Path(it.Key)); !os.IsNotExist(err) {
			t.Errorf("%s not deleted: %v", it.Key, err)
		}
	}
	if stdout, stderr, err := heron(t, "verify", "--root", root, "--deep"); err != nil || stdout != "" || !strings.Contains(stderr, "0 unreferenced") {
		t.Fatalf("verify after gc: %v\n%s%s", err, stdout, stderr)
	}

	// Corrupt a layer of app:1: only --deep finds it.
	r, err := publish.ReadRepository(t.Context(), publish.NewFSSink(layout.Root(root)), "app")
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layout.BlobKey(r.Manifests[r.Tags["1"]].Blobs[1])
	if err != nil {
		t.Fatal(err)
	}
	p := layout.Root(root).Path(layer)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := heron(t, "verify", "--root", root); err != nil {
		t.Errorf("verify without --deep: %v", err)
	}
	stdout, _, err = heron(t, "verify", "--root", root, "--deep")
	if err == nil || !strings.Contains(err.Error(), "1 problem(s)") || stdout != p+": content does not match its digest (it hashes to "+string(digest.FromBytes(b))+")\n" {
		t.Fatalf("verify --deep of a corrupt blob: %v\n%s", err, stdout)
	}
	stdout, _, err = heron(t, "verify", "--root", root, "--deep", "-o", "json")
	var rep publish.VerifyReport
	if err == nil || json.Unmarshal([]byte(stdout), &rep) != nil || len(rep.Problems) != 1 || rep.Problems[0].Key != layer {
		t.Fatalf("verify --deep -o json: %v\n%s", err, stdout)
	}

	// A malformed repository file stops gc before it deletes anything.
	if err := os.WriteFile(layout.Root(root).Path("repositories/app.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := heron(t, "gc", "--root", root, "--grace", "0s"); err == nil || !strings.Contains(err.Error(), "nothing was deleted") {
		t.Errorf("gc with a malformed repository file: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("gc deleted %s: %v", layer, err)
	}
}

func TestGCAndVerifyErrors(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gc"}, `"root" not set`},
		{[]string{"verify"}, `"root" not set`},
		{[]string{"gc", "--root", empty}, "not a heron tree"},
		{[]string{"verify", "--root", empty}, "1 problem(s)"},
		{[]string{"gc", "--root", empty, "--grace", "-1h"}, "--grace must not be negative"},
		{[]string{"gc", "--root", empty, "-o", "yaml"}, `--output "yaml"`},
		{[]string{"verify", "--root", empty, "extra"}, "unknown command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := heron(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// listTree returns every key of the tree, sorted.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var keys []string
	err := publish.NewFSSink(layout.Root(root)).List(t.Context(), "", func(key string, _ publish.Info) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
