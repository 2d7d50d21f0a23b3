package redirector

import (
	"context"
	"errors"
	"github.com/heron-registry/heron/redirector/auth"
	"golang.org/x/crypto/bcrypt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// testPuller is a Puller over a testTree: an "upstream" of tags naming
// manifests it writes into the tree when asked, as the publish-based one
// does. It counts its calls.
type testPuller struct {
	tt *testTree
	mu sync.Mutex
	// tags are the upstream's tags, by upstream name and tag; down
	// makes every call fail as an unreachable upstream would.
	tags  map[string]v1.Descriptor
	mf    map[digest.Digest]v1.Manifest
	down  bool
	calls atomic.Int64
	delay time.Duration
}

func (p *testPuller) PullTag(_ context.Context, up PullThrough, upstream, name, tag string) error {
	p.calls.Add(1)
	time.Sleep(p.delay)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return errors.New("dial tcp: connection refused")
	}
	desc, ok := p.tags[upstream+":"+tag]
	if !ok {
		return ErrUpstreamUnknown
	}
	r := layout.NewRepository(name)
	key, _ := layout.RepositoryKey(name)
	if data, err := readFileIn(p.tt, key); err == nil {
		if old, err := layout.DecodeRepositoryFile(name, data); err == nil {
			r = old
		}
	}
	addImage(r, desc, p.mf[desc.Digest])
	r.Tags[tag] = desc.Digest
	p.tt.repository(r)
	return nil
}

func (p *testPuller) PullDigest(ctx context.Context, up PullThrough, upstream, name string, d digest.Digest) error {
	p.calls.Add(1)
	return ErrUpstreamUnknown
}

func readFileIn(tt *testTree, key string) ([]byte, error) {
	return os.ReadFile(tt.root.Path(key))
}

