package redirector

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
)

// Benchmarks of a tree read through a store (NewFromStore) next to the
// same tree read by New, with warm caches:
//
//	go test -run '^$' -bench 'Store' -benchmem ./redirector
//
// "bucket" is the in-process memStore (memstore_test.go): what the server
// itself costs with a bucket, without the network.

// signalled gives the tree at dir a change counter, as heron's writers
// leave one, so that New answers warm requests without a stat (as in
// production); without it New stats the repository file per request.
func signalled(b *testing.B, dir string) string {
	b.Helper()
	p := layout.Root(dir).Path(layout.ChangesKey())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(layout.ChangesFileSize); err != nil {
		b.Fatal(err)
	}
	c, err := layout.MapChangeCounter(f, true)
	if err != nil {
		b.Skipf("no change counter here: %v", err)
	}
	c.Increment()
	if err := c.Unmap(); err != nil {
		b.Fatal(err)
	}
	return dir
}

// benchServer makes the server of one sub-benchmark.
type benchServer struct {
	name string
	make func(b *testing.B, dir string) *Server
}

func benchNew(opts ...Option) func(*testing.B, string) *Server {
	return func(b *testing.B, dir string) *Server {
		s, err := New(dir, append([]Option{withRacyWindow(0)}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
}

func benchFromStore(st func(b *testing.B, dir string) store.Store, opts ...Option) func(*testing.B, string) *Server {
	return func(b *testing.B, dir string) *Server {
		s, err := NewFromStore(st(b, dir), opts...)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
}

func benchFS(_ *testing.B, dir string) store.Store     { return store.NewFS(layout.Root(dir)) }
func benchBucket(b *testing.B, dir string) store.Store { return memStoreOf(b, dir) }

// benchServers runs one request in a loop against each server, checking
// the answer once before timing.
func benchServers(b *testing.B, dir string, servers []benchServer, method, target string, header map[string]string, wantCode int, wantBytes int64) {
	for _, bs := range servers {
		b.Run(bs.name, func(b *testing.B) {
			s := bs.make(b, dir)
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

// BenchmarkStoreManifestGetByTag: a warm GET by tag, from the folder (New)
// and through a store (NewFromStore), within the revalidation window.
func BenchmarkStoreManifestGetByTag(b *testing.B) {
	f := newBenchFixture(b)
	benchServers(b, signalled(b, f.dir), []benchServer{
		{"New(fs)", benchNew()},
		{"NewFromStore(fs)", benchFromStore(benchFS)},
		{"NewFromStore(bucket)", benchFromStore(benchBucket)},
		{"NewFromStore(bucket)/revalidate=0", benchFromStore(benchBucket, WithRevalidateAfter(0))},
	}, http.MethodGet, manifestURL("bench/app", "v050"), map[string]string{"Accept": acceptManifests}, 200, f.tagged.Size)
}

// BenchmarkStoreBlobRedirect: a 307 of a blob to a base URL (unsigned, New)
// and to a presigned URL of the store, with the cache of signed URLs and
// without it (every redirect signed, the other caches on).
func BenchmarkStoreBlobRedirect(b *testing.B) {
	f := newBenchFixture(b)
	benchServers(b, signalled(b, f.dir), []benchServer{
		{"unsigned", benchNew(WithRedirectBase(flagBase))},
		{"unsigned/NewFromStore(bucket)", benchFromStore(benchBucket, WithRedirectBase(flagBase))},
		{"presigned", benchFromStore(benchBucket)},
		{"presigned/sign-every-time", func(b *testing.B, dir string) *Server {
			s := benchFromStore(benchBucket)(b, dir)
			s.presign.cache = nil
			return s
		}},
	}, http.MethodGet, blobURL("bench/app", f.bigLayer.Digest), nil, http.StatusTemporaryRedirect, 0)
}

// BenchmarkStoreBlobGet1MiB: a blob sent by the server, from the folder
// (sendfile) and streamed from a store while it is hashed.
func BenchmarkStoreBlobGet1MiB(b *testing.B) {
	f := newBenchFixture(b)
	benchServers(b, f.dir, []benchServer{
		{"New(fs)", benchNew()},
		{"NewFromStore(fs)", benchFromStore(benchFS)},
		{"NewFromStore(bucket)", benchFromStore(benchBucket, WithServeBlobs(true))},
	}, http.MethodGet, blobURL("bench/app", f.bigLayer.Digest), nil, 200, f.bigLayer.Size)
}
