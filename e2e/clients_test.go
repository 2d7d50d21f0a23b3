//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/opencontainers/go-digest"
)

// commandTimeout bounds one client command (the large image included).
const commandTimeout = 5 * time.Minute

// client is one real client and what it does with one fixture.
type client struct {
	name string
	// bin is the executable, looked up on PATH.
	bin string
	// skip returns why the client does not apply to a fixture, or "".
	skip func(f *fixtures.Fixture) string
	// pull pulls the fixture from ref and checks what arrived.
	pull func(c *call, f *fixtures.Fixture, ref string)
}

// clients is the table the suite runs: every client against every fixture
// in both modes, except the pairs whose skip says why not (docs/clients.md
// has the same table).
var clients = []client{
	{name: "skopeo", bin: "skopeo", pull: pullSkopeo},
	{name: "podman", bin: "podman", pull: pullPodman, skip: func(f *fixtures.Fixture) string {
		if !isImage(f) {
			return "not applicable: podman pulls container images only, and " + f.Name + " is an OCI artifact (artifactType " + f.ArtifactType + "); skopeo, crane, oras and regctl pull it"
		}
		return ""
	}},
	{name: "crane", bin: "crane", pull: pullCrane},
	{name: "oras", bin: "oras", pull: pullORAS},
	{name: "regctl", bin: "regctl", pull: pullRegctl},
}

// TestPull pulls every fixture with every client, in both modes.
func TestPull(t *testing.T) { pullAll(t, suite.modes) }

// pullAll pulls every fixture with every client from each of modes.
// Subtests run one at a time, so that each one's HTTP exchanges (recorded
// by the tap) and CDN or bucket hits are its own.
func pullAll(t *testing.T, modes []*mode) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			for _, cl := range clients {
				if md.only != nil && !slices.Contains(md.only, cl.name) {
					continue
				}
				t.Run(cl.name, func(t *testing.T) {
					bin, lookErr := exec.LookPath(cl.bin)
					if lookErr == nil && cl.name == "podman" && os.Geteuid() != 0 {
						lookErr = fmt.Errorf("podman pulls as root (with its own --root and vfs storage), and this is uid %d", os.Geteuid())
					}
					for i := range suite.fixtures.Fixtures {
						f := &suite.fixtures.Fixtures[i]
						t.Run(f.Name, func(t *testing.T) {
							countResult(t)
							if cl.skip != nil {
								if why := cl.skip(f); why != "" {
									t.Skip(why)
								}
							}
							if lookErr != nil {
								msg := fmt.Sprintf("%s is not installed (make tools installs it): %v", cl.bin, lookErr)
								if suite.ci {
									t.Fatal(msg)
								}
								t.Skip(msg)
							}
							runPull(t, md, cl, bin, f)
						})
					}
				})
			}
		})
	}
}

// runPull runs one client against one fixture, then checks the HTTP
// exchanges it had with heron and the CDN.
func runPull(t *testing.T, md *mode, cl client, bin string, f *fixtures.Fixture) {
	md.tap.quiet()
	tapMark := md.tap.mark()
	cdnMark := 0
	if md.cdn != nil {
		cdnMark = md.cdn.mark()
	}
	if md.bucket != nil {
		// Not quiet: heron serve keeps its own connections to the bucket
		// open through that tap.
		cdnMark = md.bucket.tap.mark()
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		md.tap.quiet()
		t.Logf("HTTP exchanges with heron serve (%s):", md.name)
		for _, e := range md.tap.since(tapMark) {
			t.Logf("  %s", e)
		}
		if md.cdn != nil {
			t.Logf("CDN requests:")
			for _, h := range md.cdn.since(cdnMark) {
				t.Logf("  %s %s -> %d, %d bytes", h.Method, h.Path, h.Status, h.Bytes)
			}
		}
		if md.bucket != nil {
			t.Logf("HTTP exchanges with the bucket (versitygw), the server's own included:")
			for _, e := range md.bucket.tap.since(cdnMark) {
				t.Logf("  %s", e)
			}
		}
		t.Logf("heron serve (%s) log, last lines:\n%s", md.name, md.heron.Log.Tail(15))
	})
	c := newCall(t, bin, md)
	cl.pull(c, f, targetFor(f).ref(md.base(), f))
	if !md.tap.quiet() {
		t.Errorf("connections to heron still open 10s after %s exited", cl.name)
	}
	checkExchanges(t, md, md.tap.since(tapMark), cdnMark)
}

// wellKnownBlobs are the two blobs heron serves from memory for any
// repository, stored or not, instead of redirecting them (DESIGN.md: "always
// servable"): the 32-byte gzipped empty tar layer and the OCI empty
// descriptor's content, {}. A CDN might not hold them, and they are
// smaller than the redirect.
var wellKnownBlobs = map[string]bool{
	"sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4": true,
	"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a": true,
}

