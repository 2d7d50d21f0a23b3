//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// pushServer is a heron serve --push --insecure-anonymous-push of a tree
// of a test's own, empty when it starts, behind a tap.
type pushServer struct {
	md   *mode
	root string
	// cred, when set, are the credentials the tests' own requests
	// (HEAD of manifests, referrers) and pullBack's clients use.
	cred *creds
}

// creds are a user's credentials.
type creds struct{ user, pass string }

func (c *creds) String() string { return c.user + ":" + c.pass }

// authHeader is the Authorization header and value of basic credentials
// (none for nil).
func (c *creds) authHeader() []string {
	if c == nil {
		return nil
	}
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.pass))}
}

// dockerLogin writes the call's docker configuration (HOME/.docker/config.json,
// which crane, regctl, oras, skopeo and podman all read) with cred for
// host; nothing for nil.
func dockerLogin(t *testing.T, c *call, host string, cred *creds) {
	t.Helper()
	if cred == nil {
		return
	}
	auth := base64.StdEncoding.EncodeToString([]byte(cred.user + ":" + cred.pass))
	b, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(c.home, ".docker"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.home, ".docker", "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startPushServer starts heron serve --push --insecure-anonymous-push
// extra... on a new, empty root; it is stopped by its PID when the test
// ends.
func startPushServer(t *testing.T, name string, extra ...string) *pushServer {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	return onRoot(t, name, root, extra...)
}

// onRoot starts another heron serve --push --insecure-anonymous-push
// extra... on root.
func onRoot(t *testing.T, name, root string, extra ...string) *pushServer {
	t.Helper()
	args := append([]string{"--push", "--insecure-anonymous-push"}, extra...)
	return &pushServer{md: startTappedMode(t, name, root, args...), root: root}
}

func (ps *pushServer) host() string { return ps.md.host() }

// url is the server's URL of path (which starts with /v2/), past the tap.
func (ps *pushServer) url(path string) string { return ps.md.heron.Base() + path }

// watch counts t in the summary line and, when t ends, fails it if heron
// answered any request since now with a 5xx (with strict) and logs the
// exchanges and the server's log if t failed.
func (ps *pushServer) watch(t *testing.T, strict bool) {
	countResult(t)
	mark := ps.md.tap.mark()
	t.Cleanup(func() {
		ps.md.tap.quiet()
		exs := ps.md.tap.since(mark)
		if strict {
			for _, e := range exs {
				if e.Status >= 500 {
					t.Errorf("server error: %s", e)
				}
			}
		}
		if !t.Failed() {
			return
		}
		t.Logf("HTTP exchanges with heron serve (%s):", ps.md.name)
		for _, e := range exs {
			t.Logf("  %s", e)
		}
		t.Logf("heron serve (%s) log, last lines:\n%s", ps.md.name, ps.md.heron.Log.Tail(25))
	})
}

// need returns a call of the client bin (on PATH) against md; it skips
// the test when the client is not installed, or fails it with CI=true.
func need(t *testing.T, md *mode, bin string) *call {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err == nil && bin == "podman" && os.Geteuid() != 0 {
		err = fmt.Errorf("podman runs as root (with its own --root and vfs storage), and this is uid %d", os.Geteuid())
	}
	if err != nil {
		msg := fmt.Sprintf("%s is not installed (make tools installs it): %v", bin, err)
		if suite.ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return newCall(t, path, md)
}

// fail runs the client with args, which must fail; it returns the
// command's standard error.
func (c *call) fail(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	last := lines(stderr.Bytes())
	if len(last) > 0 {
		last = last[len(last)-1:]
	}
	c.t.Logf("$ %s %s  (must fail: %v; %s)", filepath.Base(c.bin), strings.Join(args, " "), err, strings.Join(last, ""))
	if err == nil {
		c.t.Errorf("%s %s succeeded; it must fail\nstdout:\n%s", filepath.Base(c.bin), strings.Join(args, " "), stdout.String())
	}
	return stderr.String()
}

// manifestAccept is the Accept header of the tests' manifest requests.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

var httpClient = &http.Client{Timeout: time.Minute}

// send sends one request and returns the answer with its body read.
func send(t *testing.T, method, url string, body io.Reader, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return resp, b
}

// manifestDigest asks the server (HEAD) for the manifest repo:ref and
// returns the status and the Docker-Content-Digest.
func (ps *pushServer) manifestDigest(t *testing.T, repo, ref string) (int, digest.Digest) {
	t.Helper()
	resp, _ := send(t, http.MethodHead, ps.url("/v2/"+repo+"/manifests/"+ref), nil, append([]string{"Accept", manifestAccept}, ps.cred.authHeader()...)...)
	return resp.StatusCode, digest.Digest(resp.Header.Get("Docker-Content-Digest"))
}

// wantManifest fails the test unless repo:ref answers 200 with digest want.
func (ps *pushServer) wantManifest(t *testing.T, repo, ref string, want digest.Digest) {
	t.Helper()
	if st, d := ps.manifestDigest(t, repo, ref); st != http.StatusOK || d != want {
		t.Errorf("HEAD /v2/%s/manifests/%s: %d, digest %q; want 200, %s", repo, ref, st, d, want)
	}
}

// pullBack pulls ref (on ps) with crane and with regctl into OCI layouts
// and checks that each holds the fixture's manifest, every child manifest
// and every blob, with their digests.
func (ps *pushServer) pullBack(t *testing.T, ref string, f *fixtures.Fixture) {
	t.Helper()
	if _, err := exec.LookPath("crane"); err == nil {
		c := newCall(t, must(exec.LookPath("crane")), ps.md)
		dockerLogin(t, c, ps.host(), ps.cred)
		dir := c.path("crane-layout")
		c.run("pull", "--insecure", "--format", "oci", ref, dir)
		if err := checkOCILayout(dir, f); err != nil {
			t.Errorf("crane pull %s: %v", ref, err)
		}
	} else if suite.ci {
		t.Errorf("crane is not installed: %v", err)
	}
	if _, err := exec.LookPath("regctl"); err == nil {
		c := newCall(t, must(exec.LookPath("regctl")), ps.md)
		dockerLogin(t, c, ps.host(), ps.cred)
		dir := c.path("regctl-layout")
		c.run("--host", "reg="+ps.host()+",tls=disabled", "image", "copy", ref, "ocidir://"+dir+":e2e")
		if err := checkOCILayout(dir, f); err != nil {
			t.Errorf("regctl image copy %s: %v", ref, err)
		}
	} else if suite.ci {
		t.Errorf("regctl is not installed: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// verifyTree runs heron verify --deep on root: it must pass.
func verifyTree(t *testing.T, root string) {
	t.Helper()
	if out, err := exec.Command(suite.heron, "verify", "--root", root, "--deep").CombinedOutput(); err != nil {
		t.Errorf("heron verify --root %s --deep: %v\n%s", root, err, out)
	}
}

// heronLs returns what heron ls --root root [name] prints, line by line.
func heronLs(t *testing.T, root string, name ...string) []string {
	t.Helper()
	out, err := exec.Command(suite.heron, append([]string{"ls", "--root", root}, name...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("heron ls --root %s %s: %v\n%s", root, strings.Join(name, " "), err, out)
	}
	return lines(out)
}

// TestPushClients pushes with every real client into an empty heron serve
// --push --delete, from the suite's read-only server, from the fixtures'
// files and from local stores, and pulls each push back with crane and
// regctl, checking the digests of every manifest and blob; then heron
// verify --deep passes on the tree and heron ls lists every repository
// pushed.
func TestPushClients(t *testing.T) {
	ps := startPushServer(t, "push", "--delete")
	ro := directMode(t)
	var pushed []string // the repositories pushed into
	t.Run("skopeo", func(t *testing.T) {
		for _, tc := range []struct{ fixture, src string }{
			// Indexes from a registry, with all their instances.
			{fixtures.NameOCIIndex, ""},
			{fixtures.NameDockerList, ""},
			// From the fixtures' files: an OCI archive (an index),
			// the OCI layout (an image, an artifact).
			{fixtures.NameOCIArchiveIndex, "file"},
			{fixtures.NameOCIImage, "file"},
			{fixtures.NameArtifact, "file"},
		} {
			t.Run(tc.fixture, func(t *testing.T) {
				ps.watch(t, true)
				c := need(t, ps.md, "skopeo")
				f := mustFixture(t, tc.fixture)
				src := "docker://" + targetFor(f).ref(ro.host(), f)
				if tc.src == "file" {
					src = f.SourceIn(suite.fixDir)
				}
				repo := "skopeo/" + f.Name
				dst := ps.host() + "/" + repo + ":v1"
				c.run("--policy", suite.policy, "--registries-conf", suite.registries,
					"copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", src, "docker://"+dst)
				pushed = append(pushed, repo)
				ps.wantManifest(t, repo, "v1", f.Digest)
				ps.pullBack(t, dst, f)
			})
		}
	})
	t.Run("crane", func(t *testing.T) {
		// crane push of an OCI layout holding one image, or one index,
		// as crane pull wrote it from the read-only server.
		for _, name := range []string{fixtures.NameOCIImage, fixtures.NameOCIIndex} {
			t.Run("push-layout/"+name, func(t *testing.T) {
				ps.watch(t, true)
				c := need(t, ps.md, "crane")
				f := mustFixture(t, name)
				dir := c.path("layout")
				c.run("pull", "--insecure", "--format", "oci", targetFor(f).ref(ro.host(), f), dir)
				repo := "crane/layout-" + f.Name
				dst := ps.host() + "/" + repo + ":v1"
				out := c.run("push", "--insecure", dir, dst)
				pushed = append(pushed, repo)
				if got := strings.TrimSpace(string(out)); got != ps.host()+"/"+repo+"@"+f.Digest.String() {
					t.Errorf("crane push printed %q, want %s@%s", got, ps.host()+"/"+repo, f.Digest)
				}
				ps.wantManifest(t, repo, "v1", f.Digest)
				ps.pullBack(t, dst, f)
			})
		}
		// crane push of a docker save tarball: the manifest crane makes
		// of it is crane digest --tarball's, with the fixture's config.
		t.Run("push-tarball/"+fixtures.NameDockerImage, func(t *testing.T) {
			ps.watch(t, true)
			c := need(t, ps.md, "crane")
			f := mustFixture(t, fixtures.NameDockerImage)
			tarball := c.path("image.tar")
			c.run("pull", "--insecure", targetFor(f).ref(ro.host(), f), tarball)
			want := digest.Digest(strings.TrimSpace(string(c.run("digest", "--tarball", tarball))))
			repo := "crane/tarball"
			dst := ps.host() + "/" + repo + ":v1"
			c.run("push", "--insecure", tarball, dst)
			pushed = append(pushed, repo)
			ps.wantManifest(t, repo, "v1", want)
			if got := digest.FromBytes(c.run("config", "--insecure", dst)); got != f.Config.Digest {
				t.Errorf("crane config of the pushed tarball: digest %s, want the fixture's config %s", got, f.Config.Digest)
			}
			if out := c.run("validate", "--insecure", "--remote", dst); !strings.HasPrefix(string(out), "PASS") {
				t.Errorf("crane validate --remote %s: %s", dst, out)
			}
		})
		// crane copy from the read-only server: an index with its
		// children, and the large image (its 32 MiB layer in one upload).
		for _, name := range []string{fixtures.NameOCIIndex, fixtures.NameLargeImage} {
			t.Run("copy/"+name, func(t *testing.T) {
				ps.watch(t, true)
				c := need(t, ps.md, "crane")
				f := mustFixture(t, name)
				repo := "crane/copy-" + f.Name
				dst := ps.host() + "/" + repo + ":v1"
				c.run("copy", "--insecure", targetFor(f).ref(ro.host(), f), dst)
				pushed = append(pushed, repo)
				ps.wantManifest(t, repo, "v1", f.Digest)
				c.equalDigest("crane digest "+dst, c.run("digest", "--insecure", dst), f.Digest)
				ps.pullBack(t, dst, f)
			})
		}
	})
	t.Run("oras", func(t *testing.T) {
		// oras push of an artifact and oras attach of a referrer to it.
		t.Run("push-attach", func(t *testing.T) {
			ps.watch(t, true)
			c := need(t, ps.md, "oras")
			payload := []byte(`{"e2e":"push"}` + "\n")
			if err := os.WriteFile(c.path("payload.json"), payload, 0o644); err != nil {
				t.Fatal(err)
			}
			sig := []byte("signed by e2e\n")
			if err := os.WriteFile(c.path("sig.txt"), sig, 0o644); err != nil {
				t.Fatal(err)
			}
			repo := "oras/artifact"
			ref := ps.host() + "/" + repo + ":v1"
			const artifactType = "application/vnd.heron.e2e.push+json"
			const sigType = "application/vnd.heron.e2e.signature"
			var art, ref2 struct {
				Digest       digest.Digest `json:"digest"`
				ArtifactType string        `json:"artifactType"`
			}
			out := c.run("push", "--plain-http", "--format", "json", "--artifact-type", artifactType, ref, "payload.json:application/vnd.heron.e2e.payload.v1+json")
			if err := json.Unmarshal(out, &art); err != nil || art.Digest == "" {
				t.Fatalf("oras push --format json: %v\n%s", err, out)
			}
			pushed = append(pushed, repo)
			ps.wantManifest(t, repo, "v1", art.Digest)
			out = c.run("attach", "--plain-http", "--format", "json", "--artifact-type", sigType, ref, "sig.txt:text/plain")
			if err := json.Unmarshal(out, &ref2); err != nil || ref2.Digest == "" {
				t.Fatalf("oras attach --format json: %v\n%s", err, out)
			}
			want := []string{ref2.Digest.String() + " " + sigType}
			// oras discover finds it.
			out = c.run("discover", "--plain-http", "--format", "json", ref)
			var tree struct {
				Digest    digest.Digest `json:"digest"`
				Referrers []referrer    `json:"referrers"`
			}
			if err := json.Unmarshal(out, &tree); err != nil {
				t.Fatalf("oras discover: %v\n%s", err, out)
			}
			if got := referrerList(tree.Referrers); tree.Digest != art.Digest || !slices.Equal(got, want) {
				t.Errorf("oras discover: %s with referrers %q; want %s with %q", tree.Digest, got, art.Digest, want)
			}
			// And the referrers API lists it.
			if got := ps.referrers(t, repo, art.Digest); !slices.Equal(got, want) {
				t.Errorf("GET /v2/%s/referrers/%s: %q, want %q", repo, art.Digest, got, want)
			}
			// oras pull gets the files back.
			c.run("pull", "--plain-http", "-o", c.path("out"), ref)
			if b, err := os.ReadFile(filepath.Join(c.path("out"), "payload.json")); err != nil || !bytes.Equal(b, payload) {
				t.Errorf("oras pull: payload.json %q, %v; want %q", b, err, payload)
			}
			c.run("pull", "--plain-http", "-o", c.path("sig-out"), ps.host()+"/"+repo+"@"+ref2.Digest.String())
			if b, err := os.ReadFile(filepath.Join(c.path("sig-out"), "sig.txt")); err != nil || !bytes.Equal(b, sig) {
				t.Errorf("oras pull of the referrer: sig.txt %q, %v; want %q", b, err, sig)
			}
		})
		// oras copy -r: an image with its referrer (the signature
		// fixture), from the read-only server.
		t.Run("copy-referrers/"+fixtures.NameOCIImage, func(t *testing.T) {
			ps.watch(t, true)
			c := need(t, ps.md, "oras")
			f := mustFixture(t, fixtures.NameOCIImage)
			repo := "oras/" + f.Name
			dst := ps.host() + "/" + repo + ":v1"
			c.run("copy", "-r", "--from-plain-http", "--to-plain-http", targetFor(f).ref(ro.host(), f), dst)
			pushed = append(pushed, repo)
			ps.wantManifest(t, repo, "v1", f.Digest)
			out := c.run("discover", "--plain-http", "--format", "json", dst)
			var tree struct {
				Referrers []referrer `json:"referrers"`
			}
			if err := json.Unmarshal(out, &tree); err != nil {
				t.Fatalf("oras discover: %v\n%s", err, out)
			}
			c.checkReferrers("oras discover", tree.Referrers, f)
			var want []string
			for _, r := range f.Referrers {
				want = append(want, r.Digest.String()+" "+r.ArtifactType)
			}
			slices.Sort(want)
			if got := ps.referrers(t, repo, f.Digest); !slices.Equal(got, want) {
				t.Errorf("GET /v2/%s/referrers/%s: %q, want %q", repo, f.Digest, got, want)
			}
			ps.pullBack(t, dst, f)
		})
	})
	t.Run("podman", func(t *testing.T) {
		// podman push of an image pulled into its own store from the
		// read-only server: podman compresses the layers again, so the
		// manifest is its own (--digestfile), and the image (its config)
		// is the fixture's.
		t.Run("push/"+fixtures.NameOCIImage, func(t *testing.T) {
			ps.watch(t, true)
			c := need(t, ps.md, "podman")
			f := mustFixture(t, fixtures.NameOCIImage)
			img, err := platformImage(f, "amd64")
			if err != nil {
				t.Fatal(err)
			}
			global := podmanGlobal(t, c, "storage")
			src := targetFor(f).ref(ro.host(), f)
			c.run(append(global, "pull", "--tls-verify=false", "--signature-policy", suite.policy, src)...)
			repo := "podman/" + f.Name
			dst := ps.host() + "/" + repo + ":v1"
			c.run(append(global, "push", "--tls-verify=false", "--digestfile", c.path("digest"), src, "docker://"+dst)...)
			pushed = append(pushed, repo)
			b, err := os.ReadFile(c.path("digest"))
			if err != nil {
				t.Fatal(err)
			}
			d := digest.Digest(strings.TrimSpace(string(b)))
			ps.wantManifest(t, repo, "v1", d)
			// podman pulls it back into a new store: the same image.
			global = podmanGlobal(t, c, "storage2")
			c.run(append(global, "pull", "--tls-verify=false", "--signature-policy", suite.policy, dst)...)
			out := c.run(append(global, "image", "inspect", "--format", "{{.ID}} {{.Digest}}", dst)...)
			if got, want := strings.TrimSpace(string(out)), strings.TrimPrefix(img.Config.Digest.String(), "sha256:")+" "+d.String(); got != want {
				t.Errorf("podman image inspect of the pulled-back image: %q, want %q (the fixture's config, the pushed digest)", got, want)
			}
		})
	})
	t.Run("heron verify and ls", func(t *testing.T) {
		ps.watch(t, true)
		verifyTree(t, ps.root)
		got := heronLs(t, ps.root)
		want := slices.Clone(pushed)
		slices.Sort(want)
		want = slices.Compact(want)
		if !slices.Equal(got, want) {
			t.Errorf("heron ls: %q, want %q", got, want)
		}
		for _, repo := range want {
			if tags := heronLs(t, ps.root, repo); len(tags) != 1 || !strings.HasPrefix(tags[0], "v1\t") {
				t.Errorf("heron ls %s: %q, want v1 only", repo, tags)
			}
		}
	})
}

// podmanGlobal returns podman's global flags for a store of the call's
// own (folder store, vfs).
func podmanGlobal(t *testing.T, c *call, store string) []string {
	// podman refuses a --runroot longer than 50 characters.
	runroot, err := os.MkdirTemp("", "podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(runroot) })
	return []string{
		"--root", c.path(store), "--runroot", runroot, "--storage-driver", "vfs",
		"--tmpdir", c.path("tmp"), "--events-backend", "none", "--cgroup-manager", "cgroupfs",
	}
}

// referrerList is "digest artifactType" of each referrer, sorted.
func referrerList(rs []referrer) []string {
	var l []string
	for _, r := range rs {
		l = append(l, r.Digest.String()+" "+r.ArtifactType)
	}
	slices.Sort(l)
	return l
}

// referrers asks the referrers API of repo for d and returns
// "digest artifactType" of each referrer, sorted.
func (ps *pushServer) referrers(t *testing.T, repo string, d digest.Digest) []string {
	t.Helper()
	resp, body := send(t, http.MethodGet, ps.url("/v2/"+repo+"/referrers/"+d.String()), nil, ps.cred.authHeader()...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/%s/referrers/%s: %d\n%s", repo, d, resp.StatusCode, body)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		t.Fatalf("GET /v2/%s/referrers/%s: %v\n%s", repo, d, err, body)
	}
	var rs []referrer
	for _, m := range idx.Manifests {
		rs = append(rs, referrer{Digest: m.Digest, ArtifactType: m.ArtifactType})
	}
	return referrerList(rs)
}

// layoutBlob returns a blob of the fixtures' OCI layout.
func layoutBlob(t *testing.T, f *fixtures.Fixture, d digest.Digest) []byte {
	t.Helper()
	if f.Transport != fixtures.TransportOCI {
		t.Fatalf("%s is not in the fixtures' OCI layout (%s)", f.Name, f.Source)
	}
	b, err := os.ReadFile(filepath.Join(suite.fixDir, filepath.FromSlash(f.Path), ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// repositoryFile returns the bytes of repo's repository file in the tree
// at root (nil when there is none).
func repositoryFile(t *testing.T, root, repo string) []byte {
	t.Helper()
	key, err := layout.RepositoryKey(repo)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(layout.Root(root).Path(key))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// uploadRange returns the Range header of a session's answer as the
// number of bytes it says the session holds ("0-0" is 0 bytes, as
// distribution answers for an empty session).
func uploadRange(t *testing.T, resp *http.Response) int64 {
	t.Helper()
	r := resp.Header.Get("Range")
	a, b, ok := strings.Cut(r, "-")
	end, err := strconv.ParseInt(b, 10, 64)
	if !ok || a != "0" || err != nil {
		t.Fatalf("Range %q: want 0-<end>", r)
	}
	if end == 0 {
		return 0
	}
	return end + 1
}

// cutPatch sends a PATCH of a session claiming chunk (at offset) whole,
// sends only its first half and closes the connection, as a client killed
// in the middle of an upload does.
func cutPatch(t *testing.T, ps *pushServer, location string, offset int64, chunk []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", ps.md.heron.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Range: %d-%d\r\nContent-Length: %d\r\n\r\n",
		location, ps.md.heron.Addr, offset, offset+int64(len(chunk))-1, len(chunk))
	if _, err := conn.Write(chunk[:len(chunk)/2]); err != nil {
		t.Fatal(err)
	}
	// Let the server take in what came before the client vanishes.
	time.Sleep(500 * time.Millisecond)
}

// TestPushInterrupted pushes large-image by hand, as a client does, and
// cuts the second chunk of its layer in the middle (the client vanishes):
// the repository is unchanged (still what it was before the push), the
// session says where it ends (GET, Range), a chunk that does not start
// there is refused with 416, and the upload goes on from there: the rest
// of the layer, the config, the manifest; the image then pulls with every
// digest right.
func TestPushInterrupted(t *testing.T) {
	ps := startPushServer(t, "push-interrupted")
	ps.watch(t, false) // the cut PATCH has no answer the client reads
	crane := need(t, ps.md, "crane")
	f := mustFixture(t, fixtures.NameLargeImage)
	old := mustFixture(t, fixtures.NameOCIImage)
	repo := "cut/large"
	crane.run("copy", "--insecure", targetFor(old).ref(directMode(t).host(), old), ps.host()+"/"+repo+":before")
	before := repositoryFile(t, ps.root, repo)
	if before == nil {
		t.Fatal("no repository file after crane copy")
	}

	manifest := layoutBlob(t, f, f.Digest)
	if len(f.Layers) != 1 {
		t.Fatalf("large-image has %d layers, want 1", len(f.Layers))
	}
	ld := f.Layers[0].Digest
	layer := layoutBlob(t, f, ld)
	const chunk = 8 << 20
	if len(layer) < 3*chunk {
		t.Fatalf("large-image's layer is %d bytes, want more than %d", len(layer), 3*chunk)
	}

	resp, body := send(t, http.MethodPost, ps.url("/v2/"+repo+"/blobs/uploads/"), nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("POST …/blobs/uploads/: %d, Location %q\n%s", resp.StatusCode, loc, body)
	}
	resp, body = send(t, http.MethodPatch, ps.url(loc), bytes.NewReader(layer[:chunk]),
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("0-%d", chunk-1))
	if resp.StatusCode != http.StatusAccepted || uploadRange(t, resp) != chunk {
		t.Fatalf("PATCH of the first chunk: %d, Range %q; want 202, 0-%d\n%s", resp.StatusCode, resp.Header.Get("Range"), chunk-1, body)
	}
	if l := resp.Header.Get("Location"); l != "" {
		loc = l
	}
	cutPatch(t, ps, loc, chunk, layer[chunk:2*chunk])
	// The server logs the cut PATCH (the second PATCH of the session)
	// once it has seen the client go.
	patched := "msg=request method=PATCH path=" + loc + " "
	for deadline := time.Now().Add(10 * time.Second); strings.Count(ps.md.heron.Log.String(), patched) < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if log := ps.md.heron.Log.String(); strings.Count(log, patched) < 2 {
		t.Errorf("heron serve did not log the cut PATCH within 10s")
	} else if strings.Contains(log, "level=ERROR") {
		t.Errorf("heron serve logged an error for a client that went away (its fault, not the server's):\n%s", ps.md.heron.Log.Tail(5))
	}

	if after := repositoryFile(t, ps.root, repo); !bytes.Equal(after, before) {
		t.Errorf("the repository file changed with an interrupted upload:\nbefore: %s\nafter:  %s", before, after)
	}
	if st, _ := ps.manifestDigest(t, repo, f.Digest.String()); st != http.StatusNotFound {
		t.Errorf("HEAD of the manifest not pushed yet: %d, want 404", st)
	}
	if resp, _ := send(t, http.MethodHead, ps.url("/v2/"+repo+"/blobs/"+ld.String()), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the interrupted layer: %d, want 404", resp.StatusCode)
	}
	resp, body = send(t, http.MethodGet, ps.url(loc), nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("GET of the session after the cut: %d, want 204\n%s", resp.StatusCode, body)
	}
	have := uploadRange(t, resp)
	if have < chunk || have > chunk+chunk/2 {
		t.Fatalf("after the cut the session holds %d bytes, want from %d (the first chunk) to %d (and what came of the second)", have, chunk, chunk+chunk/2)
	}
	t.Logf("a second chunk cut after %d of its %d bytes: the session holds %d bytes", chunk/2, chunk, have)

	// A chunk that does not start where the session ends: 416, with the
	// session's Range.
	resp, _ = send(t, http.MethodPatch, ps.url(loc), bytes.NewReader(layer[have+1:have+11]),
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", have+1, have+10))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || uploadRange(t, resp) != have {
		t.Errorf("PATCH out of order: %d, Range %q; want 416, 0-%d", resp.StatusCode, resp.Header.Get("Range"), have-1)
	}

	// The rest, from where the session ends; then the end of the upload.
	resp, body = send(t, http.MethodPatch, ps.url(loc), bytes.NewReader(layer[have:]),
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", have, len(layer)-1))
	if resp.StatusCode != http.StatusAccepted || uploadRange(t, resp) != int64(len(layer)) {
		t.Fatalf("PATCH of the rest: %d, Range %q; want 202, 0-%d\n%s", resp.StatusCode, resp.Header.Get("Range"), len(layer)-1, body)
	}
	if l := resp.Header.Get("Location"); l != "" {
		loc = l
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp, body = send(t, http.MethodPut, ps.url(loc+sep+"digest="+ld.String()), nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != ld.String() {
		t.Fatalf("PUT ?digest= of the layer: %d, digest %q; want 201, %s\n%s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), ld, body)
	}
	cfg := layoutBlob(t, f, f.Config.Digest)
	resp, body = send(t, http.MethodPost, ps.url("/v2/"+repo+"/blobs/uploads/?digest="+f.Config.Digest.String()), bytes.NewReader(cfg),
		"Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic POST of the config: %d, want 201\n%s", resp.StatusCode, body)
	}
	resp, body = send(t, http.MethodPut, ps.url("/v2/"+repo+"/manifests/v1"), bytes.NewReader(manifest), "Content-Type", f.MediaType)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != f.Digest.String() {
		t.Fatalf("PUT of the manifest: %d, digest %q; want 201, %s\n%s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), f.Digest, body)
	}
	ps.wantManifest(t, repo, "v1", f.Digest)
	ps.wantManifest(t, repo, "before", old.Digest)
	ps.pullBack(t, ps.host()+"/"+repo+":v1", f)
	verifyTree(t, ps.root)
}

// TestPushKilledClient SIGKILLs skopeo in the middle of its upload of
// large-image's layer: the repository is unchanged and the tree passes
// heron verify; the same copy run again then completes, with the digest.
func TestPushKilledClient(t *testing.T) {
	ps := startPushServer(t, "push-killed")
	ps.watch(t, false) // the killed upload has no answer anyone reads
	c := need(t, ps.md, "skopeo")
	f := mustFixture(t, fixtures.NameLargeImage)
	repo := "killed/large"
	dst := "docker://" + ps.host() + "/" + repo + ":v1"
	args := []string{"--policy", suite.policy, "--registries-conf", suite.registries,
		"copy", "--preserve-digests", "--dest-tls-verify=false", f.SourceIn(suite.fixDir), dst}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	mark := ps.md.tap.mark()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once its upload of the layer has started: a PATCH or PUT of
	// a session is on the wire (recorded when answered, so: the session's
	// POST answered, and a moment more).
	deadline := time.Now().Add(time.Minute)
	started := false
	for !started && time.Now().Before(deadline) {
		for _, e := range ps.md.tap.since(mark) {
			if e.Method == http.MethodPost && strings.Contains(e.URI, "/blobs/uploads/") && e.Status == http.StatusAccepted {
				started = true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !started {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("skopeo started no upload session within a minute\n%s", stderr.String())
	}
	time.Sleep(100 * time.Millisecond)
	_ = cmd.Process.Kill()
	werr := cmd.Wait()
	if werr == nil {
		t.Skipf("skopeo finished its upload before it was killed: nothing interrupted")
	}
	t.Logf("skopeo killed in the middle of its upload: %v", werr)
	if b := repositoryFile(t, ps.root, repo); b != nil {
		var r layout.Repository
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("the repository file does not read after a push killed in the middle: %v\n%s", err, b)
		}
		if len(r.Tags) > 0 || len(r.Manifests) > 0 {
			t.Errorf("the repository has tags or manifests after a push killed in the middle:\n%s", b)
		}
	}
	if st, _ := ps.manifestDigest(t, repo, "v1"); st != http.StatusNotFound {
		t.Errorf("HEAD …/manifests/v1 after the killed push: %d, want 404", st)
	}
	verifyTree(t, ps.root)
	c.run(args...)
	ps.wantManifest(t, repo, "v1", f.Digest)
	ps.pullBack(t, strings.TrimPrefix(dst, "docker://"), f)
	verifyTree(t, ps.root)
}

// TestPushRacingTag pushes two images to the same tag at once with crane,
// ten rounds: both pushes succeed, one wins; after each round the
// repository file reads whole and the tag names one of the two images,
// which pulls with its digests.
func TestPushRacingTag(t *testing.T) {
	ps := startPushServer(t, "push-race")
	ps.watch(t, true)
	c := need(t, ps.md, "crane")
	ro := directMode(t)
	var fs [2]*fixtures.Fixture
	var dirs [2]string
	for i, name := range []string{fixtures.NameOCIImage, fixtures.NameDockerImage} {
		fs[i] = mustFixture(t, name)
		dirs[i] = c.path("layout-" + name)
		c.run("pull", "--insecure", "--format", "oci", targetFor(fs[i]).ref(ro.host(), fs[i]), dirs[i])
	}
	repo := "race/app"
	dst := ps.host() + "/" + repo + ":latest"
	wins := map[string]int{}
	const rounds = 10
	for round := range rounds {
		var wg sync.WaitGroup
		var errs [2]error
		var outs [2]string
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
				defer cancel()
				out, err := c.command(ctx, "push", "--insecure", dirs[i], dst).CombinedOutput()
				errs[i], outs[i] = err, string(out)
			}()
		}
		wg.Wait()
		for i := range 2 {
			if errs[i] != nil {
				t.Errorf("round %d: crane push %s: %v\n%s", round, fs[i].Name, errs[i], outs[i])
			}
		}
		r, err := publish.ReadRepository(context.Background(), publish.NewFSSink(layout.Root(ps.root)), repo)
		if err != nil {
			t.Fatalf("round %d: the repository file does not read: %v", round, err)
		}
		got := r.Tags["latest"]
		var winner *fixtures.Fixture
		for _, f := range fs {
			if got == f.Digest {
				winner = f
			}
		}
		if winner == nil {
			t.Fatalf("round %d: latest names %s, neither %s nor %s", round, got, fs[0].Digest, fs[1].Digest)
		}
		if _, ok := r.Manifests[got]; !ok {
			t.Errorf("round %d: latest names %s, which the repository does not list", round, got)
		}
		ps.wantManifest(t, repo, "latest", got)
		wins[winner.Name]++
	}
	t.Logf("%d rounds of two crane pushes to one tag: won %v", rounds, wins)
	st, d := ps.manifestDigest(t, repo, "latest")
	if st != http.StatusOK {
		t.Fatalf("HEAD latest: %d", st)
	}
	for _, f := range fs {
		if f.Digest == d {
			ps.pullBack(t, dst, f)
		}
	}
	verifyTree(t, ps.root)
}

// TestPushMaxUploadSize runs heron serve --push --max-upload-size 4096:
// a blob over it is refused with 413 however it comes (monolithic, with a
// length or streamed; one chunk; the chunk that passes the bound), and so
// is crane's push of an image with a larger layer; nothing of them is left
// in the tree, while a small blob is accepted.
func TestPushMaxUploadSize(t *testing.T) {
	const maxSize = 4096
	ps := startPushServer(t, "push-max", "--max-upload-size", strconv.Itoa(maxSize))
	ps.watch(t, true)
	big := make([]byte, 2*maxSize)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	bd := digest.FromBytes(big)
	repo := "max/app"
	uploads := ps.url("/v2/" + repo + "/blobs/uploads/")

	resp, body := send(t, http.MethodPost, uploads+"?digest="+bd.String(), bytes.NewReader(big), "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("monolithic POST of %d bytes: %d, want 413\n%s", len(big), resp.StatusCode, body)
	}
	// The same with no length: a streamed body.
	resp, body = send(t, http.MethodPost, uploads+"?digest="+bd.String(), io.MultiReader(bytes.NewReader(big)), "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("monolithic POST of %d bytes, streamed: %d, want 413\n%s", len(big), resp.StatusCode, body)
	}
	session := func() string {
		resp, body := send(t, http.MethodPost, uploads, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST …/blobs/uploads/: %d\n%s", resp.StatusCode, body)
		}
		return ps.url(resp.Header.Get("Location"))
	}
	loc := session()
	resp, body = send(t, http.MethodPatch, loc, bytes.NewReader(big), "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH of %d bytes: %d, want 413\n%s", len(big), resp.StatusCode, body)
	}
	loc = session()
	half := maxSize/2 + 100
	resp, body = send(t, http.MethodPatch, loc, bytes.NewReader(big[:half]), "Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("0-%d", half-1))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH of %d bytes: %d, want 202\n%s", half, resp.StatusCode, body)
	}
	resp, body = send(t, http.MethodPatch, loc, bytes.NewReader(big[half:2*half]), "Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", half, 2*half-1))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("second PATCH, past %d bytes: %d, want 413\n%s", maxSize, resp.StatusCode, body)
	}
	resp, body = send(t, http.MethodPut, loc+"?digest="+digest.FromBytes(big[:2*half]).String(), bytes.NewReader(big[2*half:]), "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusRequestEntityTooLarge && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT ?digest= ending the session past the bound: %d, want 413 (or 400)\n%s", resp.StatusCode, body)
	}

	var craneOut string
	if _, err := exec.LookPath("crane"); err == nil {
		c := need(t, ps.md, "crane")
		f := mustFixture(t, fixtures.NameLargeImage)
		craneOut = c.fail("copy", "--insecure", targetFor(f).ref(directMode(t).host(), f), ps.host()+"/max/large:v1")
		if !strings.Contains(craneOut, "413") && !strings.Contains(craneOut, "SIZE_INVALID") {
			t.Errorf("crane copy of large-image: the error does not say 413 or SIZE_INVALID:\n%s", craneOut)
		}
		if st, _ := ps.manifestDigest(t, "max/large", "v1"); st != http.StatusNotFound {
			t.Errorf("HEAD max/large:v1 after the refused push: %d, want 404", st)
		}
		if bk, _ := layout.BlobKey(f.Layers[0].Digest); fileExists(layout.Root(ps.root).Path(bk)) {
			t.Errorf("large-image's layer is in the tree after a refused upload")
		}
	} else if suite.ci {
		t.Errorf("crane is not installed: %v", err)
	}

	for _, d := range []digest.Digest{bd, digest.FromBytes(big[:2*half])} {
		if bk, _ := layout.BlobKey(d); fileExists(layout.Root(ps.root).Path(bk)) {
			t.Errorf("blob %s, refused, is in the tree", d)
		}
		if resp, _ := send(t, http.MethodHead, ps.url("/v2/"+repo+"/blobs/"+d.String()), nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD of refused blob %s: %d, want 404", d, resp.StatusCode)
		}
	}
	// A blob within the bound goes in.
	small := big[:maxSize]
	resp, body = send(t, http.MethodPost, ps.url("/v2/max/small/blobs/uploads/?digest="+digest.FromBytes(small).String()), bytes.NewReader(small), "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("monolithic POST of %d bytes (the bound): %d, want 201\n%s", len(small), resp.StatusCode, body)
	}
	for _, r := range heronLs(t, ps.root) {
		if r != "max/small" {
			t.Errorf("heron ls lists %s after refused uploads", r)
		}
	}
	verifyTree(t, ps.root)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestPushDelete deletes a tag (crane delete) and a manifest (regctl
// manifest delete) from heron serve --push --delete, and a blob (DELETE):
// what was deleted no longer pulls, the rest does. A second server on the
// same tree without --delete, and the suite's read-only server, refuse
// DELETE with 405, and crane delete fails against them.
func TestPushDelete(t *testing.T) {
	ps := startPushServer(t, "push-delete", "--delete")
	ps.watch(t, true)
	c := need(t, ps.md, "crane")
	ro := directMode(t)
	img := mustFixture(t, fixtures.NameOCIImage)
	other := mustFixture(t, fixtures.NameDockerImage)
	repo := "del/app"
	at := func(ref string) string { return ps.host() + "/" + repo + ref }
	c.run("copy", "--insecure", targetFor(img).ref(ro.host(), img), at(":a"))
	c.run("tag", "--insecure", at(":a"), "b")
	c.run("copy", "--insecure", targetFor(other).ref(ro.host(), other), at(":other"))

	// A tag.
	c.run("delete", "--insecure", at(":a"))
	if st, _ := ps.manifestDigest(t, repo, "a"); st != http.StatusNotFound {
		t.Errorf("HEAD :a after crane delete :a: %d, want 404", st)
	}
	if out := c.fail("pull", "--insecure", "--format", "oci", at(":a"), c.path("a")); !strings.Contains(out, "MANIFEST_UNKNOWN") && !strings.Contains(out, "404") {
		t.Errorf("crane pull of a deleted tag: the error does not say MANIFEST_UNKNOWN:\n%s", out)
	}
	ps.wantManifest(t, repo, "b", img.Digest)
	ps.wantManifest(t, repo, img.Digest.String(), img.Digest)
	ps.pullBack(t, at(":b"), img)

	// A manifest, by digest: its tags go with it.
	if _, err := exec.LookPath("regctl"); err == nil {
		rc := need(t, ps.md, "regctl")
		rc.run("--host", "reg="+ps.host()+",tls=disabled", "manifest", "delete", at("@"+img.Digest.String()))
	} else {
		if suite.ci {
			t.Errorf("regctl is not installed: %v", err)
		}
		c.run("delete", "--insecure", at("@"+img.Digest.String()))
	}
	for _, ref := range []string{"b", img.Digest.String()} {
		if st, _ := ps.manifestDigest(t, repo, ref); st != http.StatusNotFound {
			t.Errorf("HEAD %s after the manifest's delete: %d, want 404", ref, st)
		}
	}
	c.fail("pull", "--insecure", "--format", "oci", at("@"+img.Digest.String()), c.path("gone"))
	if tags := lines(c.run("ls", "--insecure", ps.host()+"/"+repo)); !slices.Equal(tags, []string{"other"}) {
		t.Errorf("crane ls after the deletes: %q, want [other]", tags)
	}
	ps.pullBack(t, at(":other"), other)

	// A blob the repository still uses is refused (409); one it does
	// not (uploaded alone) is deleted.
	shared := ps.url("/v2/" + repo + "/blobs/" + other.Config.Digest.String())
	if resp, body := send(t, http.MethodDelete, shared, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("DELETE of a blob :other uses: %d, want 409\n%s", resp.StatusCode, body)
	}
	if resp, _ := send(t, http.MethodHead, shared, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD of a blob whose DELETE was refused: %d, want 200", resp.StatusCode)
	}
	lone := []byte("a blob no manifest references\n")
	ld := digest.FromBytes(lone)
	if resp, body := send(t, http.MethodPost, ps.url("/v2/"+repo+"/blobs/uploads/?digest="+ld.String()), bytes.NewReader(lone), "Content-Type", "application/octet-stream"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic POST of a lone blob: %d, want 201\n%s", resp.StatusCode, body)
	}
	loneURL := ps.url("/v2/" + repo + "/blobs/" + ld.String())
	if resp, body := send(t, http.MethodDelete, loneURL, nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("DELETE of a blob no manifest uses: %d, want 202\n%s", resp.StatusCode, body)
	}
	if resp, _ := send(t, http.MethodHead, loneURL, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of a deleted blob: %d, want 404", resp.StatusCode)
	}
	verifyTree(t, ps.root)

	// Without --delete, on the same tree, and on the read-only server.
	nd := onRoot(t, "push-no-delete", ps.root)
	for _, base := range []string{nd.url(""), ro.heron.Base()} {
		r := repo
		if base == ro.heron.Base() {
			r = targetFor(other).repo
		}
		for _, path := range []string{"/v2/" + r + "/manifests/other", "/v2/" + r + "/manifests/latest", "/v2/" + r + "/manifests/" + other.Digest.String(), "/v2/" + r + "/blobs/" + other.Config.Digest.String()} {
			if resp, body := send(t, http.MethodDelete, base+path, nil); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("DELETE %s%s: %d, want 405\n%s", base, path, resp.StatusCode, body)
			}
		}
	}
	if out := c.fail("delete", "--insecure", nd.host()+"/"+repo+":other"); !strings.Contains(out, "405") && !strings.Contains(out, "UNSUPPORTED") {
		t.Errorf("crane delete without --delete: the error does not say 405 or UNSUPPORTED:\n%s", out)
	}
	nd.wantManifest(t, repo, "other", other.Digest)
	verifyTree(t, ps.root)
}

// TestPushManifestAfterGC pushes an image's blobs, then unlinks its layer
// from the repository (DELETE) and runs heron gc, which deletes the
// layer's bytes: the manifest PUT that follows is refused with 400
// MANIFEST_BLOB_UNKNOWN and writes nothing; the client uploads the layer
// again and the same PUT succeeds.
func TestPushManifestAfterGC(t *testing.T) {
	ps := startPushServer(t, "push-gc", "--delete")
	ps.watch(t, true)
	repo := "gc/app"
	layer := make([]byte, 64<<10)
	if _, err := rand.Read(layer); err != nil {
		t.Fatal(err)
	}
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.FromBytes(layer).String() + `"]}}`)
	ld, cd := digest.FromBytes(layer), digest.FromBytes(config)
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(config))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: ld, Size: int64(len(layer))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	upload := func(d digest.Digest, b []byte) {
		t.Helper()
		resp, body := send(t, http.MethodPost, ps.url("/v2/"+repo+"/blobs/uploads/?digest="+d.String()), bytes.NewReader(b), "Content-Type", "application/octet-stream")
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("monolithic POST of %s: %d\n%s", d, resp.StatusCode, body)
		}
	}
	put := func() (*http.Response, []byte) {
		return send(t, http.MethodPut, ps.url("/v2/"+repo+"/manifests/v1"), bytes.NewReader(manifest), "Content-Type", ocispec.MediaTypeImageManifest)
	}
	upload(cd, config)
	upload(ld, layer)
	if resp, body := send(t, http.MethodDelete, ps.url("/v2/"+repo+"/blobs/"+ld.String()), nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE of the layer: %d\n%s", resp.StatusCode, body)
	}
	if out, err := exec.Command(suite.heron, "gc", "--root", ps.root, "--grace", "0s").CombinedOutput(); err != nil {
		t.Fatalf("heron gc: %v\n%s", err, out)
	}
	if bk, _ := layout.BlobKey(ld); fileExists(layout.Root(ps.root).Path(bk)) {
		t.Fatalf("heron gc --grace 0s left the unlinked layer in the tree")
	}
	before := repositoryFile(t, ps.root, repo)
	resp, body := put()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "MANIFEST_BLOB_UNKNOWN") {
		t.Errorf("PUT of a manifest whose layer gc deleted: %d\n%s\nwant 400 MANIFEST_BLOB_UNKNOWN", resp.StatusCode, body)
	}
	if after := repositoryFile(t, ps.root, repo); !bytes.Equal(after, before) {
		t.Errorf("the refused PUT changed the repository file:\nbefore: %s\nafter:  %s", before, after)
	}
	if st, _ := ps.manifestDigest(t, repo, "v1"); st != http.StatusNotFound {
		t.Errorf("HEAD v1 after the refused PUT: %d, want 404", st)
	}
	// The client pushes again.
	upload(ld, layer)
	resp, body = put()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != digest.FromBytes(manifest).String() {
		t.Errorf("PUT after the layer's upload again: %d, digest %q\n%s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), body)
	}
	verifyTree(t, ps.root)
}
