package redirector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// withRacyWindow sets how old a repository file must be before it is
// cached; tests set 0 so that the files they have just written are.
func withRacyWindow(d time.Duration) Option {
	return func(o *options) { o.racyWindow = d }
}

// cacheMode is a server configuration the table tests run under.
type cacheMode struct {
	name string
	opts []Option
	// warm serves every request twice and sends the second answer, so
	// that the table is answered from caches the same request filled.
	warm bool
	// store, when set, has the server made by NewFromStore, reading the
	// tree's folder through the store it returns.
	store func(t testing.TB, dir string) store.Store
}

// cached reports whether the mode's server has caches.
func (m cacheMode) cached() bool { return !strings.HasSuffix(m.name, "cache=off") }

// calls returns the rows of a table that apply to the mode: a store has
// no symbolic links to refuse (a bucket has none; store.FS follows them,
// which is why a folder is served with New).
func (m cacheMode) calls(calls []call) []call {
	if m.store == nil {
		return calls
	}
	return slices.DeleteFunc(slices.Clone(calls), func(c call) bool {
		return strings.Contains(c.Description, "symbolic link out of the tree")
	})
}

var cacheModes = []cacheMode{
	{name: "cache=off", opts: []Option{WithCacheSize(0)}},
	{name: "cache=on", opts: []Option{withRacyWindow(0)}},
	{name: "cache=warm", opts: []Option{withRacyWindow(0)}, warm: true},
}

func forEachCacheMode(t *testing.T, test func(*testing.T, cacheMode)) {
	for _, m := range cacheModes {
		t.Run(m.name, func(t *testing.T) { test(t, m) })
	}
}

// newServer starts a server for dir in this mode. When the caches are on,
// it checks at the end that they answered some requests, so that a mode
// cannot silently test nothing.
func (m cacheMode) newServer(t *testing.T, dir string, opts ...Option) (*httptest.Server, *Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	all := append(append([]Option{WithLogger(logs.logger())}, m.opts...), opts...)
	var s *Server
	var err error
	if m.store != nil {
		s, err = NewFromStore(m.store(t, dir), all...)
	} else {
		s, err = New(dir, all...)
	}
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = s
	if m.warm {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.ServeHTTP(httptest.NewRecorder(), r.Clone(r.Context()))
			s.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		s.Close()
		var repoHits uint64
		cached := false
		switch c := s.repos.(type) {
		case *repoCache:
			cached, repoHits = true, c.files.hits.Load()
		case *storeRepoCache:
			cached, repoHits = true, c.files.hits.Load()
		}
		if cached != m.cached() {
			t.Errorf("%s: repository cache = %v", m.name, cached)
		}
		shardHits := uint64(0)
		if sc, ok := s.repoShards.(*repoShardCache); ok {
			shardHits = sc.hits.Load()
		}
		if cached && (repoHits == 0 || manifestsCached(s) == 0 && shardHits == 0) {
			t.Errorf("%s: the caches answered nothing (%d repository hits, %d manifests, %d repository shard hits)", m.name, repoHits, manifestsCached(s), shardHits)
		}
	})
	return srv, s, logs
}

func manifestsCached(s *Server) int {
	c, ok := s.manifests.(*manifestCache)
	if !ok {
		return 0
	}
	n, _ := c.lru.size()
	return n
}

