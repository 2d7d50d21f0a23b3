//go:build e2e

package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/internal/tlstest"
	"github.com/opencontainers/go-digest"
)

// tlsAccessYAML is the access file of TestTLS: alice (a password) pushes
// tls/**, ci (a client certificate's common name) pushes ci/**; each
// pulls the other's; anonymous callers get nothing.
const tlsAccessYAML = `rules:
  - repositories: ["tls/**"]
    users: {alice: [pull, push], ci: [pull]}
  - repositories: ["ci/**"]
    users: {ci: [pull, push], alice: [pull]}
`

// tlsServer is a heron serve over HTTPS with client certificates, and the
// files its clients trust it and present themselves with.
type tlsServer struct {
	srv  *heronproc.Server
	root string
	ca   *tlstest.CA
	// cert and key are the server's certificate files (--tls-cert,
	// --tls-key), replaced to rotate it.
	cert, key string
	// caPEM is the server CA's certificate, for SSL_CERT_FILE, oras
	// --ca-file and regctl --cacert.
	caPEM string
	// Certificate folders of containers-image (skopeo --cert-dir, podman
	// --cert-dir): trust holds ca.crt alone; ci also the client
	// certificate of user ci (client.cert, client.key); rogue one for ci
	// from a CA heron does not trust.
	trust, ci, rogue string
	// ciCert and ciKey are ci's certificate files, for oras.
	ciCert, ciKey string
	// rogueCert is the rogue certificate, for Go's own client.
	rogueCert tls.Certificate
	// serial is the serial of the server's first certificate.
	serial int64
}

func (ts *tlsServer) host() string { return ts.srv.Addr }

// watch counts t in the summary line and logs the server's last lines if
// t fails.
func (ts *tlsServer) watch(t *testing.T) {
	countResult(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("heron serve (tls) log, last lines:\n%s", ts.srv.Log.Tail(25))
		}
	})
}

// client is an HTTPS client that trusts the server's CA and presents
// certs.
func (ts *tlsServer) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ts.ca.Pool(), Certificates: certs},
		ForceAttemptHTTP2: true,
	}}
}

// manifestDigest asks (HEAD, over HTTPS, as cred) for repo:ref and returns
// the status and the Docker-Content-Digest.
func (ts *tlsServer) manifestDigest(t *testing.T, repo, ref string, cred *creds) (int, digest.Digest) {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, ts.srv.Base()+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestAccept)
	if h := cred.authHeader(); h != nil {
		req.Header.Set(h[0], h[1])
	}
	resp, err := ts.client().Do(req)
	if err != nil {
		t.Fatalf("HEAD %s: %v", req.URL, err)
	}
	resp.Body.Close()
	return resp.StatusCode, digest.Digest(resp.Header.Get("Docker-Content-Digest"))
}

func (ts *tlsServer) wantManifest(t *testing.T, repo, ref string, want digest.Digest) {
	t.Helper()
	if st, d := ts.manifestDigest(t, repo, ref, alice); st != http.StatusOK || d != want {
		t.Errorf("HEAD https://%s/v2/%s/manifests/%s: %d, digest %q; want 200, %s", ts.host(), repo, ref, st, d, want)
	}
}

// crane is a call of crane that trusts the server's CA through
// SSL_CERT_FILE (Go's system roots), logged in as cred.
func (ts *tlsServer) crane(t *testing.T, cred *creds) *call {
	t.Helper()
	c := need(t, nil, "crane")
	c.env = []string{"SSL_CERT_FILE=" + ts.caPEM}
	dockerLogin(t, c, ts.host(), cred)
	return c
}

