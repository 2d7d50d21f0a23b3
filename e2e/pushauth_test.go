//go:build e2e

package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
)

// The users of the access-controlled servers, and what the access file
// lets them do: alice pulls, pushes and deletes private/** and public/**
// (which anyone may pull); bob pushes bob/** and only pulls shared/**;
// mallory is in the htpasswd file and in no rule.
var (
	alice   = &creds{"alice", "alice-secret"}
	bob     = &creds{"bob", "bob-secret"}
	mallory = &creds{"mallory", "mallory-secret"}
)

const accessYAML = `rules:
  - repositories: ["public/**"]
    anonymous: [pull]
    users: {alice: [pull, push, delete]}
  - repositories: ["private/**"]
    users: {alice: [pull, push, delete]}
  - repositories: ["bob/**"]
    users: {bob: [pull, push]}
  - repositories: ["shared/**"]
    users: {alice: [pull, push], bob: [pull]}
`

// authFiles writes the htpasswd file (bcrypt), the access file and an
// Ed25519 key (PKCS #8 PEM) into dir.
func authFiles(t *testing.T, dir string) (htpasswd, access, key string) {
	t.Helper()
	var b strings.Builder
	for _, c := range []*creds{alice, bob, mallory} {
		h, err := bcrypt.GenerateFromPassword([]byte(c.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(c.user + ":" + string(h) + "\n")
	}
	htpasswd = filepath.Join(dir, "htpasswd")
	access = filepath.Join(dir, "access.yaml")
	key = filepath.Join(dir, "token.pem")
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		htpasswd: []byte(b.String()),
		access:   []byte(accessYAML),
		key:      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return htpasswd, access, key
}

// TestPushAuth runs the clients' pushes against heron serve --push
// --delete with users (--htpasswd) and an access file, once with HTTP
// basic authentication and once with the token flow (--token-key): each
// client pushes with its own way of taking credentials, and the pushes
// pull back with matching digests. Bad credentials, anonymous pushes and
// pushes a user may not make fail and write nothing; a protected
// repository is indistinguishable from a missing one without credentials
// (and for a user who may not pull it); with tokens, a token for another
// repository or action, and an expired token, are refused.
func TestPushAuth(t *testing.T) {
	htpasswd, access, key := authFiles(t, t.TempDir())
	ro := directMode(t)
	for _, am := range []struct {
		name  string
		extra []string
	}{
		{"basic", nil},
		{"token", []string{"--token-key", key}},
	} {
		t.Run(am.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "tree")
			args := append([]string{"--push", "--delete", "--htpasswd", htpasswd, "--access", access}, am.extra...)
			ps := &pushServer{md: startTappedMode(t, "push-"+am.name, root, args...), root: root, cred: alice}
			authPushes(t, ps, ro)
			authRefusals(t, ps, ro)
			authProbes(t, ps)
			if am.name == "token" {
				tokenChecks(t, ps, root, htpasswd, access, key)
			}
			t.Run("heron verify", func(t *testing.T) {
				ps.watch(t, true)
				verifyTree(t, root)
				got := heronLs(t, root)
				want := []string{"bob/app", "private/crane", "private/oras", "private/podman", "private/skopeo", "public/app"}
				if !slices.Equal(got, want) {
					t.Errorf("heron ls: %q, want %q", got, want)
				}
			})
		})
	}
}