func TestLRU(t *testing.T) {
	type op struct {
		add    string // key to add (weight w), or
		get    string // key to get
		remove string
		w      int64
	}
	for _, tc := range []struct {
		name       string
		maxEntries int
		maxWeight  int64
		ops        []op
		want       string // keys, most recent first
		wantWeight int64
	}{
		{"entries bound evicts the least recent", 2, 100, []op{{add: "a", w: 1}, {add: "b", w: 1}, {add: "c", w: 1}}, "c b", 2},
		{"get refreshes", 2, 100, []op{{add: "a", w: 1}, {add: "b", w: 1}, {get: "a"}, {add: "c", w: 1}}, "c a", 2},
		{"weight bound", 10, 10, []op{{add: "a", w: 4}, {add: "b", w: 4}, {add: "c", w: 4}}, "c b", 8},
		{"weight bound evicts several", 10, 10, []op{{add: "a", w: 3}, {add: "b", w: 3}, {add: "c", w: 3}, {add: "d", w: 9}}, "d", 9},
		{"replace", 10, 10, []op{{add: "a", w: 3}, {add: "b", w: 3}, {add: "a", w: 5}}, "a b", 8},
		{"too heavy is not kept, and drops the old value", 10, 10, []op{{add: "a", w: 3}, {add: "b", w: 3}, {add: "a", w: 11}}, "b", 3},
		{"remove", 10, 10, []op{{add: "a", w: 3}, {add: "b", w: 3}, {remove: "a"}, {remove: "x"}}, "b", 3},
		{"exactly full", 2, 6, []op{{add: "a", w: 3}, {add: "b", w: 3}}, "b a", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLRU[string, int64](tc.maxEntries, tc.maxWeight)
			for _, o := range tc.ops {
				switch {
				case o.add != "":
					c.add(o.add, o.w, o.w)
				case o.get != "":
					if _, ok := c.get(o.get); !ok {
						t.Fatalf("get(%q) missed", o.get)
					}
				default:
					c.remove(o.remove)
				}
			}
			var keys []string
			for it := c.root.next; it != &c.root; it = it.next {
				keys = append(keys, it.key)
				if v, ok := c.peek(it.key); !ok || v != it.weight {
					t.Errorf("peek(%q) = %d %v", it.key, v, ok)
				}
			}
			n, w := c.size()
			if got := strings.Join(keys, " "); got != tc.want || n != len(keys) || w != tc.wantWeight {
				t.Errorf("keys %q (%d in the map), weight %d; want %q, weight %d", got, n, w, tc.want, tc.wantWeight)
			}
		})
	}
}

// version is one publish of the repository "app" of a republish test: tag
// latest names an image whose annotation is the version number, written
// with a fixed width so that every repository file has the same size (the
// hardest case for validation by file identity).
func publishVersion(tt *testTree, i int) digest.Digest {
	r, d := versionRepository(tt, i)
	tt.publish(r)
	return d
}

// versionRepository stores the image of version i and returns the
// repository file that tags it latest.
func versionRepository(tt *testTree, i int) (*layout.Repository, digest.Digest) {
	m := v1.Manifest{
		Config:      tt.blob(v1.MediaTypeImageConfig, []byte(`{"os":"linux"}`)),
		Layers:      []v1.Descriptor{},
		Annotations: map[string]string{"version": fmt.Sprintf("%06d", i)},
	}
	desc, _ := tt.manifest(m)
	r := layout.NewRepository("app")
	addImage(r, desc, m)
	r.Tags["latest"] = desc.Digest
	return r, desc.Digest
}

