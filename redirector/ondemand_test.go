package redirector

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// upstream is a registry started in the test (go-containerregistry's
// pkg/registry), wrapped to count the GETs of blobs and to answer them
// wrongly on demand.
type upstream struct {
	t    testing.TB
	srv  *httptest.Server
	host string
	reg  http.Handler
	// blobGets counts GET requests of blobs.
	blobGets atomic.Int64

	mu sync.Mutex
	// mode is how blob GETs are answered: "" (as the registry does),
	// "flip" (one byte changed), "short" (the last bytes left out, with
	// a matching Content-Length), "long" (bytes added), "error" (500),
	// "hang" (nothing until the request is cancelled).
	mode string
	// gate, when not nil, holds every blob body after its first half
	// until it is closed.
	gate chan struct{}
	// endGate, when not nil, holds the end of every blob body (sent
	// chunked, so that its end is not told by a length) until it is
	// closed: all bytes are sent, but not that there are no more.
	endGate chan struct{}
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{t: t, reg: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	u.srv = httptest.NewServer(u)
	t.Cleanup(u.srv.Close)
	u.host = strings.TrimPrefix(u.srv.URL, "http://")
	return u
}

func (u *upstream) set(mode string, gate chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.mode, u.gate = mode, gate
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
		u.reg.ServeHTTP(w, r)
		return
	}
	u.blobGets.Add(1)
	u.mu.Lock()
	mode, gate, endGate := u.mode, u.gate, u.endGate
	u.mu.Unlock()
	switch mode {
	case "error":
		http.Error(w, "upstream trouble", http.StatusInternalServerError)
		return
	case "hang":
		<-r.Context().Done()
		return
	}
	rec := httptest.NewRecorder()
	u.reg.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		switch mode {
		case "flip":
			body[len(body)/2] ^= 0xff
		case "short":
			body = body[:len(body)-10]
		case "long":
			body = append(body, "and more"...)
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if endGate != nil {
		w.Header().Del("Content-Length")
	}
	w.WriteHeader(rec.Code)
	half := len(body) / 2
	w.Write(body[:half])
	if gate != nil {
		w.(http.Flusher).Flush()
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		case <-time.After(30 * time.Second):
			u.t.Error("upstream: the gate was never opened")
		}
	}
	w.Write(body[half:])
	if endGate != nil {
		w.(http.Flusher).Flush()
		select {
		case <-endGate:
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
			u.t.Error("upstream: the end gate was never opened")
		}
	}
}

// push stores data as a blob of repository repo upstream.
func (u *upstream) push(repo string, data []byte) {
	u.t.Helper()
	r, err := name.NewRepository(u.host+"/"+repo, name.Insecure)
	if err != nil {
		u.t.Fatal(err)
	}
	if err := remote.WriteLayer(r, static.NewLayer(data, types.OCILayer)); err != nil {
		u.t.Fatal(err)
	}
}

// testFiller is a Filler on a store.Store, as heron's is on publish: it
// fetches a blob from the repository file's upstream with a plain GET (no
// verification: the server's is what is tested), and stores it with the
// store's verified, atomic Put and a rewrite of the repository file.
type testFiller struct {
	st                   store.Store
	opens, stores, marks atomic.Int64
	storeErr             error
	storeStarted         chan struct{} // when not nil, StoreBlob signals it and waits for storeContinue
	storeContinue        chan struct{}
	storeStartOnce       sync.Once
}

func (f *testFiller) OpenBlob(ctx context.Context, name string, d digest.Digest, size int64) (io.ReadCloser, error) {
	f.opens.Add(1)
	repo, err := f.read(ctx, name)
	if err != nil {
		return nil, err
	}
	u := repo.Upstream
	if u == nil {
		return nil, fmt.Errorf("%s has no upstream", name)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+u.Registry+"/v2/"+u.Repository+"/blobs/"+d.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("upstream answered %s", resp.Status)
	}
	return resp.Body, nil
}

func (f *testFiller) StoreBlob(ctx context.Context, name string, d digest.Digest, size int64, content io.Reader) error {
	f.stores.Add(1)
	if f.storeStarted != nil {
		f.storeStartOnce.Do(func() { close(f.storeStarted) })
		<-f.storeContinue
	}
	if f.storeErr != nil {
		return f.storeErr
	}
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	if err := f.st.Put(ctx, key, content, store.Want{Digest: d, Size: size}); err != nil {
		return err
	}
	return f.MarkStored(ctx, name, d)
}

