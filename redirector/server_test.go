package redirector

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		Description string
		Setup       func(t *testing.T, dir string)
		Opts        []Option
		Want        string // part of the error message; "" for success
		WantIs      error
	}{
		{Description: "valid tree", Setup: func(*testing.T, string) {}},
		{Description: "not a directory", Setup: func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}, Want: "open tree", WantIs: os.ErrNotExist},
		{Description: "no layout marker", Setup: func(t *testing.T, dir string) {
			if err := os.Remove(layout.Root(dir).Path(layout.LayoutFileKey())); err != nil {
				t.Fatal(err)
			}
		}, Want: "is not a heron tree: heron-layout.json is missing"},
		{Description: "other layout version", Setup: func(t *testing.T, dir string) {
			writeFile(t, layout.Root(dir).Path(layout.LayoutFileKey()), `{"layoutVersion": 2}`)
		}, Want: "layout version 2 is not supported", WantIs: layout.ErrUnsupportedVersion},
		{Description: "malformed layout marker", Setup: func(t *testing.T, dir string) {
			writeFile(t, layout.Root(dir).Path(layout.LayoutFileKey()), `layoutVersion: 1`)
		}, Want: "heron-layout.json"},
		{Description: "relative base URL", Setup: func(*testing.T, string) {}, Opts: []Option{WithRedirectBase("/blobs")},
			Want: "want an absolute http:// or https:// URL"},
		{Description: "base URL with a query", Setup: func(*testing.T, string) {}, Opts: []Option{WithRedirectBase("https://cdn.example.com/?sig=1")},
			Want: "query"},
		{Description: "base URL of another scheme", Setup: func(*testing.T, string) {}, Opts: []Option{WithRedirectBase("ftp://cdn.example.com")},
			Want: "want an absolute http:// or https:// URL"},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			tt := newTestTree(t)
			tc.Setup(t, tt.dir())
			s, err := New(tt.dir(), tc.Opts...)
			if tc.Want == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("New succeeded, want an error containing %q", tc.Want)
			}
			if !strings.Contains(err.Error(), tc.Want) {
				t.Errorf("error %q does not contain %q", err, tc.Want)
			}
			if tc.WantIs != nil && !errors.Is(err, tc.WantIs) {
				t.Errorf("error %v is not %v", err, tc.WantIs)
			}
		})
	}
}

