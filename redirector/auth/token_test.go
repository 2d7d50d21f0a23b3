package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenSetup is a server with users, an access file and a signing key.
type tokenSetup struct {
	a        *Auth
	clk      *clock
	dir      string
	key, pub string
	access   string
	hp       string
}

func newTokenSetup(t *testing.T) *tokenSetup {
	t.Helper()
	s := &tokenSetup{clk: newClock(), dir: t.TempDir()}
	s.key, s.pub = keyFiles(t, s.dir, "k1")
	s.hp = writeFile(t, filepath.Join(s.dir, "htpasswd"), htpasswd(t, "alice", "a", "ci", "c", "eve", "e"))
	s.access = writeFile(t, filepath.Join(s.dir, "access.yaml"), exampleAccess)
	s.a = newAuth(t, Options{HtpasswdFile: s.hp, AccessFile: s.access, TokenKeyFiles: []string{s.key}, Now: s.clk.Now})
	return s
}

func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenIssuedThenVerified(t *testing.T) {
	s := newTokenSetup(t)
	a := s.a
	code, tr := getToken(t, a, "alice", "a", "repository:team/app:pull,push", "repository:other/x:pull,push,delete", "repository:samples/y:pull")
	if code != http.StatusOK || tr.Token == "" || tr.Token != tr.AccessToken || tr.ExpiresIn != 300 {
		t.Fatalf("%d %+v", code, tr)
	}
	if tr.IssuedAt != s.clk.Now().Format(time.RFC3339) {
		t.Errorf("issued_at %q", tr.IssuedAt)
	}
	// The subset is granted: alice (devs) may do anything with team/**,
	// only pull elsewhere.
	if want := "repository:team/app:pull,push repository:other/x:pull repository:samples/y:pull"; tr.Scope != want {
		t.Errorf("granted %q, want %q", tr.Scope, want)
	}
	m := claimsOf(t, tr.Token)
	if m["iss"] != "heron" || m["sub"] != "alice" || m["jti"] == "" || m["exp"] == nil || m["nbf"] == nil || m["iat"] == nil {
		t.Errorf("claims %v", m)
	}
	if aud, _ := m["aud"].([]any); len(aud) != 1 || aud[0] != "heron" {
		t.Errorf("aud %v", m["aud"])
	}
	hdr, _, _ := jwt.NewParser().ParseUnverified(tr.Token, jwt.MapClaims{})
	if hdr.Header["alg"] != "EdDSA" || hdr.Header["kid"] != a.keys.Load().signerKID || hdr.Header["kid"] == "" {
		t.Errorf("header %v", hdr.Header)
	}

	c, err := a.Authenticate(bearerReq(tr.Token))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "alice" || c.Method != MethodToken || c.Anonymous() {
		t.Errorf("caller %+v", c)
	}
	for _, tc := range []struct {
		repo string
		act  Action
		want bool
	}{
		{"team/app", Pull, true},
		{"team/app", Push, true},
		{"team/app", Delete, false}, // allowed by the access file, not asked for
		{"team/other", Pull, false}, // another repository
		{"other/x", Pull, true},
		{"other/x", Push, false},
		{"samples/y", Pull, true},
	} {
		if got := a.Allowed(c, tc.repo, tc.act); got != tc.want {
			t.Errorf("Allowed(%s, %s) = %v", tc.repo, tc.act, got)
		}
	}
	// The catalog filter goes by the identity, not the token's scopes.
	if !a.Listable(c, "team/other") || a.CatalogAllowed(c) {
		t.Error("Listable/CatalogAllowed")
	}
}

