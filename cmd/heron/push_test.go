package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushServer is heron serve --push over a fresh tree: the server, the
// publisher and the adapter as cmd/heron wires them, behind httptest.
type pushServer struct {
	t    *testing.T
	url  string
	root string
	pub  *publish.Publisher
}

func newPushServer(t *testing.T, o redirector.PushOptions, extra ...func(*publish.Publisher) redirector.Option) *pushServer {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	pub := publish.New(store.NewFS(layout.Root(root)))
	if err := pub.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts := []redirector.Option{redirector.WithPusher(pusherAdapter{pub}, o)}
	for _, e := range extra {
		opts = append(opts, e(pub))
	}
	srv, err := redirector.New(root, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &pushServer{t: t, url: hs.URL, root: root, pub: pub}
}

// do sends a request and returns the answer with its body read.
func (s *pushServer) do(method, path string, body []byte, header ...string) (*http.Response, []byte) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, b
}

// noRedirects is a client that shows redirects rather than follow them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// want checks an answer's status, and its OCI error code when code is set.
func want(t *testing.T, what string, resp *http.Response, body []byte, status int, code redirector.Code) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, resp.StatusCode, status, body)
	}
	if code == "" {
		return
	}
	var e struct {
		Errors []struct{ Code redirector.Code } `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != code {
		t.Fatalf("%s: body %s, want one error %s", what, body, code)
	}
}

// uploadBlob pushes b to name with POST ?digest= and returns its
// descriptor.
func (s *pushServer) uploadBlob(name string, b []byte, mediaType string) ocispec.Descriptor {
	s.t.Helper()
	d := digest.FromBytes(b)
	resp, body := s.do("POST", "/v2/"+name+"/blobs/uploads/?digest="+d.String(), b)
	want(s.t, "monolithic upload", resp, body, http.StatusCreated, "")
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// image returns an OCI image manifest of a config and one layer (not
// pushed) and its parts.
func testImage(seed string) (manifest []byte, config, layer []byte, subject *ocispec.Descriptor) {
	config = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"seed":"` + seed + `"}`)
	layer = []byte("layer of " + seed)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}},
	}
	m.SchemaVersion = 2
	manifest, _ = json.Marshal(m)
	return manifest, config, layer, nil
}

