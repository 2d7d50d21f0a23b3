package redirector

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	sigType  = "application/vnd.example.sig"
	sbomType = "application/vnd.example.sbom"
	cdnBase  = "https://cdn.example.com/tree"
	flagBase = "https://flag.example.com/base"
)

// fixture is the tree most tests run against.
//
//	library/alpine  an index (latest, 3.19) of two images (3.18, edge)
//	team/app/api    an image (v1) with two referrers; blobBaseURL = cdnBase
//	other           an image; alpine's layer is in blobs/ but not listed here
//	broken          a repository file that is not JSON
//	short           a config file shorter than listed, a manifest whose bytes do not match its digest
//	lazy            an on_demand blob: listed with stored:false, not in blobs/
//	escape          repositories/escape.json is a symbolic link out of the tree
//	dir.json/inner  makes repositories/dir.json a folder
type fixture struct {
	tree *testTree

	layerA                    v1.Descriptor
	layerAData                []byte
	manifestA, manifestB, idx v1.Descriptor
	manifestAData, idxData    []byte
	image, sig, sbom          v1.Descriptor
	imageData                 []byte
	layerC                    v1.Descriptor
	otherManifest             v1.Descriptor
	shortConfig, badManifest  v1.Descriptor
	lazyLayer                 v1.Descriptor
	catalog                   []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureIn(t, newTestTree(t))
}

