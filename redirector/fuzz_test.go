package redirector

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// secretMarker is in every file of hostileTree that lies outside the tree
// (and in none inside it): no response may ever carry it, unless the
// request itself did and the server echoed it in an error.
const secretMarker = "s3cret-0utside-the-tree"

// outsideTag tags the outside repository file that repositories/escape.json
// links to.
const outsideTag = "outsideTag"

// hostileTree is a well-formed tree with a few deliberately broken
// repositories, and files next to it (outside the root) that symbolic links
// inside it point to:
//
//	library/alpine  an index (latest) of two images; v1 tags one of them
//	team/app/api    an image (v1) and a signature referring to it; blobBaseURL = cdnBase
//	lazy            an image with an on_demand layer (stored:false)
//	escape          repositories/escape.json links to a repository file outside the tree   (broken)
//	leak            lists a layer and a manifest whose blob files link outside the tree    (broken)
//	leakdir         lists a sha512 blob; blobs/sha512 links to a folder outside the tree   (broken)
//	alias           repositories/alias.json links to library/alpine.json, inside the tree (broken)
//	short           lists a layer longer than its file, and a manifest longer than its file (broken)
//	long            lists a layer shorter than its file (broken)
//	truncated       a repository file cut in half                                           (broken)
//	huge            a repository file larger than layout.MaxRepositoryFileSize              (broken)
//
// Requests for a broken repository may fail (500); requests for any other
// never do.
type hostileTree struct {
	*testTree
	outside string
	// broken are the repositories whose requests may answer 500.
	broken map[string]bool
	// files are the bytes of every regular file inside the tree (symbolic
	// links not followed), by digest of their content.
	files map[digest.Digest][]byte

	alpineIdx, alpineA      v1.Descriptor
	alpineIdxData           []byte
	alpineLayer, emptyLayer v1.Descriptor
	apiImage, apiSig        v1.Descriptor
	apiLayer                v1.Descriptor
	lazyLayer               v1.Descriptor
	leakLayer, leakManifest v1.Descriptor
	leak512                 digest.Digest
	shortLayer, longLayer   v1.Descriptor
	shortManifest           v1.Descriptor
	catalog                 []string
}