func TestPushSession(t *testing.T) {
	s := newPushServer(t, redirector.PushOptions{})
	blob := []byte("0123456789abcdefghij")
	d := digest.FromBytes(blob)

	resp, body := s.do("POST", "/v2/team/app/blobs/uploads/", nil)
	want(t, "POST", resp, body, http.StatusAccepted, "")
	loc, id := resp.Header.Get("Location"), resp.Header.Get("Docker-Upload-UUID")
	if id == "" || loc != "/v2/team/app/blobs/uploads/"+id || resp.Header.Get("Range") != "0-0" {
		t.Fatalf("POST: Location %q, UUID %q, Range %q", loc, id, resp.Header.Get("Range"))
	}

	resp, body = s.do("PATCH", loc, blob[:10], "Content-Range", "0-9", "Content-Type", "application/octet-stream")
	want(t, "first chunk", resp, body, http.StatusAccepted, "")
	if r := resp.Header.Get("Range"); r != "0-9" {
		t.Fatalf("first chunk: Range %q", r)
	}
	// A chunk that does not start where the session ends: 416 and where
	// it ends.
	resp, body = s.do("PATCH", loc, blob[5:15], "Content-Range", "5-14")
	want(t, "overlapping chunk", resp, body, http.StatusRequestedRangeNotSatisfiable, redirector.CodeBlobUploadInvalid)
	if r := resp.Header.Get("Range"); r != "0-9" {
		t.Fatalf("416: Range %q, want 0-9", r)
	}
	resp, body = s.do("GET", loc, nil)
	want(t, "status", resp, body, http.StatusNoContent, "")
	if r := resp.Header.Get("Range"); r != "0-9" {
		t.Fatalf("status: Range %q", r)
	}
	// The session is of its repository only.
	resp, body = s.do("GET", "/v2/other/blobs/uploads/"+id, nil)
	want(t, "status from another repository", resp, body, http.StatusNotFound, redirector.CodeBlobUploadUnknown)

	// The rest streamed, without Content-Range.
	resp, body = s.do("PATCH", loc, blob[10:])
	want(t, "streamed chunk", resp, body, http.StatusAccepted, "")
	if r := resp.Header.Get("Range"); r != "0-19" {
		t.Fatalf("streamed chunk: Range %q", r)
	}
	// Not there until the PUT.
	resp, body = s.do("HEAD", "/v2/team/app/blobs/"+d.String(), nil)
	want(t, "HEAD before PUT", resp, body, http.StatusNotFound, "")

	wrong := digest.FromString("other")
	resp, body = s.do("PUT", loc+"?digest="+wrong.String(), nil)
	want(t, "PUT of the wrong digest", resp, body, http.StatusBadRequest, redirector.CodeDigestInvalid)
	resp, body = s.do("PUT", loc, nil)
	want(t, "PUT without digest", resp, body, http.StatusBadRequest, redirector.CodeDigestInvalid)
	if _, err := os.Stat(filepath.Join(s.root, "blobs", "sha256", wrong.Encoded())); !os.IsNotExist(err) {
		t.Fatalf("a blob was written under the wrong digest: %v", err)
	}

	resp, body = s.do("PUT", loc+"?digest="+d.String(), nil)
	want(t, "PUT", resp, body, http.StatusCreated, "")
	if resp.Header.Get("Location") != "/v2/team/app/blobs/"+d.String() || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("PUT: Location %q, digest %q", resp.Header.Get("Location"), resp.Header.Get("Docker-Content-Digest"))
	}
	resp, body = s.do("GET", "/v2/team/app/blobs/"+d.String(), nil)
	want(t, "GET the blob", resp, body, http.StatusOK, "")
	if !bytes.Equal(body, blob) {
		t.Fatalf("GET the blob: %q", body)
	}
	// The session is gone.
	resp, body = s.do("GET", loc, nil)
	want(t, "status after PUT", resp, body, http.StatusNotFound, redirector.CodeBlobUploadUnknown)
	// The repository exists now, and is in the catalog.
	resp, body = s.do("GET", "/v2/_catalog", nil)
	want(t, "catalog", resp, body, http.StatusOK, "")
	if !strings.Contains(string(body), `"team/app"`) {
		t.Fatalf("catalog: %s", body)
	}
}

