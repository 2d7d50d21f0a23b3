package publish_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// upstream is a real registry (ggcr's pkg/registry) on 127.0.0.1, behind a
// handler that can fail, corrupt or require credentials, and that logs
// every request it lets through.
type upstream struct {
	t    *testing.T
	srv  *httptest.Server
	host string

	// failFirst requests (after auth) are answered with the statuses of
	// failWith, in turn.
	failFirst atomic.Int64
	failWith  []int
	// retryAfter is the Retry-After of those answers ("0" if empty).
	retryAfter string
	// failBlobsAfter > 0: the GETs of blobs after that many succeed with
	// 500, forever.
	failBlobsAfter atomic.Int64
	// dropBlob: a GET of this blob sends half of it, then drops the
	// connection.
	dropBlob digest.Digest
	// corruptBlob: a GET of this blob sends other bytes of the same length.
	corruptBlob digest.Digest
	// user and pass, when set, are required (HTTP basic auth).
	user, pass string

	mu        sync.Mutex
	log       []string
	blobGets  int
	failed    int
	lastAuthz string
}

type upstreamOption func(*upstream)

func newUpstream(t *testing.T, tlsServer bool, opts ...upstreamOption) *upstream {
	t.Helper()
	u := &upstream{t: t}
	for _, o := range opts {
		o(u)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { u.serve(w, r, reg) })
	u.srv = httptest.NewUnstartedServer(h)
	// A client that refuses the test certificate makes the server log.
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsServer {
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	u.host = strings.TrimPrefix(strings.TrimPrefix(u.srv.URL, "http://"), "https://")
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request, reg http.Handler) {
	if u.user != "" {
		user, pass, ok := r.BasicAuth()
		if !ok || user != u.user || pass != u.pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="heron-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	if u.failFirst.Add(-1) >= 0 {
		u.mu.Lock()
		status := u.failWith[u.failed%len(u.failWith)]
		u.failed++
		u.mu.Unlock()
		retryAfter := u.retryAfter
		if retryAfter == "" {
			retryAfter = "0"
		}
		w.Header().Set("Retry-After", retryAfter)
		http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`, status)
		return
	}
	u.mu.Lock()
	u.log = append(u.log, r.Method+" "+r.URL.Path)
	isBlobGet := r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
	if isBlobGet {
		u.blobGets++
	}
	n := u.blobGets
	u.mu.Unlock()
	if after := u.failBlobsAfter.Load(); isBlobGet && after > 0 && int64(n) > after {
		http.Error(w, "upstream broke", http.StatusInternalServerError)
		return
	}
	d := digest.Digest(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
	if isBlobGet && (d == u.dropBlob || d == u.corruptBlob) {
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(rec.Code)
		if d == u.corruptBlob {
			body = bytes.Clone(body)
			body[len(body)/2] ^= 0xff
			_, _ = w.Write(body)
			return
		}
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	reg.ServeHTTP(w, r)
}

// requests returns the requests that reached the registry.
func (u *upstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.log...)
}

// push writes an image or an index to the registry as repo:tag.
func (u *upstream) push(repoTag string, item any) {
	u.t.Helper()
	ref, err := name.ParseReference(u.host+"/"+repoTag, name.Insecure)
	if err != nil {
		u.t.Fatal(err)
	}
	opts := []remote.Option{remote.WithTransport(u.srv.Client().Transport)}
	if u.user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: u.user, Password: u.pass}))
	}
	switch it := item.(type) {
	case v1.Image:
		err = remote.Write(ref, it, opts...)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, it, opts...)
	default:
		u.t.Fatalf("push %T", item)
	}
	if err != nil {
		u.t.Fatal(err)
	}
	u.mu.Lock()
	u.log = nil
	u.blobGets = 0
	u.mu.Unlock()
}

// fast are the options of every registry source in these tests: plain
// HTTP, retries that do not make tests slow, and no credentials from the
// machine's docker config.
func fast(extra ...source.Option) []source.Option {
	return append([]source.Option{
		source.WithInsecure(true),
		source.WithRetry(time.Millisecond, 3),
		source.WithKeychain(authn.NewMultiKeychain()),
	}, extra...)
}

func blobDigests(t *testing.T, img v1.Image) []digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []digest.Digest{digest.Digest(cfg.String())}
	for _, l := range ls {
		out = append(out, mustDigest(t, l))
	}
	return out
}

func TestPublishRemote(t *testing.T) {
	u := newUpstream(t, false)
	img := ociImage(t, 40, 2)
	u.push("team/img:v1", img)
	dimg := dockerImage(t, 41, 2)
	u.push("docker/img:1", dimg)
	idx := platformIndex(t, types.OCIImageIndex, ociImage(t, 42, 1), ociImage(t, 43, 2))
	u.push("multi:latest", idx)
	list := platformIndex(t, types.DockerManifestList, dockerImage(t, 44, 1), dockerImage(t, 45, 1))
	u.push("list:1", list)

	for _, tc := range []struct {
		name, ref string
		want      digest.Digest
		raw       []byte
		mt        string
		manifests int
	}{
		{"image by tag", "team/img:v1", mustDigest(t, img), mustRaw(t, img), ocispec.MediaTypeImageManifest, 1},
		{"image by digest", "team/img@" + string(mustDigest(t, img)), mustDigest(t, img), mustRaw(t, img), ocispec.MediaTypeImageManifest, 1},
		{"docker media types", "docker/img:1", mustDigest(t, dimg), mustRaw(t, dimg), string(types.DockerManifestSchema2), 1},
		{"index of two platforms", "multi:latest", mustDigest(t, idx), mustRaw(t, idx), ocispec.MediaTypeImageIndex, 3},
		{"docker manifest list", "list:1", mustDigest(t, list), mustRaw(t, list), string(types.DockerManifestList), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "tree")
			res, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), "docker://"+u.host+"/"+tc.ref, fast(), "app:v1")
			if err != nil {
				t.Fatal(err)
			}
			if res.Digest != tc.want || res.MediaType != tc.mt || res.Manifests != tc.manifests {
				t.Errorf("result %s %s %d, want %s %s %d", res.Digest, res.MediaType, res.Manifests, tc.want, tc.mt, tc.manifests)
			}
			if got := readBlob(t, root, tc.want); !bytes.Equal(got, tc.raw) {
				t.Errorf("the stored manifest is not the registry's, byte for byte")
			}
			r := readRepo(t, root, "app")
			if r.Tags["v1"] != tc.want || r.Upstream != nil {
				t.Errorf("tags %v, upstream %+v", r.Tags, r.Upstream)
			}
			assertConsistent(t, root)
		})
	}
}

func TestRemoteBlobsInTreeAreNotRead(t *testing.T) {
	u := newUpstream(t, false)
	a := ociImage(t, 50, 3)
	u.push("app:a", a)
	root := filepath.Join(t.TempDir(), "tree")
	src := writeLayout(t, filepath.Join(t.TempDir(), "src"), entry{item: a})
	mustPublish(t, root, "oci:"+src, "local:a")
	res, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), "docker://"+u.host+"/app:a", fast(), "app:a")
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsWritten != 0 || res.BlobsSkipped != 5 {
		t.Errorf("wrote %d, skipped %d", res.BlobsWritten, res.BlobsSkipped)
	}
	for _, req := range u.requests() {
		if strings.Contains(req, "/blobs/") {
			t.Errorf("a blob the tree holds was asked for: %s", req)
		}
	}
	assertConsistent(t, root)
}

func TestRemoteFailuresLeaveTreeUnchanged(t *testing.T) {
	img := ociImage(t, 60, 4)
	blobs := blobDigests(t, img)
	for _, tc := range []struct {
		name  string
		setup func(u *upstream)
		is    error
		want  string
	}{
		{"registry fails half-way", func(u *upstream) { u.failBlobsAfter.Store(2) }, nil, "500"},
		{"connection drops in a blob", func(u *upstream) { u.dropBlob = blobs[2] }, nil, string(blobs[2])},
		{"blob does not match its digest", func(u *upstream) { u.corruptBlob = blobs[3] }, publish.ErrDigestMismatch, string(blobs[3])},
		{"manifest missing", nil, publish.ErrNotFound, "app:nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, false)
			u.push("app:v1", img)
			root := filepath.Join(t.TempDir(), "tree")
			mustPublish(t, root, "oci:"+writeLayout(t, filepath.Join(t.TempDir(), "base"), entry{item: ociImage(t, 61, 1)}), "base:1", "app:old")
			before := snapshot(t, root, false)
			ref := "app:v1"
			if tc.setup != nil {
				tc.setup(u)
			} else {
				ref = "app:nope"
			}
			_, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root)), publish.WithConcurrency(1)), "docker://"+u.host+"/"+ref, fast(), "app:v1", "new:1")
			if err == nil {
				t.Fatal("publish succeeded")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if d := diffSnapshots(before, snapshot(t, root, false)); len(d) > 0 {
				t.Errorf("the failed publish changed the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestRemoteRetries(t *testing.T) {
	img := ociImage(t, 70, 2)
	for _, tc := range []struct {
		name     string
		failures int
		tries    int
		ok       bool
	}{
		{"429 and 503 then success", 4, 5, true},
		{"one failure per request at most", 1, 2, true},
		{"more failures than tries", 6, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, false)
			u.push("app:v1", img)
			u.failWith = []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}
			u.failFirst.Store(int64(tc.failures))
			root := filepath.Join(t.TempDir(), "tree")
			start := time.Now()
			_, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), "docker://"+u.host+"/app:v1",
				fast(source.WithRetry(time.Millisecond, tc.tries)), "app:v1")
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("took %s", elapsed)
			}
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				assertConsistent(t, root)
				u.mu.Lock()
				failed := u.failed
				u.mu.Unlock()
				if failed != tc.failures {
					t.Errorf("%d requests failed, want %d", failed, tc.failures)
				}
				return
			}
			if err == nil {
				t.Fatal("publish succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), "429") && !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "TOOMANYREQUESTS") {
				t.Errorf("error %q says nothing of the status", err)
			}
			if _, serr := os.Stat(root); !os.IsNotExist(serr) {
				t.Errorf("the root was created: %v", serr)
			}
		})
	}
}

// TestRemoteRetryAfter checks that a 429's Retry-After is waited for
// before the next try, beyond the backoff (1 ms here).
func TestRemoteRetryAfter(t *testing.T) {
	img := ociImage(t, 71, 1)
	u := newUpstream(t, false)
	u.push("app:v1", img)
	u.failWith = []int{http.StatusTooManyRequests}
	u.retryAfter = "1"
	u.failFirst.Store(1)
	root := filepath.Join(t.TempDir(), "tree")
	start := time.Now()
	if _, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), "docker://"+u.host+"/app:v1",
		fast(source.WithRetry(time.Millisecond, 3)), "app:v1"); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("published %s after a 429 asking for 1 s", elapsed)
	}
	assertConsistent(t, root)
}

// writeDockerConfig writes a docker config.json into a new folder, points
// DOCKER_CONFIG (and HOME, so that the machine's own config is not read)
// at it, and returns it.
func writeDockerConfig(t *testing.T, cfg any) string {
	t.Helper()
	dir := t.TempDir()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("HOME", dir)
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", dir)
	t.Setenv("XDG_CONFIG_HOME", dir)
	return dir
}

func TestRemoteCredentials(t *testing.T) {
	img := ociImage(t, 80, 1)
	basic := func(user, pass string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)) }
	for _, tc := range []struct {
		name string
		cfg  func(host, dir string) any
		ok   bool
	}{
		{"auth in config.json", func(host, _ string) any {
			return map[string]any{"auths": map[string]any{host: map[string]string{"auth": basic("ci", "s3cret")}}}
		}, true},
		{"credential helper", func(host, dir string) any {
			helper := filepath.Join(dir, "docker-credential-herontest")
			script := "#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"ci\",\"Secret\":\"s3cret\"}'\n"
			if err := os.WriteFile(helper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
			return map[string]any{"credHelpers": map[string]string{host: "herontest"}}
		}, true},
		{"wrong password", func(host, _ string) any {
			return map[string]any{"auths": map[string]any{host: map[string]string{"auth": basic("ci", "nope")}}}
		}, false},
		{"no credentials", func(string, string) any { return map[string]any{} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, false, func(u *upstream) { u.user, u.pass = "ci", "s3cret" })
			u.push("private/app:v1", img)
			dir := t.TempDir()
			writeDockerConfig(t, tc.cfg(u.host, dir))
			root := filepath.Join(t.TempDir(), "tree")
			// The default keychain: what the user's docker login wrote.
			_, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), "docker://"+u.host+"/private/app:v1",
				[]source.Option{source.WithInsecure(true), source.WithRetry(time.Millisecond, 1)}, "app:v1")
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if readRepo(t, root, "app").Tags["v1"] != mustDigest(t, img) {
					t.Error("wrong image")
				}
				return
			}
			if err == nil {
				t.Fatal("publish succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), "credentials") || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestRemoteInsecure(t *testing.T) {
	img := ociImage(t, 90, 1)
	for _, tc := range []struct {
		name     string
		tls      bool
		insecure bool
		is       error
		want     string
	}{
		{"plain HTTP without --insecure", false, false, source.ErrPlainHTTP, "--insecure"},
		{"plain HTTP with --insecure", false, true, nil, ""},
		{"self-signed HTTPS without --insecure", true, false, nil, "--insecure"},
		{"self-signed HTTPS with --insecure", true, true, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t, tc.tls)
			u.push("app:v1", img)
			root := filepath.Join(t.TempDir(), "tree")
			opts := []source.Option{source.WithInsecure(tc.insecure), source.WithRetry(time.Millisecond, 1), source.WithKeychain(authn.NewMultiKeychain())}
			_, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), "docker://"+u.host+"/app:v1", opts, "app:v1")
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("publish succeeded")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if len(u.requests()) != 0 {
				t.Errorf("requests reached the registry: %v", u.requests())
			}
		})
	}
}

func TestOnDemandThenImmediate(t *testing.T) {
	u := newUpstream(t, false)
	shared := ociImage(t, 100, 2)
	idx := platformIndex(t, types.OCIImageIndex, shared, ociImage(t, 101, 2))
	u.push("upstream/multi:v1", idx)
	root := filepath.Join(t.TempDir(), "tree")
	// One child is in the tree already, published from a layout.
	mustPublish(t, root, "oci:"+writeLayout(t, filepath.Join(t.TempDir(), "src"), entry{item: shared}), "other:1")
	sharedBlobs := map[digest.Digest]bool{}
	for _, d := range blobDigests(t, shared) {
		sharedBlobs[d] = true
	}
	spec := "docker://" + u.host + "/upstream/multi:v1"
	onDemand := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithPolicy(publish.PolicyOnDemand))
	res, err := publishWith(t, onDemand, spec, fast(), "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	// 3 blobs of the new child are left upstream; the shared child's 3
	// blobs and manifest are present; the index and new child are written.
	if res.BlobsDeferred != 3 || res.BlobsWritten != 2 || res.BlobsSkipped != 4 {
		t.Errorf("deferred %d, wrote %d, skipped %d", res.BlobsDeferred, res.BlobsWritten, res.BlobsSkipped)
	}
	for _, req := range u.requests() {
		if strings.HasPrefix(req, "GET ") && strings.Contains(req, "/blobs/") {
			t.Errorf("on_demand read a blob: %s", req)
		}
	}
	r := readRepo(t, root, "app")
	want := layout.Upstream{Registry: u.host, Repository: "upstream/multi", Insecure: true}
	if r.Upstream == nil || *r.Upstream != want {
		t.Errorf("upstream %+v, want %+v", r.Upstream, want)
	}
	if len(r.Manifests) != 3 || len(r.Blobs) != 6 {
		t.Errorf("%d manifests, %d blobs listed", len(r.Manifests), len(r.Blobs))
	}
	for d := range r.Manifests {
		readBlob(t, root, d) // every manifest is stored
	}
	for d, b := range r.Blobs {
		key, _ := layout.BlobKey(d)
		_, serr := os.Stat(layout.Root(root).Path(key))
		if b.IsStored() != sharedBlobs[d] || b.IsStored() != (serr == nil) {
			t.Errorf("blob %s: stored %v, in the tree %v, shared %v", d, b.IsStored(), serr == nil, sharedBlobs[d])
		}
	}
	assertConsistent(t, root)

	// Again: nothing changes.
	before := snapshot(t, root, true)
	if _, err := publishWith(t, onDemand, spec, fast(), "app:v1"); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(withoutCounter(before), withoutCounter(snapshot(t, root, true))); len(d) > 0 {
		t.Errorf("a second on_demand publish changed the tree:\n%s", strings.Join(d, "\n"))
	}

	// immediate fills the blobs in.
	res, err = publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), spec, fast(), "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if res.BlobsWritten != 3 || res.BlobsDeferred != 0 {
		t.Errorf("immediate: wrote %d, deferred %d", res.BlobsWritten, res.BlobsDeferred)
	}
	r = readRepo(t, root, "app")
	for d, b := range r.Blobs {
		if b.Stored != nil {
			t.Errorf("blob %s: stored is %v, want absent", d, *b.Stored)
		}
	}
	assertConsistent(t, root)
}

func TestOnDemandRefusals(t *testing.T) {
	u := newUpstream(t, false)
	u.push("a/app:v1", ociImage(t, 110, 1))
	u.push("b/app:v1", ociImage(t, 111, 1))
	root := filepath.Join(t.TempDir(), "tree")
	onDemand := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithPolicy(publish.PolicyOnDemand))
	if _, err := publishWith(t, onDemand, "docker://"+u.host+"/a/app:v1", fast(), "app:a"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec string
		is   error
	}{
		{"another upstream while blobs are missing", "docker://" + u.host + "/b/app:v1", publish.ErrUpstreamConflict},
		{"a local source", "oci:" + writeLayout(t, filepath.Join(t.TempDir(), "src"), entry{item: ociImage(t, 112, 1)}), publish.ErrNoUpstream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, root, true)
			_, err := publishWith(t, onDemand, tc.spec, fast(), "app:b")
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v is not %v", err, tc.is)
			}
			t.Logf("error: %v", err)
			if d := diffSnapshots(before, snapshot(t, root, true)); len(d) > 0 {
				t.Errorf("tree changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
	if _, err := publish.ParsePolicy("later"); err == nil {
		t.Error("ParsePolicy accepted later")
	}
}

// recordingProgress checks the calls a publish makes to its Progress.
type recordingProgress struct {
	mu      sync.Mutex
	items   int
	total   int64
	started int
	added   int64
	copies  map[digest.Digest]*recordingCopy
}

type recordingCopy struct {
	p     *recordingProgress
	desc  ocispec.Descriptor
	added atomic.Int64
	done  atomic.Int32
	err   error
}

func (r *recordingProgress) Start(items int, total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started++
	r.items, r.total = items, total
}

func (r *recordingProgress) Copy(desc ocispec.Descriptor) publish.CopyProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &recordingCopy{p: r, desc: desc}
	r.copies[desc.Digest] = c
	return c
}

func (c *recordingCopy) Add(n int64) {
	c.added.Add(n)
	c.p.mu.Lock()
	c.p.added += n
	c.p.mu.Unlock()
}

func (c *recordingCopy) Done(err error) {
	c.done.Add(1)
	c.err = err
}

func TestProgress(t *testing.T) {
	u := newUpstream(t, false)
	idx := platformIndex(t, types.OCIImageIndex, ociImage(t, 120, 3), ociImage(t, 121, 2))
	u.push("app:v1", idx)
	dir := t.TempDir()
	layoutSrc := writeLayout(t, filepath.Join(dir, "src"), entry{item: idx})
	for _, spec := range []string{"docker://" + u.host + "/app:v1", "oci:" + layoutSrc} {
		t.Run(strings.SplitN(spec, ":", 2)[0], func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "tree")
			pr := &recordingProgress{copies: map[digest.Digest]*recordingCopy{}}
			res, err := publishWith(t, publish.New(publish.NewFSSink(layout.Root(root)), publish.WithProgress(pr)), spec, fast(), "app:v1")
			if err != nil {
				t.Fatal(err)
			}
			if pr.started != 1 || pr.items != res.BlobsWritten || pr.total != res.BytesWritten || pr.added != res.BytesWritten {
				t.Errorf("started %d, %d items of %d bytes, %d bytes added; result %d blobs, %d bytes",
					pr.started, pr.items, pr.total, pr.added, res.BlobsWritten, res.BytesWritten)
			}
			if len(pr.copies) != res.BlobsWritten {
				t.Errorf("%d copies reported, %d written", len(pr.copies), res.BlobsWritten)
			}
			for d, c := range pr.copies {
				if c.done.Load() != 1 || c.err != nil || c.added.Load() != c.desc.Size {
					t.Errorf("copy of %s: done %d times (%v), %d of %d bytes", d, c.done.Load(), c.err, c.added.Load(), c.desc.Size)
				}
			}
		})
	}
}