func TestTokenRejected(t *testing.T) {
	s := newTokenSetup(t)
	a := s.a
	_, tr := getToken(t, a, "alice", "a", "repository:team/app:pull")
	good := tr.Token

	otherKey, _ := keyFiles(t, s.dir, "k2")
	other := newAuth(t, Options{HtpasswdFile: s.hp, TokenKeyFiles: []string{otherKey}, Now: s.clk.Now})
	_, otr := getToken(t, other, "alice", "a", "repository:team/app:pull")
	otherService := newAuth(t, Options{HtpasswdFile: s.hp, TokenKeyFiles: []string{s.key}, Service: "elsewhere", Now: s.clk.Now})
	_, str := getToken(t, otherService, "alice", "a", "repository:team/app:pull")

	parts := strings.Split(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	tampered := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	// Claims changed under the same signature.
	forged := parts[0] + "." + strings.TrimRight(base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"heron","sub":"root","aud":["heron"],"exp":9999999999,"access":[]}`)), "=") + "." + parts[2]
	// Signed by the right key, without alg EdDSA.
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "heron", "aud": "heron", "sub": "alice", "exp": s.clk.Now().Add(time.Minute).Unix()})
	hs.Header["kid"] = a.keys.Load().signerKID
	hsTok, _ := hs.SignedString([]byte("secret"))
	// A token without exp.
	noExp := signWith(t, a, jwt.MapClaims{"iss": "heron", "aud": "heron", "sub": "alice"})
	noKid := func() string {
		tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "heron", "aud": "heron", "sub": "alice", "exp": s.clk.Now().Add(time.Minute).Unix()})
		str, _ := tk.SignedString(a.keys.Load().signer)
		return str
	}()
	_, refresh := postToken(t, a, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"a"}})

	for _, tc := range []struct {
		name, tok string
	}{
		{"bad signature", tampered},
		{"forged claims", forged},
		{"other key", otr.Token},
		{"other service", str.Token},
		{"HS256", hsTok},
		{"no exp", noExp},
		{"no kid", noKid},
		{"refresh token as access token", refresh.RefreshToken},
		{"not a JWT", "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tok == "" {
				t.Fatal("no token to test")
			}
			if c, err := a.Authenticate(bearerReq(tc.tok)); !errors.Is(err, ErrBadCredentials) {
				t.Errorf("got %+v, %v", c, err)
			}
		})
	}

	// Expiry and not-before, on the settable clock.
	if _, err := a.Authenticate(bearerReq(good)); err != nil {
		t.Fatal(err)
	}
	s.clk.Add(5*time.Minute + tokenLeeway + time.Second)
	if _, err := a.Authenticate(bearerReq(good)); !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	_, tr = getToken(t, a, "alice", "a", "repository:team/app:pull")
	s.clk.Add(-time.Hour)
	if _, err := a.Authenticate(bearerReq(tr.Token)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token not yet valid: %v", err)
	}
}

func signWith(t *testing.T, a *Auth, c jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tk.Header["kid"] = a.keys.Load().signerKID
	s, err := tk.SignedString(a.keys.Load().signer)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenRevokedByAccessFile: a token grants no more than the access
// file allows its subject now.
func TestTokenRevokedByAccessFile(t *testing.T) {
	s := newTokenSetup(t)
	_, tr := getToken(t, s.a, "ci", "c", "repository:team/app:pull,push")
	c, err := s.a.Authenticate(bearerReq(tr.Token))
	if err != nil || !s.a.Allowed(c, "team/app", Push) {
		t.Fatalf("%v", err)
	}
	replaceFile(t, s.access, strings.Replace(exampleAccess, "users: {ci: [pull, push]}", "users: {ci: [pull]}", 1))
	if err := s.a.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.a.Allowed(c, "team/app", Push) || !s.a.Allowed(c, "team/app", Pull) {
		t.Error("push not revoked at once")
	}
}

// TestKeyRotation: servers sharing keys verify each other's tokens, and a
// server given the new key and the old public key accepts both.
func TestKeyRotation(t *testing.T) {
	s := newTokenSetup(t)
	key2, pub2 := keyFiles(t, s.dir, "k2")
	old := s.a
	// The new server signs with key 2 and still verifies key 1's tokens.
	rotated := newAuth(t, Options{HtpasswdFile: s.hp, AccessFile: s.access, TokenKeyFiles: []string{key2, s.pub}, Now: s.clk.Now})
	// A verify-only server knows both public keys.
	verifier := newAuth(t, Options{AccessFile: s.access, TokenKeyFiles: []string{pub2, s.pub}, TokenRealm: "https://auth.test/token", Now: s.clk.Now})

	_, t1 := getToken(t, old, "alice", "a", "repository:team/app:pull")
	_, t2 := getToken(t, rotated, "alice", "a", "repository:team/app:pull")
	for _, tc := range []struct {
		name string
		a    *Auth
		tok  string
		ok   bool
	}{
		{"old token, old server", old, t1.Token, true},
		{"old token, rotated server", rotated, t1.Token, true},
		{"new token, rotated server", rotated, t2.Token, true},
		{"new token, old server", old, t2.Token, false},
		{"old token, verifier", verifier, t1.Token, true},
		{"new token, verifier", verifier, t2.Token, true},
	} {
		c, err := tc.a.Authenticate(bearerReq(tc.tok))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.ok && !tc.a.Allowed(c, "team/app", Pull) {
			t.Errorf("%s: not allowed", tc.name)
		}
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTokenKeyReload(t *testing.T) {
	dir := t.TempDir()
	k1, _ := keyFiles(t, dir, "k1")
	k2, _ := keyFiles(t, dir, "k2")
	active := filepath.Join(dir, "active.pem")
	writeFile(t, active, string(mustRead(t, k1)))
	hp := writeFile(t, filepath.Join(dir, "htpasswd"), htpasswd(t, "alice", "a"))
	a := newAuth(t, Options{HtpasswdFile: hp, TokenKeyFiles: []string{active}})
	kid1 := a.keys.Load().signerKID
	_, old := getToken(t, a, "alice", "a")
	if _, err := a.Authenticate(bearerReq(old.Token)); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, active, string(mustRead(t, k2)))
	eventually(t, "the new key signs", func() bool { return a.keys.Load().signerKID != kid1 })
	// The old key is gone: its tokens are refused, cached or not.
	if _, err := a.Authenticate(bearerReq(old.Token)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token of a removed key: %v", err)
	}
	_, tr := getToken(t, a, "alice", "a")
	if _, err := a.Authenticate(bearerReq(tr.Token)); err != nil {
		t.Fatal(err)
	}
	// A broken key file keeps the key in force.
	replaceFile(t, active, "garbage")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "openssl genpkey") {
		t.Errorf("Reload: %v", err)
	}
	if _, err := a.Authenticate(bearerReq(tr.Token)); err != nil {
		t.Errorf("key dropped for a broken file: %v", err)
	}
}

func postToken(t *testing.T, a *Auth, form url.Values) (int, tokenResponse) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	a.TokenHandler().ServeHTTP(w, r)
	var tr tokenResponse
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
			t.Fatal(err)
		}
	}
	return w.Code, tr
}

// TestTokenHandler runs requests against the token endpoint over HTTP.
func TestTokenHandler(t *testing.T) {
	s := newTokenSetup(t)
	srv := httptest.NewServer(s.a.TokenHandler())
	defer srv.Close()

	type want struct {
		code  int
		scope string
		sub   string
		body  string // in an error body
		rt    bool   // a refresh token
	}
	for _, tc := range []struct {
		name   string
		method string
		query  string
		user   string
		pass   string
		form   url.Values
		want   want
	}{
		{"anonymous, public", "GET", "service=heron&scope=repository:samples/a:pull,push", "", "", nil, want{code: 200, scope: "repository:samples/a:pull"}},
		{"anonymous, protected", "GET", "service=heron&scope=repository:team/a:pull", "", "", nil, want{code: 200, scope: ""}},
		{"no scope (docker login)", "GET", "service=heron&account=alice", "alice", "a", nil, want{code: 200, sub: "alice"}},
		{"several scopes in one parameter", "GET", "scope=repository:team/a:push+repository:team/b:delete", "alice", "a", nil, want{code: 200, scope: "repository:team/a:push repository:team/b:delete", sub: "alice"}},
		{"same repository twice", "GET", "scope=repository:team/a:pull&scope=repository:team/a:push", "ci", "c", nil, want{code: 200, scope: "repository:team/a:pull,push", sub: "ci"}},
		{"star", "GET", "scope=repository:team/a:*", "ci", "c", nil, want{code: 200, scope: "repository:team/a:pull,push", sub: "ci"}},
		{"catalog", "GET", "scope=registry:catalog:*", "eve", "e", nil, want{code: 200, scope: "registry:catalog:*", sub: "eve"}},
		{"catalog, anonymous", "GET", "scope=registry:catalog:*", "", "", nil, want{code: 200, scope: "registry:catalog:*"}},
		{"invalid name and junk", "GET", "scope=repository:Bad/Name:pull&scope=nonsense&scope=repository(plugin):samples/p:pull", "", "", nil, want{code: 200, scope: "repository:samples/p:pull"}},
		{"offline token", "GET", "scope=repository:team/a:pull&offline_token=true", "alice", "a", nil, want{code: 200, scope: "repository:team/a:pull", sub: "alice", rt: true}},
		{"wrong password", "GET", "scope=repository:team/a:pull", "alice", "x", nil, want{code: 401, body: `"code":"UNAUTHORIZED"`}},
		{"unknown user", "GET", "", "mallory", "a", nil, want{code: 401, body: `"code":"UNAUTHORIZED"`}},
		{"wrong service", "GET", "service=other", "alice", "a", nil, want{code: 400, body: "unknown service"}},
		{"password grant", "POST", "", "", "", url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {"c"}, "service": {"heron"}, "client_id": {"docker"}, "access_type": {"offline"}, "scope": {"repository:team/a:pull,push repository:x:push"}},
			want{code: 200, scope: "repository:team/a:pull,push", sub: "ci", rt: true}},
		{"password grant, bad password", "POST", "", "", "", url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {"x"}}, want{code: 401, body: "invalid_grant"}},
		{"POST, wrong service", "POST", "", "", "", url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {"c"}, "service": {"nope"}}, want{code: 400, body: "invalid_request"}},
		{"POST, unknown grant", "POST", "", "", "", url.Values{"grant_type": {"authorization_code"}}, want{code: 400, body: "unsupported_grant_type"}},
		{"refresh grant, garbage", "POST", "", "", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"abc"}}, want{code: 401, body: "invalid_grant"}},
		{"PUT", "PUT", "", "", "", nil, want{code: 405}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.form != nil {
				body = strings.NewReader(tc.form.Encode())
			}
			req, _ := http.NewRequest(tc.method, srv.URL+"/token?"+tc.query, body)
			if tc.form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want.code, b)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if resp.StatusCode != 200 {
				if !strings.Contains(string(b), tc.want.body) {
					t.Errorf("body %s, want %s", b, tc.want.body)
				}
				return
			}
			var tr tokenResponse
			if err := json.Unmarshal(b, &tr); err != nil {
				t.Fatal(err)
			}
			if tr.Scope != tc.want.scope {
				t.Errorf("scope %q, want %q", tr.Scope, tc.want.scope)
			}
			if (tr.RefreshToken != "") != tc.want.rt {
				t.Errorf("refresh token %q", tr.RefreshToken)
			}
			c, err := s.a.Authenticate(bearerReq(tr.AccessToken))
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != tc.want.sub {
				t.Errorf("subject %q, want %q", c.Name, tc.want.sub)
			}
			if strings.Contains(tc.want.scope, "registry:catalog:*") != s.a.CatalogAllowed(c) {
				t.Errorf("CatalogAllowed = %v", s.a.CatalogAllowed(c))
			}
		})
	}
}

func TestRefreshToken(t *testing.T) {
	s := newTokenSetup(t)
	code, tr := postToken(t, s.a, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"a"}, "client_id": {"test"}})
	if code != 200 || tr.RefreshToken == "" {
		t.Fatalf("%d %+v", code, tr)
	}
	rt := tr.RefreshToken
	refresh := func() (int, tokenResponse) {
		return postToken(t, s.a, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {"heron"}, "scope": {"repository:team/a:push"}})
	}
	code, tr = refresh()
	if code != 200 || tr.Scope != "repository:team/a:push" || tr.RefreshToken != rt {
		t.Fatalf("%d %+v", code, tr)
	}
	if c, err := s.a.Authenticate(bearerReq(tr.AccessToken)); err != nil || c.Name != "alice" || !s.a.Allowed(c, "team/a", Push) {
		t.Fatalf("%+v %v", c, err)
	}
	// An access token is not a refresh token.
	if code, _ := postToken(t, s.a, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.AccessToken}}); code != 401 {
		t.Errorf("access token as refresh token: %d", code)
	}
	// Expired with time.
	s.clk.Add(31 * 24 * time.Hour)
	if code, _ := refresh(); code != 401 {
		t.Errorf("expired refresh token: %d", code)
	}
	s.clk.Add(-31 * 24 * time.Hour)
	// Revoked by a new password, and by removing the user.
	replaceFile(t, s.hp, htpasswd(t, "alice", "new", "ci", "c"))
	if err := s.a.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := refresh(); code != 401 {
		t.Errorf("refresh token after a password change: %d", code)
	}
	_, tr = postToken(t, s.a, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"new"}})
	rt = tr.RefreshToken
	if code, _ := refresh(); code != 200 {
		t.Errorf("new refresh token: %d", code)
	}
	replaceFile(t, s.hp, htpasswd(t, "ci", "c"))
	if err := s.a.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := refresh(); code != 401 {
		t.Errorf("refresh token of a removed user: %d", code)
	}
}

func TestTokenDenyAnonymous(t *testing.T) {
	s := newTokenSetup(t)
	a := newAuth(t, Options{HtpasswdFile: s.hp, AccessFile: s.access, TokenKeyFiles: []string{s.key}, DenyAnonymous: true, Now: s.clk.Now})
	if code, _ := getToken(t, a, "", "", "repository:samples/a:pull"); code != 401 {
		t.Errorf("anonymous token with DenyAnonymous: %d", code)
	}
	// An anonymous token from a server that allows anonymous pulls is
	// worth nothing here.
	_, tr := getToken(t, s.a, "", "", "repository:samples/a:pull")
	c, err := a.Authenticate(bearerReq(tr.Token))
	if err != nil || a.Allowed(c, "samples/a", Pull) || !s.a.Allowed(c, "samples/a", Pull) {
		t.Errorf("%+v %v", c, err)
	}
}

func TestKeyID(t *testing.T) {
	// RFC 8037 appendix A.3: the thumbprint of its example key.
	x, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if got := KeyID(ed25519.PublicKey(x)); got != "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k" {
		t.Errorf("KeyID = %s", got)
	}
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want Scope
	}{
		{"repository:a/b:pull,push", true, Scope{"repository", "a/b", []string{"pull", "push"}}},
		{"repository:host:5000/a:pull", true, Scope{"repository", "host:5000/a", []string{"pull"}}},
		{"repository(plugin):a:pull", true, Scope{"repository", "a", []string{"pull"}}},
		{"registry:catalog:*", true, Scope{"registry", "catalog", []string{"*"}}},
		{"repository:a:", true, Scope{"repository", "a", nil}},
		{"repository::pull", false, Scope{}},
		{"repository:a", false, Scope{}},
		{"junk", false, Scope{}},
	} {
		got, ok := parseScope(tc.in)
		if ok != tc.ok || (ok && (got.Type != tc.want.Type || got.Name != tc.want.Name || !slices.Equal(got.Actions, tc.want.Actions))) {
			t.Errorf("parseScope(%q) = %+v, %v", tc.in, got, ok)
		}
		if ok && got.String() != strings.Replace(tc.in, "(plugin)", "", 1) {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func BenchmarkAuthenticateToken(b *testing.B) {
	dir := b.TempDir()
	key, _ := keyFiles(b, dir, "k")
	hp := writeFile(b, filepath.Join(dir, "htpasswd"), htpasswd(b, "alice", "a"))
	a := newAuth(b, Options{HtpasswdFile: hp, TokenKeyFiles: []string{key}})
	code, tr := getToken(b, a, "alice", "a", "repository:library/app:pull")
	if code != 200 {
		b.Fatal(code)
	}
	r := bearerReq(tr.Token)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := a.Authenticate(r)
		if err != nil || !a.Allowed(c, "library/app", Pull) {
			b.Fatal(err)
		}
	}
}

// TestOpenSSLKeys loads keys made the way docs/access.md says.
func TestOpenSSLKeys(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		needTool(t, "openssl")
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "token.pem"), filepath.Join(dir, "token.pub.pem")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "ed25519", "-out", priv},
		{"pkey", "-in", priv, "-pubout", "-out", pub},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v: %s", args, err, out)
		}
	}
	hp := writeFile(t, filepath.Join(dir, "htpasswd"), htpasswd(t, "alice", "a"))
	signer := newAuth(t, Options{HtpasswdFile: hp, TokenKeyFiles: []string{priv}})
	verifier := newAuth(t, Options{TokenKeyFiles: []string{pub}, TokenRealm: "https://127.0.0.1/token"})
	_, tr := getToken(t, signer, "alice", "a", "repository:x:pull")
	if c, err := verifier.Authenticate(bearerReq(tr.Token)); err != nil || !verifier.Allowed(c, "x", Pull) {
		t.Fatalf("%+v %v", c, err)
	}
	// An RSA key is refused with the way to make the right one.
	rsa := filepath.Join(dir, "rsa.pem")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024", "-out", rsa).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := New(Options{TokenKeyFiles: []string{rsa}, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "not an Ed25519 key") || !strings.Contains(err.Error(), "openssl genpkey -algorithm ed25519") {
		t.Errorf("RSA key: %v", err)
	}
}
