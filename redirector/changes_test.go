package redirector

import (
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
)

// signal increments the tree's change counter as a writer does after a
// change, creating it if needed (publish's FSSink does the same; the
// server's tests do not import publish).
func (tt *testTree) signal() {
	tt.t.Helper()
	p := tt.root.Path(layout.ChangesKey())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tt.t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		tt.t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(layout.ChangesFileSize); err != nil {
		tt.t.Fatal(err)
	}
	c, err := layout.MapChangeCounter(f, true)
	if err != nil {
		tt.t.Fatal(err)
	}
	c.Increment()
	if err := c.Unmap(); err != nil {
		tt.t.Fatal(err)
	}
}

// signalledTree is a tree with version 0 of app published and signalled,
// on a file system where the server trusts the counter (the test is
// skipped elsewhere), served by a countedServer that has answered it once.
func signalledTree(t *testing.T) (*testTree, *countedServer, string) {
	tt := newTestTree(t)
	skipUnlessCounterTrusted(t, tt.dir())
	d0 := publishVersion(tt, 0).String()
	tt.signal()
	cs := newCountedServer(t, tt)
	cs.pull(t, http.MethodGet, d0)
	return tt, cs, d0
}

// countedServer is a server on tt whose repository cache counts its stats
// and runs on a clock the test moves.
type countedServer struct {
	s     *Server
	c     *repoCache
	stats atomic.Int64
	clock atomic.Int64 // added to the real time, nanoseconds
}

func newCountedServer(t *testing.T, tt *testTree) *countedServer {
	s, err := New(tt.dir(), withRacyWindow(0), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cs := &countedServer{s: s, c: repoCacheOf(t, s)}
	stat := cs.c.files.stat
	cs.c.files.stat = func(file string) (fileIdentity, error) {
		cs.stats.Add(1)
		return stat(file)
	}
	cs.c.files.now = func() time.Time { return time.Now().Add(time.Duration(cs.clock.Load())) }
	return cs
}

// pull asks for app:latest and wants d.
func (cs *countedServer) pull(t *testing.T, method, want string) {
	t.Helper()
	w := get(cs.s, method, manifestURL("app", "latest"))
	if got := w.Header().Get(contentDigestHeader); w.Code != 200 || got != want {
		t.Fatalf("%s answered %d %s, want %s", method, w.Code, got, want)
	}
}

// pullWithoutStat is pull, and wants no stat made for it.
func (cs *countedServer) pullWithoutStat(t *testing.T, method, want string) {
	t.Helper()
	before := cs.stats.Load()
	cs.pull(t, method, want)
	if n := cs.stats.Load() - before; n != 0 {
		t.Errorf("%s: %d stats, want 0 (answered on the counter)", method, n)
	}
}

// TestSignalledRepublish republishes a tag in a loop, signalling each
// change: the request after each publish gets the new digest, and the
// requests after it are answered without a stat.
func TestSignalledRepublish(t *testing.T) {
	tt, cs, _ := signalledTree(t)
	for i := range 50 {
		d := publishVersion(tt, i).String()
		tt.signal()
		before := cs.stats.Load()
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet, http.MethodHead} {
			cs.pull(t, method, d)
		}
		if n := cs.stats.Load() - before; n != 1 {
			t.Fatalf("version %d: %d stats for 4 requests, want 1 (the first after the signal)", i, n)
		}
	}
}

// TestUnsignalledChange changes the repository file without signalling
// it, as a copy made by another tool would: the server sees the change
// once trustWindow has passed since its last stat.
func TestUnsignalledChange(t *testing.T) {
	tt, cs, d0 := signalledTree(t)
	d1 := publishVersion(tt, 1).String() // no signal
	cs.clock.Add(int64(trustWindow / 2))
	cs.pull(t, http.MethodGet, d0) // still trusted: the old answer
	cs.clock.Add(int64(trustWindow/2) + 1)
	cs.pull(t, http.MethodGet, d1)
	cs.pullWithoutStat(t, http.MethodGet, d1) // right after a request that validated the file
}