var blobPathRE = regexp.MustCompile(`^/v2/(.+)/blobs/([a-z0-9]+):([a-f0-9]+)$`)

// checkExchanges checks how heron answered a client: no 5xx and nothing
// unreadable, and at least one blob fetched; in direct mode, blob GETs
// answered 200 (or 206) with the bytes; in redirect mode, every blob GET
// answered 307 to the CDN (heron sent no blob bytes itself), the client
// followed each redirect and the CDN served each blob; in a bucket's
// presigned mode, every blob GET answered 307 to a presigned URL of the
// blob's object, which the client fetched from the bucket (presigned.checkFetched).
// The well-known blobs are served by heron in every mode. cdnMark is the
// CDN's mark, or the bucket tap's.
func checkExchanges(t *testing.T, md *mode, exs []exchange, cdnMark int) {
	t.Helper()
	if len(exs) == 0 {
		t.Errorf("no request reached heron serve")
		return
	}
	var redirected []string
	blobGets := 0
	for _, e := range exs {
		if e.Err != "" {
			t.Errorf("unreadable exchange: %s", e)
		}
		if e.Status >= 500 {
			t.Errorf("server error: %s", e)
		}
		m := blobPathRE.FindStringSubmatch(strings.SplitN(e.URI, "?", 2)[0])
		if m == nil || e.Method != "GET" {
			continue
		}
		blobGets++
		if wellKnownBlobs[m[2]+":"+m[3]] && e.Status == 200 {
			continue // served from heron's memory in both modes: see wellKnownBlobs
		}
		switch {
		case md.bucket != nil:
			if loc := md.bucket.checkRedirect(t, e, m[2], m[3]); loc != "" {
				redirected = append(redirected, loc)
			}
		case md.cdn == nil && e.Status != 200 && e.Status != 206:
			t.Errorf("direct mode: blob GET not answered with its bytes: %s", e)
		case md.cdn != nil && e.Status != 307:
			t.Errorf("redirect mode: blob GET not redirected with 307 (heron served %d body bytes itself): %s", e.BodyBytes, e)
		case md.cdn != nil:
			want := md.cdn.base() + "/blobs/" + m[2] + "/" + m[3]
			if e.Location != want {
				t.Errorf("redirect to %q, want %q: %s", e.Location, want, e)
			}
			redirected = append(redirected, "/blobs/"+m[2]+"/"+m[3])
		}
	}
	if blobGets == 0 {
		t.Errorf("the client fetched no blob from heron")
	}
	if md.bucket != nil {
		md.bucket.checkFetched(t, redirected, cdnMark)
		return
	}
	if md.cdn == nil {
		return
	}
	served := map[string]bool{}
	for _, h := range md.cdn.since(cdnMark) {
		if h.Method == "GET" && (h.Status == 200 || h.Status == 206) && h.Bytes > 0 {
			served[h.Path] = true
		}
	}
	for _, p := range redirected {
		if !served[p] {
			t.Errorf("heron redirected to %s but the client never fetched it from the CDN", p)
		}
	}
}

// call runs one client's commands in a test, each with a timeout, in
// folders of the test's own, with HOME set to one of them so that no
// user configuration (docker credentials, regctl or oras settings) is used.
type call struct {
	t    *testing.T
	bin  string
	md   *mode
	dir  string
	home string
	// env is added to the client's environment (tls_test.go's
	// SSL_CERT_FILE for the Go clients).
	env []string
}

func newCall(t *testing.T, bin string, md *mode) *call {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	return &call{t: t, bin: bin, md: md, dir: dir, home: home}
}

// path returns a folder path under the call's folder (not created).
func (c *call) path(name string) string { return filepath.Join(c.dir, name) }

