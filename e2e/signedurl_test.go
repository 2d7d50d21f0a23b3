//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector"
	"github.com/opencontainers/go-digest"
)

// TestSignedRedirectsNginx runs the one-machine layout of docs/deploy.md,
// nginx's configuration exactly as the page shows it (with the test's
// addresses and folders): nginx on 127.0.0.1 in front of a heron serve
// that signs its redirects with the nginx scheme, both on the suite's
// tree. A pull of a blob through nginx's /v2/ is redirected to nginx's
// /blobs/ and gets the blob's bytes; URLs that are unsigned, altered,
// signed with another key or scheme, or expired get 403 or 410 from
// nginx, and redirector.URLSigner.Verify agrees with nginx on each.
func TestSignedRedirectsNginx(t *testing.T) {
	bin, err := nginxBinary()
	if err != nil {
		if suite.ci {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	key := newKey(t, filepath.Join(dir, "redirect.key"))
	secretConf := filepath.Join(dir, "nginx-secret.conf")
	if err := os.WriteFile(secretConf, fmt.Appendf(nil, "set $secret \"%s\";\n", key), 0o600); err != nil {
		t.Fatal(err)
	}
	nginxAddr, err := heronproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + nginxAddr
	command := func(args ...string) *exec.Cmd { return exec.Command(suite.heron, args...) }
	heron, err := heronproc.StartServe("heron serve (signed redirects)", command, suite.tree, 30*time.Second,
		"--blob-base-url", base, "--redirect-signing-key", filepath.Join(dir, "redirect.key"), "--redirect-signing-scheme", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := heron.Stop(); err != nil {
			t.Errorf("heron serve: %v", err)
		}
	})
	site := docsNginxSite(t, map[string]string{
		"listen 80;":                            "listen " + nginxAddr + ";",
		"root /srv/heron;":                      "root " + suite.tree + ";",
		"include /etc/heron/nginx-secret.conf;": "include " + secretConf + ";",
		"server 127.0.0.1:5000;":                "server " + heron.Addr + ";",
	})
	startNginx(t, bin, filepath.Join(dir, "nginx"), nginxAddr, site)

	f, ok := suite.fixtures.Fixture(fixtures.NameOCIImage)
	if !ok || len(f.Blobs) < 2 {
		t.Fatalf("no %s fixture with two blobs", fixtures.NameOCIImage)
	}
	repo := targetFor(f).repo
	blob, other := f.Blobs[len(f.Blobs)-1], f.Blobs[0]
	blobURL := base + "/" + blobKey(t, blob)
	hc := &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	t.Run("pull through nginx", func(t *testing.T) {
		countResult(t)
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			resp, body := do(t, hc, method, base+"/v2/"+repo+"/blobs/"+blob.String())
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, blobURL+"?md5=") {
				t.Fatalf("%s via nginx: %s, Location %q, %s; want a 307 to %s?md5=…", method, resp.Status, loc, body, blobURL)
			}
			resp, body = do(t, hc, method, loc)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %s, %s; want 200", method, loc, resp.Status, body)
			}
			if got := resp.Header.Get("Cache-Control"); got != "private, max-age=31536000, immutable" {
				t.Errorf("%s %s: Cache-Control %q", method, loc, got)
			}
			if method == http.MethodGet {
				if d := digest.FromBytes(body); d != blob {
					t.Errorf("GET %s: %d bytes of digest %s, want %s", loc, len(body), d, blob)
				}
			}
		}
		// Manifests and tags are heron's answers, through nginx.
		resp, body := do(t, hc, http.MethodGet, base+"/v2/"+repo+"/manifests/"+f.Digest.String())
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != f.MediaType || digest.FromBytes(body) != f.Digest {
			t.Errorf("manifest via nginx: %s, Content-Type %q, digest %s", resp.Status, resp.Header.Get("Content-Type"), digest.FromBytes(body))
		}
		// The rest of the tree is not served.
		for _, path := range []string{"/repositories/" + repo + ".json", "/heron-layout.json", "/catalog/", "/.heron/changes"} {
			if resp, _ := do(t, hc, http.MethodGet, base+path); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s: %s, want 404", path, resp.Status)
			}
		}
	})

	signer := newURLSigner(t, key, redirector.SigningNginx, 15*time.Minute)
	now := time.Now()
	signed := signer.Sign(mustParse(t, blobURL), now)
	otherKey := newURLSigner(t, strings.ToUpper(key), redirector.SigningNginx, 15*time.Minute)
	hmacSigner := newURLSigner(t, key, redirector.SigningHMACSHA256, 15*time.Minute)
	// with returns the signed URL with its query changed by f.
	with := func(f func(url.Values)) *url.URL {
		u := *signed
		q := u.Query()
		f(q)
		u.RawQuery = q.Encode()
		return &u
	}
	for _, tc := range []struct {
		name string
		u    *url.URL
		want int
	}{
		{"signed", signed, 200},
		{"signed, another parameter added", with(func(q url.Values) { q.Set("x", "1") }), 200},
		{"unsigned", mustParse(t, blobURL), 403},
		{"signed for another blob", func() *url.URL {
			u := *signer.Sign(mustParse(t, base+"/"+blobKey(t, other)), now)
			u.Path = "/" + blobKey(t, blob)
			return &u
		}(), 403},
		{"md5 altered", with(func(q url.Values) {
			b := []byte(q.Get("md5"))
			b[0] ^= 1
			q.Set("md5", string(b))
		}), 403},
		{"md5 padded", with(func(q url.Values) { q.Set("md5", q.Get("md5")+"==") }), 403},
		{"expires moved later", with(func(q url.Values) {
			e, _ := strconv.ParseInt(q.Get("expires"), 10, 64)
			q.Set("expires", strconv.FormatInt(e+86400, 10))
		}), 403},
		{"expires zero", with(func(q url.Values) { q.Set("expires", "0") }), 403},
		{"no expires", with(func(q url.Values) { q.Del("expires") }), 403},
		{"another key", otherKey.Sign(mustParse(t, blobURL), now), 403},
		{"the hmac-sha256 scheme", hmacSigner.Sign(mustParse(t, blobURL), now), 403},
		{"expired", signer.Sign(mustParse(t, blobURL), now.Add(-time.Hour)), 410},
	} {
		t.Run("nginx "+tc.name, func(t *testing.T) {
			countResult(t)
			resp, _ := do(t, hc, http.MethodGet, tc.u.String())
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s: %s, want %d", tc.u, resp.Status, tc.want)
			}
			// What Verify says, for the same URL: nil for 200, expired
			// for 410, anything else for 403.
			err := signer.Verify(tc.u, time.Now())
			if verdict := statusOf(err); verdict != resp.StatusCode {
				t.Errorf("Verify(%s) = %v (%d), nginx answered %d", tc.u, err, verdict, resp.StatusCode)
			}
		})
	}
}