// TestCounterReplaced removes the counter file and lets a writer create a
// new one: the server maps the new one within trustWindow, and until then
// validates what it serves by the window.
func TestCounterReplaced(t *testing.T) {
	tt, cs, _ := signalledTree(t)
	must(t, os.Remove(tt.root.Path(layout.ChangesKey())))
	d1 := publishVersion(tt, 1).String()
	tt.signal() // a new file: the server still has the old one mapped
	cs.clock.Add(int64(trustWindow) + 1)
	cs.pull(t, http.MethodGet, d1)
	// The new counter is mapped now: the next signalled change is seen at
	// once.
	d2 := publishVersion(tt, 2).String()
	tt.signal()
	cs.pull(t, http.MethodGet, d2)
	cs.pullWithoutStat(t, http.MethodHead, d2)
}

// TestNoCounter checks that without a counter file every use of a cached
// repository file is validated by a stat.
func TestNoCounter(t *testing.T) {
	tt := newTestTree(t)
	d0 := publishVersion(tt, 0).String()
	cs := newCountedServer(t, tt)
	for range 5 {
		cs.pull(t, http.MethodGet, d0)
	}
	if n := cs.stats.Load(); n != 5 {
		t.Errorf("%d stats for 5 requests, want 5", n)
	}
	d1 := publishVersion(tt, 1).String()
	cs.pull(t, http.MethodGet, d1)
}

// TestMissWithoutStat: with a trusted counter, a repository file not in
// the cache is read without a stat before (its identity is the open
// file's), concurrent requests that read the same counter share one read,
// and a request made after a signalled change does not join a read that
// began before it.
func TestMissWithoutStat(t *testing.T) {
	tt := newTestTree(t)
	skipUnlessCounterTrusted(t, tt.dir())
	d0 := publishVersion(tt, 0).String()
	tt.signal()
	cs := newCountedServer(t, tt)
	if !cs.s.tree.readsIdentity() {
		t.Skip("this system reads files without their identity (no openat2)")
	}
	// A first request maps the counter (another repository's: nothing
	// is cached).
	if w := get(cs.s, http.MethodGet, manifestURL("other", "latest")); w.Code != http.StatusNotFound {
		t.Fatalf("another repository: %d", w.Code)
	}
	cs.stats.Store(0)
	var reads atomic.Int32
	release := make(chan struct{})
	cs.c.files.src = heldSource[layout.RepositoryView]{cs.c.files.src, &reads, release}
	const n = 8
	var wg sync.WaitGroup
	got := make([]string, n)
	var started atomic.Int32
	for i := range n {
		wg.Go(func() {
			started.Add(1)
			got[i] = get(cs.s, http.MethodGet, manifestURL("app", "latest")).Header().Get(contentDigestHeader)
		})
	}
	for reads.Load() < 1 || started.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // for the others to join the read
	// A publish, signalled, while the read is held: a request made now
	// must get the new version, not join the read of the old one.
	d1 := publishVersion(tt, 1).String()
	tt.signal()
	late := make(chan string, 1)
	go func() {
		w := get(cs.s, http.MethodGet, manifestURL("app", "latest"))
		late <- w.Header().Get(contentDigestHeader)
	}()
	for reads.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	// The held read opens the file once released: it reads version 0,
	// or version 1 if it opens it after the publish; both are right for
	// requests made before the publish.
	for i, d := range got {
		if d != d0 && d != d1 {
			t.Errorf("request %d got %q", i, d)
		}
	}
	if got := <-late; got != d1 {
		t.Errorf("a request after the publish got %s, want %s", got, d1)
	}
	if r := reads.Load(); r != 2 {
		t.Errorf("%d reads, want 2 (one for the %d concurrent requests, one for the late one)", r, n)
	}
	if s := cs.stats.Load(); s != 0 {
		t.Errorf("%d stats, want none (the misses take the identity of what they read)", s)
	}
	// Cached from its own read: the next request hits.
	before := cs.c.files.hits.Load()
	cs.pull(t, http.MethodGet, d1)
	if cs.c.files.hits.Load() != before+1 {
		t.Error("the next request was not a hit")
	}
}