// run runs the client with args and returns its standard output; a
// non-zero exit fails the test with the command and its standard error.
func (c *call) run(args ...string) []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := c.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	line := filepath.Base(c.bin) + " " + strings.Join(args, " ")
	start := time.Now()
	err := cmd.Run()
	c.t.Logf("$ %s  (%s)", line, time.Since(start).Round(time.Millisecond))
	if err != nil {
		c.t.Fatalf("%s failed: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(c.bin), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// command is the client's command with args, in the call's folder and
// environment (HOME and the containers configuration of the suite), killed
// with the test binary.
func (c *call) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(),
		"HOME="+c.home,
		"TMPDIR="+c.dir,
		"CONTAINERS_REGISTRIES_CONF="+suite.registries,
		"XDG_CONFIG_HOME="+filepath.Join(c.home, ".config"),
	)
	cmd.Env = append(cmd.Env, c.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// equalDigest fails the test unless got (trimmed) is the fixture's digest.
func (c *call) equalDigest(what string, got []byte, want digest.Digest) {
	c.t.Helper()
	if g := strings.TrimSpace(string(got)); g != want.String() {
		c.t.Errorf("%s: got %q, want %s", what, g, want)
	}
}

// hasTag fails the test unless a client's tag list of the fixture's
// repository holds the tag the fixture was published with.
func (c *call) hasTag(what string, tags []string, f *fixtures.Fixture) {
	c.t.Helper()
	if c.md.prefix != "" && targetFor(f).byDigest {
		// A pull-through cache has what clients asked for: this
		// fixture, by digest, untagged.
		return
	}
	if tag := targetFor(f).tag; !slices.Contains(tags, tag) {
		c.t.Errorf("%s: tags %q lack %q", what, tags, tag)
	}
}

// lines splits a command's output into its non-empty lines.
func lines(out []byte) []string {
	var l []string
	for _, s := range strings.Split(string(out), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			l = append(l, s)
		}
	}
	return l
}

// checkReferrers fails the test unless the referrers a client listed are
// the fixture's expected ones (digest and artifact type).
func (c *call) checkReferrers(what string, got []referrer, f *fixtures.Fixture) {
	c.t.Helper()
	var g, want []string
	for _, r := range got {
		g = append(g, r.Digest.String()+" "+r.ArtifactType)
	}
	for _, r := range f.Referrers {
		want = append(want, r.Digest.String()+" "+r.ArtifactType)
	}
	slices.Sort(g)
	slices.Sort(want)
	if !slices.Equal(g, want) {
		c.t.Errorf("%s: referrers %q, want %q", what, g, want)
	}
}

// referrer is a descriptor as oras discover and regctl artifact list print it.
type referrer struct {
	Digest       digest.Digest `json:"digest"`
	ArtifactType string        `json:"artifactType"`
}

// repoOf returns host/repository of the fixture, without tag or digest.
func repoOf(c *call, f *fixtures.Fixture) string { return c.md.base() + "/" + targetFor(f).repo }

// pullSkopeo copies the fixture with all its instances and original
// digests into a dir: folder, inspects it remotely and lists the
// repository's tags.
func pullSkopeo(c *call, f *fixtures.Fixture, ref string) {
	global := []string{"--policy", suite.policy, "--registries-conf", suite.registries}
	dir := c.path("dir")
	c.run(append(global, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "docker://"+ref, "dir:"+dir)...)
	if err := checkDirLayout(dir, f); err != nil {
		c.t.Errorf("skopeo copy: %v", err)
	}
	raw := c.run(append(global, "inspect", "--tls-verify=false", "--raw", "docker://"+ref)...)
	if got := digest.FromBytes(raw); got != f.Digest {
		c.t.Errorf("skopeo inspect --raw: manifest digest %s, want %s", got, f.Digest)
	}
	// skopeo inspect without --raw reads the image's config, which an
	// artifact does not have ("unsupported image-specific operation on
	// artifact"): for artifacts, --raw is the inspection.
	if isImage(f) {
		out := c.run(append(global, "inspect", "--tls-verify=false", "--format", "{{.Digest}}", "docker://"+ref)...)
		c.equalDigest("skopeo inspect --format {{.Digest}}", out, f.Digest)
	}
	var list struct{ Tags []string }
	out := c.run(append(global, "list-tags", "--tls-verify=false", "docker://"+repoOf(c, f))...)
	if err := json.Unmarshal(out, &list); err != nil {
		c.t.Fatalf("skopeo list-tags: %v\n%s", err, out)
	}
	c.hasTag("skopeo list-tags", list.Tags, f)
}

// pullPodman pulls the image into a store of the test's own (vfs, as
// root), checks the image ID (its config digest) and its digests, and lists
// the repository's tags.
func pullPodman(c *call, f *fixtures.Fixture, ref string) {
	// podman refuses a --runroot longer than 50 characters, which
	// t.TempDir() names are: the run root gets a short folder of its own.
	runroot, err := os.MkdirTemp("", "podman-")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.RemoveAll(runroot) })
	global := []string{
		"--root", c.path("storage"), "--runroot", runroot, "--storage-driver", "vfs",
		"--tmpdir", c.path("tmp"), "--events-backend", "none", "--cgroup-manager", "cgroupfs",
	}
	c.run(append(global, "pull", "--tls-verify=false", "--signature-policy", suite.policy, ref)...)
	out := c.run(append(global, "image", "inspect", ref)...)
	var imgs []struct {
		ID          string   `json:"Id"`
		Digest      string   `json:"Digest"`
		RepoDigests []string `json:"RepoDigests"`
	}
	if err := json.Unmarshal(out, &imgs); err != nil || len(imgs) != 1 {
		c.t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	img := imgs[0]
	want, err := platformImage(f, runtime.GOARCH)
	if err != nil {
		c.t.Fatal(err)
	}
	if "sha256:"+img.ID != want.Config.Digest.String() {
		c.t.Errorf("podman image ID %s, want the config digest %s", img.ID, want.Config.Digest)
	}
	if img.Digest != f.Digest.String() {
		c.t.Errorf("podman image Digest %s, want %s", img.Digest, f.Digest)
	}
	repo := repoOf(c, f)
	for _, d := range []digest.Digest{f.Digest, want.Digest} {
		if !slices.Contains(img.RepoDigests, repo+"@"+d.String()) {
			c.t.Errorf("podman RepoDigests %v lack %s@%s", img.RepoDigests, repo, d)
		}
	}
	// podman search lists 25 tags unless told more (--limit), and the
	// fixture's tag may come after thousands of others.
	limit := strconv.Itoa(len(suite.tagsOf(targetFor(f).repo)) + 1)
	out = c.run(append(global, "search", "--tls-verify=false", "--list-tags", "--limit", limit, "--format", "json", repo)...)
	var found []struct{ Tags []string }
	if err := json.Unmarshal(out, &found); err != nil || len(found) != 1 {
		c.t.Fatalf("podman search --list-tags: %v\n%s", err, out)
	}
	c.hasTag("podman search --list-tags", found[0].Tags, f)
}

