//go:build e2e

package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
)

// TestOnDemandPull is lazy sync end to end: every fixture is published
// with --policy on_demand from a registry (the suite's own heron serve, in
// direct mode, behind its tap: a real registry that records what it is
// asked), so that the new tree holds the manifests and lists the blobs as
// not stored; a second heron serve of that tree is then pulled from by
// every client. It must fetch each blob from the upstream when first asked
// for, stream it verified, and store it: no blob is fetched from the
// upstream twice, however many clients pull it, and the tree ends up whole
// for what was pulled.
func TestOnDemandPull(t *testing.T) {
	upstream := directMode(t)
	root := filepath.Join(t.TempDir(), "tree")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fs := make([]*fixtures.Fixture, len(suite.fixtures.Fixtures))
	for i := range suite.fixtures.Fixtures {
		fs[i] = &suite.fixtures.Fixtures[i]
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Subject == nil && fs[j].Subject != nil })
	for _, f := range fs {
		tg := targetFor(f)
		ref := upstream.host() + "/" + tg.repo + ":" + tg.tag
		if tg.byDigest {
			ref = upstream.host() + "/" + tg.repo + "@" + f.Digest.String()
		}
		to := tg.repo + ":" + tg.tag
		out, err := exec.CommandContext(ctx, suite.heron, "publish", "docker://"+ref, "--insecure", "--policy", "on_demand",
			"--root", root, "--to", to, "--output", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("heron publish docker://%s --policy on_demand: %v\n%s", ref, err, out)
		}
	}
	deferred := lazyBlobs(t, root)
	if deferred == 0 {
		t.Fatal("the on_demand publishes left no blob upstream: the test tests nothing")
	}

	md := startTappedMode(t, "on-demand", root)

	upstream.tap.quiet()
	mark := upstream.tap.mark()
	pullAll(t, []*mode{md})
	fetched := checkFetchedOnce(t, upstream, mark)
	left := lazyBlobs(t, root)
	t.Logf("on-demand: %d blobs listed as not stored after the publishes; %d fetched from the upstream by the pulls, each once; %d still not stored (no client asked for them)", deferred, len(fetched), left)
	if left >= deferred {
		t.Errorf("%d blobs are still listed as not stored, of %d: the fetched ones were not marked stored", left, deferred)
	}
	if out, err := exec.Command(suite.heron, "verify", "--root", root, "--deep").CombinedOutput(); err != nil {
		t.Errorf("heron verify --deep: %v\n%s", err, out)
	}
}