func (f *testFiller) MarkStored(ctx context.Context, name string, d digest.Digest) error {
	f.marks.Add(1)
	repo, err := f.read(ctx, name)
	if err != nil {
		return err
	}
	b := repo.Blobs[d]
	b.Stored = nil
	repo.Blobs[d] = b
	data, err := repo.Encode()
	if err != nil {
		return err
	}
	rk, _ := layout.RepositoryKey(name)
	return f.st.Put(ctx, rk, bytes.NewReader(data), store.Want{})
}

func (f *testFiller) read(ctx context.Context, name string) (*layout.Repository, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return nil, err
	}
	data, err := f.st.ReadFile(ctx, key, layout.MaxRepositoryFileSize)
	if err != nil {
		return nil, err
	}
	return layout.DecodeRepositoryFile(name, data)
}

// odMode is a server configuration the on-demand tests run under.
type odMode struct {
	name   string
	bucket bool // NewFromStore on a memStore, else New on the folder
	opts   []Option
	// stored is the status of a GET once the blob is stored: 200, or
	// 307 (to the base URL, or a presigned URL).
	stored int
}

const odBase = "https://cdn.example.com/tree"

var odModes = []odMode{
	{name: "folder", stored: 200},
	{name: "folder/cache=off", opts: []Option{WithCacheSize(0)}, stored: 200},
	{name: "folder/redirect", opts: []Option{WithRedirectBase(odBase)}, stored: 307},
	{name: "bucket", bucket: true, opts: []Option{WithServeBlobs(true), WithRevalidateAfter(0)}, stored: 200},
	{name: "bucket/cache", bucket: true, opts: []Option{WithServeBlobs(true)}, stored: 200},
	{name: "bucket/presign", bucket: true, stored: 307},
}

// odEnv is a tree whose repositories "lazy/app" and "lazy/other" list one
// layer as not stored, with its upstream, and a server for it.
type odEnv struct {
	up     *upstream
	dir    string
	st     store.Store
	filler *testFiller
	s      *Server
	srv    *httptest.Server
	logs   *logBuffer
	layer  []byte
	d      digest.Digest
	spool  string
}