// regctl is a call of regctl that trusts the server's CA through its
// registry configuration (registry set --cacert), logged in as cred.
func (ts *tlsServer) regctl(t *testing.T, cred *creds) *call {
	t.Helper()
	c := need(t, nil, "regctl")
	pem, err := os.ReadFile(ts.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	dockerLogin(t, c, ts.host(), cred)
	c.run("registry", "set", ts.host(), "--tls", "enabled", "--cacert", string(pem))
	return c
}

// skopeo runs skopeo with the suite's policy and registries.conf.
func skopeoArgs(args ...string) []string {
	return append([]string{"--policy", suite.policy, "--registries-conf", suite.registries}, args...)
}

// pullBack pulls ref over HTTPS with crane and regctl (as cred) into OCI
// layouts and checks every manifest and blob of the fixture in them.
func (ts *tlsServer) pullBack(t *testing.T, ref string, f *fixtures.Fixture, cred *creds) {
	t.Helper()
	c := ts.crane(t, cred)
	dir := c.path("crane-layout")
	c.run("pull", "--format", "oci", ref, dir)
	if err := checkOCILayout(dir, f); err != nil {
		t.Errorf("crane pull %s: %v", ref, err)
	}
	r := ts.regctl(t, cred)
	dir = r.path("regctl-layout")
	r.run("image", "copy", ref, "ocidir://"+dir+":e2e")
	if err := checkOCILayout(dir, f); err != nil {
		t.Errorf("regctl image copy %s: %v", ref, err)
	}
}

// writeFiles writes each name (in dir) with its data.
func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// startTLSServer starts heron serve --push over HTTPS on an empty root,
// with a server certificate for 127.0.0.1 from a CA of its own, client
// certificates verified against another (--tls-client-ca), alice's
// password (--htpasswd) and tlsAccessYAML.
func startTLSServer(t *testing.T) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	htpasswd, _, _ := authFiles(t, dir)
	access := filepath.Join(dir, "tls-access.yaml")
	ts := &tlsServer{
		root:   filepath.Join(dir, "tree"),
		ca:     tlstest.NewCA(t, "heron e2e server CA"),
		cert:   filepath.Join(dir, "tls", "tls.crt"),
		key:    filepath.Join(dir, "tls", "tls.key"),
		caPEM:  filepath.Join(dir, "ca.pem"),
		trust:  filepath.Join(dir, "certs-trust"),
		ci:     filepath.Join(dir, "certs-ci"),
		rogue:  filepath.Join(dir, "certs-rogue"),
		ciCert: filepath.Join(dir, "certs-ci", "client.cert"),
		ciKey:  filepath.Join(dir, "certs-ci", "client.key"),
	}
	clients := tlstest.NewCA(t, "heron e2e client CA")
	rogue := tlstest.NewCA(t, "heron e2e rogue CA")
	cert, key, serial := ts.ca.Issue(t, "127.0.0.1", true)
	ts.serial = serial
	ciCert, ciKey, _ := clients.Issue(t, "ci", false)
	rogueCert, rogueKey, _ := rogue.Issue(t, "ci", false)
	var err error
	if ts.rogueCert, err = tls.X509KeyPair(rogueCert, rogueKey); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, filepath.Join(dir, "tls"), map[string][]byte{"tls.crt": cert, "tls.key": key, "clients-ca.pem": clients.PEM})
	writeFiles(t, dir, map[string][]byte{"ca.pem": ts.ca.PEM, "tls-access.yaml": []byte(tlsAccessYAML)})
	writeFiles(t, ts.trust, map[string][]byte{"ca.crt": ts.ca.PEM})
	writeFiles(t, ts.ci, map[string][]byte{"ca.crt": ts.ca.PEM, "client.cert": ciCert, "client.key": ciKey})
	writeFiles(t, ts.rogue, map[string][]byte{"ca.crt": ts.ca.PEM, "client.cert": rogueCert, "client.key": rogueKey})

	command := func(args ...string) *exec.Cmd { return exec.Command(suite.heron, args...) }
	ts.srv, err = heronproc.StartServeTLS("heron serve (tls)", command, ts.root, 30*time.Second,
		&tls.Config{RootCAs: ts.ca.Pool()},
		"--push", "--htpasswd", htpasswd, "--access", access,
		"--tls-cert", ts.cert, "--tls-key", ts.key, "--tls-client-ca", filepath.Join(dir, "tls", "clients-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ts.srv.Stop(); err != nil {
			t.Errorf("stop heron serve (tls): %v", err)
		}
	})
	return ts
}

