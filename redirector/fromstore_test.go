package redirector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// fsStore and bucketStore make the store a storeMode's server reads a
// tree's folder through: the folder itself (store.FS), or a snapshot of it
// in a memStore, which has the capabilities of a bucket.
func fsStore(_ testing.TB, dir string) store.Store      { return store.NewFS(layout.Root(dir)) }
func bucketStore(t testing.TB, dir string) store.Store  { return memStoreOf(t, dir) }
func plainStoreOf(t testing.TB, dir string) store.Store { return plainStore{m: memStoreOf(t, dir)} }

// storeModes are the configurations of NewFromStore the tables run under.
// The bucket streams blobs (WithServeBlobs): the tables expect bytes where
// no base URL redirects; presigned redirects are tested on their own.
var storeModes = []cacheMode{
	{name: "fs/cache=off", opts: []Option{WithCacheSize(0)}, store: fsStore},
	{name: "fs/cache=on", store: fsStore},
	{name: "fs/cache=warm", store: fsStore, warm: true},
	{name: "bucket/cache=off", opts: []Option{WithCacheSize(0), WithServeBlobs(true)}, store: bucketStore},
	{name: "bucket/cache=warm", opts: []Option{WithServeBlobs(true)}, store: bucketStore, warm: true},
	{name: "bucket/revalidate=0/cache=warm", opts: []Option{WithServeBlobs(true), WithRevalidateAfter(0)}, store: bucketStore, warm: true},
	{name: "plain/cache=on", store: plainStoreOf},
}