// publish writes r's file as publish does: to a temporary file in the same
// folder, renamed over the old one.
func (tt *testTree) publish(r *layout.Repository) {
	tt.t.Helper()
	data, err := r.Encode()
	if err != nil {
		tt.t.Fatal(err)
	}
	key, err := layout.RepositoryKey(r.Name)
	if err != nil {
		tt.t.Fatal(err)
	}
	p := tt.root.Path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tt.t.Fatal(err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".publish-*")
	if err != nil {
		tt.t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		tt.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tt.t.Fatal(err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		tt.t.Fatal(err)
	}
}

// cacheOf returns the lookup l of a server as the cache C, and fails the
// test if it is not one.
func cacheOf[C any](t *testing.T, l any) C {
	t.Helper()
	c, ok := l.(C)
	if !ok {
		t.Fatalf("the server has no %T", c)
	}
	return c
}

func repoCacheOf(t *testing.T, s *Server) *repoCache {
	t.Helper()
	return cacheOf[*repoCache](t, s.repos)
}

// TestRepublish publishes a new version of a repository and pulls it by tag,
// in a loop: every pull after a publish returned gets the new digest, from a
// cache that holds the previous version (the racy window is off, so every
// file is cached as soon as it is read).
func TestRepublish(t *testing.T) {
	tt := newTestTree(t)
	publishVersion(tt, 0)
	s, err := New(tt.dir(), withRacyWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := repoCacheOf(t, s)
	for i := range 100 {
		d := publishVersion(tt, i)
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet} {
			w := get(s, method, manifestURL("app", "latest"))
			if got := w.Header().Get(contentDigestHeader); w.Code != 200 || got != d.String() {
				t.Fatalf("version %d: %s answered %d %s, want %s", i, method, w.Code, got, d)
			}
		}
	}
	if c.files.hits.Load() < 100 || c.files.loads.Load() < 100 {
		t.Errorf("%d hits and %d loads; want each version loaded once and then hit", c.files.hits.Load(), c.files.loads.Load())
	}
}

// TestRepublishTwice publishes two versions between two requests: on ext4
// the second file gets the inode of the first, with the same size, and only
// the file's times tell them apart. The pause lets the file system's clock
// tick, as the racy window does in production.
func TestRepublishTwice(t *testing.T) {
	tt := newTestTree(t)
	publishVersion(tt, 0)
	s, err := New(tt.dir(), withRacyWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i < 20; i += 2 {
		get(s, http.MethodGet, manifestURL("app", "latest"))
		time.Sleep(20 * time.Millisecond)
		publishVersion(tt, i)
		d := publishVersion(tt, i+1)
		if got := get(s, http.MethodGet, manifestURL("app", "latest")).Header().Get(contentDigestHeader); got != d.String() {
			t.Fatalf("after publishing versions %d and %d, got %s, want %s", i, i+1, got, d)
		}
	}
}

// TestRepublishConcurrently has a publisher and readers run at the same
// time: a reader never gets a version older than the last one whose publish
// had returned when its request started. The racy window is short, and the
// publisher pauses, so that the readers are answered both from the cache and
// from fresh files.
func TestRepublishConcurrently(t *testing.T) {
	const versions = 40
	tt := newTestTree(t)
	digests := map[digest.Digest]int{}
	var repos []*layout.Repository
	for i := range versions + 1 {
		r, d := versionRepository(tt, i)
		repos = append(repos, r)
		digests[d] = i
	}
	tt.publish(repos[0])
	s, err := New(tt.dir(), withRacyWindow(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := repoCacheOf(t, s)

	var published atomic.Int64 // the last version whose publish returned
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				before := published.Load()
				w := get(s, http.MethodGet, manifestURL("app", "latest"))
				v, ok := digests[digest.Digest(w.Header().Get(contentDigestHeader))]
				if w.Code != 200 || !ok || int64(v) < before {
					t.Errorf("request started after version %d was published got %d %q (version %d)", before, w.Code, w.Header().Get(contentDigestHeader), v)
					return
				}
			}
		})
	}
	for i := 1; i <= versions; i++ {
		tt.publish(repos[i])
		published.Store(int64(i))
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond)
	}
	close(done)
	wg.Wait()
	if c.files.hits.Load() == 0 {
		t.Error("no request was answered from the cache")
	}
	t.Logf("%d hits, %d loads", c.files.hits.Load(), c.files.loads.Load())
}

// TestRacyWindow simulates a file system that cannot tell two versions of a
// file apart by their status: the inode of the replaced file comes back
// (as it does on ext4) and the clock has not ticked between the two
// publishes. Without the racy window the cache then serves the old version;
// with it, a file that changed within the window is never cached.
func TestRacyWindow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		window    time.Duration
		wantStale bool
	}{
		{"no window: the old version is served (what the window prevents)", 0, true},
		{"window", time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTestTree(t)
			v0 := publishVersion(tt, 0)
			s, err := New(tt.dir(), withRacyWindow(tc.window))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			c := repoCacheOf(t, s)
			tick := time.Now().UnixNano()
			c.files.stat = func(p string) (fileIdentity, error) {
				id, err := s.tree.identity(p)
				id.ino, id.mtime, id.ctime = 1, tick, tick
				return id, err
			}
			if got := get(s, http.MethodGet, manifestURL("app", "latest")).Header().Get(contentDigestHeader); got != v0.String() {
				t.Fatalf("version 0: got %s", got)
			}
			v1 := publishVersion(tt, 1)
			got := get(s, http.MethodGet, manifestURL("app", "latest")).Header().Get(contentDigestHeader)
			if stale := got == v0.String(); stale != tc.wantStale || (!stale && got != v1.String()) {
				t.Errorf("after publishing version 1 (%s), got %s; stale = %v, want %v", v1, got, stale, tc.wantStale)
			}
		})
	}
}