// TestTLS runs the real clients against heron serve --push over HTTPS,
// each trusting the test CA its own way and none with its switch that
// turns verification off: pushes with a password, pushes with a client
// certificate alone (skopeo, podman, oras), refusals (a certificate of
// another CA fails the handshake; no certificate and no password cannot
// push; ci cannot push where the access file gives it pull only), and a
// rotation of the server's certificate while it serves.
func TestTLS(t *testing.T) {
	ts := startTLSServer(t)
	ro := directMode(t)
	var pushed []string

	t.Run("untrusted", func(t *testing.T) {
		// Without the CA, every client refuses the server's certificate:
		// the trust below is what makes them work.
		ts.watch(t)
		c := need(t, nil, "crane")
		out := c.fail("digest", ts.host()+"/tls/none:v1")
		if !strings.Contains(out, "x509") {
			t.Errorf("crane without SSL_CERT_FILE: the error does not say x509:\n%s", out)
		}
		s := need(t, nil, "skopeo")
		out = s.fail(skopeoArgs("inspect", "--raw", "docker://"+ts.host()+"/tls/none:v1")...)
		if !strings.Contains(out, "x509") {
			t.Errorf("skopeo without --cert-dir: the error does not say x509:\n%s", out)
		}
	})

	t.Run("skopeo --dest-cert-dir --dest-creds", func(t *testing.T) {
		ts.watch(t)
		c := need(t, nil, "skopeo")
		f := mustFixture(t, fixtures.NameOCIIndex)
		dst := ts.host() + "/tls/skopeo:v1"
		c.run(skopeoArgs("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
			"--dest-cert-dir", ts.trust, "--dest-creds", alice.String(),
			"docker://"+targetFor(f).ref(ro.host(), f), "docker://"+dst)...)
		pushed = append(pushed, "tls/skopeo")
		ts.wantManifest(t, "tls/skopeo", "v1", f.Digest)
		raw := c.run(skopeoArgs("inspect", "--raw", "--cert-dir", ts.trust, "--creds", alice.String(), "docker://"+dst)...)
		if got := digest.FromBytes(raw); got != f.Digest {
			t.Errorf("skopeo inspect --raw over HTTPS: %s, want %s", got, f.Digest)
		}
		dir := c.path("oci")
		c.run(skopeoArgs("copy", "--all", "--preserve-digests", "--src-cert-dir", ts.trust, "--src-creds", alice.String(), "docker://"+dst, "oci:"+dir+":e2e")...)
		if err := checkOCILayout(dir, f); err != nil {
			t.Errorf("skopeo copy back: %v", err)
		}
		ts.pullBack(t, dst, f, alice)
	})

	t.Run("crane SSL_CERT_FILE", func(t *testing.T) {
		ts.watch(t)
		c := ts.crane(t, nil)
		f := mustFixture(t, fixtures.NameLargeImage)
		// The source is the suite's plain-HTTP server: --insecure for
		// that pull only.
		dir := c.path("layout")
		c.run("pull", "--insecure", "--format", "oci", targetFor(f).ref(ro.host(), f), dir)
		c.run("auth", "login", ts.host(), "-u", alice.user, "-p", alice.pass)
		dst := ts.host() + "/tls/crane:v1"
		out := c.run("push", dir, dst)
		pushed = append(pushed, "tls/crane")
		if got, want := strings.TrimSpace(string(out)), ts.host()+"/tls/crane@"+f.Digest.String(); got != want {
			t.Errorf("crane push printed %q, want %q", got, want)
		}
		c.equalDigest("crane digest "+dst, c.run("digest", dst), f.Digest)
		ts.wantManifest(t, "tls/crane", "v1", f.Digest)
		ts.pullBack(t, dst, f, alice)
	})

	t.Run("oras --ca-file", func(t *testing.T) {
		ts.watch(t)
		c := need(t, nil, "oras")
		payload := []byte(`{"e2e":"tls"}`)
		writeFiles(t, c.dir, map[string][]byte{"payload.json": payload, "sig.txt": []byte("signed over TLS\n")})
		login := []string{"--ca-file", ts.caPEM, "--username", alice.user, "--password", alice.pass}
		ref := ts.host() + "/tls/oras:v1"
		var art, sig struct {
			Digest digest.Digest `json:"digest"`
		}
		out := c.run(append([]string{"push", "--format", "json", "--artifact-type", "application/vnd.heron.e2e.tls+json", ref, "payload.json:application/vnd.heron.e2e.payload.v1+json"}, login...)...)
		if err := json.Unmarshal(out, &art); err != nil || art.Digest == "" {
			t.Fatalf("oras push: %v\n%s", err, out)
		}
		pushed = append(pushed, "tls/oras")
		out = c.run(append([]string{"attach", "--format", "json", "--artifact-type", "application/vnd.heron.e2e.signature", ref, "sig.txt:text/plain"}, login...)...)
		if err := json.Unmarshal(out, &sig); err != nil || sig.Digest == "" {
			t.Fatalf("oras attach: %v\n%s", err, out)
		}
		out = c.run(append([]string{"discover", "--format", "json", ref}, login...)...)
		var tree struct {
			Referrers []referrer `json:"referrers"`
		}
		if err := json.Unmarshal(out, &tree); err != nil {
			t.Fatalf("oras discover: %v\n%s", err, out)
		}
		if got, want := referrerList(tree.Referrers), []string{sig.Digest.String() + " application/vnd.heron.e2e.signature"}; !slices.Equal(got, want) {
			t.Errorf("oras discover: %q, want %q", got, want)
		}
		ts.wantManifest(t, "tls/oras", "v1", art.Digest)
		c.run(append([]string{"pull", "-o", c.path("out"), ref}, login...)...)
		if b, err := os.ReadFile(filepath.Join(c.path("out"), "payload.json")); err != nil || !bytes.Equal(b, payload) {
			t.Errorf("oras pull: payload.json %q, %v; want %q", b, err, payload)
		}
	})

	t.Run("regctl registry set --cacert", func(t *testing.T) {
		ts.watch(t)
		c := ts.regctl(t, alice)
		f := mustFixture(t, fixtures.NameDockerImage)
		dst := ts.host() + "/tls/regctl:v1"
		c.run("--host", "reg="+ro.host()+",tls=disabled", "image", "copy", targetFor(f).ref(ro.host(), f), dst)
		pushed = append(pushed, "tls/regctl")
		c.equalDigest("regctl image digest "+dst, c.run("image", "digest", dst), f.Digest)
		ts.wantManifest(t, "tls/regctl", "v1", f.Digest)
		ts.pullBack(t, dst, f, alice)
	})

	t.Run("podman --cert-dir --creds", func(t *testing.T) {
		ts.watch(t)
		c := need(t, nil, "podman")
		ts.podmanPush(t, c, ro, "tls/podman", ts.trust, alice)
		pushed = append(pushed, "tls/podman")
	})

	// A client certificate alone (CN=ci), no password.
	t.Run("client certificate/skopeo", func(t *testing.T) {
		ts.watch(t)
		c := need(t, nil, "skopeo")
		f := mustFixture(t, fixtures.NameOCIImage)
		dst := ts.host() + "/ci/skopeo:v1"
		c.run(skopeoArgs("copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-cert-dir", ts.ci,
			"docker://"+targetFor(f).ref(ro.host(), f), "docker://"+dst)...)
		pushed = append(pushed, "ci/skopeo")
		ts.wantManifest(t, "ci/skopeo", "v1", f.Digest)
		dir := c.path("oci")
		c.run(skopeoArgs("copy", "--all", "--preserve-digests", "--src-cert-dir", ts.ci, "docker://"+dst, "oci:"+dir+":e2e")...)
		if err := checkOCILayout(dir, f); err != nil {
			t.Errorf("skopeo copy back with the client certificate: %v", err)
		}
	})
	t.Run("client certificate/podman", func(t *testing.T) {
		ts.watch(t)
		c := need(t, nil, "podman")
		ts.podmanPush(t, c, ro, "ci/podman", ts.ci, nil)
		pushed = append(pushed, "ci/podman")
	})
	t.Run("client certificate/oras", func(t *testing.T) {
		ts.watch(t)
		c := need(t, nil, "oras")
		payload := []byte(`{"e2e":"mtls"}`)
		writeFiles(t, c.dir, map[string][]byte{"payload.json": payload})
		mtls := []string{"--ca-file", ts.caPEM, "--cert-file", ts.ciCert, "--key-file", ts.ciKey}
		ref := ts.host() + "/ci/oras:v1"
		var art struct {
			Digest digest.Digest `json:"digest"`
		}
		out := c.run(append([]string{"push", "--format", "json", "--artifact-type", "application/vnd.heron.e2e.tls+json", ref, "payload.json:application/vnd.heron.e2e.payload.v1+json"}, mtls...)...)
		if err := json.Unmarshal(out, &art); err != nil || art.Digest == "" {
			t.Fatalf("oras push: %v\n%s", err, out)
		}
		pushed = append(pushed, "ci/oras")
		ts.wantManifest(t, "ci/oras", "v1", art.Digest)
		c.run(append([]string{"pull", "-o", c.path("out"), ref}, mtls...)...)
		if b, err := os.ReadFile(filepath.Join(c.path("out"), "payload.json")); err != nil || !bytes.Equal(b, payload) {
			t.Errorf("oras pull: payload.json %q, %v; want %q", b, err, payload)
		}
	})

	t.Run("refused", func(t *testing.T) {
		ts.watch(t)
		// A certificate of a CA heron does not trust fails the handshake,
		// for a client that sends it: curl (OpenSSL), and Go's client
		// made to send it.
		cu := need(t, nil, "curl")
		curl := []string{"--silent", "--show-error", "--output", "/dev/null", "--write-out", "%{http_code}", "--cacert", ts.caPEM}
		rogueCert, rogueKey := filepath.Join(ts.rogue, "client.cert"), filepath.Join(ts.rogue, "client.key")
		// Over TLS 1.3 the client finishes its handshake before the
		// server checks the certificate, and curl sees the connection
		// closed; over TLS 1.2 it sees the server's alert.
		cu.fail(append(curl, "--cert", rogueCert, "--key", rogueKey, ts.srv.Base()+"/v2/")...)
		out := cu.fail(append(curl, "--tls-max", "1.2", "--cert", rogueCert, "--key", rogueKey, ts.srv.Base()+"/v2/")...)
		if !strings.Contains(out, "alert") {
			t.Errorf("curl --tls-max 1.2 with a certificate of another CA: the error names no TLS alert:\n%s", out)
		}
		if got := strings.TrimSpace(string(cu.run(append(curl, "--cert", ts.ciCert, "--key", ts.ciKey, ts.srv.Base()+"/v2/")...))); got != "200" {
			t.Errorf("curl with ci's certificate: GET /v2/ answered %s, want 200", got)
		}
		sends := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:              ts.ca.Pool(),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &ts.rogueCert, nil },
		}}}
		if resp, err := sends.Get(ts.srv.Base() + "/v2/"); err == nil {
			resp.Body.Close()
			t.Errorf("GET /v2/ with a certificate of another CA: %s, want a failed handshake", resp.Status)
		} else if !strings.Contains(err.Error(), "tls:") {
			t.Errorf("GET /v2/ with a certificate of another CA: %v; want a TLS alert", err)
		}
		// Go's client as Go programs use it (tls.Config.Certificates)
		// sends no certificate the server's request does not name the CA
		// of, and is anonymous; with ci's certificate it is ci.
		for _, tc := range []struct {
			name string
			cert tls.Certificate
			want int
		}{
			{"a certificate of another CA", ts.rogueCert, http.StatusUnauthorized},
			{"ci's certificate", must(tls.LoadX509KeyPair(ts.ciCert, ts.ciKey)), http.StatusOK},
		} {
			resp, err := ts.client(tc.cert).Get(ts.srv.Base() + "/v2/")
			if err != nil {
				t.Errorf("GET /v2/ with %s (Certificates): %v", tc.name, err)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET /v2/ with %s (Certificates): %s, want %d", tc.name, resp.Status, tc.want)
			}
		}

		f := mustFixture(t, fixtures.NameOCIImage)
		src := "docker://" + targetFor(f).ref(ro.host(), f)
		s := need(t, nil, "skopeo")
		// skopeo and podman, like Go's client, withhold a certificate of
		// another CA: they push as anonymous callers, and are refused.
		out = s.fail(skopeoArgs("copy", "--src-tls-verify=false", "--dest-cert-dir", ts.rogue, src, "docker://"+ts.host()+"/ci/refused:v1")...)
		if !strings.Contains(out, "unauthorized") {
			t.Errorf("skopeo with a certificate of another CA: the error does not say unauthorized:\n%s", out)
		}
		// No certificate, no password.
		s.fail(skopeoArgs("copy", "--src-tls-verify=false", "--dest-cert-dir", ts.trust, src, "docker://"+ts.host()+"/ci/refused:v1")...)
		// ci may pull tls/**, not push it: 403, and the log names ci.
		out = s.fail(skopeoArgs("copy", "--src-tls-verify=false", "--dest-cert-dir", ts.ci, src, "docker://"+ts.host()+"/tls/refused:v1")...)
		if !strings.Contains(out, "denied") {
			t.Errorf("skopeo push by ci to tls/refused: the error does not say denied:\n%s", out)
		}
		if !slices.ContainsFunc(strings.Split(ts.srv.Log.String(), "\n"), func(l string) bool {
			return strings.Contains(l, "repository=tls/refused status=403") && strings.HasSuffix(l, " user=ci")
		}) {
			t.Errorf("no 403 of tls/refused naming user=ci in the server's log")
		}
		c := ts.crane(t, nil)
		layoutDir := c.path("layout")
		c.run("pull", "--insecure", "--format", "oci", targetFor(f).ref(ro.host(), f), layoutDir)
		c.fail("push", layoutDir, ts.host()+"/ci/refused:v1")
		if _, err := exec.LookPath("podman"); err == nil || suite.ci {
			p := need(t, nil, "podman")
			global := podmanGlobal(t, p, "storage")
			p.run(append(global, "pull", "--tls-verify=false", "--signature-policy", suite.policy, targetFor(f).ref(ro.host(), f))...)
			for _, dir := range []string{ts.rogue, ts.trust} {
				p.fail(append(global, "push", "--cert-dir", dir, targetFor(f).ref(ro.host(), f), "docker://"+ts.host()+"/ci/refused:v1")...)
			}
		}
		for _, repo := range []string{"ci/refused", "tls/refused"} {
			if b := repositoryFile(t, ts.root, repo); b != nil {
				t.Errorf("refused pushes left a repository file for %s:\n%s", repo, b)
			}
		}
		// Anonymous callers pull nothing here, over HTTPS as over HTTP.
		if st, _ := ts.manifestDigest(t, "ci/skopeo", "v1", nil); st != http.StatusUnauthorized {
			t.Errorf("anonymous HEAD ci/skopeo:v1: %d, want 401", st)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		ts.watch(t)
		served := func() (*big.Int, error) {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", ts.host(), &tls.Config{RootCAs: ts.ca.Pool()})
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
		}
		if got, err := served(); err != nil || got.Int64() != ts.serial {
			t.Fatalf("before the rotation: serial %v, %v; want %d", got, err, ts.serial)
		}
		cert, key, serial := ts.ca.Issue(t, "127.0.0.1", true)
		// The key first, then the certificate, each renamed over the old
		// file: heron may see the pair mismatched for a moment, and must
		// serve on with the old one until the new pair loads.
		tlstest.ReplaceFile(t, ts.key, key)
		tlstest.ReplaceFile(t, ts.cert, cert)
		want := big.NewInt(serial)
		var got *big.Int
		deadline := time.Now().Add(10 * time.Second)
		start := time.Now()
		for {
			var err error
			if got, err = served(); err != nil {
				t.Errorf("TLS dial while the files are replaced: %v", err)
			} else if got.Cmp(want) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the server still presents serial %v 10s after its files were replaced; want %v", got, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("new serial %v served %s after the files were replaced", want, time.Since(start).Round(time.Millisecond))
		if !strings.Contains(ts.srv.Log.String(), "tls: reloaded the certificate") {
			t.Errorf("heron did not log the reload")
		}
		// The clients go on pulling, and pushing with a certificate.
		f := mustFixture(t, fixtures.NameLargeImage)
		c := ts.crane(t, alice)
		dir := c.path("layout")
		c.run("pull", "--format", "oci", ts.host()+"/tls/crane:v1", dir)
		if err := checkOCILayout(dir, f); err != nil {
			t.Errorf("crane pull after the rotation: %v", err)
		}
		s := need(t, nil, "skopeo")
		img := mustFixture(t, fixtures.NameOCIImage)
		raw := s.run(skopeoArgs("inspect", "--raw", "--cert-dir", ts.ci, "docker://"+ts.host()+"/ci/skopeo:v1")...)
		if got := digest.FromBytes(raw); got != img.Digest {
			t.Errorf("skopeo inspect --raw with ci's certificate after the rotation: %s, want %s", got, img.Digest)
		}
	})

	t.Run("heron verify and ls", func(t *testing.T) {
		ts.watch(t)
		verifyTree(t, ts.root)
		want := slices.Clone(pushed)
		slices.Sort(want)
		if got := heronLs(t, ts.root); !slices.Equal(got, want) {
			t.Errorf("heron ls: %q, want %q", got, want)
		}
	})
}