func forEachStoreMode(t *testing.T, test func(*testing.T, cacheMode)) {
	for _, m := range storeModes {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// TestCallsFromStore runs the table of TestCalls against NewFromStore.
func TestCallsFromStore(t *testing.T) { forEachStoreMode(t, testCalls) }

func TestCallsShardedFromStore(t *testing.T) {
	forEachStoreMode(t, func(t *testing.T, mode cacheMode) {
		tt := newTestTree(t)
		tt.shardSize = 2
		testCallsOn(t, mode, newFixtureIn(t, tt))
	})
}

func TestRedirectsFromStore(t *testing.T) { forEachStoreMode(t, testRedirects) }

// parityRequest is one request of TestStoreParity.
type parityRequest struct {
	method, target string
	header         map[string]string
}

// TestStoreParity answers the same requests from New and from NewFromStore
// over the same tree (a folder through store.FS, and the same files in a
// bucket-like store), caches off and on, and compares status, headers and
// body.
func TestStoreParity(t *testing.T) {
	for _, sharded := range []bool{false, true} {
		tt := newTestTree(t)
		if sharded {
			tt.shardSize = 2
		}
		f := newFixtureIn(t, tt)
		prot := layout.NewRepository("sec/app")
		prot.Protected = true
		prot.Tags["v1"] = f.otherManifest.Digest
		prot.Manifests[f.otherManifest.Digest] = layout.Manifest{MediaType: v1.MediaTypeImageManifest, Size: f.otherManifest.Size}
		tt.repository(prot)
		tt.catalog(slices.Sorted(slices.Values(append(slices.Clone(f.catalog), "sec/app"))), 3, "sec/app")
		reqs := parityRequests(f)
		for _, cache := range []struct {
			name string
			opts []Option
		}{{"cache=off", []Option{WithCacheSize(0)}}, {"cache=on", []Option{withRacyWindow(0)}}} {
			opts := append([]Option{WithLogger(discardLogger())}, cache.opts...)
			want, err := New(tt.dir(), opts...)
			must(t, err)
			defer want.Close()
			for _, st := range []struct {
				name  string
				store store.Store
				opts  []Option
			}{
				{"fs", store.NewFS(tt.root), nil},
				{"bucket", memStoreOf(t, tt.dir()), []Option{WithServeBlobs(true)}},
			} {
				got, err := NewFromStore(st.store, append(slices.Clone(opts), st.opts...)...)
				must(t, err)
				defer got.Close()
				t.Run(fmt.Sprintf("sharded=%v/%s/%s", sharded, cache.name, st.name), func(t *testing.T) {
					for range 2 { // cold, then warm
						for _, rq := range reqs {
							a, b := parityAnswer(want, rq), parityAnswer(got, rq)
							if a != b {
								t.Errorf("%s %s %v:\nNew:          %s\nNewFromStore: %s", rq.method, rq.target, rq.header, a, b)
							}
						}
					}
				})
			}
		}
	}
}

// parityRequests are requests of every kind against the fixture.
func parityRequests(f *fixture) []parityRequest {
	var reqs []parityRequest
	add := func(method, target string, header map[string]string) {
		reqs = append(reqs, parityRequest{method, target, header})
	}
	n := len(f.layerAData)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		for _, target := range []string{
			"/v2/", "/v2/_catalog", "/v2/_catalog?n=2", "/v2/_catalog?n=4&last=dir.json/inner", "/v2/_catalog?n=1&last=m", "/v2/_catalog?n=-1",
			manifestURL("library/alpine", "latest"), manifestURL("library/alpine", "3.18"), manifestURL("library/alpine", f.manifestA.Digest.String()),
			manifestURL("library/alpine", "nope"), manifestURL("library/nope", "latest"), manifestURL("library/alpine", f.otherManifest.Digest.String()),
			manifestURL("short", "bad"), manifestURL("team/app/api", "v1"), manifestURL("lazy", "latest"), manifestURL("sec/app", "v1"),
			blobURL("library/alpine", f.layerA.Digest), blobURL("library/alpine", f.manifestA.Digest), blobURL("other", f.layerA.Digest),
			blobURL("short", f.shortConfig.Digest), blobURL("lazy", f.lazyLayer.Digest), blobURL("team/app/api", f.layerC.Digest),
			blobURL("other", emptyLayerDigest), blobURL("team/app/api", emptyJSONDigest), blobURL("sec/app", f.layerA.Digest),
			blobURL("library/alpine", digest.FromString("nothing")),
			"/v2/library/alpine/tags/list", "/v2/library/alpine/tags/list?n=2", "/v2/library/alpine/tags/list?n=2&last=3.19",
			"/v2/library/alpine/tags/list?last=f", "/v2/library/alpine/tags/list?n=x", "/v2/sec/app/tags/list", "/v2/broken/tags/list",
			"/v2/dir/tags/list", "/v2/library/alpine.json/x/tags/list",
			"/v2/team/app/api/referrers/" + f.image.Digest.String(), "/v2/team/app/api/referrers/" + f.image.Digest.String() + "?artifactType=" + sigType,
			"/v2/sec/app/referrers/" + f.otherManifest.Digest.String(),
		} {
			add(m, target, nil)
		}
		blob := blobURL("library/alpine", f.layerA.Digest)
		for _, h := range []map[string]string{
			{"Range": "bytes=2-5"}, {"Range": "bytes=-5"}, {"Range": "bytes=0-"}, {"Range": fmt.Sprintf("bytes=0-%d", n-1)},
			{"Range": "bytes=1000-2000"}, {"Range": "bytes=abc"}, {"Range": "bytes=0-1,10-12,40-41"}, {"Range": "bytes=0-1,3-4"},
			{"Range": "bytes=2-5", "If-Range": etagOf(f.layerA.Digest)}, {"Range": "bytes=2-5", "If-Range": `"other"`},
			{"If-None-Match": etagOf(f.layerA.Digest)}, {"If-None-Match": `"other"`}, {"If-Match": `"other"`},
		} {
			add(m, blob, h)
		}
		add(m, blobURL("short", f.shortConfig.Digest), map[string]string{"Range": "bytes=0-3"})
		add(m, manifestURL("library/alpine", "latest"), map[string]string{"If-None-Match": etagOf(f.idx.Digest)})
	}
	return reqs
}

// parityAnswer is what a server answers to rq, as a string to compare:
// the status, the headers but Date, and the body (a multipart body with
// its boundary replaced).
func parityAnswer(h http.Handler, rq parityRequest) string {
	req := httptest.NewRequest(rq.method, rq.target, nil)
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	resp := w.Result()
	resp.Header.Del("Date")
	body := w.Body.String()
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil && params["boundary"] != "" {
		body = strings.ReplaceAll(body, params["boundary"], "BOUNDARY")
		resp.Header.Set("Content-Type", strings.ReplaceAll(resp.Header.Get("Content-Type"), params["boundary"], "BOUNDARY"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d ", resp.StatusCode)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range resp.Header {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s=%q ", k, resp.Header[k])
	}
	fmt.Fprintf(&b, "body %q", body)
	return b.String()
}

// TestNewFromStore: the layout marker is checked once, and nothing else is
// read; options that cannot work are refused.
func TestNewFromStore(t *testing.T) {
	tt := newTestTree(t)
	tt.write("repositories/a.json", []byte("garbage"))
	m := memStoreOf(t, tt.dir())
	s, err := NewFromStore(m)
	must(t, err)
	s.Close()
	if n := m.readFiles.Load() + m.readVersions.Load() + m.readIfChanged.Load(); n != 1 {
		t.Errorf("%d reads at start-up, want 1", n)
	}
	for _, tc := range []struct {
		Description string
		Store       func() store.Store
		Opts        []Option
		Want        string
		WantIs      error
	}{
		{Description: "no marker", Store: func() store.Store { return newMemStore() }, Want: "the store holds no heron tree: heron-layout.json is missing"},
		{Description: "other version", Store: func() store.Store {
			m := newMemStore()
			m.set(layout.LayoutFileKey(), []byte(`{"layoutVersion": 2}`))
			return m
		}, Want: "layout version 2", WantIs: layout.ErrUnsupportedVersion},
		{Description: "serve blobs without streaming", Store: func() store.Store { return readOnlyStore{memStoreOf(t, tt.dir())} },
			Opts: []Option{WithServeBlobs(true)}, Want: "cannot stream"},
		{Description: "presign expiry", Store: func() store.Store { return memStoreOf(t, tt.dir()) }, Opts: []Option{WithPresignExpiry(0)}, Want: "positive"},
		{Description: "negative window", Store: func() store.Store { return memStoreOf(t, tt.dir()) }, Opts: []Option{WithRevalidateAfter(-time.Second)}, Want: "negative"},
		{Description: "bad base URL", Store: func() store.Store { return memStoreOf(t, tt.dir()) }, Opts: []Option{WithRedirectBase("/x")}, Want: "absolute"},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			s, err := NewFromStore(tc.Store(), tc.Opts...)
			if err == nil {
				s.Close()
				t.Fatalf("NewFromStore succeeded, want an error containing %q", tc.Want)
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

// readOnlyStore has ReadFile only, of the capabilities that read.
type readOnlyStore struct{ m *memStore }

func (r readOnlyStore) Put(ctx context.Context, key string, rd io.Reader, want store.Want) error {
	return r.m.Put(ctx, key, rd, want)
}
func (r readOnlyStore) ReadFile(ctx context.Context, key string, max int64) ([]byte, error) {
	return r.m.ReadFile(ctx, key, max)
}
func (r readOnlyStore) Delete(ctx context.Context, key string) error { return r.m.Delete(ctx, key) }

// storeFixture is a bucket holding one repository, app, of one image, and
// a server reading it.
type storeFixture struct {
	tt     *testTree
	m      *memStore
	s      *Server
	layer  v1.Descriptor
	data   []byte
	first  digest.Digest // the image of tag v
	clock  *fakeClock
	window time.Duration
}

// fakeClock is a time that moves when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newStoreFixture(t *testing.T, opts ...Option) *storeFixture {
	t.Helper()
	f := &storeFixture{tt: newTestTree(t), clock: newFakeClock(), window: DefaultRevalidateAfter}
	f.data = bytes.Repeat([]byte("layer bytes "), 20_000) // 240 kB: several reads
	f.layer = f.tt.blob(v1.MediaTypeImageLayerGzip, f.data)
	f.first = f.publish(t, "v", 1)
	f.m = memStoreOf(t, f.tt.dir())
	s, err := NewFromStore(f.m, append([]Option{WithLogger(discardLogger())}, opts...)...)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	f.s = s
	if c, ok := s.repos.(*storeRepoCache); ok {
		c.files.now = f.clock.now
	}
	if s.presign != nil {
		s.presign.now = f.clock.now
	}
	return f
}

// publish writes image i of app under tag in the folder (and, once the
// store is made, in the store) and returns its digest.
func (f *storeFixture) publish(t *testing.T, tag string, i int) digest.Digest {
	t.Helper()
	r := layout.NewRepository("app")
	m := v1.Manifest{Config: f.tt.blob(v1.MediaTypeImageConfig, fmt.Appendf(nil, `{"n":%d}`, i)), Layers: []v1.Descriptor{f.layer}}
	desc, _ := f.tt.manifest(m)
	addImage(r, desc, m)
	r.Tags[tag] = desc.Digest
	f.tt.repository(r)
	if f.m != nil {
		f.m.sync(t, f.tt.dir())
	}
	return desc.Digest
}

// sync writes the files of dir that m does not hold, or holds with other
// bytes, with new versions (as a bucket does).
func (m *memStore) sync(t *testing.T, dir string) {
	t.Helper()
	fresh := memStoreOf(t, dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, o := range fresh.objects {
		if old, ok := m.objects[k]; ok && bytes.Equal(old.data, o.data) {
			continue
		}
		m.gen++
		m.objects[k] = memObject{data: o.data, version: store.Version(fmt.Sprintf(`"v%d"`, m.gen))}
	}
}