func TestPullThrough(t *testing.T) {
	tt := newTestTree(t)
	cfg := tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	m1 := v1.Manifest{Config: cfg, Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer one"))}}
	d1, _ := tt.manifest(m1)
	m2 := v1.Manifest{Config: cfg, Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer two"))}}
	d2, _ := tt.manifest(m2)
	p := &testPuller{tt: tt,
		tags: map[string]v1.Descriptor{"library/alpine:3.20": d1},
		mf:   map[digest.Digest]v1.Manifest{d1.Digest: m1, d2.Digest: m2}}
	caches := []PullThrough{{Prefix: "docker.io", URL: "https://registry.example"}, {Prefix: "mirror/ghcr", URL: "https://ghcr.example"}}
	now := time.Unix(1_800_000_000, 0)
	s, err := New(tt.dir(), WithPullThrough(p, caches, time.Minute), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.pull.now = func() time.Time { return now }
	digestOf := func(target string) (int, string) {
		w := get(s, http.MethodHead, target)
		return w.Code, w.Header().Get("Docker-Content-Digest")
	}

	// First pull: the upstream is asked, the tree filled.
	if code, d := digestOf("/v2/docker.io/library/alpine/manifests/3.20"); code != 200 || d != d1.Digest.String() {
		t.Fatalf("first pull: %d %s", code, d)
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("%d calls of the puller, want 1", n)
	}
	// Within the TTL: answered from the tree, the upstream not asked.
	for range 5 {
		if code, _ := digestOf("/v2/docker.io/library/alpine/manifests/3.20"); code != 200 {
			t.Fatal(code)
		}
	}
	// containerd's mirror request: the same repository.
	if code, d := digestOf("/v2/library/alpine/manifests/3.20?ns=docker.io"); code != 200 || d != d1.Digest.String() {
		t.Fatalf("?ns=docker.io: %d %s", code, d)
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("%d calls of the puller within the TTL, want 1", n)
	}
	// After the TTL, the tag moved upstream: the next request sees it.
	p.mu.Lock()
	p.tags["library/alpine:3.20"] = d2
	p.mu.Unlock()
	now = now.Add(61 * time.Second)
	if code, d := digestOf("/v2/docker.io/library/alpine/manifests/3.20"); code != 200 || d != d2.Digest.String() {
		t.Fatalf("after the TTL: %d %s, want %s", code, d, d2.Digest)
	}
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	// Upstream down after the TTL: the cached copy is served.
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	now = now.Add(61 * time.Second)
	if code, d := digestOf("/v2/docker.io/library/alpine/manifests/3.20"); code != 200 || d != d2.Digest.String() {
		t.Fatalf("upstream down with a copy: %d %s", code, d)
	}
	// Upstream down without a copy: 502, at once, and not asked again
	// for a while.
	before := p.calls.Load()
	for range 3 {
		if code, _ := digestOf("/v2/docker.io/library/busybox/manifests/1"); code != http.StatusBadGateway {
			t.Fatalf("upstream down without a copy: %d, want 502", code)
		}
	}
	if n := p.calls.Load() - before; n != 1 {
		t.Errorf("%d calls for a down upstream asked 3 times, want 1", n)
	}
	// The tag gone upstream while the tree has it: the copy is served,
	// and the upstream asked once per TTL.
	p.mu.Lock()
	p.down = false
	delete(p.tags, "library/alpine:3.20")
	p.mu.Unlock()
	now = now.Add(61 * time.Second)
	before = p.calls.Load()
	for range 3 {
		if code, d := digestOf("/v2/docker.io/library/alpine/manifests/3.20"); code != 200 || d != d2.Digest.String() {
			t.Fatalf("tag gone upstream with a copy: %d %s", code, d)
		}
	}
	if n := p.calls.Load() - before; n != 1 {
		t.Errorf("%d calls for a tag gone upstream asked 3 times, want 1", n)
	}
	// Unknown upstream: 404, remembered for a while.
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
	before = p.calls.Load()
	for range 3 {
		if code, _ := digestOf("/v2/docker.io/library/nope/manifests/1"); code != http.StatusNotFound {
			t.Fatalf("unknown upstream: %d", code)
		}
	}
	if n := p.calls.Load() - before; n != 1 {
		t.Errorf("%d calls for an unknown tag asked 3 times, want 1", n)
	}
	// No open proxy: a blob no manifest of the repository lists is a 404,
	// and nobody is asked for it.
	before = p.calls.Load()
	if w := get(s, http.MethodGet, "/v2/docker.io/library/alpine/blobs/"+digest.FromString("not listed").String()); w.Code != http.StatusNotFound {
		t.Fatalf("a blob no manifest lists: %d", w.Code)
	}
	if p.calls.Load() != before {
		t.Errorf("the puller was asked for a blob no manifest lists")
	}
	// The empty layer is answered locally, listed or not.
	if w := get(s, http.MethodGet, "/v2/docker.io/library/alpine/blobs/sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"); w.Code != http.StatusOK {
		t.Errorf("the empty layer: %d", w.Code)
	}
	// A name outside every cache is the tree's alone.
	before = p.calls.Load()
	if code, _ := digestOf("/v2/other/library/alpine/manifests/3.20"); code != http.StatusNotFound {
		t.Fatalf("outside the caches: %d", code)
	}
	if code, _ := digestOf("/v2/library/alpine/manifests/3.20?ns=quay.io"); code != http.StatusNotFound {
		t.Fatalf("?ns= of no cache: %d", code)
	}
	if p.calls.Load() != before {
		t.Errorf("the puller was asked for a name outside the caches")
	}
}

// TestPullThroughOneCallForConcurrentRequests: 20 clients asking for the
// same new tag at once make one call of the puller.
func TestPullThroughOneCallForConcurrentRequests(t *testing.T) {
	tt := newTestTree(t)
	cfg := tt.blob(v1.MediaTypeImageConfig, []byte(`{}`))
	m := v1.Manifest{Config: cfg}
	d, _ := tt.manifest(m)
	p := &testPuller{tt: tt, tags: map[string]v1.Descriptor{"app:1": d}, mf: map[digest.Digest]v1.Manifest{d.Digest: m}, delay: 100 * time.Millisecond}
	s, err := New(tt.dir(), WithPullThrough(p, []PullThrough{{Prefix: "up", URL: "http://127.0.0.1:1"}}, 0), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if w := get(s, http.MethodGet, "/v2/up/app/manifests/1"); w.Code != 200 {
				t.Errorf("GET: %d %s", w.Code, w.Body)
			}
		})
	}
	wg.Wait()
	if n := p.calls.Load(); n != 1 {
		t.Errorf("%d calls of the puller, want 1", n)
	}
}

// TestPullThroughWithAuth: with authentication configured, an anonymous
// pull of a public name fills the cache on its first request (the check
// of what the tree holds is the tree's, not the caller's answer; it was a
// 401 once), and a name the rules keep from anonymous callers is refused
// before the upstream is asked.
func TestPullThroughWithAuth(t *testing.T) {
	tt := newTestTree(t)
	cfg := tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
	m := v1.Manifest{Config: cfg, Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer"))}}
	d, _ := tt.manifest(m)
	p := &testPuller{tt: tt, tags: map[string]v1.Descriptor{"library/alpine:3.20": d, "team/secret:1": d},
		mf: map[digest.Digest]v1.Manifest{d.Digest: m}}
	dir := t.TempDir()
	htpasswd, access := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "access.yaml")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rules := "rules:\n  - repositories: [\"docker.io/library/**\"]\n    anonymous: [pull]\n  - repositories: [\"docker.io/**\"]\n    users: {ci: [pull]}\n"
	if err := os.WriteFile(access, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Options{HtpasswdFile: htpasswd, AccessFile: access, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	s, err := New(tt.dir(), WithPullThrough(p, []PullThrough{{Prefix: "docker.io", URL: "https://registry.example"}}, time.Minute),
		WithAuth(a), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if w := get(s, http.MethodGet, "/v2/docker.io/library/alpine/manifests/3.20"); w.Code != 200 || w.Header().Get("Docker-Content-Digest") != d.Digest.String() {
		t.Fatalf("anonymous first pull of a public name: %d %s", w.Code, w.Body)
	}
	if w := get(s, http.MethodGet, "/v2/docker.io/team/secret/manifests/1"); w.Code != http.StatusUnauthorized {
		t.Fatalf("anonymous pull of a name kept from anonymous callers: %d %s", w.Code, w.Body)
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("%d calls of the puller, want 1 (none for the refused name)", n)
	}
	req := httptest.NewRequest(http.MethodGet, "/v2/docker.io/team/secret/manifests/1", nil)
	req.SetBasicAuth("ci", "pw")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Fatalf("ci's first pull: %d %s", w.Code, w.Body)
	}
	// A user the rules keep from a name: a missing repository, and no
	// upstream call made for him.
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\nbob:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	before := p.calls.Load()
	req = httptest.NewRequest(http.MethodGet, "/v2/docker.io/team/other/manifests/1", nil)
	req.SetBasicAuth("bob", "pw")
	w = httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusNotFound || p.calls.Load() != before {
		t.Fatalf("bob's pull of a name he may not read: %d %s, %d upstream calls", w.Code, w.Body, p.calls.Load()-before)
	}
}
