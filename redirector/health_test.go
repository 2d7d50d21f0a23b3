package redirector

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
)

// probe returns the status and body of one request to h.
func probe(h http.Handler, method, path string) (int, string) {
	w := get(h, method, path)
	return w.Code, w.Body.String()
}

// TestReadyz walks a server through the states of its tree: ready, marker
// gone, another layout version, garbage, ready again, closed. Liveness
// never changes, readiness follows the tree, and the log has one line
// per change, with the file's path, which the answer never shows.
func TestReadyz(t *testing.T) {
	tt := newTestTree(t)
	marker := tt.root.Path(layout.LayoutFileKey())
	srv, s, logs := newTestServer(t, tt.dir())
	ops := s.OpsHandler(nil)
	for _, tc := range []struct {
		Description string
		Setup       func(t *testing.T)
		Code        int
		Body        string // the exact body
		Log         string // in the log, "" for nothing
		WantIs      error  // of Ready's error
	}{
		{Description: "ready", Setup: func(*testing.T) {}, Code: 200, Body: "ok\n"},
		{Description: "marker gone", Setup: func(t *testing.T) {
			if err := os.Remove(marker); err != nil {
				t.Fatal(err)
			}
		}, Code: 503, Body: "not ready: heron-layout.json: not found\n", Log: `level=WARN msg="not ready"`, WantIs: errNotFound},
		{Description: "still gone: logged once", Setup: func(*testing.T) {}, Code: 503, Body: "not ready: heron-layout.json: not found\n"},
		{Description: "other layout version", Setup: func(t *testing.T) {
			writeFile(t, marker, `{"layoutVersion": 2}`)
		}, Code: 503, Body: "not ready: heron-layout.json: layout version 2 is not supported (this heron reads version 1)\n", WantIs: layout.ErrUnsupportedVersion},
		{Description: "garbage", Setup: func(t *testing.T) {
			writeFile(t, marker, `layoutVersion: 1`)
		}, Code: 503, Body: "not ready: heron-layout.json: invalid character 'l' looking for beginning of value\n"},
		{Description: "a folder", Setup: func(t *testing.T) {
			if err := os.Remove(marker); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(marker, 0o755); err != nil {
				t.Fatal(err)
			}
		}, Code: 503, Body: "not ready: heron-layout.json: not found\n"},
		{Description: "ready again", Setup: func(t *testing.T) {
			if err := os.Remove(marker); err != nil {
				t.Fatal(err)
			}
			writeFile(t, marker, string(layout.EncodeLayoutFile()))
		}, Code: 200, Body: "ok\n", Log: `level=INFO msg="ready again"`},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			logs.take()
			tc.Setup(t)
			code, body := probe(ops, "GET", "/readyz")
			if code != tc.Code || body != tc.Body {
				t.Errorf("GET /readyz = %d %q, want %d %q", code, body, tc.Code, tc.Body)
			}
			err := s.Ready(context.Background())
			if (err == nil) != (tc.Code == 200) || tc.WantIs != nil && !errors.Is(err, tc.WantIs) {
				t.Errorf("Ready() = %v", err)
			}
			if code, body := probe(ops, "GET", "/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("GET /healthz = %d %q", code, body)
			}
			l := logs.take()
			if tc.Log == "" && l != "" || tc.Log != "" && (!strings.Contains(l, tc.Log) || strings.Count(l, "\n") != 1) {
				t.Errorf("log %q, want one line with %q", l, tc.Log)
			}
			if tc.Log != "" && tc.Code != 200 && !strings.Contains(l, "file="+marker) {
				t.Errorf("log %q does not name %s", l, marker)
			}
		})
	}
	// The registry itself does not answer the probes without
	// WithOpsEndpoints.
	if resp, _ := fetch(t, srv, "GET", "/readyz", nil); resp.StatusCode != 404 {
		t.Errorf("GET /readyz on the registry without WithOpsEndpoints: %d", resp.StatusCode)
	}
	t.Run("closed", func(t *testing.T) {
		s.Close()
		if code, body := probe(ops, "GET", "/readyz"); code != 503 || !strings.HasPrefix(body, "not ready: heron-layout.json: ") {
			t.Errorf("GET /readyz after Close = %d %q", code, body)
		}
	})
}

func TestOpsHandler(t *testing.T) {
	tt := newTestTree(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics\n") })
	with, err := New(tt.dir(), WithOpsEndpoints(metrics))
	if err != nil {
		t.Fatal(err)
	}
	defer with.Close()
	without, err := New(tt.dir(), WithOpsEndpoints(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer without.Close()
	for _, tc := range []struct {
		Description  string
		Handler      http.Handler
		Method, Path string
		Code         int
		Body         string // exact, when not empty
	}{
		{"healthz", with, "GET", "/healthz", 200, "ok\n"},
		{"healthz HEAD", with, "HEAD", "/healthz", 200, ""},
		{"readyz", with, "GET", "/readyz", 200, "ok\n"},
		{"readyz POST", with, "POST", "/readyz", 405, ""},
		{"metrics", with, "GET", "/metrics", 200, "metrics\n"},
		{"no metrics handler", without, "GET", "/metrics", 404, ""},
		{"the registry beside them", with, "GET", "/v2/", 200, "{}"},
		{"ops handler alone", with.OpsHandler(nil), "GET", "/v2/", 404, ""},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			code, body := probe(tc.Handler, tc.Method, tc.Path)
			if code != tc.Code || tc.Body != "" && body != tc.Body || tc.Method == "HEAD" && body != "" {
				t.Errorf("%s %s = %d %q, want %d %q", tc.Method, tc.Path, code, body, tc.Code, tc.Body)
			}
		})
	}
}
