package redirector

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// getTag answers GET of app's manifest by tag and returns the digest it
// has.
func (f *storeFixture) getTag(t *testing.T, tag string) string {
	t.Helper()
	w := get(f.s, http.MethodGet, manifestURL("app", tag))
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", tag, w.Code, w.Body)
	}
	return w.Header().Get(contentDigestHeader)
}

// TestRevalidateAfter: a repository file changed in the store is seen
// once the window has passed, not before; in the window nothing is asked
// of the store, and after it one conditional read revalidates (an
// unchanged file is not transferred again).
func TestRevalidateAfter(t *testing.T) {
	f := newStoreFixture(t)
	if got := f.getTag(t, "v"); got != f.first.String() {
		t.Fatalf("first GET: %s, want %s", got, f.first)
	}
	if n := f.m.readVersions.Load(); n != 1 {
		t.Errorf("cold GET: %d reads, want 1", n)
	}
	second := f.publish(t, "v", 2)

	f.clock.advance(f.window - time.Nanosecond)
	if got := f.getTag(t, "v"); got != f.first.String() {
		t.Errorf("in the window: %s, want the cached %s", got, f.first)
	}
	if n := f.m.readIfChanged.Load(); n != 0 {
		t.Errorf("in the window: %d conditional reads, want 0", n)
	}

	f.clock.advance(time.Nanosecond)
	if got := f.getTag(t, "v"); got != second.String() {
		t.Errorf("after the window: %s, want the new %s", got, second)
	}
	if n := f.m.readIfChanged.Load(); n != 1 {
		t.Errorf("after the window: %d conditional reads, want 1", n)
	}

	// Unchanged: revalidated, the entry kept.
	c := f.s.repos.(*storeRepoCache)
	misses := c.files.misses.Load()
	f.clock.advance(f.window)
	if got := f.getTag(t, "v"); got != second.String() {
		t.Errorf("revalidated: %s, want %s", got, second)
	}
	if n := f.m.readIfChanged.Load(); n != 2 {
		t.Errorf("revalidated: %d conditional reads, want 2", n)
	}
	if c.files.misses.Load() != misses {
		t.Errorf("an unchanged file was loaded again")
	}

	// Removed: not found after the window, and forgotten.
	f.m.Delete(t.Context(), "repositories/app.json")
	f.clock.advance(f.window)
	if w := get(f.s, http.MethodGet, manifestURL("app", "v")); w.Code != http.StatusNotFound {
		t.Errorf("removed: %d, want 404", w.Code)
	}
	if _, ok := c.files.lru.peek("app"); ok {
		t.Errorf("a removed repository is still cached")
	}
}

// TestRevalidateEveryRequest: with WithRevalidateAfter(0), every request
// asks the store, and sees a change at once.
func TestRevalidateEveryRequest(t *testing.T) {
	f := newStoreFixture(t, WithRevalidateAfter(0))
	for i := range 3 {
		if got := f.getTag(t, "v"); got != f.first.String() {
			t.Fatalf("GET %d: %s", i, got)
		}
	}
	if n := f.m.readIfChanged.Load(); n != 2 {
		t.Errorf("%d conditional reads for 3 requests, want 2 (and one read)", n)
	}
	second := f.publish(t, "v", 2)
	if got := f.getTag(t, "v"); got != second.String() {
		t.Errorf("after a publish: %s, want %s", got, second)
	}
}

// TestRevalidateOnce: concurrent requests after the window share one
// conditional read, whatever their number; and a slow read keeps the
// others waiting rather than asking the store again.
func TestRevalidateOnce(t *testing.T) {
	f := newStoreFixture(t)
	f.getTag(t, "v")
	for round := range 3 {
		f.clock.advance(f.window)
		release := make(chan struct{})
		var once sync.Once
		f.m.beforeRead = func(string) { once.Do(func() { <-release }) }
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				if w := get(f.s, http.MethodGet, manifestURL("app", "v")); w.Code != http.StatusOK {
					t.Errorf("%d", w.Code)
				}
			})
		}
		time.Sleep(20 * time.Millisecond) // most of them are waiting now
		close(release)
		wg.Wait()
		f.m.beforeRead = nil
		if n := f.m.readIfChanged.Load(); n != int64(round+1) {
			t.Errorf("round %d: %d conditional reads in all, want %d", round, n, round+1)
		}
	}
}