// newODEnv writes the tree with a layer of size random bytes, and pushes
// the layer upstream.
func newODEnv(t *testing.T, mode odMode, size int, readOnly bool, opts ...Option) *odEnv {
	t.Helper()
	e := &odEnv{up: newUpstream(t), logs: &logBuffer{}, spool: t.TempDir()}
	e.layer = make([]byte, size)
	rand.Read(e.layer)
	e.d = digest.FromBytes(e.layer)
	e.up.push("up/app", e.layer)

	tt := newTestTree(t)
	e.dir = tt.dir()
	notStored := false
	for _, n := range []string{"lazy/app", "lazy/other"} {
		r := layout.NewRepository(n)
		r.Upstream = &layout.Upstream{Registry: e.up.host, Repository: "up/app", Insecure: true}
		layer := v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: e.d, Size: int64(size)}
		m := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"`+n+`"}`)), Layers: []v1.Descriptor{layer}}
		desc, _ := tt.manifest(m)
		addImage(r, desc, m)
		r.Blobs[e.d] = layout.Blob{Size: int64(size), MediaType: layer.MediaType, Stored: &notStored}
		r.Tags = map[string]digest.Digest{"latest": desc.Digest}
		tt.repository(r)
	}

	if mode.bucket {
		e.st = memStoreOf(t, e.dir)
	} else {
		e.st = store.NewFS(layout.Root(e.dir))
	}
	e.filler = &testFiller{st: e.st}
	all := append([]Option{WithLogger(e.logs.logger()), WithFiller(e.filler, readOnly), WithSpoolDir(e.spool)}, mode.opts...)
	all = append(all, opts...)
	var err error
	if mode.bucket {
		e.s, err = NewFromStore(e.st, all...)
	} else {
		e.s, err = New(e.dir, all...)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.s)
	t.Cleanup(func() {
		e.srv.Close()
		e.s.Close()
		if left, _ := os.ReadDir(e.spool); len(left) > 0 {
			t.Errorf("spool files left: %v", left)
		}
		if n := e.s.fill.spools.Load(); n != 0 {
			t.Errorf("%d spool files open after Close", n)
		}
	})
	return e
}

// get sends a GET of the layer through repository name, without following
// redirects, and returns the response with the body unread.
func (e *odEnv) get(t testing.TB, name string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+blobURL(name, e.d), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// pull GETs the layer through name and checks that it is answered whole
// and right, by the status want.
func (e *odEnv) pull(t testing.TB, name string, want int) {
	t.Helper()
	resp := e.get(t, name, nil)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", name, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", name, resp.StatusCode, body, want)
	}
	if want != http.StatusOK {
		return
	}
	if !bytes.Equal(body, e.layer) {
		t.Fatalf("GET %s: %d bytes, not the layer's %d", name, len(body), len(e.layer))
	}
	h := resp.Header
	for k, v := range map[string]string{
		"Content-Length": strconv.Itoa(len(e.layer)), "Content-Type": "application/octet-stream",
		"Docker-Content-Digest": e.d.String(), "Etag": etag(e.d),
	} {
		if h.Get(k) != v {
			t.Errorf("GET %s: %s = %q, want %q", name, k, h.Get(k), v)
		}
	}
}

// waitFetches waits until n fetches have finished (stored or not).
func (e *odEnv) waitFetches(t testing.TB, n int64) {
	t.Helper()
	for range 6000 {
		var done int64
		for i := range e.s.fill.results {
			done += e.s.fill.results[i].Load()
		}
		if done >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d fetches did not finish in 60s", n)
}

// result is the count of fetches that ended in r.
func (e *odEnv) result(r int) int64 { return e.s.fill.results[r].Load() }

// stored reports whether the layer is in the tree, and whether the
// repository file of name lists it as stored.
func (e *odEnv) stored(t testing.TB, name string) (inTree, listed bool) {
	t.Helper()
	key, _ := layout.BlobKey(e.d)
	_, err := e.st.ReadFile(context.Background(), key, int64(len(e.layer))+1)
	inTree = err == nil
	repo, err := e.filler.read(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return inTree, repo.Blobs[e.d].IsStored()
}

// clients is the number of requests that have joined the fetch of d in
// flight (0 if there is none).
func (e *odEnv) clients() int {
	fl := e.s.fill
	fl.mu.Lock()
	defer fl.mu.Unlock()
	f := fl.inflight[e.d]
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clients
}

// TestOnDemandFirstPull: the first GET of a blob listed as not stored
// streams the upstream's bytes, with a stored blob's headers, and stores
// it; the next GET is answered from the tree (or redirected to it), and
// the upstream is not asked again.
func TestOnDemandFirstPull(t *testing.T) {
	for _, mode := range odModes {
		t.Run(mode.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			e := newODEnv(t, mode, 1<<20+17, false, WithMetrics(reg))
			// HEAD answers from the repository file, fetching nothing.
			resp, _ := fetch(t, e.srv, http.MethodHead, blobURL("lazy/app", e.d), nil)
			if resp.StatusCode != 200 || resp.ContentLength != int64(len(e.layer)) {
				t.Errorf("HEAD: %d, %d bytes", resp.StatusCode, resp.ContentLength)
			}
			e.pull(t, "lazy/app", 200)
			e.waitFetches(t, 1)
			if inTree, listed := e.stored(t, "lazy/app"); !inTree || !listed {
				t.Errorf("after the first pull: in the tree %v, listed as stored %v", inTree, listed)
			}
			if got := value(t, reg, metricFetches, map[string]string{labelResult: "stored"}); got != 1 {
				t.Errorf("%s{result=stored} = %v, want 1", metricFetches, got)
			}
			if got := value(t, reg, metricFetchedBytes, nil); got != float64(len(e.layer)) {
				t.Errorf("%s = %v, want %d", metricFetchedBytes, got, len(e.layer))
			}
			log := e.logs.take()
			if !strings.Contains(log, "on-demand fetch") || !strings.Contains(log, "result=stored") || !strings.Contains(log, e.d.String()) {
				t.Errorf("no log line of the fetch:\n%s", log)
			}
			// Stored now: through the repository that asked, and
			// through another that lists it as not stored still.
			for _, n := range []string{"lazy/app", "lazy/other"} {
				e.pull(t, n, mode.stored)
			}
			if got := e.up.blobGets.Load(); got != 1 {
				t.Errorf("%d blob GETs upstream, want 1", got)
			}
			if got := e.filler.opens.Load(); got != 1 {
				t.Errorf("%d OpenBlob calls, want 1", got)
			}
			// The other repository, served from the tree, is marked
			// stored in the background.
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, listed := e.stored(t, "lazy/other"); listed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lazy/other still lists the blob as not stored (%d MarkStored calls)", e.filler.marks.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestOnDemandConcurrent: 20 clients asking for the same new layer at
// once (through two repositories) are answered from one upstream GET, read
// along while it arrives, and all get the right bytes. The layer is 64
// MiB (8 MiB with -short or -race).
func TestOnDemandConcurrent(t *testing.T) {
	const clients = 20
	size := 64 << 20
	if testing.Short() || raceEnabled {
		size = 8 << 20
	}
	for _, mode := range []odMode{odModes[0], odModes[3]} {
		t.Run(mode.name, func(t *testing.T) {
			e := newODEnv(t, mode, size, false)
			gate := make(chan struct{})
			e.up.set("", gate)
			// Each client reads the first MiB while the upstream holds
			// back the second half, then the rest once it is let go.
			var started, done sync.WaitGroup
			errs := make([]error, clients)
			started.Add(clients)
			done.Add(clients)
			for i := range clients {
				go func() {
					defer done.Done()
					name := []string{"lazy/app", "lazy/other"}[i%2]
					errs[i] = func() error {
						resp, err := e.srv.Client().Get(e.srv.URL + blobURL(name, e.d))
						if err != nil {
							started.Done()
							return err
						}
						defer resp.Body.Close()
						if resp.StatusCode != 200 {
							started.Done()
							return fmt.Errorf("status %d", resp.StatusCode)
						}
						h := sha256.New()
						_, err = io.CopyN(h, resp.Body, 1<<20)
						started.Done()
						if err != nil {
							return err
						}
						n, err := io.Copy(h, resp.Body)
						if err != nil {
							return err
						}
						if n+1<<20 != int64(size) || "sha256:"+hex.EncodeToString(h.Sum(nil)) != e.d.String() {
							return fmt.Errorf("%d bytes, of other content", n+1<<20)
						}
						return nil
					}()
				}()
			}
			started.Wait()
			if got := e.clients(); got != clients {
				t.Errorf("%d clients read along the fetch, want %d", got, clients)
			}
			close(gate)
			done.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("client %d: %v", i, err)
				}
			}
			if got := e.up.blobGets.Load(); got != 1 {
				t.Errorf("%d blob GETs upstream, want 1", got)
			}
			e.waitFetches(t, 1)
			for _, n := range []string{"lazy/app", "lazy/other"} {
				if inTree, listed := e.stored(t, n); !inTree || !listed {
					t.Errorf("%s: in the tree %v, listed as stored %v", n, inTree, listed)
				}
			}
		})
	}
}

// TestOnDemandWrongUpstream: when the upstream sends other bytes, fewer,
// more, or an error, no client gets a whole answer (its transfer fails, or
// it is answered with an error), nothing is stored, and the next pull,
// once the upstream is right, succeeds.
func TestOnDemandWrongUpstream(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		result string // the reason clients sent nothing yet are told
	}{
		{"flip", failMismatch},
		{"short", failShort},
		{"long", failLong},
		{"error", failUpstream},
	} {
		for _, mode := range []odMode{odModes[0], odModes[3]} {
			t.Run(tc.mode+"/"+mode.name, func(t *testing.T) {
				e := newODEnv(t, mode, 1<<20, false)
				gate := make(chan struct{})
				e.up.set(tc.mode, gate)
				resp := e.get(t, "lazy/app", nil)
				if tc.mode == "error" {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), tc.result) {
						t.Errorf("GET: %d %s, want 502 saying %q", resp.StatusCode, body, tc.result)
					}
				} else {
					// The headers and the first half came; the rest is
					// let go now, and must not complete the answer.
					if resp.StatusCode != 200 {
						t.Fatalf("GET: %d", resp.StatusCode)
					}
					first := make([]byte, 1<<18)
					if _, err := io.ReadFull(resp.Body, first); err != nil {
						t.Fatal(err)
					}
					close(gate)
					rest, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil {
						t.Errorf("GET: a whole answer of %d bytes", len(first)+len(rest))
					}
					if len(first)+len(rest) >= len(e.layer) {
						t.Errorf("GET: %d bytes sent of %d", len(first)+len(rest), len(e.layer))
					}
				}
				e.waitFetches(t, 1)
				if inTree, listed := e.stored(t, "lazy/app"); inTree || listed {
					t.Errorf("after a failed fetch: in the tree %v, listed as stored %v", inTree, listed)
				}
				if got := e.result(resultFailed); got != 1 {
					t.Errorf("%d failed fetches, want 1", got)
				}
				if log := e.logs.take(); !strings.Contains(log, tc.result) {
					t.Errorf("log does not say %q:\n%s", tc.result, log)
				}
				e.up.set("", nil)
				e.pull(t, "lazy/app", 200)
				e.waitFetches(t, 2)
				if inTree, listed := e.stored(t, "lazy/app"); !inTree || !listed {
					t.Errorf("after a good fetch: in the tree %v, listed as stored %v", inTree, listed)
				}
			})
		}
	}
}

// TestOnDemandHoldsBackLastByte: while the upstream has sent every byte
// but not told that there are no more, clients get all but the last byte;
// they get it once the blob is verified, and never when it is not.
func TestOnDemandHoldsBackLastByte(t *testing.T) {
	for _, mode := range []string{"", "flip"} {
		t.Run("mode="+mode, func(t *testing.T) {
			e := newODEnv(t, odModes[0], 300_000, false)
			endGate := make(chan struct{})
			e.up.mu.Lock()
			e.up.mode, e.up.endGate = mode, endGate
			e.up.mu.Unlock()
			resp := e.get(t, "lazy/app", nil)
			defer resp.Body.Close()
			got := make([]byte, len(e.layer)-1)
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				t.Fatal(err)
			}
			last := make(chan error, 1)
			go func() {
				_, err := io.ReadFull(resp.Body, make([]byte, 1))
				if err == nil {
					_, err = resp.Body.Read(make([]byte, 1))
					if err == io.EOF {
						err = nil
					}
				}
				last <- err
			}()
			select {
			case err := <-last:
				t.Fatalf("the last byte came before the upstream ended (%v)", err)
			case <-time.After(200 * time.Millisecond):
			}
			close(endGate)
			err := <-last
			switch {
			case mode == "" && err != nil:
				t.Errorf("the last byte of a good blob: %v", err)
			case mode == "flip" && err == nil:
				t.Error("a whole answer of a wrong blob")
			}
		})
	}
}

// TestOnDemandSmallWrong: a blob too small to send a byte before it is
// verified is answered 502 when it does not verify, never 200.
func TestOnDemandSmallWrong(t *testing.T) {
	e := newODEnv(t, odModes[0], 100, false)
	e.up.set("flip", nil)
	resp := e.get(t, "lazy/app", nil)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode == 200 {
		t.Fatalf("GET: a whole answer of %d bytes", len(body))
	}
	if resp.StatusCode != http.StatusBadGateway && err == nil {
		t.Errorf("GET: %d %s", resp.StatusCode, body)
	}
}

// TestOnDemandReadOnly: a read-only server streams and verifies, stores
// nothing, and fetches again for the next request.
func TestOnDemandReadOnly(t *testing.T) {
	for _, mode := range []odMode{odModes[0], odModes[4]} {
		t.Run(mode.name, func(t *testing.T) {
			e := newODEnv(t, mode, 1<<20+3, true)
			e.pull(t, "lazy/app", 200)
			e.waitFetches(t, 1)
			e.pull(t, "lazy/app", 200)
			e.waitFetches(t, 2)
			if got := e.up.blobGets.Load(); got != 2 {
				t.Errorf("%d blob GETs upstream, want 2", got)
			}
			if got := e.filler.stores.Load(); got != 0 {
				t.Errorf("StoreBlob called %d times", got)
			}
			if got := e.result(resultVerified); got != 2 {
				t.Errorf("%d fetches verified (not stored), want 2", got)
			}
			if inTree, listed := e.stored(t, "lazy/app"); inTree || listed {
				t.Errorf("read-only: in the tree %v, listed as stored %v", inTree, listed)
			}
		})
	}
}

// TestOnDemandUpstreamDown: an upstream that refuses connections, or that
// sends nothing, is answered quickly with a clear error, and nothing is
// stored.
func TestOnDemandUpstreamDown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(*upstream)
		status int
		reason string
	}{
		{"refused", func(u *upstream) { u.srv.Close() }, http.StatusBadGateway, failUpstream},
		{"hang", func(u *upstream) { u.set("hang", nil) }, http.StatusGatewayTimeout, failTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newODEnv(t, odModes[0], 1000, false)
			e.s.fill.idleTimeout = 300 * time.Millisecond
			tc.break_(e.up)
			start := time.Now()
			resp := e.get(t, "lazy/app", nil)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("answered after %s", took)
			}
			var eb errorBody
			if resp.StatusCode != tc.status || json.Unmarshal(body, &eb) != nil || len(eb.Errors) != 1 ||
				!strings.Contains(fmt.Sprint(eb.Errors[0].Detail), tc.reason) {
				t.Errorf("GET: %d %s, want %d saying %q", resp.StatusCode, body, tc.status, tc.reason)
			}
			if resp.Header.Get("Docker-Content-Digest") != "" || resp.Header.Get("Etag") != "" {
				t.Errorf("an error with a blob's headers: %v", resp.Header)
			}
			e.waitFetches(t, 1)
			if inTree, listed := e.stored(t, "lazy/app"); inTree || listed {
				t.Errorf("in the tree %v, listed as stored %v", inTree, listed)
			}
		})
	}
}

// TestOnDemandNoFiller: without a Filler, a blob listed as not stored is
// 404, as it always was; HEAD still answers its size.
func TestOnDemandNoFiller(t *testing.T) {
	e := newODEnv(t, odModes[0], 1000, false)
	s, err := New(e.dir, WithLogger(e.logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w := get(s, http.MethodGet, blobURL("lazy/app", e.d)); w.Code != 404 || !strings.Contains(w.Body.String(), string(CodeBlobUnknown)) {
		t.Errorf("GET: %d %s", w.Code, w.Body)
	}
	if w := get(s, http.MethodHead, blobURL("lazy/app", e.d)); w.Code != 200 || w.Header().Get("Content-Length") != "1000" {
		t.Errorf("HEAD: %d %v", w.Code, w.Header())
	}
	if got := e.up.blobGets.Load(); got != 0 {
		t.Errorf("%d blob GETs upstream", got)
	}
}

// TestOnDemandConditional: If-None-Match is answered 304 without a fetch;
// a Range is answered 206 from the whole blob once it is verified.
func TestOnDemandConditional(t *testing.T) {
	e := newODEnv(t, odModes[0], 200_000, true)
	resp := e.get(t, "lazy/app", map[string]string{"If-None-Match": etag(e.d)})
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified || e.up.blobGets.Load() != 0 {
		t.Errorf("If-None-Match: %d, %d upstream GETs", resp.StatusCode, e.up.blobGets.Load())
	}
	resp = e.get(t, "lazy/app", map[string]string{"Range": "bytes=1000-1999"})
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, e.layer[1000:2000]) {
		t.Errorf("Range: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	// A range of a blob that does not verify is an error, not a part.
	e.waitFetches(t, 1)
	e.up.set("flip", nil)
	resp = e.get(t, "lazy/app", map[string]string{"Range": "bytes=0-9"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("Range of a wrong upstream blob: %d", resp.StatusCode)
	}
}

// TestOnDemandClientLeaves: a client that goes away mid-transfer does not
// stop the fetch for the others, nor its store.
func TestOnDemandClientLeaves(t *testing.T) {
	e := newODEnv(t, odModes[0], 4<<20, false)
	gate := make(chan struct{})
	e.up.set("", gate)
	leaver := e.get(t, "lazy/app", nil)
	if _, err := io.ReadFull(leaver.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	stayer := e.get(t, "lazy/app", nil)
	if _, err := io.ReadFull(stayer.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	leaver.Body.Close()
	close(gate)
	body, err := io.ReadAll(stayer.Body)
	stayer.Body.Close()
	if err != nil || len(body)+1000 != len(e.layer) {
		t.Errorf("the client that stayed: %d bytes, %v", len(body)+1000, err)
	}
	e.waitFetches(t, 1)
	if inTree, listed := e.stored(t, "lazy/app"); !inTree || !listed {
		t.Errorf("in the tree %v, listed as stored %v", inTree, listed)
	}
}

// TestOnDemandWhileStoring: a request that arrives after the fetch but
// before its store finished is answered from the spool, without another
// upstream GET; a store that fails leaves the blob not stored, and the
// next request fetches again.
func TestOnDemandWhileStoring(t *testing.T) {
	e := newODEnv(t, odModes[0], 300_000, false)
	e.filler.storeStarted, e.filler.storeContinue = make(chan struct{}), make(chan struct{})
	e.filler.storeErr = errors.New("disk full")
	e.pull(t, "lazy/app", 200)
	<-e.filler.storeStarted
	e.pull(t, "lazy/app", 200)
	if got := e.up.blobGets.Load(); got != 1 {
		t.Errorf("%d blob GETs upstream while storing, want 1", got)
	}
	close(e.filler.storeContinue)
	e.waitFetches(t, 1)
	if got := e.result(resultStoreFailed); got != 1 {
		t.Errorf("%d failed stores, want 1", got)
	}
	if log := e.logs.take(); !strings.Contains(log, "disk full") {
		t.Errorf("the store's failure is not logged:\n%s", log)
	}
	e.filler.storeErr = nil
	e.pull(t, "lazy/app", 200)
	e.waitFetches(t, 2)
	if inTree, listed := e.stored(t, "lazy/app"); !inTree || !listed {
		t.Errorf("in the tree %v, listed as stored %v", inTree, listed)
	}
	if got := e.up.blobGets.Load(); got != 2 {
		t.Errorf("%d blob GETs upstream, want 2", got)
	}
}

// TestOnDemandClose: a server closed mid-fetch cuts its clients, stores
// nothing, leaves no spool file, and the next server fetches again.
func TestOnDemandClose(t *testing.T) {
	e := newODEnv(t, odModes[0], 2<<20, false)
	gate := make(chan struct{})
	defer close(gate)
	e.up.set("", gate)
	resp := e.get(t, "lazy/app", nil)
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	e.s.fill.close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a whole answer from a closed server")
	}
	resp.Body.Close()
	if inTree, listed := e.stored(t, "lazy/app"); inTree || listed {
		t.Errorf("in the tree %v, listed as stored %v", inTree, listed)
	}
	if left, _ := os.ReadDir(e.spool); len(left) > 0 {
		t.Errorf("spool files left: %v", left)
	}
	e.up.set("", nil)
	s, err := New(e.dir, WithFiller(e.filler, false), WithSpoolDir(e.spool), WithLogger(e.logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp2, body := fetch(t, srv, http.MethodGet, blobURL("lazy/app", e.d), nil)
	if resp2.StatusCode != 200 || !bytes.Equal(body, e.layer) {
		t.Errorf("the next server: %d, %d bytes", resp2.StatusCode, len(body))
	}
}

// TestSpoolDir: a spool folder that is not one is refused.
func TestSpoolDir(t *testing.T) {
	tt := newTestTree(t)
	file := tt.root.Path(layout.LayoutFileKey())
	for _, dir := range []string{tt.dir() + "/missing", file} {
		if s, err := New(tt.dir(), WithFiller(&testFiller{}, false), WithSpoolDir(dir)); err == nil {
			s.Close()
			t.Errorf("spool folder %s accepted", dir)
		}
	}
}

// TestOnDemandOtherSize: a repository that lists a digest in flight with
// another size is answered with an error, not bytes of the wrong length
// (nor a hang).
func TestOnDemandOtherSize(t *testing.T) {
	e := newODEnv(t, odModes[1], 500_000, false)
	gate := make(chan struct{})
	e.up.set("", gate)
	resp := e.get(t, "lazy/app", nil)
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	r, err := e.filler.read(context.Background(), "lazy/other")
	if err != nil {
		t.Fatal(err)
	}
	b := r.Blobs[e.d]
	b.Size++
	r.Blobs[e.d] = b
	data, _ := r.Encode()
	key, _ := layout.RepositoryKey("lazy/other")
	if err := e.st.Put(context.Background(), key, bytes.NewReader(data), store.Want{}); err != nil {
		t.Fatal(err)
	}
	other := e.get(t, "lazy/other", nil)
	other.Body.Close()
	if other.StatusCode != http.StatusInternalServerError {
		t.Errorf("GET through the repository listing another size: %d", other.StatusCode)
	}
	close(gate)
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Errorf("GET through the repository listing the right size: %v", err)
	}
}