// pullCrane pulls the fixture (a whole index, for an index) into an OCI
// layout, asks the registry for its digest and to validate it, and lists
// the repository's tags.
func pullCrane(c *call, f *fixtures.Fixture, ref string) {
	dir := c.path("layout")
	c.run("pull", "--insecure", "--format", "oci", ref, dir)
	if err := checkOCILayout(dir, f); err != nil {
		c.t.Errorf("crane pull: %v", err)
	}
	c.equalDigest("crane digest", c.run("digest", "--insecure", ref), f.Digest)
	out := c.run("validate", "--insecure", "--remote", ref)
	if !strings.HasPrefix(string(out), "PASS") {
		c.t.Errorf("crane validate --remote: %s", out)
	}
	c.hasTag("crane ls", lines(c.run("ls", "--insecure", repoOf(c, f))), f)
}

// pullORAS copies the fixture into an OCI layout, lists its referrers (the
// signature, for oci-image; none for the others) and the repository's tags.
func pullORAS(c *call, f *fixtures.Fixture, ref string) {
	dir := c.path("layout")
	out := c.run("copy", "--from-plain-http", ref, "--to-oci-layout", dir+":e2e")
	if err := checkOCILayout(dir, f); err != nil {
		c.t.Errorf("oras copy: %v", err)
	}
	if !bytes.Contains(out, []byte("Digest: "+f.Digest.String())) {
		c.t.Errorf("oras copy did not print Digest: %s:\n%s", f.Digest, out)
	}
	out = c.run("discover", "--plain-http", "--format", "json", ref)
	var tree struct {
		Digest    digest.Digest `json:"digest"`
		Referrers []referrer    `json:"referrers"`
	}
	if err := json.Unmarshal(out, &tree); err != nil {
		c.t.Fatalf("oras discover: %v\n%s", err, out)
	}
	if tree.Digest != f.Digest {
		c.t.Errorf("oras discover: digest %s, want %s", tree.Digest, f.Digest)
	}
	c.checkReferrers("oras discover", tree.Referrers, f)
	c.hasTag("oras repo tags", lines(c.run("repo", "tags", "--plain-http", repoOf(c, f))), f)
}

// pullRegctl copies the fixture into an OCI layout, asks for its digest,
// lists its referrers and the repository's tags.
// --host configures the registry for plain HTTP for that one command.
func pullRegctl(c *call, f *fixtures.Fixture, ref string) {
	host := "reg=" + c.md.host() + ",tls=disabled"
	dir := c.path("layout")
	c.run("--host", host, "image", "copy", ref, "ocidir://"+dir+":e2e")
	if err := checkOCILayout(dir, f); err != nil {
		c.t.Errorf("regctl image copy: %v", err)
	}
	c.equalDigest("regctl image digest", c.run("--host", host, "image", "digest", ref), f.Digest)
	out := c.run("--host", host, "artifact", "list", ref, "--format", "{{json .}}")
	var list struct {
		Descriptors []referrer `json:"descriptors"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		c.t.Fatalf("regctl artifact list: %v\n%s", err, out)
	}
	c.checkReferrers("regctl artifact list", list.Descriptors, f)
	c.hasTag("regctl tag ls", lines(c.run("--host", host, "tag", "ls", repoOf(c, f))), f)
}