// TestRevalidateRealClock: under a steady load from many goroutines, the
// store is asked about a file about once per window, not once per
// request.
func TestRevalidateRealClock(t *testing.T) {
	const window = 20 * time.Millisecond
	f := newStoreFixture(t, WithRevalidateAfter(window))
	f.s.repos.(*storeRepoCache).files.now = time.Now
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	requests := 0
	for range 8 {
		wg.Go(func() {
			for time.Since(start) < 10*window {
				if w := get(f.s, http.MethodGet, manifestURL("app", "v")); w.Code != http.StatusOK {
					t.Errorf("%d", w.Code)
					return
				}
				mu.Lock()
				requests++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	reads := f.m.readIfChanged.Load() + f.m.readVersions.Load()
	if max := int64(elapsed/window) + 2; reads > max {
		t.Errorf("%d reads of the store in %s (%d requests), want at most %d", reads, elapsed, requests, max)
	}
	if int64(requests) < 4*reads {
		t.Logf("only %d requests for %d reads: a slow machine", requests, reads)
	}
}

// TestCatalogIndexRevalidated: the catalog index is validated by version
// like a repository file.
func TestCatalogIndexRevalidated(t *testing.T) {
	f := newStoreFixture(t)
	f.s.index.(*storeIndexCache).files.now = f.clock.now
	catalog := func() string {
		w := get(f.s, http.MethodGet, "/v2/_catalog")
		if w.Code != http.StatusOK {
			t.Fatalf("catalog: %d %s", w.Code, w.Body)
		}
		return w.Body.String()
	}
	f.tt.catalog([]string{"app"}, 10)
	f.m.sync(t, f.tt.dir())
	if got := catalog(); got != `{"repositories":["app"]}` {
		t.Fatalf("catalog = %s", got)
	}
	f.tt.catalog([]string{"app", "other"}, 10)
	f.m.sync(t, f.tt.dir())
	if got := catalog(); got != `{"repositories":["app"]}` {
		t.Errorf("in the window: %s", got)
	}
	f.clock.advance(f.window)
	if got := catalog(); got != `{"repositories":["app","other"]}` {
		t.Errorf("after the window: %s", got)
	}
}

// TestPresignCache: a presigned URL is reused until half of its validity
// has passed, then signed again; GET and HEAD have URLs of their own; a
// repository's base URL still wins; with caches off every redirect is
// signed.
func TestPresignCache(t *testing.T) {
	const expiry = 10 * time.Minute
	f := newStoreFixture(t, WithPresignExpiry(expiry))
	blob := blobURL("app", f.layer.Digest)
	redirect := func(method string) string {
		t.Helper()
		w := get(f.s, method, blob)
		if w.Code != http.StatusTemporaryRedirect {
			t.Fatalf("%s: %d %s", method, w.Code, w.Body)
		}
		if got := w.Header().Get(contentDigestHeader); got != f.layer.Digest.String() {
			t.Errorf("%s: digest %q", method, got)
		}
		return w.Header().Get("Location")
	}
	g1 := redirect(http.MethodGet)
	key := "blobs/sha256/" + f.layer.Digest.Encoded()
	if !strings.HasPrefix(g1, memBucket+"/"+key+"?") || !strings.Contains(g1, "X-Method=GET") {
		t.Fatalf("location %q", g1)
	}
	h1 := redirect(http.MethodHead)
	if h1 == g1 || !strings.Contains(h1, "X-Method=HEAD") {
		t.Errorf("HEAD location %q, GET's %q", h1, g1)
	}
	if n := f.m.signs.Load(); n != 2 {
		t.Errorf("%d signatures, want 2", n)
	}
	f.clock.advance(expiry/2 - time.Nanosecond)
	time.Sleep(time.Millisecond) // a new signature would have another expiry
	if g := redirect(http.MethodGet); g != g1 {
		t.Errorf("within half the expiry: %q, want the cached %q", g, g1)
	}
	if h := redirect(http.MethodHead); h != h1 {
		t.Errorf("HEAD within half the expiry: %q, want %q", h, h1)
	}
	if n := f.m.signs.Load(); n != 2 {
		t.Errorf("%d signatures, want 2", n)
	}
	f.clock.advance(time.Nanosecond)
	if g := redirect(http.MethodGet); g == g1 {
		t.Errorf("after half the expiry: the same URL %q", g)
	}
	if n := f.m.signs.Load(); n != 3 {
		t.Errorf("%d signatures, want 3", n)
	}
	if w := get(f.s, http.MethodGet, blobURL("app", emptyLayerDigest)); w.Code != http.StatusOK {
		t.Errorf("well-known blob: %d, want 200", w.Code)
	}

	// The cache is bounded by the caches' budget: its entries weigh.
	if n := f.s.presign.cacheCounts(); n.entries != 2 || n.weight <= 2*int64(len(g1)) {
		t.Errorf("presign cache: %+v", n)
	}

	off := newStoreFixture(t, WithCacheSize(0))
	for i := range 3 {
		if w := get(off.s, http.MethodGet, blob); w.Code != http.StatusTemporaryRedirect {
			t.Fatalf("%d: %d", i, w.Code)
		}
	}
	if n := off.m.signs.Load(); n != 3 {
		t.Errorf("caches off: %d signatures for 3 redirects, want 3", n)
	}

	base := newStoreFixture(t, WithRedirectBase(flagBase))
	if w := get(base.s, http.MethodGet, blob); w.Header().Get("Location") != location(flagBase, f.layer.Digest) {
		t.Errorf("base URL: Location %q", w.Header().Get("Location"))
	}
	if n := base.m.signs.Load(); n != 0 {
		t.Errorf("base URL: %d signatures", n)
	}

	serve := newStoreFixture(t, WithServeBlobs(true))
	if w := get(serve.s, http.MethodGet, blob); w.Code != http.StatusOK || w.Body.Len() != len(f.data) {
		t.Errorf("serve blobs: %d, %d bytes", w.Code, w.Body.Len())
	}
	if n := serve.m.signs.Load(); n != 0 {
		t.Errorf("serve blobs: %d signatures", n)
	}
}

// TestBlobDigestMismatch: a blob whose bytes in the store are not those of
// its digest (of the listed size) is never received whole: the connection
// is cut before its last bytes, and the cause logged. A range, which
// cannot be verified, is sent as read. A store without Stat whose object
// is shorter than listed gets an error answer.
func TestBlobDigestMismatch(t *testing.T) {
	for _, at := range []int{0, 100_000, -1} { // where the byte is changed
		t.Run(fmt.Sprintf("at=%d", at), func(t *testing.T) {
			logs := &logBuffer{}
			reg := prometheus.NewRegistry()
			f := newStoreFixture(t, WithServeBlobs(true), WithLogger(logs.logger()), WithMetrics(reg))
			key := "blobs/sha256/" + f.layer.Digest.Encoded()
			bad := []byte(string(f.data))
			if at < 0 {
				at = len(bad) - 1
			}
			bad[at] ^= 0xff
			f.m.set(key, bad)
			srv := httptest.NewServer(f.s)
			defer srv.Close()

			resp, err := srv.Client().Get(srv.URL + blobURL("app", f.layer.Digest))
			if err == nil {
				body, rerr := readAllLimit(resp)
				if rerr == nil {
					t.Fatalf("a whole answer: %d, %d bytes", resp.StatusCode, len(body))
				}
				if len(body) >= len(f.data) {
					t.Errorf("%d bytes received of %d", len(body), len(f.data))
				}
			}
			if l := logs.take(); !strings.Contains(l, "content has digest") || !strings.Contains(l, key) {
				t.Errorf("log %q", l)
			}
			if v := value(t, reg, metricInFlight, nil); v != 0 {
				t.Errorf("%v requests in flight after the cut", v)
			}

			// A range is sent as stored.
			r, body := fetch(t, srv, http.MethodGet, blobURL("app", f.layer.Digest), map[string]string{"Range": "bytes=99990-100009"})
			if r.StatusCode != http.StatusPartialContent || string(body) != string(bad[99990:100010]) {
				t.Errorf("range: %d %q", r.StatusCode, body)
			}
			// HEAD checks the size only.
			if r, _ := fetch(t, srv, http.MethodHead, blobURL("app", f.layer.Digest), nil); r.StatusCode != http.StatusOK {
				t.Errorf("HEAD: %d", r.StatusCode)
			}
		})
	}

	t.Run("short without stat", func(t *testing.T) {
		logs := &logBuffer{}
		f := newStoreFixture(t)
		key := "blobs/sha256/" + f.layer.Digest.Encoded()
		f.m.set(key, f.data[:len(f.data)-1])
		s, err := NewFromStore(plainStore{m: f.m}, WithLogger(logs.logger()))
		must(t, err)
		defer s.Close()
		srv := httptest.NewServer(s)
		defer srv.Close()
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if r, _ := fetch(t, srv, method, blobURL("app", f.layer.Digest), nil); r.StatusCode != http.StatusInternalServerError {
				t.Errorf("%s: %d, want 500", method, r.StatusCode)
			}
		}
		// Longer: the same.
		f.m.set(key, append(f.data[:len(f.data):len(f.data)], 'x'))
		if r, _ := fetch(t, srv, http.MethodGet, blobURL("app", f.layer.Digest), nil); r.StatusCode != http.StatusInternalServerError {
			t.Errorf("longer: %d, want 500", r.StatusCode)
		}
		// Whole again: served, in full.
		f.m.set(key, f.data)
		if r, body := fetch(t, srv, http.MethodGet, blobURL("app", f.layer.Digest), nil); r.StatusCode != http.StatusOK || string(body) != string(f.data) {
			t.Errorf("whole: %d, %d bytes", r.StatusCode, len(body))
		}
	})
}

// readAllLimit reads and closes the body of resp.
func readAllLimit(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<24))
}

// TestBlobGone: a blob that vanishes between its stat and its read is an
// error answer, not a cut connection.
func TestBlobGone(t *testing.T) {
	f := newStoreFixture(t, WithServeBlobs(true))
	key := "blobs/sha256/" + f.layer.Digest.Encoded()
	f.m.afterStat = func(k string) {
		if k == key {
			f.m.Delete(t.Context(), key)
		}
	}
	w := get(f.s, http.MethodGet, blobURL("app", f.layer.Digest))
	if w.Code != http.StatusInternalServerError || w.Header().Get(contentDigestHeader) != "" {
		t.Errorf("%d %v", w.Code, w.Header())
	}
}

// TestEmptyBlobFromStore: a blob of no bytes is served as such when its
// digest is that of no bytes, and refused when it is not (there is
// nothing to check it against but the digest).
func TestEmptyBlobFromStore(t *testing.T) {
	tt := newTestTree(t)
	empty := tt.blob(v1.MediaTypeImageLayer, nil)
	other := digest.FromString("not empty")
	tt.write("blobs/sha256/"+other.Encoded(), nil)
	r := layout.NewRepository("app")
	r.Blobs[empty.Digest] = layout.Blob{Size: 0}
	r.Blobs[other] = layout.Blob{Size: 0}
	tt.repository(r)
	m := memStoreOf(t, tt.dir())
	for _, st := range []store.Store{m, plainStore{m: m}} {
		s, err := NewFromStore(st, WithServeBlobs(true), WithLogger(discardLogger()))
		must(t, err)
		defer s.Close()
		if w := get(s, http.MethodGet, blobURL("app", empty.Digest)); w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "0" {
			t.Errorf("%T: empty blob: %d %v %q", st, w.Code, w.Header(), w.Body)
		}
		if w := get(s, http.MethodGet, blobURL("app", other)); w.Code != http.StatusInternalServerError {
			t.Errorf("%T: 0 bytes listed for other content: %d", st, w.Code)
		}
	}
}
