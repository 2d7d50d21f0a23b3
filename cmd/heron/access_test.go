package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/tlstest"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/redirector/auth"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
)

// accessServer is heron serve --push --delete with users, tokens and an
// access file, over a fresh tree, with a blob base URL (a CDN nobody signs
// for).
type accessServer struct {
	*pushServer
	now func() time.Time
	adv func(time.Duration)
	log *syncBuffer // the access log, JSON
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const testAccess = `groups:
  devs: [alice]
rules:
  - repositories: ["public/**"]
    anonymous: [pull]
    groups: {devs: [pull, push, delete]}
  - repositories: ["team/**"]
    groups: {devs: [pull, push, delete]}
    users: {ci: [pull, push]}
`

func newAccessServer(t *testing.T, extra ...redirector.Option) *accessServer {
	t.Helper()
	dir := t.TempDir()
	var lines []string
	for _, u := range []string{"alice", "bob", "ci"} {
		h, err := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, u+":"+string(h))
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"htpasswd":    strings.Join(lines, "\n") + "\n",
		"access.yaml": testAccess,
		"key.pem":     string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a, err := auth.New(auth.Options{
		HtpasswdFile:  filepath.Join(dir, "htpasswd"),
		AccessFile:    filepath.Join(dir, "access.yaml"),
		TokenKeyFiles: []string{filepath.Join(dir, "key.pem")},
		Now:           clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	root := filepath.Join(dir, "tree")
	pub := publish.New(store.NewFS(layout.Root(root)))
	if err := pub.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := redirector.New(root,
		append([]redirector.Option{
			redirector.WithAccessLog(slog.New(slog.NewJSONHandler(logs, nil))),
			redirector.WithPusher(pusherAdapter{pub}, redirector.PushOptions{Delete: true}),
			redirector.WithAuth(a),
			redirector.WithRedirectBase("https://cdn.example.com/tree"),
		}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &accessServer{
		pushServer: &pushServer{t: t, url: hs.URL, root: root},
		now:        clock,
		log:        logs,
		adv:        func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() },
	}
}

// basic is the Authorization header of user (password user-pw).
func basic(user string) []string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, user+"-pw")
	return []string{"Authorization", req.Header.Get("Authorization")}
}

// token asks /token for scope as user ("" anonymous) and returns the
// Authorization header of the token.
func (s *accessServer) token(user, scope string) []string {
	s.t.Helper()
	var h []string
	if user != "" {
		h = basic(user)
	}
	resp, body := s.do("GET", "/token?service=heron&scope="+url.QueryEscape(scope), nil, h...)
	want(s.t, "token for "+user, resp, body, http.StatusOK, "")
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.Token == "" {
		s.t.Fatalf("token: %s", body)
	}
	return []string{"Authorization", "Bearer " + tr.Token}
}

// pushImage pushes a one-layer image to name:tag as user (basic) and
// returns the manifest's digest and its layer's.
func (s *accessServer) pushImage(user, name, tag, seed string) (digest.Digest, digest.Digest) {
	s.t.Helper()
	m, config, layer, _ := testImage(seed)
	for _, b := range [][]byte{config, layer} {
		resp, body := s.do("POST", "/v2/"+name+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), b, basic(user)...)
		want(s.t, "blob upload by "+user, resp, body, http.StatusCreated, "")
	}
	resp, body := s.do("PUT", "/v2/"+name+"/manifests/"+tag, m, append(basic(user), "Content-Type", ocispec.MediaTypeImageManifest)...)
	want(s.t, "manifest push by "+user, resp, body, http.StatusCreated, "")
	return digest.FromBytes(m), digest.FromBytes(layer)
}

// answer is what a caller can observe of an answer.
func answer(resp *http.Response, body []byte) string {
	return resp.Status + "|" + resp.Header.Get("WWW-Authenticate") + "|" + resp.Header.Get("Location") + "|" + string(body)
}

func TestAccess(t *testing.T) {
	s := newAccessServer(t)
	teamM, teamLayer := s.pushImage("alice", "team/app", "v1", "team")
	pubM, pubLayer := s.pushImage("alice", "public/app", "v1", "public")

	// The access log names who pushed.
	if !strings.Contains(s.log.String(), `"method":"PUT","path":"/v2/team/app/manifests/v1","route":"manifest","repository":"team/app","status":201`) ||
		!strings.Contains(s.log.String(), `"user":"alice"`) {
		t.Errorf("access log:\n%s", s.log.String())
	}
	// And who was refused: bob may not push team/**.
	resp, body := s.do("POST", "/v2/team/app/blobs/uploads/", nil, basic("bob")...)
	want(t, "bob's upload to team/app", resp, body, http.StatusForbidden, redirector.CodeDenied)
	if !strings.Contains(s.log.String(), `"method":"POST","path":"/v2/team/app/blobs/uploads/","route":"upload","repository":"team/app","status":403`) ||
		!strings.Contains(s.log.String(), `"user":"bob"`) {
		t.Errorf("the access log does not name the user refused:\n%s", s.log.String())
	}

	t.Run("base", func(t *testing.T) {
		resp, body := s.do("GET", "/v2/", nil)
		want(t, "anonymous /v2/", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		if c := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, `Bearer realm="http://`) || !strings.Contains(c, `/token"`) {
			t.Fatalf("challenge %q", c)
		}
		resp, body = s.do("GET", "/v2/", nil, basic("bob")...)
		want(t, "/v2/ as bob", resp, body, http.StatusOK, "")
		resp, body = s.do("GET", "/v2/", nil, "Authorization", "Basic "+strings.Repeat("x", 8))
		want(t, "/v2/ with bad credentials", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		resp, body = s.do("GET", "/v2/public/app/manifests/v1", nil, "Authorization", "Basic "+b64("alice:wrong"))
		want(t, "public manifest with a wrong password", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
	})

	t.Run("anonymous", func(t *testing.T) {
		resp, body := s.do("GET", "/v2/public/app/manifests/v1", nil)
		want(t, "public manifest", resp, body, http.StatusOK, "")
		resp, body = s.do("GET", "/v2/public/app/blobs/"+pubLayer.String(), nil)
		want(t, "public blob", resp, body, http.StatusTemporaryRedirect, "")
		// A protected repository is probed every way: every answer is
		// the one of a repository that does not exist.
		for _, target := range []string{"/manifests/v1", "/manifests/" + teamM.String(), "/blobs/" + teamLayer.String(),
			"/tags/list", "/referrers/" + teamM.String(), "/blobs/uploads/x"} {
			for _, method := range []string{"GET", "HEAD"} {
				got := answer(s.do(method, "/v2/team/app"+target, nil))
				absent := answer(s.do(method, "/v2/team/nothing"+target, nil))
				absent = strings.ReplaceAll(absent, "team/nothing", "team/app")
				if got != absent || !strings.HasPrefix(got, "401") {
					t.Errorf("%s %s:\nprotected: %s\nabsent:    %s", method, target, got, absent)
				}
			}
		}
		// Writes too.
		resp, body = s.do("POST", "/v2/public/app/blobs/uploads/", nil)
		want(t, "anonymous push", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		if c := resp.Header.Get("WWW-Authenticate"); !strings.Contains(c, `scope="repository:public/app:pull,push"`) {
			t.Fatalf("push challenge %q", c)
		}
		resp, body = s.do("GET", "/v2/_catalog", nil)
		want(t, "anonymous catalog", resp, body, http.StatusOK, "")
		if string(body) != `{"repositories":["public/app"]}` {
			t.Fatalf("anonymous catalog: %s", body)
		}
		// A public name that does not exist: the same 401 as a
		// protected one's, not a 404 that would tell them apart.
		resp, body = s.do("GET", "/v2/public/nothing/manifests/v1", nil)
		want(t, "missing public repository", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
	})

	t.Run("users", func(t *testing.T) {
		// bob may pull public/ only: team/app is, for him, a repository
		// that does not exist.
		for _, target := range []string{"/manifests/v1", "/blobs/" + teamLayer.String(), "/tags/list", "/referrers/" + teamM.String()} {
			got := answer(s.do("GET", "/v2/team/app"+target, nil, basic("bob")...))
			absent := strings.ReplaceAll(answer(s.do("GET", "/v2/team/nothing"+target, nil, basic("alice")...)), "team/nothing", "team/app")
			if got != absent {
				t.Errorf("bob GET %s:\n%s\nabsent: %s", target, got, absent)
			}
		}
		resp, body := s.do("POST", "/v2/team/app/blobs/uploads/", nil, basic("bob")...)
		want(t, "bob pushes", resp, body, http.StatusForbidden, redirector.CodeDenied)
		// ci may push to team/ but not delete.
		s.pushImage("ci", "team/ci", "v1", "ci")
		resp, body = s.do("DELETE", "/v2/team/ci/manifests/v1", nil, basic("ci")...)
		want(t, "ci deletes", resp, body, http.StatusForbidden, redirector.CodeDenied)
		// alice reads team/app; its blobs are sent, not redirected to a
		// URL anyone could reuse.
		resp, body = s.do("GET", "/v2/team/app/blobs/"+teamLayer.String(), nil, basic("alice")...)
		want(t, "alice's protected blob", resp, body, http.StatusOK, "")
		if digest.FromBytes(body) != teamLayer {
			t.Fatalf("protected blob: wrong bytes")
		}
		for user, wantCatalog := range map[string]string{
			"alice": `{"repositories":["public/app","team/app","team/ci"]}`,
			"ci":    `{"repositories":["public/app","team/app","team/ci"]}`,
			"bob":   `{"repositories":["public/app"]}`,
		} {
			resp, body := s.do("GET", "/v2/_catalog", nil, basic(user)...)
			want(t, "catalog of "+user, resp, body, http.StatusOK, "")
			if string(body) != wantCatalog {
				t.Errorf("catalog of %s: %s, want %s", user, body, wantCatalog)
			}
		}
		// The log line of a catalog request names its user too.
		named := false
		for _, line := range strings.Split(s.log.String(), "\n") {
			named = named || strings.Contains(line, `"path":"/v2/_catalog"`) && strings.Contains(line, `"user":"bob"`)
		}
		if !named {
			t.Errorf("no log line of bob's catalog request names him:\n%s", s.log.String())
		}
		resp, body = s.do("GET", "/v2/_catalog?n=1", nil, basic("alice")...)
		if string(body) != `{"repositories":["public/app"]}` || !strings.Contains(resp.Header.Get("Link"), "last=public%2Fapp") && !strings.Contains(resp.Header.Get("Link"), "last=public/app") {
			t.Errorf("catalog page: %s, Link %q", body, resp.Header.Get("Link"))
		}
	})

	t.Run("mounts", func(t *testing.T) {
		// alice may pull team/app: she mounts from it.
		resp, body := s.do("POST", "/v2/public/other/blobs/uploads/?mount="+teamLayer.String()+"&from=team/app", nil, basic("alice")...)
		want(t, "mount by alice", resp, body, http.StatusCreated, "")
		// Without from, with an access file: a session, never a blob
		// found by its digest alone.
		resp, body = s.do("POST", "/v2/public/third/blobs/uploads/?mount="+teamLayer.String(), nil, basic("alice")...)
		want(t, "mount without from", resp, body, http.StatusAccepted, "")
		// A manifest may not reference what its repository does not
		// list, though the tree holds it.
		m, config, _, _ := testImage("team")
		resp, body = s.do("POST", "/v2/public/fourth/blobs/uploads/?digest="+digest.FromBytes(config).String(), config, basic("alice")...)
		want(t, "config upload", resp, body, http.StatusCreated, "")
		resp, body = s.do("PUT", "/v2/public/fourth/manifests/v1", m, append(basic("alice"), "Content-Type", ocispec.MediaTypeImageManifest)...)
		want(t, "manifest referencing another repository's layer", resp, body, http.StatusBadRequest, redirector.CodeManifestBlobUnknown)
	})

	t.Run("tokens", func(t *testing.T) {
		tok := s.token("alice", "repository:team/app:pull")
		resp, body := s.do("GET", "/v2/team/app/manifests/v1", nil, tok...)
		want(t, "pull with a token", resp, body, http.StatusOK, "")
		// Another repository: 401, asking for its scope.
		resp, body = s.do("GET", "/v2/team/ci/manifests/v1", nil, tok...)
		want(t, "token of another repository", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		if c := resp.Header.Get("WWW-Authenticate"); !strings.Contains(c, `scope="repository:team/ci:pull"`) || !strings.Contains(c, `error="insufficient_scope"`) {
			t.Fatalf("challenge %q", c)
		}
		// Another action.
		resp, body = s.do("POST", "/v2/team/app/blobs/uploads/", nil, tok...)
		want(t, "token of another action", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		// bob asks for team/app: granted nothing, refused.
		bobTok := s.token("bob", "repository:team/app:pull")
		resp, body = s.do("GET", "/v2/team/app/manifests/v1", nil, bobTok...)
		want(t, "bob's token", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		// Anonymous tokens pull public repositories.
		anon := s.token("", "repository:public/app:pull")
		resp, body = s.do("GET", "/v2/public/app/manifests/"+pubM.String(), nil, anon...)
		want(t, "anonymous token", resp, body, http.StatusOK, "")
		// Expired.
		s.adv(10 * time.Minute)
		resp, body = s.do("GET", "/v2/team/app/manifests/v1", nil, tok...)
		want(t, "expired token", resp, body, http.StatusUnauthorized, redirector.CodeUnauthorized)
		if c := resp.Header.Get("WWW-Authenticate"); !strings.Contains(c, `error="invalid_token"`) {
			t.Fatalf("expired: challenge %q", c)
		}
		resp, body = s.do("GET", "/token?service=heron&scope=repository:team/app:pull", nil, "Authorization", "Basic "+b64("alice:wrong"))
		want(t, "token with a wrong password", resp, body, http.StatusUnauthorized, "")
	})
}

func b64(s string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	u, p, _ := strings.Cut(s, ":")
	req.SetBasicAuth(u, p)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// TestServeClientCertPush: heron serve --push over TLS with client
// certificates as the only way to authenticate: the certificate's common
// name is the user the access file names; a caller without one may pull
// public repositories only, and may not push.
func TestServeClientCertPush(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeServerCert(t, t.TempDir())
	clients := tlstest.NewCA(t, "clients")
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	tlstest.ReplaceFile(t, caFile, clients.PEM)
	access := filepath.Join(t.TempDir(), "access.yaml")
	tlstest.ReplaceFile(t, access, []byte("rules:\n  - repositories: [\"ci/**\"]\n    users: {ci: [pull, push]}\n"))
	s := startServe(t, "--root", filepath.Join(dir, "tree"), "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
		"--tls-client-ca", caFile, "--access", access, "--push")
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs},
		}}
	}
	blob := []byte("pushed over TLS")
	d := digest.FromBytes(blob)
	post := func(c *http.Client, name string) int {
		t.Helper()
		resp, err := c.Post(s.URL+"/v2/"+name+"/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ci, other, anonymous := client(clients.ClientCert(t, "ci")), client(clients.ClientCert(t, "intruder")), client()
	if got := post(ci, "ci/app"); got != http.StatusCreated {
		t.Fatalf("push as ci: %d", got)
	}
	if got := post(other, "ci/app"); got != http.StatusForbidden {
		t.Fatalf("push as another certificate's user: %d", got)
	}
	if got := post(anonymous, "ci/app"); got != http.StatusUnauthorized {
		t.Fatalf("push without a certificate: %d", got)
	}
	resp, err := ci.Get(s.URL + "/v2/ci/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("pull as ci: %d %q", resp.StatusCode, b)
	}
	if err := s.Stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
}

// TestAccessRedirects: with manifests redirected too, a repository
// anonymous callers may not read has its manifests and blobs sent by the
// server, never redirected to the (unsigned) base URL; a public one's are
// redirected.
func TestAccessRedirects(t *testing.T) {
	s := newAccessServer(t, redirector.WithRedirectManifests(true))
	_, teamLayer := s.pushImage("alice", "team/app", "v1", "team")
	_, pubLayer := s.pushImage("alice", "public/app", "v1", "public")
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/v2/team/app/manifests/v1", http.StatusOK},
		{"/v2/team/app/blobs/" + teamLayer.String(), http.StatusOK},
		{"/v2/public/app/manifests/v1", http.StatusTemporaryRedirect},
		{"/v2/public/app/blobs/" + pubLayer.String(), http.StatusTemporaryRedirect},
	} {
		resp, body := s.do("GET", tc.path, nil, basic("alice")...)
		want(t, "GET "+tc.path, resp, body, tc.status, "")
	}
}
