package publish_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
)

// pullTree is a tree and a Puller writing into it, as heron serve wires
// one.
type pullTree struct {
	root string
	pl   *publish.Puller
}

func newPullTree(t *testing.T) *pullTree {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	return &pullTree{root: root, pl: publish.NewPuller(p, fast()...)}
}

// forget clears the requests the upstream logged.
func (u *upstream) forget() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.log = nil
	u.blobGets = 0
}

// wantRequests checks the requests that reached the upstream since
// forget, but the HEADs of blobs (a publish checks that the upstream holds
// what it lists), and that no blob was fetched.
func (u *upstream) wantRequests(t *testing.T, what string, want ...string) {
	t.Helper()
	var got []string
	for _, r := range u.requests() {
		if !strings.HasPrefix(r, "HEAD ") || !strings.Contains(r, "/blobs/") {
			got = append(got, r)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: the upstream was asked\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestPullTag goes through the scenarios of a pull-through cache's tag
// pulls against a real registry: first pull, repeat, tag moved to new
// content, tag moved back to content the tree holds, an index, and names
// the upstream does not know.
func TestPullTag(t *testing.T) {
	u := newUpstream(t, false)
	pt := newPullTree(t)
	ctx := context.Background()
	regURL := "http://" + u.host
	const upName, name, tag = "library/alpine", "mirror/library/alpine", "3.20"
	pull := func() error { return pt.pl.PullTag(ctx, regURL, upName, name, tag) }
	head := "HEAD /v2/" + upName + "/manifests/" + tag

	img1 := ociImage(t, 700, 2)
	d1 := mustDigest(t, img1)
	u.push(upName+":"+tag, img1)

	// First pull: published on_demand, no blob fetched.
	if err := pull(); err != nil {
		t.Fatal(err)
	}
	r := readRepo(t, pt.root, name)
	if r.Tags[tag] != d1 {
		t.Fatalf("tag %s = %s, want %s", tag, r.Tags[tag], d1)
	}
	if string(readBlob(t, pt.root, d1)) != string(mustRaw(t, img1)) {
		t.Error("the manifest is not stored as the upstream has it")
	}
	for _, d := range blobDigests(t, img1) {
		b, ok := r.Blobs[d]
		if !ok || b.IsStored() {
			t.Errorf("blob %s: listed %v, stored %v; want listed, not stored", d, ok, b.IsStored())
		}
	}
	if want := (layout.Upstream{Registry: u.host, Repository: upName, Insecure: true}); r.Upstream == nil || *r.Upstream != want {
		t.Errorf("upstream %+v, want %+v", r.Upstream, want)
	}
	for _, req := range u.requests() {
		if strings.HasPrefix(req, "GET ") && strings.Contains(req, "/blobs/") {
			t.Errorf("the first pull fetched a blob: %s", req)
		}
	}
	assertConsistent(t, pt.root)

	// The same digest again: one HEAD, nothing written.
	u.forget()
	before := snapshot(t, pt.root, true)
	if err := pull(); err != nil {
		t.Fatal(err)
	}
	u.wantRequests(t, "a repeated pull", head)
	if d := diffSnapshots(before, snapshot(t, pt.root, true)); len(d) > 0 {
		t.Errorf("a repeated pull changed the tree:\n%s", strings.Join(d, "\n"))
	}

	// The tag moved upstream to new content: published by digest.
	img2 := ociImage(t, 701, 1)
	d2 := mustDigest(t, img2)
	u.push(upName+":"+tag, img2)
	if err := pull(); err != nil {
		t.Fatal(err)
	}
	u.wantRequests(t, "a pull of a moved tag", head, "GET /v2/"+upName+"/manifests/"+string(d2))
	r = readRepo(t, pt.root, name)
	if r.Tags[tag] != d2 {
		t.Fatalf("tag %s = %s, want %s", tag, r.Tags[tag], d2)
	}
	if _, ok := r.Manifests[d1]; !ok {
		t.Error("the manifest the tag named before is no longer listed")
	}
	assertConsistent(t, pt.root)

	// The tag moved back to content the tree lists: retagged, no GET.
	u.push(upName+":"+tag, img1)
	if err := pull(); err != nil {
		t.Fatal(err)
	}
	u.wantRequests(t, "a pull of a tag moved to known content", head)
	if r = readRepo(t, pt.root, name); r.Tags[tag] != d1 {
		t.Fatalf("tag %s = %s, want %s", tag, r.Tags[tag], d1)
	}
	assertConsistent(t, pt.root)

	// Another tag naming a manifest the tree lists: retagged too.
	u.push(upName+":latest", img2)
	if err := pt.pl.PullTag(ctx, regURL, upName, name, "latest"); err != nil {
		t.Fatal(err)
	}
	u.wantRequests(t, "a pull of a new tag naming known content", "HEAD /v2/"+upName+"/manifests/latest")
	if r = readRepo(t, pt.root, name); r.Tags["latest"] != d2 || r.Tags[tag] != d1 {
		t.Fatalf("tags %v, want latest %s and %s %s", r.Tags, d2, tag, d1)
	}

	// An index: the index and its children stored, no blob.
	a, b := ociImage(t, 702, 1), ociImage(t, 703, 1)
	idx := platformIndex(t, types.OCIImageIndex, a, b)
	u.push(upName+":multi", idx)
	if err := pt.pl.PullTag(ctx, regURL, upName, name, "multi"); err != nil {
		t.Fatal(err)
	}
	r = readRepo(t, pt.root, name)
	if r.Tags["multi"] != mustDigest(t, idx) {
		t.Fatalf("tag multi = %s, want the index %s", r.Tags["multi"], mustDigest(t, idx))
	}
	for _, img := range []interface{ RawManifest() ([]byte, error) }{a, b} {
		raw := mustRaw(t, img)
		if _, ok := r.Manifests[digest.FromBytes(raw)]; !ok {
			t.Errorf("child %s not listed", digest.FromBytes(raw))
		}
	}
	for _, req := range u.requests() {
		if strings.HasPrefix(req, "GET ") && strings.Contains(req, "/blobs/") {
			t.Errorf("a pull of an index fetched a blob: %s", req)
		}
	}
	assertConsistent(t, pt.root)

	// What the upstream does not know.
	before = snapshot(t, pt.root, true)
	for _, tc := range []struct{ upstream, tag string }{
		{upName, "nope"},
		{"library/nope", tag},
	} {
		err := pt.pl.PullTag(ctx, regURL, tc.upstream, "mirror/"+tc.upstream, tc.tag)
		if !errors.Is(err, publish.ErrUpstreamUnknown) {
			t.Errorf("PullTag %s:%s: %v, want ErrUpstreamUnknown", tc.upstream, tc.tag, err)
		}
		t.Log(err)
	}
	if d := diffSnapshots(before, snapshot(t, pt.root, true)); len(d) > 0 {
		t.Errorf("pulls of unknown names changed the tree:\n%s", strings.Join(d, "\n"))
	}
}

// TestPullDigest: a digest the repository does not list is fetched,
// verified and published untagged; one it lists asks nothing upstream.
func TestPullDigest(t *testing.T) {
	u := newUpstream(t, false)
	pt := newPullTree(t)
	ctx := context.Background()
	regURL := "http://" + u.host
	const upName, name = "team/app", "mirror/team/app"

	img1, img2 := ociImage(t, 710, 1), ociImage(t, 711, 2)
	d1, d2 := mustDigest(t, img1), mustDigest(t, img2)
	u.push(upName+":v1", img1)
	u.push(upName+":v2", img2)
	if err := pt.pl.PullTag(ctx, regURL, upName, name, "v1"); err != nil {
		t.Fatal(err)
	}

	u.forget()
	if err := pt.pl.PullDigest(ctx, regURL, upName, name, d2); err != nil {
		t.Fatal(err)
	}
	u.wantRequests(t, "a pull of an unknown digest", "GET /v2/"+upName+"/manifests/"+string(d2))
	r := readRepo(t, pt.root, name)
	if _, ok := r.Manifests[d2]; !ok {
		t.Fatalf("manifest %s not listed after PullDigest", d2)
	}
	if len(r.Tags) != 1 || r.Tags["v1"] != d1 {
		t.Errorf("tags %v, want v1 only: a pull by digest tags nothing", r.Tags)
	}
	for _, d := range blobDigests(t, img2) {
		if b, ok := r.Blobs[d]; !ok || b.IsStored() {
			t.Errorf("blob %s: listed %v, stored %v; want listed, not stored", d, ok, b.IsStored())
		}
	}
	assertConsistent(t, pt.root)

	// Known (tagged, or not): nothing asked, nothing written.
	for _, d := range []digest.Digest{d1, d2} {
		u.forget()
		before := snapshot(t, pt.root, true)
		if err := pt.pl.PullDigest(ctx, regURL, upName, name, d); err != nil {
			t.Fatal(err)
		}
		u.wantRequests(t, "a pull of a known digest")
		if diff := diffSnapshots(before, snapshot(t, pt.root, true)); len(diff) > 0 {
			t.Errorf("a pull of a known digest changed the tree:\n%s", strings.Join(diff, "\n"))
		}
	}

	// A repository that does not exist yet gets the image untagged.
	if err := pt.pl.PullDigest(ctx, regURL, upName, "mirror/other", d2); err != nil {
		t.Fatal(err)
	}
	if r := readRepo(t, pt.root, "mirror/other"); len(r.Tags) != 0 || len(r.Manifests) != 1 {
		t.Errorf("new repository: tags %v, %d manifests; want no tag, one manifest", r.Tags, len(r.Manifests))
	}
	assertConsistent(t, pt.root)

	// Unknown upstream.
	if err := pt.pl.PullDigest(ctx, regURL, upName, name, digest.FromString("nope")); !errors.Is(err, publish.ErrUpstreamUnknown) {
		t.Errorf("PullDigest of a digest the upstream lacks: %v, want ErrUpstreamUnknown", err)
	}
}

// TestPullUpstreamFailures: an upstream that cannot be reached, or that
// fails every request, is an error, not ErrUpstreamUnknown, and quickly
// (bounded retries); the tree is left alone; once the upstream is back,
// the next pull works (a failed connection is not kept).
func TestPullUpstreamFailures(t *testing.T) {
	ctx := context.Background()

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		pt := newPullTree(t)
		start := time.Now()
		err = pt.pl.PullTag(ctx, "http://"+addr, "library/alpine", "mirror/library/alpine", "3.20")
		if err == nil || errors.Is(err, publish.ErrUpstreamUnknown) {
			t.Fatalf("PullTag from a closed port: %v, want an error other than ErrUpstreamUnknown", err)
		}
		t.Log(err)
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("PullTag from a closed port took %v", el)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("the error does not name the registry: %v", err)
		}
		if err := pt.pl.PullDigest(ctx, "http://"+addr, "library/alpine", "mirror/library/alpine", digest.FromString("x")); err == nil || errors.Is(err, publish.ErrUpstreamUnknown) {
			t.Errorf("PullDigest from a closed port: %v", err)
		}
	})

	t.Run("5xx, then back", func(t *testing.T) {
		u := newUpstream(t, false)
		img := ociImage(t, 720, 1)
		u.push("app:v1", img)
		pt := newPullTree(t)
		u.failWith = []int{http.StatusServiceUnavailable}
		u.failFirst.Store(1 << 30)
		err := pt.pl.PullTag(ctx, "http://"+u.host, "app", "m/app", "v1")
		if err == nil || errors.Is(err, publish.ErrUpstreamUnknown) {
			t.Fatalf("PullTag from a failing upstream: %v, want an error other than ErrUpstreamUnknown", err)
		}
		t.Log(err)
		if !strings.Contains(err.Error(), "503") {
			t.Errorf("the error does not say what the upstream answered: %v", err)
		}
		if snap := snapshot(t, pt.root, false); len(snap) > 0 {
			t.Errorf("a failed pull wrote into the tree: %v", snap)
		}
		u.failFirst.Store(0)
		if err := pt.pl.PullTag(ctx, "http://"+u.host, "app", "m/app", "v1"); err != nil {
			t.Fatalf("PullTag once the upstream is back: %v", err)
		}
		if r := readRepo(t, pt.root, "m/app"); r.Tags["v1"] != mustDigest(t, img) {
			t.Errorf("tag v1 = %s", r.Tags["v1"])
		}
	})
}

