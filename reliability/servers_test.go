//go:build reliability

package reliability

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/heronproc"
)

// server is a `heron serve` started by a test and stopped by its PID.
type server struct{ *heronproc.Server }

// base is the server's URL.
func (s *server) base() string { return s.Base() }

// startServe starts `heron serve --root tree --addr 127.0.0.1:PORT extra...`,
// waits until it answers GET /v2/, and stops it (SIGTERM, by PID) when the
// test ends, failing the test if it did not exit cleanly.
func startServe(t *testing.T, name, tree string, extra ...string) *server {
	t.Helper()
	s, err := heronproc.StartServe(name, heron, tree, 20*time.Second, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return &server{s}
}

// errorLines returns the lines of the server's log at level WARN or ERROR.
func (s *server) errorLines() []string {
	var out []string
	for _, l := range strings.Split(s.Log.String(), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			out = append(out, l)
		}
	}
	return out
}

// startCDN starts a plain static file server over the tree's blobs/ folder,
// standing in for the CDN heron serve --blob-base-url redirects to, and
// stops it when the test ends.
func startCDN(t *testing.T, tree string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(tree))
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/blobs/") || strings.HasSuffix(r.URL.Path, "/") {
				http.NotFound(w, r)
				return
			}
			files.ServeHTTP(w, r)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}
