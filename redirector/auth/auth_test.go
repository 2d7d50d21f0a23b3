package auth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestHtpasswdErrors(t *testing.T) {
	good := htpasswd(t, "alice", "pw")
	for _, tc := range []struct {
		name, file, want string
	}{
		{"md5", good + "# c\n\nbob:$apr1$abc$def\n", "line 4: user bob: only bcrypt hashes are accepted (htpasswd -B)"},
		{"sha1", "bob:{SHA}abc=\n", "line 1: user bob: only bcrypt hashes are accepted"},
		{"crypt", "bob:abcdefgh\n", "line 1: user bob: only bcrypt"},
		{"no colon", "bob\n", "line 1: expected user:hash"},
		{"no user", ":$2y$05$abc\n", "line 1: expected user:hash"},
		{"twice", good + good, "line 2: user alice: listed twice"},
		{"truncated bcrypt", "bob:$2y$05$abc\n", "line 1: user bob: malformed bcrypt hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseHtpasswd("/etc/heron/htpasswd", []byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "htpasswd file /etc/heron/htpasswd: ") {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// New fails with the same error.
	dir := t.TempDir()
	f := writeFile(t, filepath.Join(dir, "htpasswd"), "bob:{SHA}abc=\n")
	if _, err := New(Options{HtpasswdFile: f, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("New: %v", err)
	}
	if _, err := New(Options{HtpasswdFile: filepath.Join(dir, "missing"), Logger: quietLogger()}); err == nil {
		t.Error("New accepted a missing htpasswd file")
	}
}

func TestAuthenticateBasic(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, filepath.Join(dir, "htpasswd"), htpasswd(t, "alice", "s3cret", "bob", "hunter2"))
	acc := writeFile(t, filepath.Join(dir, "access.yaml"), exampleAccess)
	a := newAuth(t, Options{HtpasswdFile: f, AccessFile: acc})
	if !a.Enabled() {
		t.Error("not Enabled with an htpasswd file")
	}
	for _, tc := range []struct {
		name    string
		header  string
		user    string
		method  string
		wantErr bool
	}{
		{"none", "", "", "", false},
		{"alice", "Basic YWxpY2U6czNjcmV0", "alice", MethodBasic, false}, // alice:s3cret
		{"bob", "basic Ym9iOmh1bnRlcjI=", "bob", MethodBasic, false},     // bob:hunter2
		{"wrong password", "Basic YWxpY2U6bm9wZQ==", "", "", true},       // alice:nope
		{"unknown user", "Basic ZXZlOnMzY3JldA==", "", "", true},         // eve:s3cret
		{"not base64", "Basic !!!", "", "", true},
		{"no colon", "Basic YWxpY2U=", "", "", true},
		{"other scheme", "Digest username=alice", "", "", true},
		{"empty bearer", "Bearer ", "", "", true},
		{"garbage bearer", "Bearer abc.def.ghi", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v2/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			c, err := a.Authenticate(r)
			if tc.wantErr {
				if !errors.Is(err, ErrBadCredentials) || c != nil {
					t.Fatalf("got %+v, %v; want ErrBadCredentials", c, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != tc.user || c.Method != tc.method || c.Anonymous() != (tc.user == "") {
				t.Errorf("got %+v", c)
			}
		})
	}
	c, _ := a.Authenticate(basicReq("alice", "s3cret"))
	if len(c.Groups) != 1 || c.Groups[0] != "devs" {
		t.Errorf("alice's groups: %v", c.Groups)
	}
	if !a.Allowed(c, "team/app", Delete) || a.Allowed(c, "team/app", "write") {
		t.Error("alice's rights")
	}
}

func TestCredentialCache(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, filepath.Join(dir, "htpasswd"), htpasswd(t, "alice", "s3cret"))
	clk := newClock()
	a := newAuth(t, Options{HtpasswdFile: f, Now: clk.Now})
	calls := func() int64 { return a.bcryptCalls.Load() }

	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(basicReq("alice", "s3cret")); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(); got != 1 {
		t.Fatalf("3 authentications: %d bcrypt comparisons, want 1", got)
	}
	// Failures are not cached, and an unknown user costs a comparison too.
	for i := 0; i < 2; i++ {
		if _, err := a.Authenticate(basicReq("alice", "wrong")); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, err := a.Authenticate(basicReq("nobody", "s3cret")); err == nil {
		t.Fatal("unknown user accepted")
	}
	if got := calls(); got != 4 {
		t.Fatalf("after 3 failures: %d comparisons, want 4", got)
	}
	// Entries expire.
	clk.Add(credCacheTTL + time.Second)
	if _, err := a.Authenticate(basicReq("alice", "s3cret")); err != nil {
		t.Fatal(err)
	}
	if got := calls(); got != 5 {
		t.Fatalf("after expiry: %d comparisons, want 5", got)
	}
	// A new password is a new key: the old one no longer works at once.
	replaceFile(t, f, htpasswd(t, "alice", "n3w"))
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(basicReq("alice", "s3cret")); err == nil {
		t.Fatal("old password accepted after the change")
	}
	if _, err := a.Authenticate(basicReq("alice", "n3w")); err != nil {
		t.Fatal(err)
	}
}

func TestCredCacheBounded(t *testing.T) {
	c := newCredCache(3, time.Minute)
	now := time.Now()
	keys := make([][32]byte, 5)
	for i := range keys {
		keys[i] = credKey("u", strings.Repeat("p", i), []byte("h"))
		c.add(keys[i], now)
	}
	if c.len() != 3 {
		t.Fatalf("%d entries, want 3", c.len())
	}
	if c.hit(keys[0], now) || c.hit(keys[1], now) || !c.hit(keys[4], now) {
		t.Error("the oldest entries should have gone")
	}
	if credKey("ab", "c", []byte("h")) == credKey("a", "bc", []byte("h")) {
		t.Error("ambiguous cache key")
	}
}

func TestClientCertificates(t *testing.T) {
	req := func(cn string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1/v2/", nil)
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}}}}}
		return r
	}
	a := newAuth(t, Options{ClientCerts: true})
	if !a.Enabled() {
		t.Error("not Enabled with client certificates")
	}
	c, err := a.Authenticate(req("builder"))
	if err != nil || c.Name != "builder" || c.Method != MethodCert {
		t.Fatalf("got %+v, %v", c, err)
	}
	if _, err := a.Authenticate(req("")); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("certificate without a common name: %v", err)
	}
	// Unverified certificates (no chain) are nobody.
	r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1/v2/", nil)
	r.TLS = &tls.ConnectionState{}
	if c, err := a.Authenticate(r); err != nil || !c.Anonymous() {
		t.Errorf("no chain: %+v, %v", c, err)
	}
	// Without ClientCerts, a chain means nothing.
	b := newAuth(t, Options{})
	if c, err := b.Authenticate(req("builder")); err != nil || !c.Anonymous() {
		t.Errorf("ClientCerts off: %+v, %v", c, err)
	}
}