func TestPushCancel(t *testing.T) {
	s := newPushServer(t, redirector.PushOptions{})
	resp, body := s.do("POST", "/v2/a/blobs/uploads/", nil)
	want(t, "POST", resp, body, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	resp, body = s.do("PATCH", loc, []byte("abc"))
	want(t, "PATCH", resp, body, http.StatusAccepted, "")
	resp, body = s.do("DELETE", loc, nil)
	want(t, "DELETE", resp, body, http.StatusNoContent, "")
	resp, body = s.do("PATCH", loc, []byte("def"))
	want(t, "PATCH after DELETE", resp, body, http.StatusNotFound, redirector.CodeBlobUploadUnknown)
	entries, err := os.ReadDir(filepath.Join(s.root, ".heron", "uploads"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("the cancelled session left %d entries", len(entries))
	}
}

func TestPushMonolithicAndLimits(t *testing.T) {
	s := newPushServer(t, redirector.PushOptions{MaxUploadSize: 16})
	b := []byte("small blob")
	d := digest.FromBytes(b)
	resp, body := s.do("POST", "/v2/a/blobs/uploads/?digest="+digest.FromString("x").String(), b)
	want(t, "monolithic, wrong digest", resp, body, http.StatusBadRequest, redirector.CodeDigestInvalid)
	resp, body = s.do("POST", "/v2/a/blobs/uploads/?digest=sha256:nothex", b)
	want(t, "monolithic, bad digest", resp, body, http.StatusBadRequest, redirector.CodeDigestInvalid)
	resp, body = s.do("POST", "/v2/a/blobs/uploads/?digest="+d.String(), b)
	want(t, "monolithic", resp, body, http.StatusCreated, "")

	big := bytes.Repeat([]byte("x"), 17)
	resp, body = s.do("POST", "/v2/a/blobs/uploads/?digest="+digest.FromBytes(big).String(), big)
	want(t, "monolithic over the limit", resp, body, http.StatusRequestEntityTooLarge, redirector.CodeSizeInvalid)
	resp, body = s.do("POST", "/v2/a/blobs/uploads/", nil)
	want(t, "POST", resp, body, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	resp, body = s.do("PATCH", loc, big[:10])
	want(t, "first chunk", resp, body, http.StatusAccepted, "")
	resp, body = s.do("PATCH", loc, big[10:])
	want(t, "chunk over the limit", resp, body, http.StatusRequestEntityTooLarge, redirector.CodeSizeInvalid)
	if _, err := os.Stat(filepath.Join(s.root, "blobs", "sha256", digest.FromBytes(big).Encoded())); !os.IsNotExist(err) {
		t.Fatalf("a blob over the limit was written: %v", err)
	}
	// sha512.
	d512 := digest.SHA512.FromBytes(b)
	resp, body = s.do("POST", "/v2/a/blobs/uploads/?digest="+d512.String(), b)
	want(t, "monolithic sha512", resp, body, http.StatusCreated, "")
	resp, body = s.do("GET", "/v2/a/blobs/"+d512.String(), nil)
	want(t, "GET sha512", resp, body, http.StatusOK, "")
}

func TestPushMount(t *testing.T) {
	s := newPushServer(t, redirector.PushOptions{})
	b := []byte("shared layer")
	desc := s.uploadBlob("src", b, ocispec.MediaTypeImageLayer)
	resp, body := s.do("POST", "/v2/dst/blobs/uploads/?mount="+desc.Digest.String()+"&from=src", nil)
	want(t, "mount", resp, body, http.StatusCreated, "")
	if resp.Header.Get("Location") != "/v2/dst/blobs/"+desc.Digest.String() {
		t.Fatalf("mount: Location %q", resp.Header.Get("Location"))
	}
	resp, body = s.do("GET", "/v2/dst/blobs/"+desc.Digest.String(), nil)
	want(t, "GET mounted", resp, body, http.StatusOK, "")
	// From a repository that does not list it: a session instead.
	other := digest.FromString("not here")
	resp, body = s.do("POST", "/v2/dst/blobs/uploads/?mount="+other.String()+"&from=src", nil)
	want(t, "mount of an unknown blob", resp, body, http.StatusAccepted, "")
	if resp.Header.Get("Docker-Upload-UUID") == "" {
		t.Fatal("mount of an unknown blob: no session")
	}
	// Without from: any blob of the tree.
	resp, body = s.do("POST", "/v2/third/blobs/uploads/?mount="+desc.Digest.String(), nil)
	want(t, "mount without from", resp, body, http.StatusCreated, "")
}

func TestPushManifest(t *testing.T) {
	s := newPushServer(t, redirector.PushOptions{Delete: true})
	m, config, layer, _ := testImage("one")
	md := digest.FromBytes(m)
	ct := []string{"Content-Type", ocispec.MediaTypeImageManifest}

	// Blobs first: without them the manifest is refused.
	resp, body := s.do("PUT", "/v2/app/manifests/v1", m, ct...)
	want(t, "manifest before its blobs", resp, body, http.StatusBadRequest, redirector.CodeManifestBlobUnknown)
	s.uploadBlob("app", config, ocispec.MediaTypeImageConfig)
	resp, body = s.do("PUT", "/v2/app/manifests/v1", m, ct...)
	want(t, "manifest without its layer", resp, body, http.StatusBadRequest, redirector.CodeManifestBlobUnknown)
	s.uploadBlob("app", layer, ocispec.MediaTypeImageLayerGzip)

	resp, body = s.do("PUT", "/v2/app/manifests/"+digest.FromString("x").String(), m, ct...)
	want(t, "manifest under another digest", resp, body, http.StatusBadRequest, redirector.CodeDigestInvalid)
	resp, body = s.do("PUT", "/v2/app/manifests/v1", []byte("{not json"), ct...)
	want(t, "not a manifest", resp, body, http.StatusBadRequest, redirector.CodeManifestInvalid)

	resp, body = s.do("PUT", "/v2/app/manifests/v1", m, ct...)
	want(t, "manifest", resp, body, http.StatusCreated, "")
	if resp.Header.Get("Docker-Content-Digest") != md.String() || resp.Header.Get("Location") != "/v2/app/manifests/"+md.String() {
		t.Fatalf("manifest: digest %q, Location %q", resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Location"))
	}
	resp, body = s.do("GET", "/v2/app/manifests/v1", nil)
	want(t, "GET by tag", resp, body, http.StatusOK, "")
	if !bytes.Equal(body, m) || resp.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest {
		t.Fatalf("GET by tag: %s (%s)", body, resp.Header.Get("Content-Type"))
	}

	// By digest, with ?tag=.
	resp, body = s.do("PUT", "/v2/app/manifests/"+md.String()+"?tag=v2&tag=v3", m, ct...)
	want(t, "manifest by digest with tags", resp, body, http.StatusCreated, "")
	resp, body = s.do("GET", "/v2/app/tags/list", nil)
	want(t, "tags", resp, body, http.StatusOK, "")
	if !strings.Contains(string(body), `["v1","v2","v3"]`) {
		t.Fatalf("tags: %s", body)
	}

	// A referrer: OCI-Subject.
	art := ocispec.Manifest{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.sig",
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{ocispec.DescriptorEmptyJSON},
		Subject:      &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m))},
	}
	art.SchemaVersion = 2
	ab, _ := json.Marshal(art)
	s.uploadBlob("app", []byte("{}"), ocispec.MediaTypeEmptyJSON)
	resp, body = s.do("PUT", "/v2/app/manifests/"+digest.FromBytes(ab).String(), ab, ct...)
	want(t, "referrer", resp, body, http.StatusCreated, "")
	if resp.Header.Get("OCI-Subject") != md.String() {
		t.Fatalf("referrer: OCI-Subject %q", resp.Header.Get("OCI-Subject"))
	}
	resp, body = s.do("GET", "/v2/app/referrers/"+md.String(), nil)
	want(t, "referrers", resp, body, http.StatusOK, "")
	if !strings.Contains(string(body), digest.FromBytes(ab).String()) {
		t.Fatalf("referrers: %s", body)
	}

	// Deletes: a tag, then the manifest.
	resp, body = s.do("DELETE", "/v2/app/manifests/v3", nil)
	want(t, "DELETE tag", resp, body, http.StatusAccepted, "")
	resp, body = s.do("GET", "/v2/app/manifests/v3", nil)
	want(t, "GET deleted tag", resp, body, http.StatusNotFound, redirector.CodeManifestUnknown)
	resp, body = s.do("DELETE", "/v2/app/manifests/v3", nil)
	want(t, "DELETE deleted tag", resp, body, http.StatusNotFound, redirector.CodeManifestUnknown)
	resp, body = s.do("DELETE", "/v2/app/blobs/"+digest.FromBytes(layer).String(), nil)
	want(t, "DELETE a blob in use", resp, body, http.StatusConflict, redirector.CodeDenied)
	resp, body = s.do("DELETE", "/v2/app/manifests/"+md.String(), nil)
	want(t, "DELETE manifest", resp, body, http.StatusAccepted, "")
	resp, body = s.do("GET", "/v2/app/manifests/v1", nil)
	want(t, "GET tag of deleted manifest", resp, body, http.StatusNotFound, redirector.CodeManifestUnknown)
	resp, body = s.do("DELETE", "/v2/app/blobs/"+digest.FromBytes(layer).String(), nil)
	want(t, "DELETE blob", resp, body, http.StatusAccepted, "")
	resp, body = s.do("HEAD", "/v2/app/blobs/"+digest.FromBytes(layer).String(), nil)
	want(t, "HEAD deleted blob", resp, body, http.StatusNotFound, "")
}

func TestPushRefused(t *testing.T) {
	// mirror/ is a pull-through cache: only its upstream fills it.
	s := newPushServer(t, redirector.PushOptions{}, func(pub *publish.Publisher) redirector.Option {
		return redirector.WithPullThrough(pullerAdapter{publish.NewPuller(pub)},
			[]redirector.PullThrough{{Prefix: "mirror", URL: "http://127.0.0.1:1"}}, time.Minute)
	})
	resp, body := s.do("DELETE", "/v2/app/manifests/v1", nil)
	want(t, "DELETE without --delete", resp, body, http.StatusMethodNotAllowed, redirector.CodeUnsupported)
	resp, body = s.do("POST", "/v2/mirror/x/blobs/uploads/", nil)
	want(t, "push into a cache", resp, body, http.StatusMethodNotAllowed, redirector.CodeUnsupported)
	resp, body = s.do("PUT", "/v2/mirror/manifests/v1", []byte("{}"))
	want(t, "push to the cache's prefix", resp, body, http.StatusMethodNotAllowed, redirector.CodeUnsupported)
	resp, body = s.do("POST", "/v2/mirrored/x/blobs/uploads/", nil)
	want(t, "push beside the cache", resp, body, http.StatusAccepted, "")
	resp, body = s.do("POST", "/v2/a/../b/blobs/uploads/", nil)
	if resp.StatusCode < 400 {
		t.Fatalf("dot segments: %d %s", resp.StatusCode, body)
	}
	resp, body = s.do("PUT", "/v2/BAD/manifests/v1", []byte("{}"))
	want(t, "bad name", resp, body, http.StatusBadRequest, redirector.CodeNameInvalid)
	resp, body = s.do("PUT", "/v2/a/manifests/-bad-tag", []byte("{}"))
	want(t, "bad tag", resp, body, http.StatusBadRequest, redirector.CodeManifestInvalid)
	resp, body = s.do("PATCH", "/v2/a/blobs/uploads/nosuchsession", []byte("x"))
	want(t, "unknown session", resp, body, http.StatusNotFound, redirector.CodeBlobUploadUnknown)
	resp, body = s.do("PUT", "/v2/a/tags/list", nil)
	want(t, "PUT tags/list", resp, body, http.StatusMethodNotAllowed, redirector.CodeUnsupported)
}

// TestPushAfterGC: a blob a client uploaded, then deleted, and that gc
// removed, fails the manifest that references it with 400, and nothing
// is written: the repository does not get the tag.
func TestPushAfterGC(t *testing.T) {
	s := newPushServer(t, redirector.PushOptions{Delete: true})
	m, config, layer, _ := testImage("gc")
	s.uploadBlob("app", config, ocispec.MediaTypeImageConfig)
	l := s.uploadBlob("app", layer, ocispec.MediaTypeImageLayerGzip)
	resp, body := s.do("DELETE", "/v2/app/blobs/"+l.Digest.String(), nil)
	want(t, "DELETE the layer", resp, body, http.StatusAccepted, "")
	res, err := s.pub.GC(context.Background(), publish.GCOptions{Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.root, "blobs", "sha256", l.Digest.Encoded())); !os.IsNotExist(err) {
		t.Fatalf("gc left the unlisted layer (%+v): %v", res, err)
	}
	resp, body = s.do("PUT", "/v2/app/manifests/v1", m, "Content-Type", ocispec.MediaTypeImageManifest)
	want(t, "manifest of a collected layer", resp, body, http.StatusBadRequest, redirector.CodeManifestBlobUnknown)
	resp, body = s.do("GET", "/v2/app/tags/list", nil)
	want(t, "tags", resp, body, http.StatusOK, "")
	if strings.Contains(string(body), "v1") {
		t.Fatalf("the refused push wrote its tag: %s", body)
	}
	// Pushed again, it goes through.
	s.uploadBlob("app", layer, ocispec.MediaTypeImageLayerGzip)
	resp, body = s.do("PUT", "/v2/app/manifests/v1", m, "Content-Type", ocispec.MediaTypeImageManifest)
	want(t, "manifest pushed again", resp, body, http.StatusCreated, "")
}

// TestPushAcrossServers: an upload begun through one server goes on and
// ends through another that shares the tree (the session is files of the
// tree), and the first serves what the second finished.
func TestPushAcrossServers(t *testing.T) {
	a := newPushServer(t, redirector.PushOptions{})
	srv, err := redirector.New(a.root, redirector.WithPusher(pusherAdapter{publish.New(store.NewFS(layout.Root(a.root)))}, redirector.PushOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	b := &pushServer{t: t, url: hs.URL, root: a.root}

	blob := []byte("one half, then the other")
	d := digest.FromBytes(blob)
	resp, body := a.do("POST", "/v2/app/blobs/uploads/", nil)
	want(t, "POST through a", resp, body, http.StatusAccepted, "")
	loc := resp.Header.Get("Location")
	resp, body = a.do("PATCH", loc, blob[:8], "Content-Range", "0-7")
	want(t, "PATCH through a", resp, body, http.StatusAccepted, "")
	resp, body = b.do("GET", loc, nil)
	want(t, "status through b", resp, body, http.StatusNoContent, "")
	if r := resp.Header.Get("Range"); r != "0-7" {
		t.Fatalf("b sees Range %q", r)
	}
	resp, body = b.do("PATCH", loc, blob[8:], "Content-Range", fmt.Sprintf("8-%d", len(blob)-1))
	want(t, "PATCH through b", resp, body, http.StatusAccepted, "")
	resp, body = b.do("PUT", loc+"?digest="+d.String(), nil)
	want(t, "PUT through b", resp, body, http.StatusCreated, "")
	resp, body = a.do("GET", "/v2/app/blobs/"+d.String(), nil)
	want(t, "GET through a", resp, body, http.StatusOK, "")
	if !bytes.Equal(body, blob) {
		t.Fatalf("a serves %q", body)
	}
}

// TestPushWellKnownBlob pushes as clients do, uploading only the blobs a
// HEAD does not find, an image whose layers include the empty layer
// (sha256:a3ed95…, which Docker-built images carry) into a repository
// that exists already: the server must not answer the HEAD of a blob the
// manifest PUT then refuses as unknown.
func TestPushWellKnownBlob(t *testing.T) {
	for _, o := range []redirector.PushOptions{{}, {Delete: true}} {
		t.Run(fmt.Sprintf("delete=%v", o.Delete), func(t *testing.T) {
			s := newPushServer(t, o)
			m, config, layer, _ := testImage("first")
			s.uploadBlob("wk/app", config, ocispec.MediaTypeImageConfig)
			s.uploadBlob("wk/app", layer, ocispec.MediaTypeImageLayerGzip)
			resp, body := s.do("PUT", "/v2/wk/app/manifests/v1", m, "Content-Type", ocispec.MediaTypeImageManifest)
			want(t, "first manifest", resp, body, http.StatusCreated, "")

			empty := []byte{
				0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14,
				0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
			}
			config2 := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"seed":"second"}`)
			blobs := map[digest.Digest][]byte{digest.FromBytes(empty): empty, digest.FromBytes(config2): config2}
			man := ocispec.Manifest{
				MediaType: ocispec.MediaTypeImageManifest,
				Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config2), Size: int64(len(config2))},
				Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(empty), Size: int64(len(empty))}},
			}
			man.SchemaVersion = 2
			m2, _ := json.Marshal(man)
			for d, b := range blobs {
				resp, _ := s.do("HEAD", "/v2/wk/app/blobs/"+d.String(), nil)
				if resp.StatusCode == http.StatusOK {
					continue // a client skips it
				}
				s.uploadBlob("wk/app", b, "")
			}
			resp, body = s.do("PUT", "/v2/wk/app/manifests/v2", m2, "Content-Type", ocispec.MediaTypeImageManifest)
			want(t, "manifest with the empty layer, pushed as clients push", resp, body, http.StatusCreated, "")
			resp, body = s.do("GET", "/v2/wk/app/blobs/"+digest.FromBytes(empty).String(), nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, empty) {
				t.Errorf("GET of the empty layer after the push: %d, %d bytes", resp.StatusCode, len(body))
			}
		})
	}
}