// authPushes pushes as alice with each client, each taking the
// credentials its own way, and pulls back (crane and regctl, with alice's
// credentials in their docker configuration).
func authPushes(t *testing.T, ps *pushServer, ro *mode) {
	t.Run("skopeo --dest-creds", func(t *testing.T) {
		ps.watch(t, true)
		c := need(t, ps.md, "skopeo")
		f := mustFixture(t, fixtures.NameOCIIndex)
		dst := ps.host() + "/private/skopeo:v1"
		c.run("--policy", suite.policy, "--registries-conf", suite.registries, "copy", "--all", "--preserve-digests",
			"--src-tls-verify=false", "--dest-tls-verify=false", "--dest-creds", alice.String(),
			"docker://"+targetFor(f).ref(ro.host(), f), "docker://"+dst)
		ps.wantManifest(t, "private/skopeo", "v1", f.Digest)
		ps.pullBack(t, dst, f)
	})
	t.Run("crane auth login", func(t *testing.T) {
		ps.watch(t, true)
		c := need(t, ps.md, "crane")
		c.run("auth", "login", ps.host(), "-u", alice.user, "-p", alice.pass)
		for _, tc := range []struct{ fixture, repo string }{
			{fixtures.NameLargeImage, "private/crane"},
			{fixtures.NameOCIImage, "public/app"},
		} {
			f := mustFixture(t, tc.fixture)
			dst := ps.host() + "/" + tc.repo + ":v1"
			c.run("copy", "--insecure", targetFor(f).ref(ro.host(), f), dst)
			c.equalDigest("crane digest "+dst, c.run("digest", "--insecure", dst), f.Digest)
			ps.pullBack(t, dst, f)
		}
		// Anyone pulls public/app.
		anon := need(t, ps.md, "crane")
		f := mustFixture(t, fixtures.NameOCIImage)
		dir := anon.path("public")
		anon.run("pull", "--insecure", "--format", "oci", ps.host()+"/public/app:v1", dir)
		if err := checkOCILayout(dir, f); err != nil {
			t.Errorf("anonymous crane pull of public/app: %v", err)
		}
	})
	t.Run("oras --username --password", func(t *testing.T) {
		ps.watch(t, true)
		c := need(t, ps.md, "oras")
		if err := os.WriteFile(c.path("payload.json"), []byte(`{"e2e":"auth"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.path("sig.txt"), []byte("signed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		login := []string{"--plain-http", "--username", alice.user, "--password", alice.pass}
		ref := ps.host() + "/private/oras:v1"
		var art, sig struct {
			Digest string `json:"digest"`
		}
		out := c.run(append([]string{"push", "--format", "json", "--artifact-type", "application/vnd.heron.e2e.push+json", ref, "payload.json:application/vnd.heron.e2e.payload.v1+json"}, login...)...)
		if err := json.Unmarshal(out, &art); err != nil || art.Digest == "" {
			t.Fatalf("oras push: %v\n%s", err, out)
		}
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
		want := []string{sig.Digest + " application/vnd.heron.e2e.signature"}
		if got := referrerList(tree.Referrers); !slices.Equal(got, want) {
			t.Errorf("oras discover: %q, want %q", got, want)
		}
		ps.wantManifest(t, "private/oras", "v1", digest.Digest(art.Digest))
		if got := ps.referrers(t, "private/oras", digest.Digest(art.Digest)); !slices.Equal(got, want) {
			t.Errorf("referrers API: %q, want %q", got, want)
		}
	})
	t.Run("podman --creds", func(t *testing.T) {
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
		dst := ps.host() + "/private/podman:v1"
		c.run(append(global, "push", "--tls-verify=false", "--creds", alice.String(), "--digestfile", c.path("digest"), src, "docker://"+dst)...)
		b, err := os.ReadFile(c.path("digest"))
		if err != nil {
			t.Fatal(err)
		}
		d := digest.Digest(strings.TrimSpace(string(b)))
		ps.wantManifest(t, "private/podman", "v1", d)
		global = podmanGlobal(t, c, "storage2")
		c.run(append(global, "pull", "--tls-verify=false", "--creds", alice.String(), "--signature-policy", suite.policy, dst)...)
		out := c.run(append(global, "image", "inspect", "--format", "{{.ID}} {{.Digest}}", dst)...)
		if got, want := strings.TrimSpace(string(out)), img.Config.Digest.Encoded()+" "+d.String(); got != want {
			t.Errorf("podman image inspect of the pulled-back image: %q, want %q", got, want)
		}
	})
	t.Run("bob pushes bob/app", func(t *testing.T) {
		ps.watch(t, true)
		c := need(t, ps.md, "crane")
		dockerLogin(t, c, ps.host(), bob)
		f := mustFixture(t, fixtures.NameDockerImage)
		dst := ps.host() + "/bob/app:v1"
		c.run("copy", "--insecure", targetFor(f).ref(ro.host(), f), dst)
		c.equalDigest("crane digest "+dst, c.run("digest", "--insecure", dst), f.Digest)
	})
}

// authRefusals: wrong passwords, unknown users, anonymous pushes and
// pushes a user may not make fail with every client, and leave no
// repository behind.
func authRefusals(t *testing.T, ps *pushServer, ro *mode) {
	f := mustFixture(t, fixtures.NameOCIImage)
	src := targetFor(f).ref(ro.host(), f)
	wrong := &creds{alice.user, "wrong"}
	nobody := &creds{"nobody", "x"}
	t.Run("refused", func(t *testing.T) {
		ps.watch(t, true)
		sk := need(t, ps.md, "skopeo")
		for _, cr := range []*creds{wrong, nobody, mallory} {
			sk.fail("--policy", suite.policy, "--registries-conf", suite.registries, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
				"--dest-creds", cr.String(), "docker://"+src, "docker://"+ps.host()+"/private/refused:v1")
		}
		sk.fail("--policy", suite.policy, "--registries-conf", suite.registries, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
			"docker://"+src, "docker://"+ps.host()+"/private/refused:v1")
		for _, cr := range []*creds{wrong, nobody, nil, mallory} {
			c := need(t, ps.md, "crane")
			dockerLogin(t, c, ps.host(), cr)
			out := c.fail("copy", "--insecure", src, ps.host()+"/private/refused:v1")
			if !strings.Contains(out, "UNAUTHORIZED") && !strings.Contains(out, "DENIED") && !strings.Contains(out, "401") && !strings.Contains(out, "403") {
				t.Errorf("crane copy as %v: the error says neither UNAUTHORIZED nor DENIED:\n%s", cr, out)
			}
		}
		// bob may pull shared/** but not push it, and nothing of private/**.
		c := need(t, ps.md, "crane")
		dockerLogin(t, c, ps.host(), bob)
		c.fail("copy", "--insecure", src, ps.host()+"/shared/app:v1")
		c.fail("copy", "--insecure", src, ps.host()+"/private/crane:v1")
		c.fail("delete", "--insecure", ps.host()+"/bob/app:v1") // bob has no delete
		o := need(t, ps.md, "oras")
		if err := os.WriteFile(o.path("p.txt"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		o.fail("push", "--plain-http", "--username", alice.user, "--password", "wrong", ps.host()+"/private/refused:v1", "p.txt")
		p := need(t, ps.md, "podman")
		global := podmanGlobal(t, p, "storage")
		p.run(append(global, "pull", "--tls-verify=false", "--signature-policy", suite.policy, src)...)
		p.fail(append(global, "push", "--tls-verify=false", "--creds", wrong.String(), src, "docker://"+ps.host()+"/private/refused:v1")...)
		for _, repo := range []string{"private/refused", "shared/app"} {
			if b := repositoryFile(t, ps.root, repo); b != nil {
				t.Errorf("refused pushes left a repository file for %s:\n%s", repo, b)
			}
		}
		if st, d := ps.manifestDigest(t, "private/crane", "v1"); st != http.StatusOK || d != mustFixture(t, fixtures.NameLargeImage).Digest {
			t.Errorf("private/crane:v1 after bob's refused push: %d %s", st, d)
		}
		asBob := *ps
		asBob.cred = bob
		asBob.wantManifest(t, "bob/app", "v1", mustFixture(t, fixtures.NameDockerImage).Digest)
	})
}

// answer is what a probe got: status, challenge, error body.
type answer struct {
	status    int
	challenge string
	body      string
}

func probe(t *testing.T, method, url string, cred *creds) answer {
	t.Helper()
	resp, body := send(t, method, url, nil, append([]string{"Accept", manifestAccept}, cred.authHeader()...)...)
	return answer{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)}
}

// authProbes asks for a protected repository (private/crane) and for one
// that does not exist (private/nothing) every way a client can, without
// credentials and as users who may not pull it: the answers must be the
// same but for the name, and never 2xx; the catalog lists neither.
func authProbes(t *testing.T, ps *pushServer) {
	t.Run("protected repository probed", func(t *testing.T) {
		ps.watch(t, true)
		f := mustFixture(t, fixtures.NameLargeImage)
		paths := []struct{ method, path string }{
			{http.MethodGet, "/manifests/v1"},
			{http.MethodHead, "/manifests/v1"},
			{http.MethodGet, "/manifests/" + f.Digest.String()},
			{http.MethodGet, "/blobs/" + f.Config.Digest.String()},
			{http.MethodHead, "/blobs/" + f.Layers[0].Digest.String()},
			{http.MethodGet, "/tags/list"},
			{http.MethodGet, "/referrers/" + f.Digest.String()},
			{http.MethodPost, "/blobs/uploads/"},
			{http.MethodDelete, "/manifests/v1"},
		}
		for _, cr := range []*creds{nil, bob, mallory} {
			for _, p := range paths {
				got := probe(t, p.method, ps.url("/v2/private/crane"+p.path), cr)
				missing := probe(t, p.method, ps.url("/v2/private/nothing"+p.path), cr)
				missing.challenge = strings.ReplaceAll(missing.challenge, "private/nothing", "private/crane")
				missing.body = strings.ReplaceAll(missing.body, "private/nothing", "private/crane")
				if got != missing {
					t.Errorf("as %v, %s %s: %+v; for a missing repository %+v", cr, p.method, p.path, got, missing)
				}
				// A user gets a missing repository's empty referrers list
				// (200), as the spec has it: checked equal above.
				if got.status < 400 && !(cr != nil && strings.HasPrefix(p.path, "/referrers/")) {
					t.Errorf("as %v, %s /v2/private/crane%s: %d", cr, p.method, p.path, got.status)
				}
				if cr == nil && got.status != http.StatusUnauthorized {
					t.Errorf("anonymous %s /v2/private/crane%s: %d, want 401", p.method, p.path, got.status)
				}
			}
			a := probe(t, http.MethodGet, ps.url("/v2/_catalog"), cr)
			if strings.Contains(a.body, "private/") {
				t.Errorf("as %v, the catalog lists protected repositories: %d %s", cr, a.status, a.body)
			}
		}
		// alice sees them, bob sees his.
		for _, tc := range []struct {
			cred *creds
			want []string
		}{{alice, []string{"private/crane", "public/app"}}, {bob, []string{"bob/app", "public/app"}}} {
			a := probe(t, http.MethodGet, ps.url("/v2/_catalog"), tc.cred)
			var cat struct{ Repositories []string }
			if err := json.Unmarshal([]byte(a.body), &cat); err != nil || a.status != http.StatusOK {
				t.Fatalf("catalog as %s: %d %s", tc.cred.user, a.status, a.body)
			}
			for _, r := range tc.want {
				if !slices.Contains(cat.Repositories, r) {
					t.Errorf("catalog as %s: %q lacks %s", tc.cred.user, cat.Repositories, r)
				}
			}
			if tc.cred == bob && slices.ContainsFunc(cat.Repositories, func(r string) bool { return strings.HasPrefix(r, "private/") }) {
				t.Errorf("catalog as bob lists private repositories: %q", cat.Repositories)
			}
		}
		// Wrong credentials: 401, for the protected and the missing alike.
		for _, cr := range []*creds{{alice.user, "wrong"}, {"nobody", "x"}} {
			for _, repo := range []string{"private/crane", "private/nothing", "public/app"} {
				if a := probe(t, http.MethodGet, ps.url("/v2/"+repo+"/manifests/v1"), cr); a.status != http.StatusUnauthorized {
					t.Errorf("GET %s:v1 as %v (bad credentials): %d, want 401", repo, cr, a.status)
				}
			}
		}
	})
}

// token fetches a token from ps's endpoint for scope with cred.
func fetchToken(t *testing.T, ps *pushServer, cred *creds, scope string) (int, string) {
	t.Helper()
	resp, body := send(t, http.MethodGet, ps.url("/token?service=heron&scope="+scope), nil, cred.authHeader()...)
	var tr struct {
		Token string `json:"token"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &tr); err != nil || tr.Token == "" {
			t.Fatalf("token endpoint: %v\n%s", err, body)
		}
	}
	return resp.StatusCode, tr.Token
}

// tokenChecks: tokens that grant too little, or expired, are refused; a
// token from another server with the same key is accepted.
func tokenChecks(t *testing.T, ps *pushServer, root, htpasswd, access, key string) {
	t.Run("tokens", func(t *testing.T) {
		ps.watch(t, true)
		bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok, "Accept", manifestAccept} }
		status := func(method, path, tok string) int {
			resp, _ := send(t, method, ps.url(path), nil, bearer(tok)...)
			return resp.StatusCode
		}
		if st, _ := fetchToken(t, ps, &creds{alice.user, "wrong"}, "repository:private/crane:pull"); st != http.StatusUnauthorized {
			t.Errorf("token endpoint with a wrong password: %d, want 401", st)
		}
		_, pull := fetchToken(t, ps, alice, "repository:private/crane:pull")
		if st := status(http.MethodHead, "/v2/private/crane/manifests/v1", pull); st != http.StatusOK {
			t.Errorf("HEAD with a pull token for the repository: %d, want 200", st)
		}
		// For another repository.
		if st := status(http.MethodHead, "/v2/private/skopeo/manifests/v1", pull); st != http.StatusUnauthorized {
			t.Errorf("HEAD with a token for another repository: %d, want 401", st)
		}
		// For another action.
		if st := status(http.MethodPost, "/v2/private/crane/blobs/uploads/", pull); st != http.StatusUnauthorized {
			t.Errorf("POST an upload with a pull-only token: %d, want 401", st)
		}
		if st := status(http.MethodDelete, "/v2/private/crane/manifests/v1", pull); st != http.StatusUnauthorized {
			t.Errorf("DELETE with a pull-only token: %d, want 401", st)
		}
		// bob asks for more than he may: his token carries none of it.
		_, bobs := fetchToken(t, ps, bob, "repository:private/crane:pull,push")
		if st := status(http.MethodHead, "/v2/private/crane/manifests/v1", bobs); st != http.StatusUnauthorized {
			t.Errorf("HEAD private/crane with bob's token: %d, want 401", st)
		}
		// A tampered token.
		if st := status(http.MethodHead, "/v2/private/crane/manifests/v1", pull[:len(pull)-4]+"AAAA"); st != http.StatusUnauthorized {
			t.Errorf("HEAD with a tampered token: %d, want 401", st)
		}
		// A token of another server with the same key and a 1s expiry:
		// good at once, refused once expired (past the 10s leeway).
		short := &pushServer{md: startTappedMode(t, "token-1s", root, "--htpasswd", htpasswd, "--access", access, "--token-key", key, "--token-expiry", "1s"), root: root}
		_, tok := fetchToken(t, short, alice, "repository:private/crane:pull")
		if st := status(http.MethodHead, "/v2/private/crane/manifests/v1", tok); st != http.StatusOK {
			t.Errorf("HEAD with a token of another server sharing the key: %d, want 200", st)
		}
		time.Sleep(12 * time.Second)
		resp, _ := send(t, http.MethodHead, ps.url("/v2/private/crane/manifests/v1"), nil, bearer(tok)...)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("HEAD with an expired token: %d, want 401", resp.StatusCode)
		}
		t.Logf("expired token: %d, WWW-Authenticate: %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	})
}
