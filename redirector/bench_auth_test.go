package redirector

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/heron-registry/heron/redirector/auth"
	"golang.org/x/crypto/bcrypt"
)

// BenchmarkManifestGetByTagAuth is BenchmarkManifestGetByTag (caches on)
// with access control: bench/app public and asked anonymously, or only
// user bench's and asked with basic credentials or a token, as bench/peers
// -auth-only measures over HTTP.
func BenchmarkManifestGetByTagAuth(b *testing.B) {
	f := newBenchFixture(b)
	dir := b.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	htpasswd := write("htpasswd", "bench:"+string(h)+"\n")
	keyFile := write("token.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	public := write("public.yaml", "rules:\n  - repositories: [bench/app]\n    anonymous: [pull]\n  - repositories: [other]\n    users: {bench: [pull]}\n")
	protected := write("protected.yaml", "rules:\n  - repositories: [other]\n    anonymous: [pull]\n  - repositories: [bench/app]\n    users: {bench: [pull]}\n")

	newServer := func(b *testing.B, access string) *Server {
		var opts []Option
		if access != "" {
			a, err := auth.New(auth.Options{HtpasswdFile: htpasswd, AccessFile: access, TokenKeyFiles: []string{keyFile}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			opts = append(opts, WithAuth(a))
		}
		s, err := New(f.dir, append(opts, WithCacheSize(DefaultCacheSize), withRacyWindow(0))...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	token := func(b *testing.B, s *Server) string {
		req := httptest.NewRequest(http.MethodGet, "/token?service=heron&scope=repository:bench/app:pull", nil)
		req.SetBasicAuth("bench", "pw")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var tr struct{ Token string }
		if err := json.Unmarshal(rec.Body.Bytes(), &tr); rec.Code != 200 || err != nil || tr.Token == "" {
			b.Fatalf("token: %d %s", rec.Code, rec.Body)
		}
		return "Bearer " + tr.Token
	}
	for _, tc := range []struct {
		name   string
		access string
		authz  func(b *testing.B, s *Server) string
	}{
		{"none", "", nil},
		{"public", public, nil},
		{"basic", protected, func(*testing.B, *Server) string {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.SetBasicAuth("bench", "pw")
			return r.Header.Get("Authorization")
		}},
		{"bearer", protected, token},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newServer(b, tc.access)
			req := httptest.NewRequest(http.MethodGet, manifestURL("bench/app", "v050"), nil)
			req.Header.Set("Accept", acceptManifests)
			if tc.authz != nil {
				req.Header.Set("Authorization", tc.authz(b, s))
			}
			w := &discardWriter{h: http.Header{}}
			s.ServeHTTP(w, req)
			if w.code != 200 || w.n != f.tagged.Size {
				b.Fatalf("status %d with %d bytes", w.code, w.n)
			}
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				s.ServeHTTP(w, req)
			}
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		})
	}
}