func TestChallenge(t *testing.T) {
	dir := t.TempDir()
	key, _ := keyFiles(t, dir, "k")
	basic := newAuth(t, Options{})
	tok := newAuth(t, Options{TokenKeyFiles: []string{key}})
	fixed := newAuth(t, Options{TokenKeyFiles: []string{key}, TokenRealm: "https://auth.example/token", Service: "reg"})

	plain := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:5000/v2/", nil)
	fwd := httptest.NewRequest(http.MethodGet, "http://reg.test/v2/", nil)
	fwd.Header.Set("X-Forwarded-Proto", "https")
	overTLS := httptest.NewRequest(http.MethodGet, "https://reg.test:8443/v2/", nil)
	user := &Caller{Name: "alice", Method: MethodToken}

	for _, tc := range []struct {
		name string
		a    *Auth
		do   func(h http.Header)
		want string
	}{
		{"basic", basic, func(h http.Header) { basic.Challenge(h, plain, "a/b", Pull) }, `Basic realm="heron"`},
		{"basic with error", basic, func(h http.Header) { basic.ChallengeFor(h, plain, user, nil, RepositoryScope("a", Push)) }, `Basic realm="heron"`},
		{"pull", tok, func(h http.Header) { tok.Challenge(h, plain, "a/b", Pull) },
			`Bearer realm="http://127.0.0.1:5000/token",service="heron",scope="repository:a/b:pull"`},
		{"push", tok, func(h http.Header) { tok.Challenge(h, fwd, "a/b", Pull, Push) },
			`Bearer realm="https://reg.test/token",service="heron",scope="repository:a/b:pull,push"`},
		{"delete over TLS", tok, func(h http.Header) { tok.Challenge(h, overTLS, "a", Delete) },
			`Bearer realm="https://reg.test:8443/token",service="heron",scope="repository:a:delete"`},
		{"no scope", tok, func(h http.Header) { tok.Challenge(h, plain, "") },
			`Bearer realm="http://127.0.0.1:5000/token",service="heron"`},
		{"catalog", fixed, func(h http.Header) { fixed.ChallengeCatalog(h, plain) },
			`Bearer realm="https://auth.example/token",service="reg",scope="registry:catalog:*"`},
		{"insufficient scope", tok, func(h http.Header) { tok.ChallengeFor(h, plain, user, nil, RepositoryScope("a", Pull, Push)) },
			`Bearer realm="http://127.0.0.1:5000/token",service="heron",scope="repository:a:pull,push",error="insufficient_scope"`},
		{"anonymous: no error", tok, func(h http.Header) { tok.ChallengeFor(h, plain, &Caller{}, nil, RepositoryScope("a", Pull)) },
			`Bearer realm="http://127.0.0.1:5000/token",service="heron",scope="repository:a:pull"`},
		{"invalid token", tok, func(h http.Header) {
			tok.ChallengeFor(h, plain, nil, badCredentials("expired"), RepositoryScope("a", Pull))
		}, `Bearer realm="http://127.0.0.1:5000/token",service="heron",scope="repository:a:pull",error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			tc.do(h)
			if got := h.Get("WWW-Authenticate"); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	_, pub := keyFiles(t, dir, "k")
	notPEM := writeFile(t, filepath.Join(dir, "not.pem"), "hello")
	rsaLike := writeFile(t, filepath.Join(dir, "cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"verify-only without realm", Options{TokenKeyFiles: []string{pub}}, "no private key"},
		{"not PEM", Options{TokenKeyFiles: []string{notPEM}}, "openssl genpkey -algorithm ed25519"},
		{"certificate", Options{TokenKeyFiles: []string{rsaLike}}, `a PEM "CERTIFICATE" block`},
		{"missing key", Options{TokenKeyFiles: []string{filepath.Join(dir, "nope.pem")}}, "nope.pem"},
		{"relative realm", Options{TokenRealm: "/token"}, "absolute"},
		{"access file", Options{AccessFile: writeFile(t, filepath.Join(dir, "a.yaml"), "rules: 3\n")}, "a.yaml: line 1: rules: expected a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Logger = quietLogger()
			a, err := New(tc.o)
			if err == nil {
				a.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tc.want)
			}
		})
	}
	// A verify-only server with a realm is fine; its token endpoint is 404.
	a := newAuth(t, Options{TokenKeyFiles: []string{pub}, TokenRealm: "https://auth.example/token"})
	w := httptest.NewRecorder()
	a.TokenHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/token", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("verify-only token endpoint: %d", w.Code)
	}
}

func TestReloadWhenFilesChange(t *testing.T) {
	dir := t.TempDir()
	hf := writeFile(t, filepath.Join(dir, "htpasswd"), htpasswd(t, "alice", "a"))
	af := writeFile(t, filepath.Join(dir, "access.yaml"), "rules:\n  - repositories: ['**']\n    authenticated: [pull]\n")
	a := newAuth(t, Options{HtpasswdFile: hf, AccessFile: af})
	alice, err := a.Authenticate(basicReq("alice", "a"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Allowed(alice, "x", Push) {
		t.Fatal("alice may push before the change")
	}

	// Replaced by rename, as editors do.
	replaceFile(t, hf, htpasswd(t, "alice", "a", "bob", "b"))
	eventually(t, "bob is a user", func() bool {
		_, err := a.Authenticate(basicReq("bob", "b"))
		return err == nil
	})
	// Written in place.
	writeFile(t, af, "rules:\n  - repositories: ['**']\n    users: {alice: [pull, push]}\n")
	eventually(t, "alice may push", func() bool { return a.Allowed(alice, "x", Push) })

	// A broken file keeps the previous configuration.
	replaceFile(t, hf, "alice:{SHA}x\n")
	writeFile(t, af, "rules:\n  - repositories: ['**']\n    anonymous: [push]\n")
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("Reload of broken files: %v", err)
	}
	time.Sleep(3 * reloadDelay)
	if _, err := a.Authenticate(basicReq("bob", "b")); err != nil {
		t.Errorf("bob is gone after a broken htpasswd file: %v", err)
	}
	if !a.Allowed(alice, "x", Push) {
		t.Error("the access file in force was dropped for a broken one")
	}
	// A file removed then fixed is picked up again.
	replaceFile(t, hf, htpasswd(t, "carol", "c"))
	eventually(t, "carol is a user", func() bool {
		_, err := a.Authenticate(basicReq("carol", "c"))
		return err == nil
	})
	if _, err := a.Authenticate(basicReq("bob", "b")); err == nil {
		t.Error("bob is still a user")
	}
}

// TestReloadConfigMap swaps files the way Kubernetes updates a mounted
// ConfigMap: the files are symbolic links through ..data, a link to a
// directory that is replaced by a rename.
func TestReloadConfigMap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, content string) {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "htpasswd"), content)
	}
	mk("..v1", htpasswd(t, "alice", "a"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/htpasswd", filepath.Join(dir, "htpasswd")); err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, Options{HtpasswdFile: filepath.Join(dir, "htpasswd")})
	if _, err := a.Authenticate(basicReq("alice", "a")); err != nil {
		t.Fatal(err)
	}
	mk("..v2", htpasswd(t, "bob", "b"))
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob is a user", func() bool {
		_, err := a.Authenticate(basicReq("bob", "b"))
		return err == nil
	})
}

// bcryptHashCost is the cost of the hashes htpasswd -B writes by default.
const bcryptHashCost = 5

func BenchmarkAuthenticateBasicCached(b *testing.B) {
	dir := b.TempDir()
	h, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcryptHashCost)
	f := writeFile(b, filepath.Join(dir, "htpasswd"), "alice:"+string(h)+"\n")
	a := newAuth(b, Options{HtpasswdFile: f})
	r := basicReq("alice", "s3cret")
	if _, err := a.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	if a.bcryptCalls.Load() != 1 {
		b.Fatalf("%d bcrypt comparisons", a.bcryptCalls.Load())
	}
}

// TestHtpasswdTool reads a file written by Apache's htpasswd -B, as
// docs/access.md says to make it ($2y$ hashes).
func TestHtpasswdTool(t *testing.T) {
	if _, err := exec.LookPath("htpasswd"); err != nil {
		needTool(t, "htpasswd")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "htpasswd")
	for _, args := range [][]string{
		{"-cbB", f, "alice", "s3cret"},
		{"-bB", "-C", "6", f, "ci", "t0ken"},
	} {
		if out, err := exec.Command("htpasswd", args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd %v: %v: %s", args, err, out)
		}
	}
	a := newAuth(t, Options{HtpasswdFile: f})
	for _, tc := range []struct{ user, pass string }{{"alice", "s3cret"}, {"ci", "t0ken"}} {
		if c, err := a.Authenticate(basicReq(tc.user, tc.pass)); err != nil || c.Name != tc.user {
			t.Errorf("%s: %+v %v", tc.user, c, err)
		}
		if _, err := a.Authenticate(basicReq(tc.user, tc.pass+"x")); err == nil {
			t.Errorf("%s: wrong password accepted", tc.user)
		}
	}
	// The default of htpasswd without -B is MD5, refused with the fix.
	if out, err := exec.Command("htpasswd", "-bm", f, "bob", "pw").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), "line 3: user bob: only bcrypt hashes are accepted (htpasswd -B)") {
		t.Errorf("MD5 entry: %v", err)
	}
}

// TestReloadThroughLink: the configured file is a link to a file in
// another directory, which is changed in place.
func TestReloadThroughLink(t *testing.T) {
	conf, secrets := t.TempDir(), t.TempDir()
	real := writeFile(t, filepath.Join(secrets, "users"), htpasswd(t, "alice", "a"))
	link := filepath.Join(conf, "htpasswd")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, Options{HtpasswdFile: link})
	writeFile(t, real, htpasswd(t, "bob", "b"))
	eventually(t, "bob is a user", func() bool {
		_, err := a.Authenticate(basicReq("bob", "b"))
		return err == nil
	})
}

// TestCredKeyEncoding pins the encoding credKey hashes: the lengths, then
// the user, the password and the hash, whatever their sizes (the stack
// buffer's and beyond).
func TestCredKeyEncoding(t *testing.T) {
	for _, tc := range []struct{ user, pass, hash string }{
		{"", "", ""},
		{"bench", "pw", "$2a$10$abcdefghijklmnopqrstuv0123456789ABCDEFGHIJKLMNOPQRS"},
		{"u", strings.Repeat("p", 300), "h"},
		{strings.Repeat("é", 200), "x:y", strings.Repeat("$", 61)},
	} {
		want := sha256.Sum256([]byte(fmt.Sprintf("%d:%d:%d:%s%s%s", len(tc.user), len(tc.pass), len(tc.hash), tc.user, tc.pass, tc.hash)))
		if got := credKey(tc.user, tc.pass, []byte(tc.hash)); got != want {
			t.Errorf("credKey(%.10q, %.10q, %.10q) = %x, want %x", tc.user, tc.pass, tc.hash, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		credKey("bench", "bench-password", []byte("$2a$10$abcdefghijklmnopqrstuv0123456789ABCDEFGHIJKLMNOPQRS"))
	}); n != 0 {
		t.Errorf("credKey allocates %v times", n)
	}
}

func TestTokenKey(t *testing.T) {
	for _, n := range []int{0, 1, 600, 2048, 2049, 5000} {
		raw := strings.Repeat("t", n)
		if got, want := tokenKey(raw), sha256.Sum256([]byte(raw)); got != want {
			t.Errorf("tokenKey of %d bytes = %x, want %x", n, got, want)
		}
	}
	raw := strings.Repeat("t", 700)
	if n := testing.AllocsPerRun(100, func() { tokenKey(raw) }); n != 0 {
		t.Errorf("tokenKey allocates %v times", n)
	}
}