// newFixtureIn writes the fixture in tt (whose shardSize shards every
// repository).
func newFixtureIn(t *testing.T, tt *testTree) *fixture {
	t.Helper()
	f := &fixture{tree: tt}

	// library/alpine
	alpine := layout.NewRepository("library/alpine")
	f.layerAData = []byte("0123456789abcdefghijklmnopqrstuvwxyz: layer of alpine amd64")
	f.layerA = tt.blob(v1.MediaTypeImageLayerGzip, f.layerAData)
	mA := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64"}`)), Layers: []v1.Descriptor{f.layerA}}
	f.manifestA, f.manifestAData = tt.manifest(mA)
	addImage(alpine, f.manifestA, mA)
	mB := v1.Manifest{
		Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"arm64"}`)),
		Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer of alpine arm64"))},
	}
	f.manifestB, _ = tt.manifest(mB)
	addImage(alpine, f.manifestB, mB)
	f.idx, f.idxData = tt.index(f.manifestA, f.manifestB)
	alpine.Manifests[f.idx.Digest] = layout.Manifest{
		MediaType: v1.MediaTypeImageIndex, Size: f.idx.Size, Children: []digest.Digest{f.manifestA.Digest, f.manifestB.Digest},
	}
	alpine.Tags = map[string]digest.Digest{"latest": f.idx.Digest, "3.19": f.idx.Digest, "3.18": f.manifestA.Digest, "edge": f.manifestB.Digest}
	tt.repository(alpine)

	// team/app/api
	api := layout.NewRepository("team/app/api")
	api.BlobBaseURL = cdnBase + "/"
	f.layerC = tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer of the api"))
	mImg := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`)), Layers: []v1.Descriptor{f.layerC}}
	f.image, f.imageData = tt.manifest(mImg)
	addImage(api, f.image, mImg)
	// The artifacts' config is the empty descriptor, which is listed but
	// deliberately not written to blobs/.
	empty := v1.DescriptorEmptyJSON
	subject := f.image
	for _, a := range []struct {
		typ  string
		desc *v1.Descriptor
	}{{sigType, &f.sig}, {sbomType, &f.sbom}} {
		m := v1.Manifest{
			ArtifactType: a.typ, Config: empty, Subject: &subject,
			Layers: []v1.Descriptor{tt.blob(a.typ, []byte("content of "+a.typ))},
		}
		*a.desc, _ = tt.manifest(m)
		addImage(api, *a.desc, m)
	}
	api.Tags = map[string]digest.Digest{"v1": f.image.Digest}
	tt.repository(api)

	// other
	other := layout.NewRepository("other")
	mO := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"other"}`)), Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("other layer"))}}
	f.otherManifest, _ = tt.manifest(mO)
	addImage(other, f.otherManifest, mO)
	other.Tags = map[string]digest.Digest{"latest": f.otherManifest.Digest}
	tt.repository(other)

	// broken
	key, _ := layout.RepositoryKey("broken")
	tt.write(key, []byte("{not json"))

	// short
	short := layout.NewRepository("short")
	f.shortConfig = tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"short","padding":"...................."}`))
	ck, _ := layout.BlobKey(f.shortConfig.Digest)
	tt.write(ck, []byte(`{"architecture":"short"`)) // truncated
	mS := v1.Manifest{Config: f.shortConfig, Layers: []v1.Descriptor{}}
	shortManifest, _ := tt.manifest(mS)
	addImage(short, shortManifest, mS)
	mBad := v1.Manifest{Config: f.shortConfig, Layers: []v1.Descriptor{}, Annotations: map[string]string{"x": "aaaa"}}
	f.badManifest, _ = tt.manifest(mBad)
	mk, _ := layout.ManifestKey(f.badManifest.Digest)
	mBad.Annotations = map[string]string{"x": "bbbb"} // same size, other bytes
	mBad.SchemaVersion, mBad.MediaType = 2, v1.MediaTypeImageManifest
	tt.write(mk, mustJSON(t, mBad))
	addImage(short, f.badManifest, mBad)
	short.Tags = map[string]digest.Digest{"latest": shortManifest.Digest, "bad": f.badManifest.Digest}
	tt.repository(short)

	// lazy
	lazy := layout.NewRepository("lazy")
	f.lazyLayer = v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromString("never stored"), Size: 12}
	mL := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"lazy"}`)), Layers: []v1.Descriptor{f.lazyLayer}}
	lazyManifest, _ := tt.manifest(mL)
	addImage(lazy, lazyManifest, mL)
	notStored := false
	lazy.Blobs[f.lazyLayer.Digest] = layout.Blob{Size: f.lazyLayer.Size, Stored: &notStored}
	lazy.Tags = map[string]digest.Digest{"latest": lazyManifest.Digest}
	tt.repository(lazy)

	// escape: a valid repository file outside the tree, linked from inside.
	outside := t.TempDir()
	esc := layout.NewRepository("escape")
	esc.Tags = map[string]digest.Digest{"secret": f.otherManifest.Digest}
	esc.Manifests[f.otherManifest.Digest] = layout.Manifest{MediaType: v1.MediaTypeImageManifest, Size: f.otherManifest.Size}
	data, err := esc.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "escape.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	key, _ = layout.RepositoryKey("escape")
	if err := os.Symlink(filepath.Join(outside, "escape.json"), tt.root.Path(key)); err != nil {
		t.Fatal(err)
	}

	tt.repository(layout.NewRepository("dir.json/inner"))

	f.catalog = []string{"broken", "dir.json/inner", "escape", "lazy", "library/alpine", "other", "short", "team/app/api"}
	tt.catalog(f.catalog, 3)
	return f
}

// call is one row of a table of requests.
type call struct {
	Description string
	Method      string // GET when empty
	URL         string
	Header      map[string]string
	Code        int
	// WantHeader are exact header values; "" asserts the header is absent.
	WantHeader map[string]string
	// WantBody is the exact body when not empty; WantEmptyBody asserts
	// there is none.
	WantBody      string
	WantEmptyBody bool
	// WantErr is the OCI error code the body must carry.
	WantErr Code
	// NotInBody must not appear in the body.
	NotInBody string
	// WantLog must appear in what the server logged for this request.
	WantLog string
}

func runCalls(t *testing.T, srv *httptest.Server, logs *logBuffer, calls []call) {
	t.Helper()
	for _, tc := range calls {
		t.Run(tc.Description, func(t *testing.T) {
			logs.take()
			method := tc.Method
			if method == "" {
				method = http.MethodGet
			}
			resp, body := fetch(t, srv, method, tc.URL, tc.Header)
			if resp.StatusCode != tc.Code {
				t.Errorf("status = %d, want %d; body %s", resp.StatusCode, tc.Code, body)
			}
			if got := resp.Header.Get(apiVersionHeader); got != apiVersion {
				t.Errorf("%s = %q, want %q", apiVersionHeader, got, apiVersion)
			}
			for k, want := range tc.WantHeader {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if tc.WantBody != "" && string(body) != tc.WantBody {
				t.Errorf("body = %q, want %q", body, tc.WantBody)
			}
			if tc.WantEmptyBody && len(body) != 0 {
				t.Errorf("body = %q, want none", body)
			}
			if tc.NotInBody != "" && strings.Contains(string(body), tc.NotInBody) {
				t.Errorf("body %q contains %q", body, tc.NotInBody)
			}
			if tc.WantErr != "" {
				var eb errorBody
				if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 {
					t.Fatalf("body %q is not one OCI error (%v)", body, err)
				}
				if eb.Errors[0].Code != tc.WantErr {
					t.Errorf("error code = %s, want %s (body %s)", eb.Errors[0].Code, tc.WantErr, body)
				}
				if ct := resp.Header.Get("Content-Type"); method != http.MethodHead && ct != "application/json" {
					t.Errorf("error Content-Type = %q", ct)
				}
			}
			if tc.WantLog != "" {
				if l := logs.take(); !strings.Contains(l, tc.WantLog) {
					t.Errorf("log %q does not contain %q", l, tc.WantLog)
				}
			}
		})
	}
}

func newTestServer(t *testing.T, dir string, opts ...Option) (*httptest.Server, *Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	s, err := New(dir, append([]Option{WithLogger(logs.logger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return srv, s, logs
}

func blobURL(name string, d digest.Digest) string { return "/v2/" + name + "/blobs/" + d.String() }
func manifestURL(name, ref string) string         { return "/v2/" + name + "/manifests/" + ref }
func location(base string, d digest.Digest) string {
	return base + "/blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}
func etagOf(d digest.Digest) string { return `"` + d.String() + `"` }

func referrersBody(t *testing.T, descs ...v1.Descriptor) string {
	t.Helper()
	ms := "[]"
	if len(descs) > 0 {
		ms = string(mustJSON(t, descs))
	}
	return `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":` + ms + `}`
}

