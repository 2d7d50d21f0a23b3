package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/publish"
)

// heron runs the heron command line with args and returns what it printed.
func heron(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func fixtureSource(t *testing.T, name string) (spec string, digest string) {
	t.Helper()
	const dir = "../../testdata/fixtures"
	m, err := fixtures.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := m.Fixture(name)
	if !ok {
		t.Fatalf("no fixture %s", name)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return f.SourceIn(abs), string(f.Digest)
}

// writeFile writes content to dir/name and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBatchRmTag drives publish --batch, tag and rm through the command
// line, each step checked by what it prints and by heron ls.
func TestBatchRmTag(t *testing.T) {
	img, imgDigest := fixtureSource(t, "oci-image")
	idx, _ := fixtureSource(t, "oci-index")
	dir := t.TempDir()
	root := filepath.Join(dir, "tree")
	writeBatch := func(name, content string) string { return writeFile(t, dir, name, content) }
	full := writeBatch("full.yaml", fmt.Sprintf("repositories:\n- name: team/app\n  tags:\n    v1: %s\n    latest: %s\n- name: other\n  tags:\n    \"1.0\": %s\n", img, img, idx))
	small := writeBatch("small.json", fmt.Sprintf(`{"repositories": [{"name": "team/app", "tags": {"v1": %q}}]}`, img))

	steps := []struct {
		args         []string
		stdout       string
		stderr, fail string // substrings; fail "" means success
	}{
		{[]string{"publish", "--root", root, "--batch", full}, "published team/app:latest\npublished team/app:v1\npublished other:1.0\n", "3 tag(s) published, 0 unchanged", ""},
		{[]string{"publish", "--root", root, "--batch", full}, "", "0 tag(s) published, 3 unchanged, 0 pruned; 0 repositories removed; wrote 0 blob(s)", ""},
		{[]string{"ls", "--root", root}, "other\nteam/app\n", "", ""},
		{[]string{"tag", "--root", root, "team/app:v1", "stable", "1.0"}, "team/app:stable@" + imgDigest + "\nteam/app:1.0@" + imgDigest + "\n", "", ""},
		{[]string{"rm", "--root", root, "team/app:stable", "team/app:latest"}, "removed team/app:stable\nremoved team/app:latest\n", "", ""},
		{[]string{"ls", "--root", root, "team/app"}, "1.0\t" + imgDigest + "\nv1\t" + imgDigest + "\n", "", ""},
		{[]string{"publish", "--root", root, "--batch", small, "--prune"}, "pruned team/app:1.0\nremoved other\n", "1 pruned; 1 repositories removed", ""},
		{[]string{"ls", "--root", root}, "team/app\n", "", ""},
		{[]string{"rm", "--root", root, "team/app"}, "removed team/app\n", "", ""},
		{[]string{"ls", "--root", root}, "", "", ""},

		{[]string{"rm", "--root", root, "team/app"}, "", "", "not found"},
		{[]string{"rm", "--root", root, "team/app:v1"}, "", "", "not found"},
		{[]string{"rm", "--root", root, "Team"}, "", "", "invalid repository name"},
		{[]string{"rm", "--root", root}, "", "", "requires at least 1 arg"},
		{[]string{"rm", "team/app"}, "", "", `"root" not set`},
		{[]string{"tag", "--root", root, "team/app:v1", "other:v2"}, "", "", "NEWTAG is a tag"},
		{[]string{"tag", "--root", root, "team/app", "v2"}, "", "", "want NAME:TAG"},
		{[]string{"tag", "--root", dir, "team/app:v1", "v2"}, "", "", "not a heron tree"},
		{[]string{"publish", "--root", root, "--batch", full, img}, "", "", "--batch takes no SOURCE"},
		{[]string{"publish", "--root", root, "--batch", full, "--to", "a:b"}, "", "", "--batch takes no SOURCE"},
		{[]string{"publish", "--root", root, "--prune", img, "--to", "a:b"}, "", "", "--prune goes with --batch"},
		{[]string{"publish", "--root", root}, "", "", "give a SOURCE, or --batch FILE"},
		{[]string{"publish", "--root", root, "--batch", filepath.Join(dir, "none.yaml")}, "", "", "none.yaml"},
	}
	for i, s := range steps {
		stdout, stderr, err := heron(t, s.args...)
		if s.fail != "" {
			if err == nil || !strings.Contains(err.Error(), s.fail) {
				t.Fatalf("step %d %v: error %v, want one containing %q", i, s.args, err, s.fail)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d %v: %v\n%s", i, s.args, err, stderr)
		}
		if stdout != s.stdout || !strings.Contains(stderr, s.stderr) {
			t.Fatalf("step %d %v:\nstdout %q\n  want %q\nstderr %q\n  want %q", i, s.args, stdout, s.stdout, stderr, s.stderr)
		}
	}
}

// TestBatchOutputJSON checks publish --batch --output json: the summary on
// standard output, the same counts as the text, and a failed repository
// named with its error while the command fails.
func TestBatchOutputJSON(t *testing.T) {
	img, _ := fixtureSource(t, "oci-image")
	dir := t.TempDir()
	root := filepath.Join(dir, "tree")
	write := func(name, content string) string { return writeFile(t, dir, name, content) }
	good := write("good.yaml", fmt.Sprintf("repositories:\n- name: team/app\n  tags:\n    v1: %s\n    latest: %s\n", img, img))
	bad := write("bad.yaml", fmt.Sprintf("repositories:\n- name: team/app\n  tags:\n    v1: %s\n- name: broken\n  tags:\n    v1: oci:%s\n", img, filepath.Join(dir, "missing")))

	run := func(file string) (publish.BatchSummary, error) {
		t.Helper()
		stdout, _, err := heron(t, "publish", "--root", root, "--batch", file, "--output", "json")
		var s publish.BatchSummary
		if jerr := json.Unmarshal([]byte(stdout), &s); jerr != nil {
			t.Fatalf("stdout is not a summary: %v\n%s", jerr, stdout)
		}
		return s, err
	}
	s, err := run(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.TagsPublished != 2 || s.TagsUnchanged != 0 || s.RepositoriesFailed != 0 || s.BlobsWritten == 0 || !s.LayoutCreated || !s.CatalogChanged ||
		len(s.Repositories) != 1 || s.Repositories[0].Name != "team/app" || !s.Repositories[0].Written || s.Removed == nil {
		t.Errorf("first run: %+v", s)
	}
	s, err = run(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.TagsPublished != 0 || s.TagsUnchanged != 2 || s.BlobsWritten != 0 || s.LayoutCreated || s.CatalogChanged || s.Repositories[0].Written {
		t.Errorf("second run: %+v", s)
	}
	s, err = run(bad)
	if err == nil {
		t.Fatal("a batch with a missing source succeeded")
	}
	if s.RepositoriesFailed != 1 || len(s.Repositories) != 2 || s.Repositories[1].Name != "broken" || !strings.Contains(s.Repositories[1].Error, "missing") || s.Repositories[0].Error != "" {
		t.Errorf("failed run: %+v", s)
	}
}