// TestPullHeadWithoutDigest: a registry that does not send
// Docker-Content-Digest on HEAD is asked with a GET instead.
func TestPullHeadWithoutDigest(t *testing.T) {
	u := newUpstream(t, false)
	img := ociImage(t, 730, 1)
	u.push("app:v1", img)
	target, _ := url.Parse("http://" + u.host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodHead {
			resp.Header.Del("Docker-Content-Digest")
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	pt := newPullTree(t)
	ctx := context.Background()
	for range 2 {
		if err := pt.pl.PullTag(ctx, srv.URL, "app", "m/app", "v1"); err != nil {
			t.Fatal(err)
		}
	}
	if r := readRepo(t, pt.root, "m/app"); r.Tags["v1"] != mustDigest(t, img) {
		t.Errorf("tag v1 = %s, want %s", r.Tags["v1"], mustDigest(t, img))
	}
	assertConsistent(t, pt.root)
}

// TestPullConcurrent: concurrent pulls of tags and digests of several
// repositories (as heron serve makes them) leave a whole tree.
func TestPullConcurrent(t *testing.T) {
	u := newUpstream(t, false)
	var imgs []digest.Digest
	for i := range 3 {
		img := ociImage(t, int64(740+i), 1)
		imgs = append(imgs, mustDigest(t, img))
		u.push(fmt.Sprintf("app:v%d", i), img)
		u.push(fmt.Sprintf("lib/x:v%d", i), img)
	}
	pt := newPullTree(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 48)
	for i := range 24 {
		wg.Go(func() {
			repo := []string{"app", "lib/x"}[i%2]
			var err error
			if i%3 == 0 {
				err = pt.pl.PullDigest(ctx, "http://"+u.host, repo, "m/"+repo, imgs[i%3])
			} else {
				err = pt.pl.PullTag(ctx, "http://"+u.host, repo, "m/"+repo, fmt.Sprintf("v%d", i%3))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, repo := range []string{"m/app", "m/lib/x"} {
		r := readRepo(t, pt.root, repo)
		for i := 1; i < 3; i++ {
			if r.Tags[fmt.Sprintf("v%d", i)] != imgs[i] {
				t.Errorf("%s: tag v%d = %s, want %s", repo, i, r.Tags[fmt.Sprintf("v%d", i)], imgs[i])
			}
		}
		if _, ok := r.Manifests[imgs[0]]; !ok {
			t.Errorf("%s: the manifest pulled by digest is not listed", repo)
		}
	}
	assertConsistent(t, pt.root)
}

func TestParseRegistryURL(t *testing.T) {
	for _, tc := range []struct {
		in       string
		host     string
		insecure bool
		err      string
	}{
		{in: "https://registry.example:5000", host: "registry.example:5000"},
		{in: "https://registry.example/", host: "registry.example"},
		{in: "HTTPS://registry.example", host: "registry.example"},
		{in: "http://127.0.0.1:5000", host: "127.0.0.1:5000", insecure: true},
		{in: "http://[::1]:5000", host: "[::1]:5000", insecure: true},
		{in: "registry.example", err: "no scheme"},
		{in: "ftp://registry.example", err: "scheme ftp"},
		{in: "https://", err: "no host"},
		{in: "https:registry.example", err: "no host"},
		{in: "https://registry.example/v2", err: "a path"},
		{in: "https://u:p@registry.example", err: "credentials"},
		{in: "https://registry.example?x=1", err: "query"},
		{in: "https://registry.example#x", err: "fragment"},
		{in: "https://registry.example:", err: "empty port"},
		{in: "https://registry.example:0", err: "port 0"},
		{in: "https://registry.example:99999", err: "port 99999"},
		{in: "https://registry example", err: "invalid character"},
	} {
		host, insecure, err := publish.ParseRegistryURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRegistryURL(%q) = %q, %v, %v; want an error with %q", tc.in, host, insecure, err, tc.err)
			}
			continue
		}
		if err != nil || host != tc.host || insecure != tc.insecure {
			t.Errorf("ParseRegistryURL(%q) = %q, %v, %v; want %q, %v", tc.in, host, insecure, err, tc.host, tc.insecure)
		}
	}
}