// TestRepositoryFileChanges changes a cached repository file in every way a
// tree can change and checks each answer against a server without cache.
func TestRepositoryFileChanges(t *testing.T) {
	f := newFixture(t)
	tt := f.tree
	cached, err := New(tt.dir(), withRacyWindow(0), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	plain, err := New(tt.dir(), WithCacheSize(0), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	key, _ := layout.RepositoryKey("other")
	p := tt.root.Path(key)
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name   string
		change func(t *testing.T)
		code   int
	}{
		{"as published", func(*testing.T) {}, 200},
		{"deleted", func(t *testing.T) { must(t, os.Remove(p)) }, 404},
		{"published again", func(t *testing.T) { must(t, os.WriteFile(p, good, 0o644)) }, 200},
		{"malformed", func(t *testing.T) {
			must(t, os.WriteFile(p+".tmp", []byte("{"), 0o644))
			must(t, os.Rename(p+".tmp", p))
		}, 500},
		{"fixed", func(t *testing.T) { must(t, os.WriteFile(p+".tmp", good, 0o644)); must(t, os.Rename(p+".tmp", p)) }, 200},
		{"rewritten in place", func(t *testing.T) {
			var r map[string]any
			must(t, json.Unmarshal(good, &r))
			r["tags"] = map[string]string{}
			data, _ := json.Marshal(r)
			must(t, os.WriteFile(p, data, 0o644))
		}, 404},
		{"fixed in place", func(t *testing.T) { must(t, os.WriteFile(p, good, 0o644)) }, 200},
		{"a folder", func(t *testing.T) {
			must(t, os.Remove(p))
			must(t, os.MkdirAll(filepath.Join(p, "x"), 0o755))
		}, 404},
		{"a file again", func(t *testing.T) { must(t, os.RemoveAll(p)); must(t, os.WriteFile(p, good, 0o644)) }, 200},
		{"a symbolic link out of the tree", func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "other.json")
			must(t, os.WriteFile(out, good, 0o644))
			must(t, os.Remove(p))
			must(t, os.Symlink(out, p))
		}, 500},
		{"a symbolic link in the tree", func(t *testing.T) {
			must(t, os.WriteFile(p+".real", good, 0o644))
			must(t, os.Remove(p))
			must(t, os.Symlink(filepath.Base(p)+".real", p))
		}, 200},
	} {
		step.change(t)
		for _, target := range []string{manifestURL("other", "latest"), "/v2/other/tags/list", blobURL("other", f.otherManifest.Digest)} {
			for range 2 { // a miss, then a hit
				want := get(plain, http.MethodGet, target)
				got := get(cached, http.MethodGet, target)
				if got.Code != want.Code || got.Body.String() != want.Body.String() {
					t.Errorf("%s: GET %s = %d %q; without cache %d %q", step.name, target, got.Code, got.Body, want.Code, want.Body)
				}
				if strings.Contains(target, "/manifests/") && got.Code != step.code {
					t.Errorf("%s: GET %s = %d, want %d", step.name, target, got.Code, step.code)
				}
			}
		}
	}
	if c := repoCacheOf(t, cached); c.files.hits.Load() == 0 {
		t.Error("no request was answered from the cache")
	}
}

// TestHotManifest: a manifest in the cache is answered without reading its
// file, by GET and HEAD; without a cache the file is read every time (here
// it is gone, which a consistent tree never does while its repository file
// lists it).
func TestHotManifest(t *testing.T) {
	f := newFixture(t)
	cached, err := New(f.tree.dir(), withRacyWindow(0), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	plain, err := New(f.tree.dir(), WithCacheSize(0), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	// A HEAD alone fills the cache.
	target := manifestURL("library/alpine", "latest")
	if w := get(cached, http.MethodHead, target); w.Code != 200 {
		t.Fatalf("HEAD: %d", w.Code)
	}
	key, _ := layout.ManifestKey(f.idx.Digest)
	must(t, os.Remove(f.tree.root.Path(key)))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		w := get(cached, method, target)
		if w.Code != 200 || w.Header().Get("Content-Length") != fmt.Sprint(len(f.idxData)) || w.Header().Get("ETag") != etagOf(f.idx.Digest) {
			t.Errorf("%s from the cache: %d %v", method, w.Code, w.Header())
		}
		if method == http.MethodGet && w.Body.String() != string(f.idxData) {
			t.Errorf("GET from the cache: body %q", w.Body)
		}
		if w := get(plain, method, target); w.Code != 500 {
			t.Errorf("%s without cache: %d, want 500 for a missing file", method, w.Code)
		}
	}
}

// TestCacheBounds requests more repositories, manifests and catalog shards
// than the caches may hold: they stay within their bounds, and every answer
// is right.
func TestCacheBounds(t *testing.T) {
	tt := newTestTree(t)
	var names []string
	want := map[string]digest.Digest{}
	for i := range 40 {
		name := fmt.Sprintf("repo%02d", i)
		m := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, fmt.Appendf(nil, `{"n":%d}`, i)), Layers: []v1.Descriptor{}}
		desc, _ := tt.manifest(m)
		r := layout.NewRepository(name)
		addImage(r, desc, m)
		r.Tags["latest"] = desc.Digest
		tt.repository(r)
		names = append(names, name)
		want[name] = desc.Digest
	}
	tt.catalog(names, 3)
	for _, tc := range []struct {
		name    string
		entries int
		bytes   int64
	}{
		{"entries", 5, DefaultCacheBytes},
		{"bytes", 1000, 4 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tt.dir(), withRacyWindow(0), WithCacheSize(tc.entries), WithCacheBytes(tc.bytes))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			lrus := map[string]interface{ size() (int, int64) }{
				"repositories": repoCacheOf(t, s).files.lru,
				"manifests":    cacheOf[*manifestCache](t, s.manifests).lru,
				"shards":       cacheOf[*shardCache](t, s.shards).lru,
			}
			for round := range 3 {
				for i, name := range names {
					w := get(s, http.MethodGet, manifestURL(name, "latest"))
					if w.Code != 200 || w.Header().Get(contentDigestHeader) != want[name].String() {
						t.Fatalf("round %d, %s: %d %s", round, name, w.Code, w.Header().Get(contentDigestHeader))
					}
					if w := get(s, http.MethodGet, fmt.Sprintf("/v2/_catalog?n=1&last=%s", name)); w.Code != 200 ||
						(i+1 < len(names) && w.Body.String() != `{"repositories":["`+names[i+1]+`"]}`) {
						t.Fatalf("catalog after %s: %d %s", name, w.Code, w.Body)
					}
					for what, l := range lrus {
						if n, b := l.size(); n > tc.entries || b > tc.bytes {
							t.Fatalf("%s cache holds %d entries of %d bytes, bounds %d and %d", what, n, b, tc.entries, tc.bytes)
						}
					}
				}
			}
			for what, l := range lrus {
				if n, _ := l.size(); n == 0 {
					t.Errorf("%s cache is empty", what)
				}
			}
		})
	}
}

