package redirector

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The benchmarks call ServeHTTP directly, one per route, with the caches
// off and on: go test -run '^$' -bench . -benchmem ./redirector
//
// With the caches on they measure the steady state of a tree published a
// while ago: the files are older than the racy window (see fileCache), so
// the test option withRacyWindow(0) stands in for waiting it out.

// benchModes are the server configurations each benchmark runs under.
var benchModes = []struct {
	name string
	opts []Option
}{
	{"cache=off", []Option{WithCacheSize(0)}},
	{"cache=on", []Option{WithCacheSize(DefaultCacheSize), withRacyWindow(0)}},
}

// acceptManifests is the Accept header of a pull by tag: the four manifest
// types clients (docker, containerd) ask for.
var acceptManifests = strings.Join([]string{
	v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// benchFixture is a tree the size of a busy repository:
//
//	bench/app   100 tags, each an image of a config and three layers, the
//	            first one a shared 1 MiB layer; the image of v000 has five
//	            referrers
//	bench/cdn   one image, with a blobBaseURL
//	catalog     3500 repository names in shards of layout.CatalogShardSize
type benchFixture struct {
	dir       string
	tagged    v1.Descriptor // the image of tag v050
	byDigest  v1.Descriptor // the image of tag v099
	bigLayer  v1.Descriptor // 1 MiB
	cdnLayer  v1.Descriptor
	subject   v1.Descriptor // the image of v000
	catalogAt string        // a name 50 before the end of the first shard
}

func newBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	tt := newTestTree(b)
	f := &benchFixture{dir: tt.dir()}

	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	f.bigLayer = tt.blob(v1.MediaTypeImageLayerGzip, big)

	app := layout.NewRepository("bench/app")
	for i := range 100 {
		m := v1.Manifest{
			Config: tt.blob(v1.MediaTypeImageConfig, fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","config":{"Env":["N=%d"]}}`, i)),
			Layers: []v1.Descriptor{
				f.bigLayer,
				tt.blob(v1.MediaTypeImageLayerGzip, fmt.Appendf(nil, "layer one of image %d", i)),
				tt.blob(v1.MediaTypeImageLayerGzip, fmt.Appendf(nil, "layer two of image %d", i)),
			},
			Annotations: map[string]string{
				v1.AnnotationCreated:  "2024-01-01T00:00:00Z",
				v1.AnnotationRevision: fmt.Sprintf("%040d", i),
				v1.AnnotationSource:   "https://example.com/bench/app",
			},
		}
		desc, _ := tt.manifest(m)
		addImage(app, desc, m)
		app.Tags[fmt.Sprintf("v%03d", i)] = desc.Digest
		switch i {
		case 0:
			f.subject = desc
		case 50:
			f.tagged = desc
		case 99:
			f.byDigest = desc
		}
	}
	subject := f.subject
	for i := range 5 {
		m := v1.Manifest{
			ArtifactType: fmt.Sprintf("application/vnd.example.bench%d", i), Config: v1.DescriptorEmptyJSON, Subject: &subject,
			Layers: []v1.Descriptor{tt.blob("application/octet-stream", fmt.Appendf(nil, "artifact %d", i))},
		}
		desc, _ := tt.manifest(m)
		addImage(app, desc, m)
	}
	tt.repository(app)

	cdn := layout.NewRepository("bench/cdn")
	cdn.BlobBaseURL = cdnBase
	f.cdnLayer = tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer of bench/cdn"))
	mc := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"cdn"}`)), Layers: []v1.Descriptor{f.cdnLayer}}
	desc, _ := tt.manifest(mc)
	addImage(cdn, desc, mc)
	cdn.Tags["latest"] = desc.Digest
	tt.repository(cdn)

	var names []string
	for i := range 3500 {
		names = append(names, fmt.Sprintf("team%02d/repo%04d", i/100, i))
	}
	tt.catalog(names, layout.CatalogShardSize)
	f.catalogAt = names[layout.CatalogShardSize-50]
	return f
}

// discardWriter is a ResponseWriter that keeps the status and counts the
// body, cheaper than httptest.ResponseRecorder so that the numbers are the
// server's. It implements io.ReaderFrom like net/http's response does.
type discardWriter struct {
	h    http.Header
	code int
	n    int64
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += int64(len(p))
	return len(p), nil
}

func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	w.WriteHeader(http.StatusOK)
	n, err := io.Copy(io.Discard, r)
	w.n += n
	return n, err
}

func (w *discardWriter) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// benchRoute runs one request in a loop against a server in each mode,
// checking the answer once before timing.
func benchRoute(b *testing.B, f *benchFixture, method, target string, header map[string]string, wantCode int, wantBytes int64) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			s, err := New(f.dir, mode.opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			req := httptest.NewRequest(method, target, nil)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			w := &discardWriter{h: http.Header{}}
			s.ServeHTTP(w, req)
			if w.code != wantCode || (wantBytes >= 0 && w.n != wantBytes) {
				b.Fatalf("%s %s: status %d with %d bytes, want %d with %d", method, target, w.code, w.n, wantCode, wantBytes)
			}
			if wantBytes > 0 {
				b.SetBytes(wantBytes)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				s.ServeHTTP(w, req)
			}
			if w.code != wantCode {
				b.Fatalf("status %d, want %d", w.code, wantCode)
			}
		})
	}
}

func BenchmarkManifestGetByTag(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, manifestURL("bench/app", "v050"), map[string]string{"Accept": acceptManifests}, 200, f.tagged.Size)
}

func BenchmarkManifestHeadByTag(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodHead, manifestURL("bench/app", "v050"), map[string]string{"Accept": acceptManifests}, 200, 0)
}

func BenchmarkManifestGetByDigest(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, manifestURL("bench/app", f.byDigest.Digest.String()), map[string]string{"Accept": acceptManifests}, 200, f.byDigest.Size)
}

func BenchmarkBlobHead(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodHead, blobURL("bench/app", f.bigLayer.Digest), nil, 200, 0)
}

func BenchmarkBlobGet1MiB(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, blobURL("bench/app", f.bigLayer.Digest), nil, 200, f.bigLayer.Size)
}

func BenchmarkBlobRedirect(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, blobURL("bench/cdn", f.cdnLayer.Digest), nil, http.StatusTemporaryRedirect, 0)
}

func BenchmarkTagsList100(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, "/v2/bench/app/tags/list", nil, 200, -1)
}

func BenchmarkCatalog100(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, "/v2/_catalog?n=100&last="+f.catalogAt, nil, 200, -1)
}

// BenchmarkCatalogLargeIndex pages through a catalog whose index has as
// many shards as that of a tree of 1,000,000 repositories (1,001; of 100
// names each here, to keep the fixture small).
func BenchmarkCatalogLargeIndex(b *testing.B) {
	tt := newTestTree(b)
	var names []string
	for i := range 1001 * 100 {
		names = append(names, fmt.Sprintf("org%04d/app%06d", i/1000, i))
	}
	tt.catalog(names, 100)
	f := &benchFixture{dir: tt.dir()}
	benchRoute(b, f, http.MethodGet, "/v2/_catalog?n=100&last="+names[len(names)/2-50], nil, 200, -1)
}

func BenchmarkReferrers(b *testing.B) {
	f := newBenchFixture(b)
	benchRoute(b, f, http.MethodGet, "/v2/bench/app/referrers/"+f.subject.Digest.String(), nil, 200, -1)
}

// BenchmarkManifestSpread is GET manifest by tag over many small
// repositories (3 tags, one image, as the trees of make bench), one after
// the other, against the same GET over a few, with the default caches: a
// spread larger than the cache costs a read and a decode per request.
//
//	go test -run '^$' -bench ManifestSpread ./redirector
func BenchmarkManifestSpread(b *testing.B) {
	tt := newTestTree(b)
	config := tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	layer := tt.blob(v1.MediaTypeImageLayerGzip, []byte("the one layer"))
	m := v1.Manifest{Config: config, Layers: []v1.Descriptor{layer}}
	desc, _ := tt.manifest(m)
	const repos = 20_000
	names := make([]string, repos)
	for i := range names {
		names[i] = fmt.Sprintf("org%d/svc%d", i/1000, i%1000)
		r := layout.NewRepository(names[i])
		addImage(r, desc, m)
		for _, t := range []string{"latest", "v1.0.1", "v1.0.2"} {
			r.Tags[t] = desc.Digest
		}
		tt.repository(r)
	}
	s, err := New(tt.dir(), withRacyWindow(0))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, over := range []int{100, repos} {
		targets := make([]string, over)
		for i := range targets {
			targets[i] = manifestURL(names[i*repos/over], "latest")
		}
		b.Run(fmt.Sprintf("over=%d", over), func(b *testing.B) {
			reqs := make([]*http.Request, len(targets))
			for i, t := range targets {
				reqs[i] = httptest.NewRequest(http.MethodGet, t, nil)
				reqs[i].Header.Set("Accept", acceptManifests)
			}
			for _, r := range reqs { // one pass to fill what fits
				s.ServeHTTP(httptest.NewRecorder(), r)
			}
			b.ReportAllocs()
			w := &discardWriter{h: http.Header{}}
			i := 0
			for b.Loop() {
				clear(w.h)
				w.code = 0
				s.ServeHTTP(w, reqs[i])
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
				if i++; i == len(reqs) {
					i = 0
				}
			}
		})
	}
}