// podmanPush pulls oci-image from the suite's server into a store of
// podman's own, pushes it to repo:v1 over HTTPS with --cert-dir dir (and
// --creds cred, unless nil) and pulls it back into another store: the
// same image (the fixture's config), with the digest podman pushed.
func (ts *tlsServer) podmanPush(t *testing.T, c *call, ro *mode, repo, dir string, cred *creds) {
	t.Helper()
	f := mustFixture(t, fixtures.NameOCIImage)
	img, err := platformImage(f, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	var auth []string
	if cred != nil {
		auth = []string{"--creds", cred.String()}
	}
	global := podmanGlobal(t, c, "storage")
	src := targetFor(f).ref(ro.host(), f)
	c.run(append(global, "pull", "--tls-verify=false", "--signature-policy", suite.policy, src)...)
	dst := ts.host() + "/" + repo + ":v1"
	c.run(append(append(global, "push", "--cert-dir", dir, "--digestfile", c.path("digest"), src, "docker://"+dst), auth...)...)
	b, err := os.ReadFile(c.path("digest"))
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest(strings.TrimSpace(string(b)))
	ts.wantManifest(t, repo, "v1", d)
	global = podmanGlobal(t, c, "storage2")
	c.run(append(append(global, "pull", "--cert-dir", dir, "--signature-policy", suite.policy, dst), auth...)...)
	out := c.run(append(global, "image", "inspect", "--format", "{{.ID}} {{.Digest}}", dst)...)
	if got, want := strings.TrimSpace(string(out)), img.Config.Digest.Encoded()+" "+d.String(); got != want {
		t.Errorf("podman image inspect of the pulled-back image: %q, want %q", got, want)
	}
}