// TestNewReadsOnlyTheMarker: a tree whose every other file is unreadable
// still starts; start-up reads nothing but heron-layout.json.
func TestNewReadsOnlyTheMarker(t *testing.T) {
	tt := newTestTree(t)
	tt.write("repositories/a.json", []byte("garbage"))
	tt.write(layout.CatalogIndexKey(), []byte("garbage"))
	s, err := New(tt.dir())
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWellKnownBlobs(t *testing.T) {
	for d, content := range wellKnownBlobs {
		if got := digest.FromBytes(content); got != d {
			t.Errorf("content of %s has digest %s", d, got)
		}
	}
	if got := wellKnownBlobs[emptyJSONDigest]; string(got) != "{}" {
		t.Errorf("empty descriptor content = %q", got)
	}
	layer := wellKnownBlobs[emptyLayerDigest]
	if len(layer) != 32 {
		t.Errorf("empty layer is %d bytes, want 32", len(layer))
	}
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	tarball, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(tarball) != 1024 || strings.Trim(string(tarball), "\x00") != "" {
		t.Errorf("empty layer is not two zero blocks: %d bytes", len(tarball))
	}
	if _, err := tar.NewReader(bytes.NewReader(tarball)).Next(); err != io.EOF {
		t.Errorf("empty layer has an entry (%v)", err)
	}
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want route
	}{
		{"", route{endpoint: endpointBase}},
		{"_catalog", route{endpoint: endpointCatalog}},
		{"a/tags/list", route{endpoint: endpointTags, name: "a"}},
		{"team/app/api/tags/list", route{endpoint: endpointTags, name: "team/app/api"}},
		{"a/manifests/tags/list", route{endpoint: endpointTags, name: "a/manifests"}},
		{"a/manifests/latest", route{endpoint: endpointManifest, name: "a", ref: "latest"}},
		{"a/blobs/manifests/latest", route{endpoint: endpointManifest, name: "a/blobs", ref: "latest"}},
		{"a/manifests/b/blobs/sha256:00", route{endpoint: endpointBlob, name: "a/manifests/b", ref: "sha256:00"}},
		{"a/b/referrers/sha256:00", route{endpoint: endpointReferrers, name: "a/b", ref: "sha256:00"}},
		{"manifests/latest", route{endpoint: endpointManifest, name: "", ref: "latest"}},
		{"a/manifests/", route{endpoint: endpointManifest, name: "a", ref: ""}},
		{"a/tags/list/", route{}},
		{"a/blobs/uploads/", route{endpoint: endpointUpload, name: "a"}},
		{"a/b/blobs/uploads/id", route{endpoint: endpointUpload, name: "a/b", ref: "id"}},
		{"blobs/uploads/id", route{}},
		{"a", route{}},
		{"a/b", route{}},
		{"_catalog/x", route{}},
	} {
		if got := parsePath(tc.in); got != tc.want {
			t.Errorf("parsePath(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// catalogPage returns the status and body of GET /v2/_catalog + query.
func catalogPage(t *testing.T, srv *httptest.Server, query string) (int, string) {
	t.Helper()
	resp, body := fetch(t, srv, http.MethodGet, "/v2/_catalog"+query, nil)
	return resp.StatusCode, string(body)
}

func TestCatalogAbsent(t *testing.T) {
	tt := newTestTree(t)
	srv, _, _ := newTestServer(t, tt.dir())
	if code, body := catalogPage(t, srv, ""); code != 200 || body != `{"repositories":[]}` {
		t.Errorf("got %d %s", code, body)
	}
}

// TestCatalogShardReplaced reproduces a publish that replaces the catalog
// between the reads of the index and of a shard: the server reads the new
// index once more and answers from it.
func TestCatalogShardReplaced(t *testing.T) {
	tt := newTestTree(t)
	oldShards := tt.catalog([]string{"a", "b", "c"}, 2)
	srv, s, _ := newTestServer(t, tt.dir())
	replaced := false
	s.afterCatalogIndex = func() {
		if replaced {
			return
		}
		replaced = true
		tt.catalog([]string{"a", "aa", "b", "c"}, 2) // no shard in common with the old one
		for _, k := range oldShards {
			if err := os.Remove(tt.root.Path(k)); err != nil {
				t.Error(err)
			}
		}
	}
	if code, body := catalogPage(t, srv, ""); code != 200 || body != `{"repositories":["a","aa","b","c"]}` {
		t.Errorf("got %d %s", code, body)
	}
	if !replaced {
		t.Error("the hook did not run")
	}
}

// TestCatalogShardMissing: a shard that stays missing is a broken tree.
func TestCatalogShardMissing(t *testing.T) {
	tt := newTestTree(t)
	shards := tt.catalog([]string{"a", "b", "c"}, 2)
	if err := os.Remove(tt.root.Path(shards[1])); err != nil {
		t.Fatal(err)
	}
	srv, _, logs := newTestServer(t, tt.dir())
	if code, body := catalogPage(t, srv, "?n=2"); code != 200 || body != `{"repositories":["a","b"]}` {
		t.Errorf("first page: got %d %s", code, body)
	}
	code, body := catalogPage(t, srv, "?last=b")
	if code != 500 || !strings.Contains(body, string(CodeUnknown)) {
		t.Errorf("got %d %s", code, body)
	}
	if l := logs.take(); !strings.Contains(l, "catalog shard named by the index is gone") {
		t.Errorf("log %q", l)
	}
}

// TestCatalogCap: n is capped at catalogMaxN, with a Link to the rest.
func TestCatalogCap(t *testing.T) {
	tt := newTestTree(t)
	var names []string
	for i := range catalogMaxN + 50 {
		names = append(names, fmt.Sprintf("r%05d", i))
	}
	tt.catalog(names, layout.CatalogShardSize)
	srv, _, _ := newTestServer(t, tt.dir())
	resp, _ := fetch(t, srv, http.MethodGet, "/v2/_catalog?n=5000", nil)
	last := names[catalogMaxN-1]
	if want := "</v2/_catalog?last=" + last + "&n=1000>; rel=\"next\""; resp.Header.Get("Link") != want {
		t.Errorf("Link = %q, want %q", resp.Header.Get("Link"), want)
	}
	// Without n, a page has catalogDefaultN names.
	resp, _ = fetch(t, srv, http.MethodGet, "/v2/_catalog", nil)
	if want := "</v2/_catalog?last=" + names[catalogDefaultN-1] + "&n=100>; rel=\"next\""; resp.Header.Get("Link") != want {
		t.Errorf("Link = %q, want %q", resp.Header.Get("Link"), want)
	}
}

// TestDeps keeps the package's imports pointing downward: the redirector
// reads the tree through layout (and store, for a tree in a store), asks
// its own auth package who may do what, and never imports publish.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		switch imp {
		case "github.com/heron-registry/heron/layout", "github.com/heron-registry/heron/store", "github.com/heron-registry/heron/redirector/auth":
			continue
		}
		if strings.HasPrefix(imp, "github.com/heron-registry/heron/") {
			t.Errorf("redirector imports %s; it may only import layout, store and redirector/auth of this module", imp)
		}
	}
}

// TestBlobHead: a HEAD of a blob, answered from a stat of its file, has
// the status and headers of the GET that http.ServeContent answers, with
// and without a range.
func TestBlobHead(t *testing.T) {
	tt := newTestTree(t)
	layer := tt.blob("application/vnd.oci.image.layer.v1.tar+gzip", []byte("the bytes of a layer"))
	r := layout.NewRepository("app")
	r.Blobs[layer.Digest] = layout.Blob{Size: layer.Size, MediaType: layer.MediaType}
	tt.repository(r)
	for _, m := range cacheModes[:2] {
		s, err := New(tt.dir(), m.opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, header := range []map[string]string{nil, {"Range": "bytes=2-5"}, {"If-None-Match": etag(layer.Digest)}} {
			send := func(method string) *http.Response {
				req := httptest.NewRequest(method, blobURL("app", layer.Digest), nil)
				for k, v := range header {
					req.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				return w.Result()
			}
			get, head := send(http.MethodGet), send(http.MethodHead)
			if get.StatusCode != head.StatusCode || !reflect.DeepEqual(get.Header, head.Header) {
				t.Errorf("%s, %v: GET %d %v, HEAD %d %v", m.name, header, get.StatusCode, get.Header, head.StatusCode, head.Header)
			}
		}
	}
}
