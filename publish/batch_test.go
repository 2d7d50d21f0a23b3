package publish_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseBatch(t *testing.T) {
	for _, tc := range []struct {
		desc, in string
		err      string // "" for valid
	}{
		{"yaml", `
repositories:
  - name: team/app
    blobBaseURL: https://cdn.example.com/
    protected: true
    tags:
      v1: oci:/srv/out:v1
      "1.0": oci:/srv/out:v1
  - name: other
    tags: {latest: "docker-archive:/tmp/a.tar:app:1"}
`, ""},
		{"json", `{"repositories": [{"name": "a", "tags": {"v1": "oci:/x"}, "policy": "immediate"}]}`, ""},
		{"empty", `repositories: []`, ""},
		{"no document", ``, "empty batch file"},
		{"two documents", "repositories: []\n---\nrepositories: []\n", "more than one"},
		{"unknown field", `{"repositories": [{"name": "a", "tag": {"v1": "oci:/x"}}]}`, "field tag not found"},
		{"unknown top-level field", "repos: []\n", "field repos not found"},
		{"duplicate key", "repositories:\n  - name: a\n    tags:\n      v1: oci:/x\n      v1: oci:/y\n", "already defined"},
		{"invalid name", `{"repositories": [{"name": "A", "tags": {}}]}`, "invalid repository name"},
		{"no name", `{"repositories": [{"tags": {}}]}`, "invalid repository name"},
		{"invalid tag", `{"repositories": [{"name": "a", "tags": {"-x": "oci:/x"}}]}`, "invalid tag"},
		{"empty source", `{"repositories": [{"name": "a", "tags": {"v1": " "}}]}`, "no source"},
		{"source not a string", `{"repositories": [{"name": "a", "tags": {"v1": ["oci:/x"]}}]}`, "cannot unmarshal"},
		{"listed twice", `{"repositories": [{"name": "a"}, {"name": "a"}]}`, "listed twice"},
		{"bad base URL", `{"repositories": [{"name": "a", "blobBaseURL": "cdn.example.com"}]}`, "absolute http"},
		{"bad policy", `{"repositories": [{"name": "a", "policy": "later"}]}`, `policy "later"`},
		{"on_demand", `{"repositories": [{"name": "a", "policy": "on_demand"}]}`, ""},
		{"not a mapping", `- a`, "cannot unmarshal"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			b, err := publish.ParseBatch([]byte(tc.in))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if b == nil {
					t.Fatal("no batch")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
	b, err := publish.ParseBatch([]byte("repositories:\n  - name: team/app\n    protected: false\n    blobBaseURL: \"\"\n    tags:\n      1.0: oci:/srv/out:v1\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := b.Repositories[0]
	if r.Tags["1.0"] != "oci:/srv/out:v1" || r.Protected == nil || *r.Protected || r.BlobBaseURL == nil || *r.BlobBaseURL != "" {
		t.Errorf("parsed %+v", r)
	}
}

// countingOpener opens sources with source.Parse and counts what is read
// from them beyond resolving their manifest.
type countingOpener struct {
	fetches atomic.Int64
}

func (c *countingOpener) open(spec string) (source.Source, error) {
	src, err := source.Parse(spec)
	if err != nil {
		return nil, err
	}
	return &fetchCounter{Source: src, n: &c.fetches}, nil
}

type fetchCounter struct {
	source.Source
	n *atomic.Int64
}

func (f *fetchCounter) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	f.n.Add(1)
	return f.Source.Fetch(ctx, d)
}

func (f *fetchCounter) Stat(ctx context.Context, d ocispec.Descriptor) (int64, error) {
	f.n.Add(1)
	return f.Source.Stat(ctx, d)
}

func runBatch(t *testing.T, root, yaml string, opts publish.BatchOptions) *publish.BatchResult {
	t.Helper()
	b, err := publish.ParseBatch([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	res, err := publish.New(publish.NewFSSink(layout.Root(root))).RunBatch(context.Background(), b, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// summary renders what a batch did to each repository, for comparison.
func summary(res *publish.BatchResult) string {
	var out []string
	for _, r := range res.Repositories {
		out = append(out, fmt.Sprintf("%s published=%v unchanged=%v pruned=%v written=%v", r.Name, r.Published, r.Unchanged, r.PrunedTags, r.Written))
	}
	out = append(out, fmt.Sprintf("removed=%v catalog=%v", res.Pruned, res.CatalogChanged))
	return strings.Join(out, "\n")
}

func TestBatchIncremental(t *testing.T) {
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 3)
	root := filepath.Join(dir, "tree")
	batch := func(aLatest int, bProtected bool, withC bool, aTags ...string) string {
		var s strings.Builder
		fmt.Fprintf(&s, "repositories:\n- name: a\n  tags:\n    latest: %s\n", spec(aLatest))
		for _, tag := range aTags {
			fmt.Fprintf(&s, "    %s: %s\n", tag, spec(0))
		}
		fmt.Fprintf(&s, "- name: team/b\n  protected: %v\n  blobBaseURL: https://cdn.example.com/\n  tags:\n    v1: %s\n", bProtected, spec(1))
		if withC {
			fmt.Fprintf(&s, "- name: c\n  tags:\n    x: %s\n", spec(2))
		}
		return s.String()
	}
	counter := &countingOpener{}
	opts := publish.BatchOptions{OpenSource: counter.open}
	steps := []struct {
		desc    string
		batch   string
		prune   bool
		want    string
		changed []string // files of the published tree that change (blobs aside)
	}{
		{"first run", batch(1, true, true, "t1", "t2"), false,
			"a published=[latest t1 t2] unchanged=[] pruned=[] written=true\n" +
				"team/b published=[v1] unchanged=[] pruned=[] written=true\n" +
				"c published=[x] unchanged=[] pruned=[] written=true\n" +
				"removed=[] catalog=true", nil},
		{"same batch", batch(1, true, true, "t1", "t2"), false,
			"a published=[] unchanged=[latest t1 t2] pruned=[] written=false\n" +
				"team/b published=[] unchanged=[v1] pruned=[] written=false\n" +
				"c published=[] unchanged=[x] pruned=[] written=false\n" +
				"removed=[] catalog=false", []string{}},
		{"a tag moves", batch(2, true, true, "t1", "t2"), false,
			"a published=[latest] unchanged=[t1 t2] pruned=[] written=true\n" +
				"team/b published=[] unchanged=[v1] pruned=[] written=false\n" +
				"c published=[] unchanged=[x] pruned=[] written=false\n" +
				"removed=[] catalog=false", []string{"repositories/a.json"}},
		{"a setting changes", batch(2, false, true, "t1", "t2"), false,
			"a published=[] unchanged=[latest t1 t2] pruned=[] written=false\n" +
				"team/b published=[] unchanged=[v1] pruned=[] written=true\n" +
				"c published=[] unchanged=[x] pruned=[] written=false\n" +
				"removed=[] catalog=true", []string{"catalog", "repositories/team/b.json"}},
		{"without prune, what the batch no longer lists stays", batch(2, false, false, "t1"), false,
			"a published=[] unchanged=[latest t1] pruned=[] written=false\n" +
				"team/b published=[] unchanged=[v1] pruned=[] written=false\n" +
				"removed=[] catalog=false", []string{}},
		{"prune", batch(2, false, false, "t1"), true,
			"a published=[] unchanged=[latest t1] pruned=[t2] written=true\n" +
				"team/b published=[] unchanged=[v1] pruned=[] written=false\n" +
				"removed=[c] catalog=true", []string{"catalog", "repositories/a.json", "repositories/c.json"}},
		{"prune again", batch(2, false, false, "t1"), true,
			"a published=[] unchanged=[latest t1] pruned=[] written=false\n" +
				"team/b published=[] unchanged=[v1] pruned=[] written=false\n" +
				"removed=[] catalog=false", []string{}},
	}
	for _, s := range steps {
		before := publishedSnapshot(t, root)
		fetches := counter.fetches.Load()
		opts.Prune = s.prune
		res := runBatch(t, root, s.batch, opts)
		if got := summary(res); got != s.want {
			t.Fatalf("%s:\n got %s\nwant %s", s.desc, got, s.want)
		}
		assertConsistent(t, root)
		if s.changed == nil {
			continue
		}
		var changed []string
		for _, d := range diffSnapshots(before, publishedSnapshot(t, root)) {
			f := filepath.ToSlash(strings.SplitN(d, ":", 2)[0])
			switch {
			case strings.HasPrefix(f, "blobs/"):
			case strings.HasPrefix(f, "catalog"):
				if !slices.Contains(changed, "catalog") {
					changed = append(changed, "catalog")
				}
			case f == "repositories" || f == "repositories/team" || f == ".":
			default:
				changed = append(changed, f)
			}
		}
		slices.Sort(changed)
		if strings.Join(changed, " ") != strings.Join(s.changed, " ") {
			t.Errorf("%s: changed %v, want %v", s.desc, changed, s.changed)
		}
		if len(s.changed) == 0 {
			if d := diffSnapshots(before, publishedSnapshot(t, root)); len(d) > 0 {
				t.Errorf("%s: a run that changes nothing changed:\n%s", s.desc, strings.Join(d, "\n"))
			}
			if n := counter.fetches.Load() - fetches; n != 0 {
				t.Errorf("%s: %d reads from unchanged sources", s.desc, n)
			}
		}
	}

	a := readRepo(t, root, "a")
	if len(a.Tags) != 2 || a.Tags["latest"] != digests[2] || a.Tags["t1"] != digests[0] {
		t.Errorf("a: tags %v", a.Tags)
	}
	// img1 was a's latest before it moved: prune dropped it.
	if _, ok := a.Manifests[digests[1]]; ok || len(a.Manifests) != 2 {
		t.Errorf("a: manifests %v", a.Manifests)
	}
	b := readRepo(t, root, "team/b")
	if b.Protected || b.BlobBaseURL != "https://cdn.example.com" || b.Tags["v1"] != digests[1] {
		t.Errorf("team/b: %+v", b)
	}
}

// recordingSink records every repository file it is given.
type recordingSink struct {
	*publish.FSSink
	files [][]byte
}

func (s *recordingSink) Put(ctx context.Context, key string, r io.Reader, want publish.Want) error {
	if _, ok := layout.RepositoryNameFromKey(key); !ok {
		return s.FSSink.Put(ctx, key, r, want)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.files = append(s.files, b)
	return s.FSSink.Put(ctx, key, bytes.NewReader(b), want)
}

// TestBatchProtectedFirst checks that a repository the batch protects is
// never written unprotected, not even before its first content.
func TestBatchProtectedFirst(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 2)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), "old:v1")
	sink := &recordingSink{FSSink: publish.NewFSSink(layout.Root(root))}
	b, err := publish.ParseBatch([]byte(fmt.Sprintf(`{"repositories": [
		{"name": "new", "protected": true, "tags": {"v1": %q}},
		{"name": "old", "protected": true, "tags": {"v2": %q}}]}`, spec(0), spec(1))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := publish.New(sink).RunBatch(context.Background(), b, publish.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(sink.files) == 0 {
		t.Fatal("nothing written")
	}
	for _, f := range sink.files {
		r, err := layout.DecodeRepository(f)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Protected {
			t.Errorf("repository %s written unprotected with tags %v", r.Name, r.Tags)
		}
	}
	if r := readRepo(t, root, "old"); len(r.Tags) != 2 {
		t.Errorf("old: tags %v", r.Tags)
	}
}

func TestBatchErrors(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 2)
	root := filepath.Join(dir, "tree")
	ctx := context.Background()
	p := publish.New(publish.NewFSSink(layout.Root(root)))

	// A source that does not parse fails the batch before anything is
	// written.
	b, err := publish.ParseBatch([]byte(fmt.Sprintf(`{"repositories": [
		{"name": "a", "tags": {"v1": %q}}, {"name": "b", "tags": {"v1": "nope:/x"}}]}`, spec(0))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.RunBatch(ctx, b, publish.BatchOptions{}); err == nil || !strings.Contains(err.Error(), "unknown transport") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the root was created: %v", err)
	}

	// A source that cannot be read fails its repository only; with
	// prune, that repository keeps its tags.
	mustPublish(t, root, spec(0), "b:old")
	b, err = publish.ParseBatch([]byte(fmt.Sprintf(`{"repositories": [
		{"name": "a", "tags": {"v1": %q}}, {"name": "b", "tags": {"v1": "oci:%s"}}]}`, spec(0), filepath.Join(dir, "missing"))))
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.RunBatch(ctx, b, publish.BatchOptions{Prune: true})
	if err == nil || !strings.Contains(err.Error(), "repository b") || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("error %v", err)
	}
	if res.Repositories[1].Err == nil || res.Repositories[0].Err != nil {
		t.Errorf("results %+v", res.Repositories)
	}
	if r := readRepo(t, root, "a"); len(r.Tags) != 1 {
		t.Errorf("a: tags %v", r.Tags)
	}
	if r := readRepo(t, root, "b"); len(r.Tags) != 1 || r.Tags["old"] == "" {
		t.Errorf("b: tags %v", r.Tags)
	}
	assertConsistent(t, root)

	// An empty batch with prune empties the tree.
	b, err = publish.ParseBatch([]byte(`repositories: []`))
	if err != nil {
		t.Fatal(err)
	}
	res, err = p.RunBatch(ctx, b, publish.BatchOptions{Prune: true})
	if err != nil || strings.Join(res.Pruned, ",") != "a,b" {
		t.Fatalf("pruned %v: %v", res.Pruned, err)
	}
	assertConsistent(t, root)
}

// TestBatchPolicy checks that a repository's policy overrides the
// publisher's: on_demand cannot publish a local source, immediate can.
func TestBatchPolicy(t *testing.T) {
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 1)
	root := filepath.Join(dir, "tree")
	b, err := publish.ParseBatch([]byte(fmt.Sprintf(`{"repositories": [
		{"name": "lazy", "policy": "on_demand", "tags": {"v1": %q}},
		{"name": "eager", "policy": "immediate", "tags": {"v1": %q}},
		{"name": "default", "tags": {"v1": %q}}]}`, spec(0), spec(0), spec(0))))
	if err != nil {
		t.Fatal(err)
	}
	p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithPolicy(publish.PolicyOnDemand))
	res, err := p.RunBatch(context.Background(), b, publish.BatchOptions{})
	if !errors.Is(err, publish.ErrNoUpstream) {
		t.Fatalf("error %v, want ErrNoUpstream", err)
	}
	for i, failed := range []bool{true, false, true} {
		if r := res.Repositories[i]; (r.Err != nil) != failed {
			t.Errorf("%s: error %v", r.Name, r.Err)
		}
	}
	if d := readRepo(t, root, "eager").Tags["v1"]; d != digests[0] {
		t.Errorf("eager:v1 = %q", d)
	}
	assertConsistent(t, root)
}

// TestBatchRemoteSources publishes registry sources, one of them
// on_demand; a second run asks the registry for each manifest once and for
// no blob.
func TestBatchRemoteSources(t *testing.T) {
	u := newUpstream(t, false)
	one, two := ociImage(t, 1, 2), ociImage(t, 2, 1)
	u.push("app:v1", one)
	u.push("app:v2", two)
	root := filepath.Join(t.TempDir(), "tree")
	batch := fmt.Sprintf(`repositories:
- name: mirror/app
  tags: {v1: "docker://%[1]s/app:v1", latest: "docker://%[1]s/app:v1"}
- name: lazy
  policy: on_demand
  tags: {v2: "docker://%[1]s/app:v2"}
- name: copy
  tags: {"1": "docker://%[1]s/app:v1"}
`, u.host)
	opts := publish.BatchOptions{OpenSource: func(spec string) (source.Source, error) { return source.ParseWith(spec, fast()...) }}
	res := runBatch(t, root, batch, opts)
	if got := summary(res); got != "mirror/app published=[latest v1] unchanged=[] pruned=[] written=true\n"+
		"lazy published=[v2] unchanged=[] pruned=[] written=true\n"+
		"copy published=[1] unchanged=[] pruned=[] written=true\n"+
		"removed=[] catalog=true" {
		t.Fatalf("first run:\n%s", got)
	}
	if d := readRepo(t, root, "copy").Tags["1"]; d != mustDigest(t, one) {
		t.Errorf("copy:1 = %s", d)
	}
	lazy := readRepo(t, root, "lazy")
	for d, b := range lazy.Blobs {
		if b.IsStored() {
			t.Errorf("on_demand stored blob %s", d)
		}
	}
	assertConsistent(t, root)

	before, seen := publishedSnapshot(t, root), len(u.requests())
	res = runBatch(t, root, batch, opts)
	for _, r := range res.Repositories {
		if r.Written || len(r.Published) > 0 {
			t.Errorf("second run: %s published %v", r.Name, r.Published)
		}
	}
	var manifests int
	for _, req := range u.requests()[seen:] {
		switch {
		case strings.Contains(req, "/blobs/"):
			t.Errorf("second run: %s", req)
		case strings.HasPrefix(req, "GET ") && strings.Contains(req, "/manifests/"):
			manifests++
		}
	}
	if manifests != 2 {
		t.Errorf("second run asked for %d manifests, want 2 (one per source): %v", manifests, u.requests()[seen:])
	}
	if d := diffSnapshots(before, publishedSnapshot(t, root)); len(d) > 0 {
		t.Errorf("second run changed:\n%s", strings.Join(d, "\n"))
	}

	// The same batch with the lazy repository now immediate fills its
	// blobs in, although its tag already names the source's digest.
	res = runBatch(t, root, strings.Replace(batch, "policy: on_demand", "policy: immediate", 1), opts)
	for _, r := range res.Repositories {
		if got, want := len(r.Published) > 0, r.Name == "lazy"; got != want {
			t.Errorf("third run: %s published %v", r.Name, r.Published)
		}
	}
	for d, b := range readRepo(t, root, "lazy").Blobs {
		if !b.IsStored() {
			t.Errorf("immediate left blob %s unstored", d)
		}
	}
	assertConsistent(t, root)
}