// lazyBlobs counts the blobs the fixtures' repositories in the tree at
// root list as not stored, read with heron's own reader (shards
// included).
func lazyBlobs(t *testing.T, root string) int {
	t.Helper()
	sink := publish.NewFSSink(layout.Root(root))
	seen := map[string]bool{}
	n := 0
	for i := range suite.fixtures.Fixtures {
		name := targetFor(&suite.fixtures.Fixtures[i]).repo
		if seen[name] {
			continue
		}
		seen[name] = true
		r, err := publish.ReadRepository(context.Background(), sink, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range r.Blobs {
			if !b.IsStored() {
				n++
			}
		}
	}
	return n
}

// fixtureNamed returns the suite's fixture of that name, or nil.
func fixtureNamed(name string) *fixtures.Fixture {
	for i := range suite.fixtures.Fixtures {
		if suite.fixtures.Fixtures[i].Name == name {
			return &suite.fixtures.Fixtures[i]
		}
	}
	return nil
}

// startTappedMode starts heron serve --root root extra... with a tap of
// its own in front, both stopped when the test ends.
func startTappedMode(t *testing.T, name, root string, extra ...string) *mode {
	t.Helper()
	command := func(args ...string) *exec.Cmd { return exec.Command(suite.heron, args...) }
	p, err := heronproc.StartServe("heron serve ("+name+")", command, root, 30*time.Second, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	tp, err := startTap(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.close() })
	return &mode{name: name, heron: p, tap: tp}
}

// TestPullThroughPull is the pull-through cache end to end: heron serve
// of a new, empty root with --pull-through up=http://UPSTREAM (the
// suite's own heron serve in direct mode, behind its tap) is pulled from
// by skopeo, crane and podman as up/<repository>; it must publish each
// manifest on_demand when first asked for and fetch each blob once. Then
// a containerd mirror request (?ns=up on the plain path) is answered from
// the same cache.
func TestPullThroughPull(t *testing.T) {
	upstream := directMode(t)
	root := filepath.Join(t.TempDir(), "mirror")
	md := startTappedMode(t, "pull-through", root, "--pull-through", "up=http://"+upstream.host())
	md.prefix, md.only = "up", []string{"skopeo", "crane", "podman"}

	upstream.tap.quiet()
	mark := upstream.tap.mark()
	pullAll(t, []*mode{md})
	checkFetchedOnce(t, upstream, mark)

	// containerd asks its mirror for docker.io/…-style names on the plain
	// path, naming the registry in ?ns=.
	f := fixtureNamed(fixtures.NameOCIImage)
	if f == nil {
		t.Fatal("no oci-image fixture")
	}
	req, err := http.NewRequest(http.MethodGet, md.heron.Base()+"/v2/"+targetFor(f).repo+"/manifests/latest?ns=up", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", f.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != f.Digest.String() {
		t.Errorf("GET …/manifests/latest?ns=up: %d, digest %q; want 200, %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), f.Digest)
	}
	if out, err := exec.Command(suite.heron, "verify", "--root", root, "--deep").CombinedOutput(); err != nil {
		t.Errorf("heron verify --deep of the cache: %v\n%s", err, out)
	}
}

// directMode is the suite's mode in which heron serve sends blobs itself.
func directMode(t *testing.T) *mode {
	t.Helper()
	for _, m := range suite.modes {
		if m.cdn == nil && m.bucket == nil {
			return m
		}
	}
	t.Fatal("no direct mode")
	return nil
}

// checkFetchedOnce checks that the upstream's tap saw, since mark, at
// least one blob GET, and none twice.
func checkFetchedOnce(t *testing.T, upstream *mode, mark int) map[string]int {
	t.Helper()
	upstream.tap.quiet()
	fetched := map[string]int{}
	for _, e := range upstream.tap.since(mark) {
		if e.Method == "GET" {
			if m := blobPathRE.FindStringSubmatch(strings.SplitN(e.URI, "?", 2)[0]); m != nil {
				fetched[m[2]+":"+m[3]]++
			}
		}
	}
	if len(fetched) == 0 {
		t.Errorf("no blob was fetched from the upstream")
	}
	for d, n := range fetched {
		if n > 1 {
			t.Errorf("blob %s was fetched from the upstream %d times", d, n)
		}
	}
	return fetched
}

// slowBody sends a blob's bytes slowly, so that a fetch through it lasts
// long enough to be killed in the middle.
type slowBody struct {
	io.ReadCloser
	slow *atomic.Bool
}

func (b slowBody) Read(p []byte) (int, error) {
	if b.slow.Load() {
		time.Sleep(10 * time.Millisecond)
		p = p[:min(len(p), 8<<10)]
	}
	return b.ReadCloser.Read(p)
}

// TestOnDemandKilledMidFetch SIGKILLs heron serve while it fetches a blob
// from a slow upstream: the client's transfer fails, no blob is in the
// tree, and a new server fetches it again, whole and right.
func TestOnDemandKilledMidFetch(t *testing.T) {
	upstream := directMode(t)
	target, err := url.Parse("http://" + upstream.host())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	var throttle atomic.Bool
	throttle.Store(true)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodGet && blobPathRE.MatchString(resp.Request.URL.Path) {
			resp.Body = slowBody{resp.Body, &throttle}
		}
		return nil
	}
	slow := httptest.NewServer(rp)
	defer slow.Close()
	slowHost := strings.TrimPrefix(slow.URL, "http://")

	f := fixtureNamed(fixtures.NameLargeImage)
	if f == nil {
		t.Skip("no large-image fixture")
	}
	root := filepath.Join(t.TempDir(), "tree")
	tg := targetFor(f)
	if out, err := exec.Command(suite.heron, "publish", "docker://"+slowHost+"/"+tg.repo+":"+tg.tag, "--insecure", "--policy", "on_demand",
		"--root", root, "--to", tg.repo+":"+tg.tag).CombinedOutput(); err != nil {
		t.Fatalf("heron publish --policy on_demand: %v\n%s", err, out)
	}
	// The largest blob the repository lists as not stored.
	repo, err := publish.ReadRepository(context.Background(), publish.NewFSSink(layout.Root(root)), tg.repo)
	if err != nil {
		t.Fatal(err)
	}
	var d digest.Digest
	var size int64
	for bd, b := range repo.Blobs {
		if !b.IsStored() && b.Size > size {
			d, size = bd, b.Size
		}
	}
	if d == "" {
		t.Fatal("no blob left upstream")
	}
	blobURL := func(s *heronproc.Server) string { return s.Base() + "/v2/" + tg.repo + "/blobs/" + d.String() }
	command := func(args ...string) *exec.Cmd { return exec.Command(suite.heron, args...) }

	s1, err := heronproc.StartServe("heron serve (killed)", command, root, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(blobURL(s1))
	if err != nil {
		t.Fatal(err)
	}
	// Read a little, then kill the server in the middle of the fetch.
	got, _ := io.ReadFull(resp.Body, make([]byte, min(size/4, 64<<10)))
	if err := s1.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	rest, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr == nil && int64(got+len(rest)) == size {
		t.Fatalf("the client got all %d bytes although the server was killed in the middle", size)
	}
	_ = s1.Stop() // reaps it; it had exited (killed)
	bk, _ := layout.BlobKey(d)
	if _, err := os.Stat(layout.Root(root).Path(bk)); err == nil {
		t.Fatalf("%s is in the tree after a fetch killed in the middle", bk)
	}
	if out, err := exec.Command(suite.heron, "verify", "--root", root).CombinedOutput(); err != nil {
		t.Errorf("heron verify after the kill: %v\n%s", err, out)
	}

	// A new server fetches it again, whole (from an upstream at full
	// speed now).
	throttle.Store(false)
	s2, err := heronproc.StartServe("heron serve (after the kill)", command, root, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	resp, err = http.Get(blobURL(s2))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(body) != d {
		t.Fatalf("GET after the kill: %d, %d bytes, %v; want 200 and %s", resp.StatusCode, len(body), err, d)
	}
	// And stores it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(layout.Root(root).Path(bk)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not stored 10s after a whole fetch", bk)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("killed mid-fetch after %d of %d bytes; nothing stored; fetched again whole by a new server", got, size)
}