// TestCalls runs the table against the server with its caches off, on,
// and warmed by the same request (see cacheModes): the answers are the same.
func TestCalls(t *testing.T) { forEachCacheMode(t, testCalls) }

// TestCallsSharded runs the same table against the same repositories with
// every kind of entries in shards of two (see layout, shards.go): the
// answers are the same.
func TestCallsSharded(t *testing.T) {
	forEachCacheMode(t, func(t *testing.T, mode cacheMode) {
		tt := newTestTree(t)
		tt.shardSize = 2
		testCallsOn(t, mode, newFixtureIn(t, tt))
	})
}

func testCalls(t *testing.T, mode cacheMode) { testCallsOn(t, mode, newFixture(t)) }

func testCallsOn(t *testing.T, mode cacheMode, f *fixture) {
	srv, _, logs := mode.newServer(t, f.tree.dir())
	sorted := func(a, b v1.Descriptor) []v1.Descriptor {
		if a.Digest > b.Digest {
			a, b = b, a
		}
		return []v1.Descriptor{a, b}
	}
	longName := strings.Repeat("a", 300)

	runCalls(t, srv, logs, mode.calls([]call{
		// /v2/
		{Description: "base", URL: "/v2/", Code: 200, WantBody: "{}", WantHeader: map[string]string{"Content-Type": "application/json"}},
		{Description: "base without slash", URL: "/v2", Code: 200, WantBody: "{}"},
		{Description: "base HEAD", Method: "HEAD", URL: "/v2/", Code: 200, WantEmptyBody: true, WantHeader: map[string]string{"Content-Length": "2"}},

		// manifests
		{Description: "manifest by tag", URL: manifestURL("library/alpine", "latest"), Code: 200, WantBody: string(f.idxData),
			WantHeader: map[string]string{
				"Content-Type": v1.MediaTypeImageIndex, "Docker-Content-Digest": f.idx.Digest.String(),
				"Content-Length": fmt.Sprint(len(f.idxData)), "ETag": etagOf(f.idx.Digest),
			}},
		{Description: "manifest HEAD", Method: "HEAD", URL: manifestURL("library/alpine", "latest"), Code: 200, WantEmptyBody: true,
			WantHeader: map[string]string{
				"Content-Type": v1.MediaTypeImageIndex, "Docker-Content-Digest": f.idx.Digest.String(),
				"Content-Length": fmt.Sprint(len(f.idxData)), "ETag": etagOf(f.idx.Digest),
			}},
		{Description: "manifest by digest", URL: manifestURL("library/alpine", f.manifestA.Digest.String()), Code: 200, WantBody: string(f.manifestAData),
			WantHeader: map[string]string{"Content-Type": v1.MediaTypeImageManifest, "Docker-Content-Digest": f.manifestA.Digest.String()}},
		{Description: "manifest regardless of Accept", URL: manifestURL("library/alpine", "3.18"),
			Header: map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
			Code:   200, WantBody: string(f.manifestAData), WantHeader: map[string]string{"Content-Type": v1.MediaTypeImageManifest}},
		{Description: "manifest If-None-Match", URL: manifestURL("library/alpine", "latest"),
			Header: map[string]string{"If-None-Match": etagOf(f.idx.Digest)}, Code: 304, WantEmptyBody: true,
			WantHeader: map[string]string{"ETag": etagOf(f.idx.Digest), "Docker-Content-Digest": f.idx.Digest.String()}},
		{Description: "manifest If-None-Match weak in list", URL: manifestURL("library/alpine", "latest"),
			Header: map[string]string{"If-None-Match": `"x", W/` + etagOf(f.idx.Digest)}, Code: 304},
		{Description: "manifest If-None-Match other", URL: manifestURL("library/alpine", "latest"),
			Header: map[string]string{"If-None-Match": etagOf(f.manifestA.Digest)}, Code: 200, WantBody: string(f.idxData)},
		{Description: "manifest of another repository", URL: manifestURL("library/alpine", f.otherManifest.Digest.String()), Code: 404, WantErr: CodeManifestUnknown},
		{Description: "blob as manifest", URL: manifestURL("library/alpine", f.layerA.Digest.String()), Code: 404, WantErr: CodeManifestUnknown},
		{Description: "unknown tag", URL: manifestURL("library/alpine", "nope"), Code: 404, WantErr: CodeManifestUnknown},
		{Description: "unknown tag HEAD", Method: "HEAD", URL: manifestURL("library/alpine", "nope"), Code: 404, WantEmptyBody: true},
		{Description: "manifest unknown repository", URL: manifestURL("library/nope", "latest"), Code: 404, WantErr: CodeNameUnknown},
		{Description: "invalid tag", URL: manifestURL("library/alpine", "-bad"), Code: 400, WantErr: CodeManifestInvalid},
		{Description: "invalid digest reference", URL: manifestURL("library/alpine", "sha256:1234"), Code: 400, WantErr: CodeDigestInvalid},
		{Description: "unsupported digest algorithm", URL: manifestURL("library/alpine", "md5:d41d8cd98f00b204e9800998ecf8427e"), Code: 400, WantErr: CodeDigestInvalid},
		{Description: "manifest not served by a repository with a blob base URL", URL: manifestURL("team/app/api", "v1"), Code: 200, WantBody: string(f.imageData)},
		{Description: "manifest not matching its digest", URL: manifestURL("short", "bad"), Code: 500, WantErr: CodeUnknown,
			NotInBody: "bbbb", WantLog: "content has digest", WantHeader: map[string]string{"Docker-Content-Digest": ""}},
		{Description: "manifest of on-demand repository", URL: manifestURL("lazy", "latest"), Code: 200},

		// blobs
		{Description: "blob", URL: blobURL("library/alpine", f.layerA.Digest), Code: 200, WantBody: string(f.layerAData),
			WantHeader: map[string]string{
				"Content-Type": "application/octet-stream", "Docker-Content-Digest": f.layerA.Digest.String(),
				"Content-Length": fmt.Sprint(len(f.layerAData)), "ETag": etagOf(f.layerA.Digest),
				"Cache-Control": "max-age=31536000", "Location": "",
			}},
		{Description: "blob HEAD", Method: "HEAD", URL: blobURL("library/alpine", f.layerA.Digest), Code: 200, WantEmptyBody: true,
			WantHeader: map[string]string{"Content-Length": fmt.Sprint(len(f.layerAData)), "Docker-Content-Digest": f.layerA.Digest.String()}},
		{Description: "blob range", URL: blobURL("library/alpine", f.layerA.Digest), Header: map[string]string{"Range": "bytes=2-5"},
			Code: 206, WantBody: "2345", WantHeader: map[string]string{
				"Content-Range": fmt.Sprintf("bytes 2-5/%d", len(f.layerAData)), "Content-Length": "4", "Docker-Content-Digest": f.layerA.Digest.String(),
			}},
		{Description: "blob suffix range", URL: blobURL("library/alpine", f.layerA.Digest), Header: map[string]string{"Range": "bytes=-5"},
			Code: 206, WantBody: string(f.layerAData[len(f.layerAData)-5:])},
		{Description: "blob range not satisfiable", URL: blobURL("library/alpine", f.layerA.Digest), Header: map[string]string{"Range": "bytes=1000-2000"},
			Code: 416, WantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", len(f.layerAData))}},
		{Description: "blob If-None-Match", URL: blobURL("library/alpine", f.layerA.Digest),
			Header: map[string]string{"If-None-Match": etagOf(f.layerA.Digest)}, Code: 304, WantEmptyBody: true},
		{Description: "manifest as blob", URL: blobURL("library/alpine", f.manifestA.Digest), Code: 200, WantBody: string(f.manifestAData),
			WantHeader: map[string]string{"Content-Type": "application/octet-stream"}},
		{Description: "blob stored but not listed in this repository", URL: blobURL("other", f.layerA.Digest), Code: 404, WantErr: CodeBlobUnknown},
		{Description: "blob stored but not listed HEAD", Method: "HEAD", URL: blobURL("other", f.layerA.Digest), Code: 404, WantEmptyBody: true},
		{Description: "unknown blob", URL: blobURL("library/alpine", digest.FromString("nothing")), Code: 404, WantErr: CodeBlobUnknown},
		{Description: "blob unknown repository", URL: blobURL("nope", f.layerA.Digest), Code: 404, WantErr: CodeNameUnknown},
		{Description: "blob invalid digest", URL: "/v2/library/alpine/blobs/sha256:xyz", Code: 400, WantErr: CodeDigestInvalid},
		{Description: "blob invalid digest uppercase hex", URL: "/v2/library/alpine/blobs/" + strings.ToUpper(f.layerA.Digest.String()), Code: 400, WantErr: CodeDigestInvalid},
		{Description: "blob redirected by the repository's base URL", URL: blobURL("team/app/api", f.layerC.Digest), Code: 307, WantEmptyBody: true,
			WantHeader: map[string]string{"Location": location(cdnBase, f.layerC.Digest), "Docker-Content-Digest": f.layerC.Digest.String()}},
		{Description: "blob redirected HEAD", Method: "HEAD", URL: blobURL("team/app/api", f.layerC.Digest), Code: 307,
			WantHeader: map[string]string{"Location": location(cdnBase, f.layerC.Digest)}},
		{Description: "blob shorter than listed", URL: blobURL("short", f.shortConfig.Digest), Code: 500, WantErr: CodeUnknown,
			NotInBody: "architecture", WantLog: "but the repository lists"},
		{Description: "blob shorter than listed HEAD", Method: "HEAD", URL: blobURL("short", f.shortConfig.Digest), Code: 500,
			WantHeader: map[string]string{"Docker-Content-Digest": "", "Cache-Control": ""}},
		{Description: "on-demand blob HEAD", Method: "HEAD", URL: blobURL("lazy", f.lazyLayer.Digest), Code: 200, WantEmptyBody: true,
			WantHeader: map[string]string{"Content-Length": "12", "Docker-Content-Digest": f.lazyLayer.Digest.String()}},
		{Description: "on-demand blob GET", URL: blobURL("lazy", f.lazyLayer.Digest), Code: 404, WantErr: CodeBlobUnknown, WantLog: "not stored"},
		{Description: "empty layer, not listed", URL: blobURL("other", emptyLayerDigest), Code: 200, WantBody: string(wellKnownBlobs[emptyLayerDigest]),
			WantHeader: map[string]string{"Content-Length": "32", "Docker-Content-Digest": emptyLayerDigest.String()}},
		{Description: "empty layer HEAD", Method: "HEAD", URL: blobURL("other", emptyLayerDigest), Code: 200, WantHeader: map[string]string{"Content-Length": "32"}},
		{Description: "empty JSON, listed, not stored, not redirected", URL: blobURL("team/app/api", emptyJSONDigest), Code: 200, WantBody: "{}",
			WantHeader: map[string]string{"Location": ""}},
		{Description: "empty layer of unknown repository", URL: blobURL("nope", emptyLayerDigest), Code: 404, WantErr: CodeNameUnknown},

		// tags
		{Description: "tags", URL: "/v2/library/alpine/tags/list", Code: 200,
			WantBody: `{"name":"library/alpine","tags":["3.18","3.19","edge","latest"]}`, WantHeader: map[string]string{"Link": ""}},
		{Description: "tags HEAD", Method: "HEAD", URL: "/v2/library/alpine/tags/list", Code: 200, WantEmptyBody: true},
		{Description: "tags first page", URL: "/v2/library/alpine/tags/list?n=2", Code: 200,
			WantBody:   `{"name":"library/alpine","tags":["3.18","3.19"]}`,
			WantHeader: map[string]string{"Link": `</v2/library/alpine/tags/list?last=3.19&n=2>; rel="next"`}},
		{Description: "tags last page", URL: "/v2/library/alpine/tags/list?n=2&last=3.19", Code: 200,
			WantBody: `{"name":"library/alpine","tags":["edge","latest"]}`, WantHeader: map[string]string{"Link": ""}},
		{Description: "tags last not a tag", URL: "/v2/library/alpine/tags/list?last=f", Code: 200,
			WantBody: `{"name":"library/alpine","tags":["latest"]}`},
		{Description: "tags past the end", URL: "/v2/library/alpine/tags/list?last=zzz", Code: 200, WantBody: `{"name":"library/alpine","tags":[]}`},
		{Description: "tags n=0", URL: "/v2/library/alpine/tags/list?n=0", Code: 200,
			WantBody: `{"name":"library/alpine","tags":[]}`, WantHeader: map[string]string{"Link": ""}},
		{Description: "tags n larger than the list", URL: "/v2/library/alpine/tags/list?n=10", Code: 200,
			WantBody: `{"name":"library/alpine","tags":["3.18","3.19","edge","latest"]}`, WantHeader: map[string]string{"Link": ""}},
		{Description: "tags of a multi-level name", URL: "/v2/team/app/api/tags/list", Code: 200, WantBody: `{"name":"team/app/api","tags":["v1"]}`},
		{Description: "tags negative n", URL: "/v2/library/alpine/tags/list?n=-1", Code: 400, WantErr: CodePaginationNumberInvalid},
		{Description: "tags non-numeric n", URL: "/v2/library/alpine/tags/list?n=abc", Code: 400, WantErr: CodePaginationNumberInvalid},
		{Description: "tags unknown repository", URL: "/v2/library/nope/tags/list", Code: 404, WantErr: CodeNameUnknown},
		{Description: "malformed repository file", URL: "/v2/broken/tags/list", Code: 500, WantErr: CodeUnknown,
			WantLog: filepath.Join("repositories", "broken.json")},
		{Description: "others keep working after a malformed one", URL: "/v2/other/tags/list", Code: 200, WantBody: `{"name":"other","tags":["latest"]}`},
		{Description: "a repository file's folder is not a repository", URL: "/v2/dir/tags/list", Code: 404, WantErr: CodeNameUnknown},
		{Description: "a repository file is not a folder", URL: "/v2/library/alpine.json/x/tags/list", Code: 404, WantErr: CodeNameUnknown},

		// catalog
		{Description: "catalog", URL: "/v2/_catalog", Code: 200, WantBody: `{"repositories":` + string(mustJSON(t, f.catalog)) + `}`,
			WantHeader: map[string]string{"Link": "", "Content-Type": "application/json"}},
		{Description: "catalog first page", URL: "/v2/_catalog?n=2", Code: 200, WantBody: `{"repositories":["broken","dir.json/inner"]}`,
			WantHeader: map[string]string{"Link": `</v2/_catalog?last=dir.json%2Finner&n=2>; rel="next"`}},
		{Description: "catalog page ending with a shard", URL: "/v2/_catalog?n=3", Code: 200, WantBody: `{"repositories":["broken","dir.json/inner","escape"]}`,
			WantHeader: map[string]string{"Link": `</v2/_catalog?last=escape&n=3>; rel="next"`}},
		{Description: "catalog page across shards", URL: "/v2/_catalog?n=4&last=dir.json/inner", Code: 200,
			WantBody:   `{"repositories":["escape","lazy","library/alpine","other"]}`,
			WantHeader: map[string]string{"Link": `</v2/_catalog?last=other&n=4>; rel="next"`}},
		{Description: "catalog last page", URL: "/v2/_catalog?n=5&last=short", Code: 200, WantBody: `{"repositories":["team/app/api"]}`,
			WantHeader: map[string]string{"Link": ""}},
		{Description: "catalog page ending with the last shard", URL: "/v2/_catalog?n=2&last=other", Code: 200, WantBody: `{"repositories":["short","team/app/api"]}`,
			WantHeader: map[string]string{"Link": ""}},
		{Description: "catalog last between names", URL: "/v2/_catalog?n=1&last=m", Code: 200, WantBody: `{"repositories":["other"]}`,
			WantHeader: map[string]string{"Link": `</v2/_catalog?last=other&n=1>; rel="next"`}},
		{Description: "catalog past the end", URL: "/v2/_catalog?last=zzz", Code: 200, WantBody: `{"repositories":[]}`},
		{Description: "catalog n=0", URL: "/v2/_catalog?n=0", Code: 200, WantBody: `{"repositories":[]}`, WantHeader: map[string]string{"Link": ""}},
		{Description: "catalog negative n", URL: "/v2/_catalog?n=-3", Code: 400, WantErr: CodePaginationNumberInvalid},
		{Description: "catalog non-numeric n", URL: "/v2/_catalog?n=1e3", Code: 400, WantErr: CodePaginationNumberInvalid},

		// referrers
		{Description: "referrers", URL: "/v2/team/app/api/referrers/" + f.image.Digest.String(), Code: 200,
			WantBody:   referrersBody(t, sorted(f.sig, f.sbom)...),
			WantHeader: map[string]string{"Content-Type": v1.MediaTypeImageIndex, "OCI-Filters-Applied": ""}},
		{Description: "referrers filtered", URL: "/v2/team/app/api/referrers/" + f.image.Digest.String() + "?artifactType=" + sigType, Code: 200,
			WantBody:   referrersBody(t, f.sig),
			WantHeader: map[string]string{"Content-Type": v1.MediaTypeImageIndex, "OCI-Filters-Applied": "artifactType"}},
		{Description: "referrers filtered to none", URL: "/v2/team/app/api/referrers/" + f.image.Digest.String() + "?artifactType=text/plain", Code: 200,
			WantBody: referrersBody(t), WantHeader: map[string]string{"OCI-Filters-Applied": "artifactType"}},
		{Description: "referrers of a manifest nothing refers to", URL: "/v2/team/app/api/referrers/" + f.sig.Digest.String(), Code: 200, WantBody: referrersBody(t)},
		{Description: "referrers of a digest not in the repository", URL: "/v2/team/app/api/referrers/" + digest.FromString("x").String(), Code: 200, WantBody: referrersBody(t)},
		{Description: "referrers invalid digest", URL: "/v2/team/app/api/referrers/latest", Code: 400, WantErr: CodeDigestInvalid},
		// An unknown repository has no referrers (the conformance suite asks a
		// repository nothing was pushed to).
		{Description: "referrers unknown repository", URL: "/v2/nope/referrers/" + f.image.Digest.String(), Code: 200, WantBody: referrersBody(t)},

		// writes
		{Description: "PUT manifest", Method: "PUT", URL: manifestURL("library/alpine", "latest"), Code: 405, WantErr: CodeUnsupported,
			WantHeader: map[string]string{"Allow": "GET, HEAD"}},
		{Description: "POST upload", Method: "POST", URL: "/v2/library/alpine/blobs/uploads/", Code: 405, WantErr: CodeUnsupported},
		{Description: "PATCH upload", Method: "PATCH", URL: "/v2/library/alpine/blobs/uploads/123", Code: 405, WantErr: CodeUnsupported},
		{Description: "DELETE manifest", Method: "DELETE", URL: manifestURL("library/alpine", f.idx.Digest.String()), Code: 405, WantErr: CodeUnsupported},
		{Description: "DELETE blob", Method: "DELETE", URL: blobURL("library/alpine", f.layerA.Digest), Code: 405, WantErr: CodeUnsupported},
		{Description: "OPTIONS", Method: "OPTIONS", URL: "/v2/", Code: 405, WantErr: CodeUnsupported},

		// unknown paths
		{Description: "root", URL: "/", Code: 404, WantErr: CodeUnsupported},
		{Description: "v1", URL: "/v1/_ping", Code: 404, WantErr: CodeUnsupported},
		{Description: "unknown endpoint", URL: "/v2/library/alpine/foo/bar", Code: 404, WantErr: CodeUnsupported},
		{Description: "single segment", URL: "/v2/library", Code: 404, WantErr: CodeUnsupported},
		{Description: "tags trailing slash", URL: "/v2/library/alpine/tags/list/", Code: 404, WantErr: CodeUnsupported},
		{Description: "upload status", URL: "/v2/library/alpine/blobs/uploads/123", Code: 404, WantErr: CodeUnsupported},

		// hostile paths
		{Description: "dot-dot", URL: "/v2/../../etc/passwd/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "dot-dot inside a name", URL: "/v2/library/../other/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded dot-dot", URL: "/v2/%2e%2e/%2e%2e/heron-layout/manifests/x", Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded slash in name", URL: "/v2/library%2falpine/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded slash uppercase", URL: "/v2/library%2Falpine/manifests/latest", Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded slash in reference", URL: "/v2/library/alpine/manifests/..%2f..%2f..%2fheron-layout.json", Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded slash in digest", URL: "/v2/library/alpine/blobs/sha256:..%2f..%2fheron-layout.json", Code: 400, WantErr: CodeNameInvalid},
		{Description: "NUL byte", URL: "/v2/library/alpine%00/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "NUL byte in tag", URL: "/v2/library/alpine/manifests/latest%00", Code: 400, WantErr: CodeManifestInvalid},
		{Description: "absolute path", URL: "/v2//etc/passwd/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "empty name", URL: "/v2/manifests/latest", Code: 400, WantErr: CodeNameInvalid},
		{Description: "uppercase name", URL: "/v2/Library/Alpine/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "overlong name", URL: "/v2/" + longName + "/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "overlong tag", URL: manifestURL("library/alpine", strings.Repeat("t", 129)), Code: 400, WantErr: CodeManifestInvalid},
		{Description: "dot-dot tag", URL: manifestURL("library/alpine", ".."), Code: 400, WantErr: CodeNameInvalid},
		{Description: "dot tag", URL: manifestURL("library/alpine", ".hidden"), Code: 400, WantErr: CodeManifestInvalid},
		{Description: "digest traversal", URL: "/v2/library/alpine/blobs/sha256:../../../heron-layout.json", Code: 400, WantErr: CodeNameInvalid},
		{Description: "dot-dot as reference", URL: "/v2/library/alpine/blobs/..", Code: 400, WantErr: CodeNameInvalid},
		{Description: "dot segment", URL: "/v2/library/./alpine/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "symbolic link out of the tree", URL: "/v2/escape/tags/list", Code: 500, WantErr: CodeUnknown, NotInBody: "secret",
			WantLog: filepath.Join("repositories", "escape.json")},
		{Description: "symbolic link out of the tree, manifest", URL: manifestURL("escape", "secret"), Code: 500, WantErr: CodeUnknown},
	}))
}

// TestRedirects runs against a server with a blob base URL on its command
// line and manifest redirects on.
func TestRedirects(t *testing.T) { forEachCacheMode(t, testRedirects) }

func testRedirects(t *testing.T, mode cacheMode) {
	f := newFixture(t)
	srv, _, logs := mode.newServer(t, f.tree.dir(), WithRedirectBase(flagBase+"/"), WithRedirectManifests(true))
	runCalls(t, srv, logs, []call{
		{Description: "blob redirected by the flag", URL: blobURL("library/alpine", f.layerA.Digest), Code: 307, WantEmptyBody: true,
			WantHeader: map[string]string{"Location": location(flagBase, f.layerA.Digest), "Docker-Content-Digest": f.layerA.Digest.String()}},
		{Description: "repository base URL wins", URL: blobURL("team/app/api", f.layerC.Digest), Code: 307,
			WantHeader: map[string]string{"Location": location(cdnBase, f.layerC.Digest)}},
		{Description: "manifest redirected", URL: manifestURL("library/alpine", "latest"), Code: 307,
			WantHeader: map[string]string{"Location": location(flagBase, f.idx.Digest), "Docker-Content-Digest": f.idx.Digest.String()}},
		{Description: "manifest redirected to the repository base URL", URL: manifestURL("team/app/api", "v1"), Code: 307,
			WantHeader: map[string]string{"Location": location(cdnBase, f.image.Digest)}},
		{Description: "manifest HEAD answered directly", Method: "HEAD", URL: manifestURL("library/alpine", "latest"), Code: 200,
			WantHeader: map[string]string{"Location": "", "Content-Type": v1.MediaTypeImageIndex, "Docker-Content-Digest": f.idx.Digest.String()}},
		{Description: "unknown manifest not redirected", URL: manifestURL("library/alpine", "nope"), Code: 404, WantErr: CodeManifestUnknown},
		{Description: "blob of another repository not redirected", URL: blobURL("other", f.layerA.Digest), Code: 404, WantErr: CodeBlobUnknown,
			WantHeader: map[string]string{"Location": ""}},
		{Description: "on-demand blob not redirected", URL: blobURL("lazy", f.lazyLayer.Digest), Code: 404, WantErr: CodeBlobUnknown},
		{Description: "on-demand blob HEAD", Method: "HEAD", URL: blobURL("lazy", f.lazyLayer.Digest), Code: 200,
			WantHeader: map[string]string{"Content-Length": "12"}},
		{Description: "empty layer served, not redirected", URL: blobURL("other", emptyLayerDigest), Code: 200,
			WantBody: string(wellKnownBlobs[emptyLayerDigest])},
		{Description: "tags unaffected", URL: "/v2/other/tags/list", Code: 200, WantBody: `{"name":"other","tags":["latest"]}`},
	})
}