// TestLoadOnce: concurrent requests that find the same version of a
// repository file that is not cached read it once.
func TestLoadOnce(t *testing.T) {
	tt := newTestTree(t)
	d := publishVersion(tt, 0)
	s, err := New(tt.dir(), withRacyWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := repoCacheOf(t, s)
	const n = 8
	var stats, reads atomic.Int32
	release := make(chan struct{})
	c.files.stat = func(p string) (fileIdentity, error) {
		stats.Add(1)
		return s.tree.identity(p)
	}
	c.files.src = heldSource[layout.RepositoryView]{c.files.src, &reads, release}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if w := get(s, http.MethodGet, manifestURL("app", "latest")); w.Header().Get(contentDigestHeader) != d.String() {
				t.Errorf("got %d %s", w.Code, w.Header().Get(contentDigestHeader))
			}
		})
	}
	for stats.Load() < n {
		time.Sleep(time.Millisecond)
	}
	// From its stat to joining the read under way, a request runs a few
	// instructions; give it ample time.
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if r := reads.Load(); r != 1 {
		t.Errorf("%d requests read the file %d times, want once", n, r)
	}
	if w := get(s, http.MethodGet, manifestURL("app", "latest")); w.Code != 200 || c.files.hits.Load() != 1 {
		t.Errorf("the next request: %d, %d hits", w.Code, c.files.hits.Load())
	}
}

// heldSource counts the reads of a fileSource and holds each one until
// release is closed.
type heldSource[V any] struct {
	fileSource[V]
	reads   *atomic.Int32
	release chan struct{}
}