// TestSignedRedirectsEdgeFunction runs the edge function of
// docs/signed-urls.md, as the page shows it, under Node.js (whose
// WebCrypto is the one Cloudflare Workers have) on URLs signed with the
// hmac-sha256 scheme, and checks that it agrees with URLSigner.Verify.
func TestSignedRedirectsEdgeFunction(t *testing.T) {
	countResult(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the edge function of docs/signed-urls.md is not run")
	}
	dir := t.TempDir()
	js := docsBlock(t, "signed-urls.md", "js", "verifyHeronURL")
	if err := os.WriteFile(filepath.Join(dir, "edge.mjs"), []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	runner := `import { verifyHeronURL } from "./edge.mjs";
const [key, ...urls] = process.argv.slice(2);
for (const u of urls) console.log(await verifyHeronURL(new URL(u), key));
`
	if err := os.WriteFile(filepath.Join(dir, "run.mjs"), []byte(runner), 0o644); err != nil {
		t.Fatal(err)
	}
	key := newKey(t, filepath.Join(dir, "key"))
	s := newURLSigner(t, key, redirector.SigningHMACSHA256, 15*time.Minute)
	const blob = "https://cdn.example.com/heron/blobs/sha256/a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	now := time.Now()
	signed := s.Sign(mustParse(t, blob), now)
	alter := func(f func(url.Values)) *url.URL {
		u := *signed
		q := u.Query()
		f(q)
		u.RawQuery = q.Encode()
		return &u
	}
	cases := []struct {
		name string
		u    *url.URL
		want int
	}{
		{"signed", signed, 200},
		{"unsigned", mustParse(t, blob), 403},
		{"another path", func() *url.URL { u := *signed; u.Path += "0"; return &u }(), 403},
		{"signature altered", alter(func(q url.Values) {
			b := []byte(q.Get("signature"))
			b[1] ^= 1
			q.Set("signature", string(b))
		}), 403},
		{"signature not base64url", alter(func(q url.Values) { q.Set("signature", "a") }), 403},
		{"expires moved later", alter(func(q url.Values) { q.Set("expires", q.Get("expires")+"0") }), 403},
		{"two signatures", alter(func(q url.Values) { q.Add("signature", q.Get("signature")) }), 403},
		{"nginx scheme", newURLSigner(t, key, redirector.SigningNginx, time.Minute).Sign(mustParse(t, blob), now), 403},
		{"expired", s.Sign(mustParse(t, blob), now.Add(-time.Hour)), 410},
	}
	args := []string{"run.mjs", key}
	for _, tc := range cases {
		args = append(args, tc.u.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node run.mjs: %v\n%s", err, stderr.String())
	}
	got := strings.Fields(string(out))
	if len(got) != len(cases) {
		t.Fatalf("node printed %q, want %d statuses", out, len(cases))
	}
	for i, tc := range cases {
		if got[i] != strconv.Itoa(tc.want) {
			t.Errorf("%s: the edge function answered %s to %s, want %d", tc.name, got[i], tc.u, tc.want)
		}
		err := s.Verify(tc.u, time.Now())
		if verdict := statusOf(err); verdict != tc.want {
			t.Errorf("%s: Verify(%s) = %v (%d), want %d", tc.name, tc.u, err, verdict, tc.want)
		}
	}
}

// statusOf is the status a host answers when Verify returns err.
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, redirector.ErrSignatureExpired):
		return http.StatusGone
	default:
		return http.StatusForbidden
	}
}

