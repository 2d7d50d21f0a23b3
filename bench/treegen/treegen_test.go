package treegen

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNames(t *testing.T) {
	tests := []struct {
		i    int
		want string
	}{
		{0, "org0/svc0"},
		{1, "org0/team0/app1"},
		{10, "org0/svc1"},
		{123, "org0/team1/app23"},
		{999_999, "org999/team9/app99"},
		{1_234_560, "org1234/svc56"},
	}
	for _, tc := range tests {
		if got := RepositoryName(tc.i); got != tc.want {
			t.Errorf("RepositoryName(%d) = %q, want %q", tc.i, got, tc.want)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 20_000; i++ {
		n := RepositoryName(i)
		if err := layout.ValidateRepository(n); err != nil {
			t.Fatal(err)
		}
		if seen[n] {
			t.Fatalf("RepositoryName(%d) = %q twice", i, n)
		}
		seen[n] = true
	}
	tags := map[string]bool{}
	for k := 0; k < 1000; k++ {
		tag := TagName(k)
		if err := layout.ValidateTag(tag); err != nil || tags[tag] {
			t.Fatalf("TagName(%d) = %q: %v, duplicate %v", k, tag, err, tags[tag])
		}
		tags[tag] = true
	}
}

func TestImage(t *testing.T) {
	img, err := NewImage(DefaultLayerSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layer) != DefaultLayerSize {
		t.Fatalf("layer is %d bytes", len(img.Layer))
	}
	again, _ := NewImage(DefaultLayerSize)
	if again.ManifestDigest != img.ManifestDigest {
		t.Fatal("the image is not the same on every run")
	}
	var m v1.Manifest
	if err := json.Unmarshal(img.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != ManifestMediaType || m.Config.Digest != img.ConfigDigest || len(m.Layers) != 1 || m.Layers[0].Digest != img.LayerDigest || m.Layers[0].Size != int64(len(img.Layer)) {
		t.Fatalf("manifest does not describe the image: %s", img.Manifest)
	}
	var c v1.Image
	if err := json.Unmarshal(img.Config, &c); err != nil || len(c.RootFS.DiffIDs) != 1 || c.RootFS.DiffIDs[0] != img.LayerDigest {
		t.Fatalf("config: %v %s", err, img.Config)
	}
	tr := tar.NewReader(bytes.NewReader(img.Layer))
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, tr)
	if err != nil || n != h.Size {
		t.Fatalf("layer file: %d bytes of %d: %v", n, h.Size, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("layer has more than one file: %v", err)
	}
	for _, size := range []int{0, 1000, 1536, DefaultLayerSize + 1} {
		if _, err := NewImage(size); err == nil {
			t.Errorf("NewImage(%d) succeeded", size)
		}
	}
}

// TestGenerateServes generates a tree of more than two catalog shards and
// checks it with layout's decoders and with heron's own server.
func TestGenerateServes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	const repos = 2*layout.CatalogShardSize + 17
	st, err := Generate(context.Background(), Options{
		Root: root, Repos: repos, Tags: 2, LayerSize: 4096, Workers: 3,
		Extra: []Extra{{Name: "library/tags", Tags: 100}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 3 blobs, the repository files, 3 shards and the index, the change
	// counter, the marker.
	if st.Repositories != repos+1 || st.Shards != 3 || st.Files != 3+repos+1+3+1+1+1 {
		t.Fatalf("stats: %+v", st)
	}

	// Every repository file decodes, names its key, and lists content
	// that is stored under its digest.
	var names []string
	rroot := layout.Root(root)
	err = filepath.WalkDir(rroot.Path(layout.RepositoriesDirKey()), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name, ok := layout.RepositoryNameFromKey(filepath.ToSlash(rel))
		if !ok {
			t.Fatalf("%s is not a repository file", rel)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r, err := layout.DecodeRepository(data)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if r.Name != name {
			t.Fatalf("%s names %s", rel, r.Name)
		}
		for d := range r.Blobs {
			checkBlob(t, rroot, d)
		}
		for d := range r.Manifests {
			checkBlob(t, rroot, d)
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if len(names) != repos+1 {
		t.Fatalf("%d repository files, want %d", len(names), repos+1)
	}

	// The catalog lists exactly those names, in order.
	data, err := os.ReadFile(rroot.Path(layout.CatalogIndexKey()))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.DecodeCatalogIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, s := range idx.Shards {
		key, _ := layout.CatalogShardKey(s.ID)
		data, err := os.ReadFile(rroot.Path(key))
		if err != nil {
			t.Fatal(err)
		}
		part, err := layout.DecodeCatalogShard(data, s.ID)
		if err != nil || len(part) != s.Count || part[0] != s.First || part[len(part)-1] != s.Last || len(part) > layout.CatalogShardSize {
			t.Fatalf("shard %s: %d names, %v", s.ID, len(part), err)
		}
		listed = append(listed, part...)
	}
	if !slices.Equal(listed, names) {
		t.Fatal("the catalog does not list the repository files")
	}

	// heron serves it.
	srv, err := redirector.New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()
	for _, tc := range []struct {
		path, contains string
	}{
		{"/v2/" + RepositoryName(1) + "/manifests/latest", `"layers"`},
		{"/v2/" + RepositoryName(repos-1) + "/manifests/" + TagName(1), `"layers"`},
		{"/v2/" + RepositoryName(5) + "/manifests/" + string(st.Image.ManifestDigest), `"layers"`},
		{"/v2/" + RepositoryName(7) + "/blobs/" + string(st.Image.ConfigDigest), `"diff_ids"`},
		{"/v2/library/tags/tags/list", `"v1.9.9"`},
		{"/v2/_catalog?n=5&last=" + names[layout.CatalogShardSize-2], names[layout.CatalogShardSize+2]},
	} {
		resp, err := http.Get(ts.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.contains) {
			t.Errorf("GET %s: %s, body lacks %s:\n%.300s", tc.path, resp.Status, tc.contains, body)
		}
	}
}

func checkBlob(t *testing.T, root layout.Root, d digest.Digest) {
	t.Helper()
	key, err := layout.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(root.Path(key))
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(data) != d {
		t.Fatalf("%s does not hold %s", key, d)
	}
}

func TestGenerateRefuses(t *testing.T) {
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	tests := []struct {
		desc string
		opts Options
		want string
	}{
		{"no root", Options{Repos: 1, Tags: 1}, "no root"},
		{"not empty", Options{Root: full, Repos: 1, Tags: 1}, "not empty"},
		{"no tags", Options{Root: t.TempDir(), Repos: 1}, "tags >= 1"},
		{"bad extra", Options{Root: t.TempDir(), Repos: 1, Tags: 1, Extra: []Extra{{Name: "Bad", Tags: 1}}}, "invalid repository name"},
		{"extra twice", Options{Root: t.TempDir(), Repos: 2, Tags: 1, Extra: []Extra{{Name: RepositoryName(1), Tags: 1}}}, "named twice"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Generate(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	root := filepath.Join(t.TempDir(), "t")
	if _, err := Generate(ctx, Options{Root: root, Repos: 5000, Tags: 1}); err == nil {
		t.Fatal("a cancelled run succeeded")
	}
	if _, err := os.Stat(layout.Root(root).Path(layout.LayoutFileKey())); err == nil {
		t.Fatal("a cancelled run wrote the layout marker")
	}
}