func (s heldSource[V]) read(ctx context.Context, key string) (V, fileIdentity, error) {
	s.reads.Add(1)
	<-s.release
	return s.fileSource.read(ctx, key)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestLRUBudget: lrus that share a budget evict the least recently used
// entry of any of them to make room, and each keeps its own entries bound.
func TestLRUBudget(t *testing.T) {
	b := newCacheBudget(10)
	x := newLRUIn[string, int](10, b)
	y := newLRUIn[string, int](2, b)
	x.add("x1", 1, 3)
	y.add("y1", 1, 3)
	x.add("x2", 1, 3)
	if _, ok := x.get("x1"); !ok { // x1 is now more recent than y1
		t.Fatal("x1 missing")
	}
	y.add("y2", 1, 3) // 12 > 10: y1, the least recent of all, goes
	if _, ok := y.peek("y1"); ok {
		t.Error("y1 kept")
	}
	for _, k := range []string{"x1", "x2"} {
		if _, ok := x.peek(k); !ok {
			t.Errorf("%s dropped", k)
		}
	}
	x.add("x3", 1, 3) // 12 > 10: x2 goes
	if _, ok := x.peek("x2"); ok {
		t.Error("x2 kept")
	}
	y.add("y3", 1, 1)
	y.add("y4", 1, 1) // y's own bound of 2 entries: y2 goes
	if n, w := y.size(); n != 2 || w != 2 {
		t.Errorf("y: %d entries of weight %d, want 2 of 2", n, w)
	}
	if n, w := x.size(); n != 2 || w != 6 || b.weight != 8 {
		t.Errorf("x: %d entries of weight %d, budget %d; want 2 of 6, budget 8", n, w, b.weight)
	}
	x.add("big", 1, 11) // heavier than the budget: not kept, nothing dropped
	if n, _ := x.size(); n != 2 || b.weight != 8 {
		t.Errorf("after a value heavier than the budget: x has %d entries, budget %d", n, b.weight)
	}
}

// TestCatalogIndexCache: the catalog index is parsed once and then
// validated by its identity, and a new catalog is seen by the next
// request, in a tree that had none when the server started too.
func TestCatalogIndexCache(t *testing.T) {
	tt := newTestTree(t)
	s, err := New(tt.dir(), withRacyWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w := get(s, http.MethodGet, "/v2/_catalog"); w.Code != 200 || w.Body.String() != `{"repositories":[]}` {
		t.Fatalf("no catalog yet: got %d %s", w.Code, w.Body)
	}
	tt.catalog([]string{"a", "b", "c"}, 2)
	c := cacheOf[*indexCache](t, s.index).files
	c.hits.Store(0)
	c.loads.Store(0)
	for range 3 {
		if w := get(s, http.MethodGet, "/v2/_catalog"); w.Code != 200 || w.Body.String() != `{"repositories":["a","b","c"]}` {
			t.Fatalf("got %d %s", w.Code, w.Body)
		}
	}
	if h, l := c.hits.Load(), c.loads.Load(); h != 2 || l != 1 {
		t.Errorf("%d hits and %d loads, want 2 and 1", h, l)
	}
	tt.catalog([]string{"a", "b", "c", "dd", "eee"}, 2)
	if w := get(s, http.MethodGet, "/v2/_catalog"); w.Code != 200 || w.Body.String() != `{"repositories":["a","b","c","dd","eee"]}` {
		t.Fatalf("after a new catalog: got %d %s", w.Code, w.Body)
	}
	if err := os.Remove(tt.root.Path(layout.CatalogIndexKey())); err != nil {
		t.Fatal(err)
	}
	if w := get(s, http.MethodGet, "/v2/_catalog"); w.Code != 200 || w.Body.String() != `{"repositories":[]}` {
		t.Fatalf("without a catalog: got %d %s", w.Code, w.Body)
	}
	if n, _ := c.lru.size(); n != 0 {
		t.Errorf("the index of a removed catalog is still cached")
	}
}

// TestBlobFolderReplaced: the server keeps blobs/<alg> open, yet serves
// blobs from a tree that had none when it started, and from a blobs/<alg>
// folder that was replaced by another.
func TestBlobFolderReplaced(t *testing.T) {
	tt := newTestTree(t)
	s, err := New(tt.dir(), withRacyWindow(0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := layout.NewRepository("app")
	tt.repository(r)
	if w := get(s, http.MethodGet, blobURL("app", digest.FromString("nothing"))); w.Code != 404 {
		t.Fatalf("no blobs yet: got %d", w.Code)
	}
	for i := range 3 {
		if i > 0 {
			// Replace blobs/sha256 by a new folder holding the same
			// blobs, as a copy of the tree would.
			dir := tt.root.Path(path.Join(layout.BlobsDirKey(), "sha256"))
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(dir + ".old"); err != nil {
				t.Fatal(err)
			}
		}
		data := fmt.Appendf(nil, "blob %d", i)
		b := tt.blob(v1.MediaTypeImageLayerGzip, data)
		r.Blobs = map[digest.Digest]layout.Blob{b.Digest: {Size: b.Size, MediaType: b.MediaType}}
		tt.publish(r)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			w := get(s, method, blobURL("app", b.Digest))
			if w.Code != 200 || w.Header().Get("Content-Length") != strconv.Itoa(len(data)) || (method == http.MethodGet && w.Body.String() != string(data)) {
				t.Fatalf("round %d, %s: %d %q", i, method, w.Code, w.Body)
			}
		}
	}
}
