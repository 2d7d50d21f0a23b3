package redirector

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
)

// jsonLines parses what a JSON handler logged, one object per line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLog: one JSON line per request, with its method, path, route,
// repository, status, bytes and duration; errors carry the file concerned.
func TestAccessLog(t *testing.T) {
	f := newFixture(t)
	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	srv, _, _ := newTestServer(t, f.tree.dir(), WithLogger(logger), WithAccessLog(logger), WithOpsEndpoints(nil))
	brokenKey, _ := layout.RepositoryKey("broken")
	for _, tc := range []struct {
		Description string
		Method      string
		URL         string
		Header      map[string]string
		Route, Repo string
		Status      int
		Bytes       int64
		// Error, when set, is the message of an error line logged before
		// the request line, and File the "file" it names.
		Error, File string
	}{
		{Description: "manifest", Method: "GET", URL: manifestURL("library/alpine", "latest"), Route: "manifest", Repo: "library/alpine", Status: 200, Bytes: f.idx.Size},
		{Description: "manifest HEAD", Method: "HEAD", URL: manifestURL("library/alpine", "latest"), Route: "manifest", Repo: "library/alpine", Status: 200},
		{Description: "blob", Method: "GET", URL: blobURL("library/alpine", f.layerA.Digest), Route: "blob", Repo: "library/alpine", Status: 200, Bytes: f.layerA.Size},
		{Description: "blob range", Method: "GET", URL: blobURL("library/alpine", f.layerA.Digest), Header: map[string]string{"Range": "bytes=0-9"}, Route: "blob", Repo: "library/alpine", Status: 206, Bytes: 10},
		{Description: "redirect", Method: "GET", URL: blobURL("team/app/api", f.layerC.Digest), Route: "blob", Repo: "team/app/api", Status: 307},
		{Description: "base", Method: "GET", URL: "/v2/", Route: "base", Status: 200, Bytes: 2},
		{Description: "catalog", Method: "GET", URL: "/v2/_catalog?n=1", Route: "catalog", Status: 200, Bytes: int64(len(`{"repositories":["broken"]}`))},
		{Description: "unknown name", Method: "GET", URL: "/v2/nope/tags/list", Route: "tags", Repo: "nope", Status: 404, Bytes: -1},
		{Description: "write", Method: "DELETE", URL: manifestURL("other", "latest"), Route: "manifest", Repo: "other", Status: 405, Bytes: -1},
		{Description: "broken repository file", Method: "GET", URL: manifestURL("broken", "latest"), Route: "manifest", Repo: "broken", Status: 500, Bytes: -1,
			Error: "request failed", File: f.tree.root.Path(brokenKey)},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			logs.take()
			start := time.Now()
			resp, body := fetch(t, srv, tc.Method, tc.URL, tc.Header)
			elapsed := time.Since(start)
			if resp.StatusCode != tc.Status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.Status)
			}
			lines := jsonLines(t, logs.take())
			want := 1
			if tc.Error != "" {
				want = 2
			}
			if len(lines) != want {
				t.Fatalf("%d log lines, want %d: %v", len(lines), want, lines)
			}
			if tc.Error != "" {
				e := lines[0]
				if e["level"] != "ERROR" || e["msg"] != tc.Error || e["file"] != tc.File || !strings.HasPrefix(e["err"].(string), tc.File+": ") {
					t.Errorf("error line %v, want %q with file %q", e, tc.Error, tc.File)
				}
			}
			l := lines[len(lines)-1]
			wantBytes := tc.Bytes
			if wantBytes < 0 {
				wantBytes = int64(len(body))
			}
			for k, v := range map[string]any{
				"level": "INFO", "msg": "request", "method": tc.Method, "path": strings.SplitN(tc.URL, "?", 2)[0],
				"route": tc.Route, "status": float64(tc.Status), "bytes": float64(wantBytes), "user_agent": "Go-http-client/1.1",
			} {
				if l[k] != v {
					t.Errorf("%s = %#v, want %#v (line %v)", k, l[k], v, l)
				}
			}
			if repo, ok := l["repository"]; tc.Repo != "" && repo != tc.Repo || tc.Repo == "" && ok {
				t.Errorf("repository = %#v, want %q", repo, tc.Repo)
			}
			if d, ok := l["duration"].(float64); !ok || d <= 0 || time.Duration(d) > elapsed {
				t.Errorf("duration = %#v, want a positive number of nanoseconds below %d", l["duration"], elapsed)
			}
			if r, _ := l["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
				t.Errorf("remote = %q", r)
			}
		})
	}

	t.Run("operations endpoints are not logged", func(t *testing.T) {
		logs.take()
		for _, p := range []string{"/healthz", "/readyz"} {
			if resp, _ := fetch(t, srv, "GET", p, nil); resp.StatusCode != 200 {
				t.Errorf("GET %s: %d", p, resp.StatusCode)
			}
		}
		if l := logs.take(); l != "" {
			t.Errorf("logged %q", l)
		}
	})
}

// TestAccessLogLevel: a handler above Info turns the request lines off,
// not the error lines.
func TestAccessLogLevel(t *testing.T) {
	f := newFixture(t)
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, _, _ := newTestServer(t, f.tree.dir(), WithLogger(logger), WithAccessLog(logger))
	fetch(t, srv, "GET", manifestURL("library/alpine", "latest"), nil)
	if l := logs.take(); l != "" {
		t.Errorf("at level WARN, a request logged %q", l)
	}
	fetch(t, srv, "GET", manifestURL("broken", "latest"), nil)
	if l := logs.take(); !strings.Contains(l, "level=ERROR") || strings.Contains(l, "msg=request ") {
		t.Errorf("at level WARN, a failed request logged %q", l)
	}
}

// TestRecorderWithoutReaderFrom: a ResponseWriter without io.ReaderFrom
// (httptest's) still gets every byte of a blob, and the log counts them.
func TestRecorderWithoutReaderFrom(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	s, err := New(f.tree.dir(), WithAccessLog(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := get(s, http.MethodGet, blobURL("library/alpine", f.layerA.Digest))
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), f.layerAData) {
		t.Fatalf("status %d, body %q", w.Code, w.Body.Bytes())
	}
	lines := jsonLines(t, buf.String())
	if len(lines) != 1 || lines[0]["bytes"] != float64(len(f.layerAData)) || lines[0]["status"] != float64(200) {
		t.Errorf("log %v", lines)
	}
}
