// Package servetest runs heron's server inside a test, through the heron
// command or redirector/httpd.Run, and reads its JSON log the way the
// suites that start the binary do (internal/heronproc): it waits for the
// "serving" line and takes the addresses from it.
package servetest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/heronproc"
)

// Log collects a server's JSON log from its goroutines, one record per
// Write (as log/slog writes them), and hands the "serving" line to Start.
type Log struct {
	heronproc.LockedBuffer
	serving chan map[string]any
}

// Write implements io.Writer.
func (l *Log) Write(p []byte) (int, error) {
	n, err := l.LockedBuffer.Write(p)
	// After the write: the test Start returns to finds the line in the Log.
	var m map[string]any
	if json.Unmarshal(p, &m) == nil && m["msg"] == "serving" {
		select {
		case l.serving <- m:
		default:
		}
	}
	return n, err
}

// Lines returns the log lines whose msg is msg.
func (l *Log) Lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// Server is a server started by Start.
type Server struct {
	Addr, Ops string // host:port of the registry and of the operations endpoints
	// URL and OpsURL are the same with their scheme: http:// or, over
	// TLS, https://.
	URL, OpsURL string
	Log         *Log
	Cancel      context.CancelFunc // what SIGTERM does to heron serve
	Done        chan struct{}      // closed when serve has returned
	Err         error              // what serve returned, once Done is closed
}

// Start runs serve in a goroutine with a context that Cancel (and the end
// of the test) ends and a Log for its JSON log, and waits for its
// "serving" line.
func Start(t testing.TB, serve func(ctx context.Context, log io.Writer) error) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Log: &Log{serving: make(chan map[string]any, 1)}, Cancel: cancel, Done: make(chan struct{})}
	go func() {
		s.Err = serve(ctx, s.Log)
		close(s.Done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.Done:
		case <-time.After(20 * time.Second):
			t.Error("the server did not stop")
		}
	})
	select {
	case m := <-s.Log.serving:
		s.URL, _ = m["url"].(string)
		s.OpsURL, _ = m["ops"].(string)
		var found bool
		s.Addr, found = cutScheme(s.URL)
		s.Ops, _ = cutScheme(s.OpsURL)
		if !found || strings.HasSuffix(s.Addr, ":0") {
			t.Fatalf("serving line %v", m)
		}
	case <-s.Done:
		t.Fatalf("the server returned before it served: %v\n%s", s.Err, s.Log)
	case <-time.After(20 * time.Second):
		t.Fatalf("no serving line:\n%s", s.Log)
	}
	return s
}

// cutScheme returns url without its http:// or https://.
func cutScheme(url string) (string, bool) {
	if rest, ok := strings.CutPrefix(url, "http://"); ok {
		return rest, true
	}
	return strings.CutPrefix(url, "https://")
}

// Stop ends the server's context, as SIGTERM does heron serve's, and
// returns what serve returned.
func (s *Server) Stop(t testing.TB, within time.Duration) error {
	t.Helper()
	s.Cancel()
	select {
	case <-s.Done:
		return s.Err
	case <-time.After(within):
		t.Fatalf("the server did not stop within %s of the cancellation", within)
		return nil
	}
}

// Get sends GET url and returns the status and the body.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
