package auth

import (
	"crypto/ed25519"
	"crypto/rand"
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

	"golang.org/x/crypto/bcrypt"
)

// clock is a clock the tests set.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceFile writes content beside path and renames it onto path, as
// editors and installers do.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// htpasswd is the content of an htpasswd file with real bcrypt hashes, of
// the minimum cost so that the tests are fast. Pairs are user, password.
func htpasswd(t testing.TB, pairs ...string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		h, err := bcrypt.GenerateFromPassword([]byte(pairs[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(pairs[i] + ":" + string(h) + "\n")
	}
	return b.String()
}

// keyFiles writes a new Ed25519 key pair as PEM: the private key (PKCS#8,
// as openssl genpkey writes it) and the public key (PKIX).
func keyFiles(t testing.TB, dir, name string) (privFile, pubFile string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	px, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	privFile = writeFile(t, filepath.Join(dir, name+".pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})))
	pubFile = writeFile(t, filepath.Join(dir, name+".pub.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: px})))
	return privFile, pubFile
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newAuth(t testing.TB, o Options) *Auth {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func basicReq(user, pass string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v2/", nil)
	if user != "" || pass != "" {
		r.SetBasicAuth(user, pass)
	}
	return r
}

func bearerReq(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v2/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// getToken asks a's token endpoint for a token with GET, as docker does.
func getToken(t testing.TB, a *Auth, user, pass string, scopes ...string) (int, tokenResponse) {
	t.Helper()
	q := url.Values{"service": {a.Service()}}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/token?"+q.Encode(), nil)
	if user != "" {
		r.SetBasicAuth(user, pass)
	}
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

// eventually polls cond until it holds, for at most 5 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 250; i++ {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not within 5 s: %s", what)
}

// needTool skips a test whose tool is not installed, or fails it under
// CI=true, where make tools installs it (apache2-utils, openssl).
func needTool(t *testing.T, tool string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (make tools installs it)", tool)
	}
	t.Skipf("%s is not installed (make tools installs it)", tool)
}