// nginxBinary finds nginx (bench/install.sh and scripts/install-tools.sh
// install it; Debian puts it in /usr/sbin, which a user's PATH may lack).
func nginxBinary() (string, error) {
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", errors.New("nginx is not installed (make tools installs it): the nginx layout of docs/deploy.md is not run")
}

// docsBlock returns the fenced block of language lang in docs/<page> that
// contains marker; the test fails unless there is exactly one.
func docsBlock(t *testing.T, page, lang, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", page))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, m := range regexp.MustCompile("(?ms)^```"+regexp.QuoteMeta(lang)+"\n(.*?)^```$").FindAllStringSubmatch(string(b), -1) {
		if strings.Contains(m[1], marker) {
			found = append(found, m[1])
		}
	}
	if len(found) != 1 {
		t.Fatalf("docs/%s: %d ```%s blocks contain %q, want 1", page, len(found), lang, marker)
	}
	return found[0]
}

// docsNginxSite returns the nginx configuration of docs/deploy.md with
// each key of replace (which must occur once) replaced by its value.
func docsNginxSite(t *testing.T, replace map[string]string) string {
	t.Helper()
	site := docsBlock(t, "deploy.md", "nginx", "secure_link_md5")
	for from, to := range replace {
		if n := strings.Count(site, from); n != 1 {
			t.Fatalf("docs/deploy.md: the nginx configuration has %q %d times, want once", from, n)
		}
		site = strings.Replace(site, from, to, 1)
	}
	return site
}

// startNginx runs nginx in the foreground with site in its http block and
// its files under prefix, and waits until it answers on addr. It is
// stopped (by its PID) when the test ends.
func startNginx(t *testing.T, bin, prefix, addr, site string) {
	t.Helper()
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody, who cannot read the
		// suite's private temporary folder.
		conf.WriteString("user root;\n")
	}
	fmt.Fprintf(&conf, `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr error;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s}
`, prefix, site)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &heronproc.LockedBuffer{}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath, "-e", "stderr")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nginx's log:\n%s", logs.Tail(30))
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("nginx exited before it answered: %v\n%s\nits configuration:\n%s", err, logs.Tail(30), conf.String())
		default:
		}
		resp, err := hc.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer on %s after 15 s: %v\n%s", addr, err, logs.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newKey writes a key as docs/deploy.md makes one (openssl rand -hex 32,
// with its newline) to path, and returns it.
func newKey(t *testing.T, path string) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return key
}

func newURLSigner(t *testing.T, key, scheme string, expiry time.Duration) *redirector.URLSigner {
	t.Helper()
	s, err := redirector.NewURLSigner([]byte(key), scheme, expiry)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func blobKey(t *testing.T, d digest.Digest) string {
	t.Helper()
	key, err := layout.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// do sends one request and returns the response and its body.
func do(t *testing.T, hc *http.Client, method, target string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp, body
}