func newHostileTree(tb testing.TB) *hostileTree {
	tb.Helper()
	base := tb.TempDir()
	tt := &testTree{t: tb, root: layout.Root(filepath.Join(base, "tree"))}
	tt.write(layout.LayoutFileKey(), layout.EncodeLayoutFile())
	h := &hostileTree{testTree: tt, outside: filepath.Join(base, "outside"), broken: map[string]bool{}}
	if err := os.MkdirAll(h.outside, 0o755); err != nil {
		tb.Fatal(err)
	}

	// library/alpine
	alpine := layout.NewRepository("library/alpine")
	h.alpineLayer = tt.blob(v1.MediaTypeImageLayerGzip, []byte("0123456789abcdefghijklmnopqrstuvwxyz: layer of alpine amd64"))
	mA := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64"}`)), Layers: []v1.Descriptor{h.alpineLayer}}
	h.alpineA, _ = tt.manifest(mA)
	addImage(alpine, h.alpineA, mA)
	h.emptyLayer = tt.blob(v1.MediaTypeImageLayerGzip, nil)
	mB := v1.Manifest{
		Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"arm64"}`)),
		Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer of alpine arm64")), h.emptyLayer},
	}
	mBDesc, _ := tt.manifest(mB)
	addImage(alpine, mBDesc, mB)
	h.alpineIdx, h.alpineIdxData = tt.index(h.alpineA, mBDesc)
	alpine.Manifests[h.alpineIdx.Digest] = layout.Manifest{
		MediaType: v1.MediaTypeImageIndex, Size: h.alpineIdx.Size, Children: []digest.Digest{h.alpineA.Digest, mBDesc.Digest},
	}
	alpine.Tags = map[string]digest.Digest{"latest": h.alpineIdx.Digest, "v1": h.alpineA.Digest}
	tt.repository(alpine)

	// team/app/api
	api := layout.NewRepository("team/app/api")
	api.BlobBaseURL = cdnBase
	h.apiLayer = tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer of the api"))
	mImg := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"linux"}`)), Layers: []v1.Descriptor{h.apiLayer}}
	h.apiImage, _ = tt.manifest(mImg)
	addImage(api, h.apiImage, mImg)
	subject := h.apiImage
	mSig := v1.Manifest{
		ArtifactType: sigType, Config: v1.DescriptorEmptyJSON, Subject: &subject,
		Layers: []v1.Descriptor{tt.blob(sigType, []byte("signature"))},
	}
	h.apiSig, _ = tt.manifest(mSig)
	addImage(api, h.apiSig, mSig)
	api.Tags = map[string]digest.Digest{"v1": h.apiImage.Digest}
	tt.repository(api)

	// lazy
	lazy := layout.NewRepository("lazy")
	h.lazyLayer = v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromString("never stored"), Size: 12}
	mL := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"lazy"}`)), Layers: []v1.Descriptor{h.lazyLayer}}
	lazyManifest, _ := tt.manifest(mL)
	addImage(lazy, lazyManifest, mL)
	notStored := false
	lazy.Blobs[h.lazyLayer.Digest] = layout.Blob{Size: h.lazyLayer.Size, Stored: &notStored}
	lazy.Tags = map[string]digest.Digest{"latest": lazyManifest.Digest}
	tt.repository(lazy)

	// escape: a valid repository file outside the tree, linked from inside.
	esc := layout.NewRepository("escape")
	esc.Tags = map[string]digest.Digest{outsideTag: h.alpineA.Digest}
	esc.Manifests[h.alpineA.Digest] = layout.Manifest{MediaType: v1.MediaTypeImageManifest, Size: h.alpineA.Size}
	esc.Blobs[digest.FromString(secretMarker)] = layout.Blob{Size: int64(len(secretMarker))}
	data, err := esc.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	h.outsideFile("escape.json", data)
	h.link(tt.key(layout.RepositoryKey("escape")), filepath.Join(h.outside, "escape.json"))
	h.broken["escape"] = true

	// leak: the repository file is inside; the blob files of a layer and
	// a manifest link to files outside.
	leak := layout.NewRepository("leak")
	layerData := []byte("layer: " + secretMarker)
	h.leakLayer = v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layerData), Size: int64(len(layerData))}
	h.outsideFile("layer", layerData)
	h.link(tt.key(layout.BlobKey(h.leakLayer.Digest)), filepath.Join(h.outside, "layer"))
	mLeak := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"leak"}`)), Layers: []v1.Descriptor{h.leakLayer},
		Annotations: map[string]string{"secret": secretMarker}}
	mLeak.SchemaVersion, mLeak.MediaType = 2, v1.MediaTypeImageManifest
	manifestData := mustJSON(tb, mLeak)
	h.leakManifest = v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromBytes(manifestData), Size: int64(len(manifestData))}
	h.outsideFile("manifest", manifestData)
	h.link(tt.key(layout.ManifestKey(h.leakManifest.Digest)), filepath.Join(h.outside, "manifest"))
	addImage(leak, h.leakManifest, mLeak)
	leak.Tags = map[string]digest.Digest{"latest": h.leakManifest.Digest}
	tt.repository(leak)
	h.broken["leak"] = true

	// leakdir: blobs/sha512 is a link to a folder outside.
	data512 := []byte("sha512 blob: " + secretMarker)
	h.leak512 = digest.SHA512.FromBytes(data512)
	if err := os.MkdirAll(filepath.Join(h.outside, "sha512"), 0o755); err != nil {
		tb.Fatal(err)
	}
	h.outsideFile(filepath.Join("sha512", h.leak512.Encoded()), data512)
	h.link("blobs/sha512", filepath.Join(h.outside, "sha512"))
	leakdir := layout.NewRepository("leakdir")
	leakdir.Blobs[h.leak512] = layout.Blob{Size: int64(len(data512))}
	tt.repository(leakdir)
	h.broken["leakdir"] = true

	// alias: a link inside the tree, to another repository's file.
	h.link(tt.key(layout.RepositoryKey("alias")), "library/alpine.json")
	h.broken["alias"] = true

	// short: a layer and a manifest whose files are shorter than listed
	// (their first bytes); long: a layer whose file is longer.
	short := layout.NewRepository("short")
	full := []byte("the whole of the short layer, of which only a part is stored")
	h.shortLayer = v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromBytes(full), Size: int64(len(full))}
	tt.write(tt.key(layout.BlobKey(h.shortLayer.Digest)), full[:20])
	mS := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"short"}`)), Layers: []v1.Descriptor{h.shortLayer}}
	mS.SchemaVersion, mS.MediaType = 2, v1.MediaTypeImageManifest
	msData := mustJSON(tb, mS)
	h.shortManifest = v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromBytes(msData), Size: int64(len(msData))}
	tt.write(tt.key(layout.ManifestKey(h.shortManifest.Digest)), msData[:len(msData)/2])
	addImage(short, h.shortManifest, mS)
	short.Tags = map[string]digest.Digest{"latest": h.shortManifest.Digest}
	tt.repository(short)
	h.broken["short"] = true

	long := layout.NewRepository("long")
	longData := []byte("a layer whose file holds more bytes than the repository lists")
	h.longLayer = v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: digest.FromBytes(longData[:30]), Size: 30}
	tt.write(tt.key(layout.BlobKey(h.longLayer.Digest)), longData)
	long.Blobs[h.longLayer.Digest] = layout.Blob{Size: 30}
	tt.repository(long)
	h.broken["long"] = true

	// truncated: a valid repository file cut in half.
	trunc := layout.NewRepository("truncated")
	addImage(trunc, h.alpineA, mA)
	trunc.Tags["latest"] = h.alpineA.Digest
	data, err = trunc.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	tt.write(tt.key(layout.RepositoryKey("truncated")), data[:len(data)/2])
	h.broken["truncated"] = true

	// huge: a (sparse) repository file one byte over the limit.
	hugeKey := tt.key(layout.RepositoryKey("huge"))
	tt.write(hugeKey, []byte(`{"schemaVersion":1,"name":"huge",`))
	if err := os.Truncate(tt.root.Path(hugeKey), layout.MaxRepositoryFileSize+1); err != nil {
		tb.Fatal(err)
	}
	h.broken["huge"] = true

	// zshard-*: repositories kept in shards (layout, shards.go) whose
	// shard files are not what the repository file says: a link to a
	// valid shard outside the tree, a shard folder that is a link to a
	// folder outside, a (sparse) shard over the size limit, a shard with
	// other bytes than its id.
	for _, name := range []string{"zshard-leak", "zshard-dir", "zshard-huge", "zshard-altered"} {
		r := layout.NewRepository(name)
		addImage(r, h.alpineA, mA)
		r.Tags[outsideTag] = h.alpineA.Digest
		r.Tags["latest"] = h.alpineA.Digest
		tt.shard(r, 1)
		tt.repository(r) // shardSize is 0: the file names the shards written
		dir := tt.key(layout.RepositoryShardsDirKey(name))
		i, _ := layout.ShardContaining(r.TagShards, outsideTag)
		shard := tt.key(layout.RepositoryShardKey(name, r.TagShards[i].ID))
		switch name {
		case "zshard-leak":
			b, err := os.ReadFile(tt.root.Path(shard))
			if err != nil {
				tb.Fatal(err)
			}
			h.outsideFile("shard.json", b)
			if err := os.Remove(tt.root.Path(shard)); err != nil {
				tb.Fatal(err)
			}
			h.link(shard, filepath.Join(h.outside, "shard.json"))
		case "zshard-dir":
			if err := os.Rename(tt.root.Path(dir), filepath.Join(h.outside, "_shards")); err != nil {
				tb.Fatal(err)
			}
			h.link(dir, filepath.Join(h.outside, "_shards"))
		case "zshard-huge":
			if err := os.Truncate(tt.root.Path(shard), layout.MaxRepositoryFileSize+1); err != nil {
				tb.Fatal(err)
			}
		case "zshard-altered":
			b, err := os.ReadFile(tt.root.Path(shard))
			if err != nil {
				tb.Fatal(err)
			}
			tt.write(shard, bytes.Replace(b, []byte(h.alpineA.Digest.Encoded()[:8]), []byte("00000000"), 1))
		}
		h.broken[name] = true
	}

	h.catalog = []string{"alias", "escape", "huge", "lazy", "leak", "leakdir", "library/alpine", "long", "short", "team/app/api", "truncated",
		"zshard-altered", "zshard-dir", "zshard-huge", "zshard-leak"}
	tt.catalog(h.catalog, 4)
	h.files = treeFiles(tb, tt.dir())
	for _, b := range h.files {
		if bytes.Contains(b, []byte(secretMarker)) {
			tb.Fatal("a file inside the tree holds the secret marker")
		}
	}
	return h
}

// outsideFile writes a file next to the tree.
func (h *hostileTree) outsideFile(name string, data []byte) {
	h.t.Helper()
	if err := os.WriteFile(filepath.Join(h.outside, name), data, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// link makes key a symbolic link to target.
func (h *hostileTree) link(key, target string) {
	h.t.Helper()
	p := h.root.Path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		h.t.Fatal(err)
	}
}

// key returns the key a layout key function built, failing on its error.
func (tt *testTree) key(key string, err error) string {
	tt.t.Helper()
	if err != nil {
		tt.t.Fatal(err)
	}
	return key
}

// treeFiles reads every regular file under dir, without following symbolic
// links (and without the sparse huge file's 64 MiB), by digest.
func treeFiles(tb testing.TB, dir string) map[digest.Digest][]byte {
	tb.Helper()
	files := map[digest.Digest][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil || info.Size() > layout.MaxRepositoryFileSize {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[digest.FromBytes(b)] = b
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	for d, b := range wellKnownBlobs {
		files[d] = b
	}
	return files
}

// errorWatch is a slog handler that keeps the errors a server logs, so
// that a test can tell a recovered panic (which the router turns into a
// 500) from an error it expected.
type errorWatch struct {
	mu   sync.Mutex
	errs []string
}

func (w *errorWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *errorWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *errorWatch) WithGroup(string) slog.Handler            { return w }
func (w *errorWatch) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			w.errs = append(w.errs, a.Value.String())
		}
		return true
	})
	return nil
}

// take returns the errors logged since the last call.
func (w *errorWatch) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.errs
	w.errs = nil
	return e
}

// fuzzServer is one server over the hostile tree and what it logs.
type fuzzServer struct {
	name  string
	s     *Server
	watch *errorWatch
}

// FuzzRouter sends any request line (method, path and query) with any
// Range header to servers over hostileTree, with their caches off and on,
// and checks what may come back:
//
//   - no panic (the router would turn it into a 500; the log tells);
//   - a status of 200, 206, 304, 307, 400, 404, 405 or 416, or 500 for a
//     repository of the tree's broken ones only;
//   - the bytes of a 200 or 206 blob or manifest are those of a file inside
//     the tree (the ranges of Content-Range) and match Docker-Content-Digest;
//   - no body ever holds secretMarker, which only files outside the tree
//     hold, and no request for "escape" (whose repository file is outside)
//     succeeds;
//   - a 307 leads to <base>/blobs/<alg>/<hex> of a valid digest;
//   - the caches change nothing: both servers give the same answer.
func FuzzRouter(f *testing.F) {
	h := newHostileTree(f)
	var servers []fuzzServer
	for _, m := range []struct {
		name string
		opts []Option
	}{{"cache=off", []Option{WithCacheSize(0)}}, {"cache=on", []Option{withRacyWindow(0)}}} {
		w := &errorWatch{}
		s, err := New(h.dir(), append([]Option{WithLogger(slog.New(w))}, m.opts...)...)
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() { s.Close() })
		servers = append(servers, fuzzServer{m.name, s, w})
	}
	for _, seed := range routerSeeds(h) {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, method, target, rng string) {
		var first *httptest.ResponseRecorder
		for _, srv := range servers {
			req := fuzzRequest(method, target, rng)
			if req == nil {
				return // not a request a server would hand to a handler
			}
			w := httptest.NewRecorder()
			srv.s.ServeHTTP(w, req)
			checkFuzzResponse(t, h, srv, req, w)
			if first == nil {
				first = w
			} else if diff := compareResponses(first, w); diff != "" {
				t.Fatalf("%s %q: %s and %s differ: %s", method, target, servers[0].name, srv.name, diff)
			}
		}
	})
}

// fuzzRequest parses the request as net/http's server would, or returns nil
// for one it would refuse before any handler sees it.
func fuzzRequest(method, target, rng string) *http.Request {
	if strings.ContainsAny(method+target, "\r\n") || strings.ContainsAny(rng, "\r\n\x00") {
		return nil
	}
	raw := method + " " + target + " HTTP/1.1\r\nHost: registry.example\r\n"
	if rng != "" {
		raw += "Range: " + rng + "\r\n"
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
	if err != nil || req.URL == nil {
		return nil
	}
	return req
}

var fuzzStatuses = map[int]bool{200: true, 206: true, 304: true, 307: true, 400: true, 404: true, 405: true, 416: true}

func checkFuzzResponse(t *testing.T, h *hostileTree, srv fuzzServer, req *http.Request, w *httptest.ResponseRecorder) {
	t.Helper()
	status, body, hdr := w.Code, w.Body.Bytes(), w.Result().Header
	what := fmt.Sprintf("%s: %s %q (Range %q)", srv.name, req.Method, req.RequestURI, req.Header.Get("Range"))
	logged := srv.watch.take()
	for _, e := range logged {
		if strings.HasPrefix(e, "panic") {
			t.Fatalf("%s: panic: %s", what, e)
		}
	}
	parsed := parsePath(strings.TrimPrefix(req.URL.Path, "/v2/"))
	if !strings.HasPrefix(req.URL.Path, "/v2/") {
		parsed = route{}
	}
	if status == http.StatusPartialContent && strings.HasPrefix(hdr.Get("Content-Type"), "multipart/") {
		if n := bytes.Count(body, []byte("\r\nContent-Range: ")); n > maxRanges {
			t.Fatalf("%s: %d parts, more than the %d ranges allowed", what, n, maxRanges)
		}
	}
	if !fuzzStatuses[status] && !(status == 500 && h.broken[parsed.name]) {
		t.Fatalf("%s: status %d (%s); logged %q", what, status, body, logged)
	}
	if h.broken[parsed.name] && parsed.name == "escape" && status < 400 {
		t.Fatalf("%s: status %d for the repository whose file is outside the tree", what, status)
	}
	unescaped, _ := url.PathUnescape(req.RequestURI)
	if bytes.Contains(body, []byte(secretMarker)) && !strings.Contains(unescaped+req.RequestURI, secretMarker) {
		t.Fatalf("%s: the body holds a file from outside the tree: %q", what, body)
	}
	if cl := hdr.Get("Content-Length"); cl != "" && req.Method != http.MethodHead && status != 304 {
		if n, err := strconv.Atoi(cl); err != nil || n != len(body) {
			t.Fatalf("%s: Content-Length %q, body of %d bytes", what, cl, len(body))
		}
	}
	switch status {
	case 307:
		checkLocation(t, what, hdr.Get("Location"))
		return
	case 400, 404, 405, 500:
		if req.Method != http.MethodHead {
			var eb errorBody
			if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 || eb.Errors[0].Code == "" {
				t.Fatalf("%s: status %d with a body that is not one OCI error: %q", what, status, body)
			}
		}
		return
	case 200, 206:
	default:
		return
	}
	if req.Method == http.MethodHead {
		return
	}
	switch parsed.endpoint {
	case endpointBlob, endpointManifest:
		checkContent(t, h, what, status, hdr, body)
	default:
		if !json.Valid(body) {
			t.Fatalf("%s: status %d with a body that is not JSON: %q", what, status, body)
		}
	}
}

// checkLocation checks that a redirect leads to the blob key of a valid
// digest under the one base URL the tree has.
func checkLocation(t *testing.T, what, loc string) {
	t.Helper()
	key, ok := strings.CutPrefix(loc, cdnBase+"/")
	if !ok {
		t.Fatalf("%s: redirect to %q, not under %s", what, loc, cdnBase)
	}
	parts := strings.Split(key, "/")
	if len(parts) != 3 {
		t.Fatalf("%s: redirect to %q", what, loc)
	}
	d, err := layout.ParseDigest(parts[1] + ":" + parts[2])
	if err != nil {
		t.Fatalf("%s: redirect to %q: %v", what, loc, err)
	}
	if want, _ := layout.BlobKey(d); want != key {
		t.Fatalf("%s: redirect to %q, want key %q", what, loc, want)
	}
}

// checkContent checks that a 200 or 206 body of a blob or manifest is made
// of the bytes of the file inside the tree with the digest the response
// names.
func checkContent(t *testing.T, h *hostileTree, what string, status int, hdr http.Header, body []byte) {
	t.Helper()
	d := digest.Digest(hdr.Get(contentDigestHeader))
	file, ok := h.files[d]
	if !ok {
		t.Fatalf("%s: served %q as %q, which is no file inside the tree", what, body, d)
	}
	if status == 200 {
		if !bytes.Equal(body, file) {
			t.Fatalf("%s: body %q is not the file %s (%q)", what, body, d, file)
		}
		return
	}
	mt, params, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil {
		t.Fatalf("%s: Content-Type %q: %v", what, hdr.Get("Content-Type"), err)
	}
	if mt != "multipart/byteranges" {
		checkRange(t, what, hdr.Get("Content-Range"), body, file)
		return
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: multipart body: %v", what, err)
		}
		part, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("%s: multipart body: %v", what, err)
		}
		checkRange(t, what, p.Header.Get("Content-Range"), part, file)
	}
}

// checkRange checks that part is the range "bytes a-b/size" of file.
func checkRange(t *testing.T, what, cr string, part, file []byte) {
	t.Helper()
	var a, b, size int
	if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &a, &b, &size); err != nil {
		t.Fatalf("%s: Content-Range %q: %v", what, cr, err)
	}
	if size != len(file) || a < 0 || b < a || b >= len(file) || !bytes.Equal(part, file[a:b+1]) {
		t.Fatalf("%s: part %q with Content-Range %q is not that range of the file (%d bytes)", what, part, cr, len(file))
	}
}

// compareResponses returns how two answers to the same request differ, or
// "". The boundary of a multipart body is random, so such bodies are
// compared by length only.
func compareResponses(a, b *httptest.ResponseRecorder) string {
	if a.Code != b.Code {
		return fmt.Sprintf("status %d and %d", a.Code, b.Code)
	}
	for _, k := range []string{"Content-Type", "Content-Length", contentDigestHeader, "Location", "Content-Range", "Link"} {
		va, vb := a.Header().Get(k), b.Header().Get(k)
		if k == "Content-Type" && strings.HasPrefix(va, "multipart/") && strings.HasPrefix(vb, "multipart/") {
			continue
		}
		if va != vb {
			return fmt.Sprintf("%s %q and %q", k, va, vb)
		}
	}
	if strings.HasPrefix(a.Header().Get("Content-Type"), "multipart/") {
		if a.Body.Len() != b.Body.Len() {
			return fmt.Sprintf("multipart bodies of %d and %d bytes", a.Body.Len(), b.Body.Len())
		}
		return ""
	}
	if !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) {
		return fmt.Sprintf("bodies %q and %q", a.Body.Bytes(), b.Body.Bytes())
	}
	return ""
}

// routerSeeds are requests of every endpoint and every repository of the
// tree, as (method, target, Range); requests that need no digest are in
// testdata/fuzz/FuzzRouter.
func routerSeeds(h *hostileTree) [][3]string {
	blob := func(name string, d digest.Digest) string { return blobURL(name, d) }
	seeds := [][3]string{
		{"GET", "/v2/", ""}, {"HEAD", "/v2", ""}, {"GET", "/v2/_catalog?n=2&last=huge", ""}, {"GET", "/v2/_catalog?n=-1", ""},
		{"GET", "/v2/library/alpine/tags/list?n=1&last=latest", ""}, {"GET", "/v2/library/alpine/tags/list?n=%00", ""},
		{"GET", manifestURL("library/alpine", "latest"), ""}, {"HEAD", manifestURL("library/alpine", "v1"), ""},
		{"GET", manifestURL("library/alpine", h.alpineA.Digest.String()), "bytes=0-10"},
		{"GET", blob("library/alpine", h.alpineLayer.Digest), "bytes=2-5"},
		{"GET", blob("library/alpine", h.alpineLayer.Digest), "bytes=0-1,4-7,-3"},
		{"GET", blob("library/alpine", h.alpineLayer.Digest), "bytes=100-"},
		{"GET", blob("library/alpine", h.alpineLayer.Digest), "bytes=-0"},
		{"GET", blob("library/alpine", h.alpineLayer.Digest), "bytes=0-1,-0"},
		{"GET", blob("library/alpine", h.emptyLayer.Digest), "bytes=-5"},
		{"GET", blob("library/alpine", h.alpineIdx.Digest), ""},
		{"GET", blob("team/app/api", h.apiLayer.Digest), ""},
		{"GET", blob("team/app/api", emptyJSONDigest), ""},
		{"GET", "/v2/team/app/api/referrers/" + h.apiImage.Digest.String() + "?artifactType=" + url.QueryEscape(sigType), ""},
		{"HEAD", blob("lazy", h.lazyLayer.Digest), ""}, {"GET", blob("lazy", h.lazyLayer.Digest), ""},
		{"GET", "/v2/escape/tags/list", ""},
		{"GET", blob("leak", h.leakLayer.Digest), "bytes=0-3"}, {"GET", manifestURL("leak", "latest"), ""},
		{"HEAD", manifestURL("leak", h.leakManifest.Digest.String()), ""},
		{"GET", blob("leakdir", h.leak512), ""},
		{"GET", "/v2/alias/tags/list", ""},
		{"GET", blob("short", h.shortLayer.Digest), "bytes=0-5"}, {"HEAD", manifestURL("short", "latest"), ""},
		{"GET", blob("long", h.longLayer.Digest), ""},
		{"GET", "/v2/truncated/tags/list", ""}, {"GET", manifestURL("huge", "latest"), ""},
	}
	return seeds
}
