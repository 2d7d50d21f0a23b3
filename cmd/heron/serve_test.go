package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
)

func writeLayoutFile(t *testing.T, dir string, content []byte) {
	t.Helper()
	if err := os.WriteFile(layout.Root(dir).Path(layout.LayoutFileKey()), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects the server's log from its goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines whose msg is msg.
func (b *lockedBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// served is a heron serve run by a test through the root command.
type served struct {
	addr, ops string // host:port of the registry and of the operations endpoints
	log       *lockedBuffer
	cancel    context.CancelFunc // what SIGTERM does
	done      chan struct{}      // closed when the command has returned
	err       error              // what it returned, once done is closed
}

// startServe runs heron serve with args and JSON logs, and waits for its
// "serving" line.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"serve", "--log-format", "json"}, args...))
	cmd.SetOut(io.Discard)
	cmd.SetErr(pw)
	s := &served{log: &lockedBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		s.err = cmd.ExecuteContext(ctx)
		close(s.done)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	started := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.log.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "serving" {
				started <- m
			}
		}
		close(started)
	}()
	select {
	case m, ok := <-started:
		if !ok {
			<-s.done
			t.Fatalf("serve ended before it served: %v\n%s", s.err, s.log)
		}
		var found bool
		s.addr, found = strings.CutPrefix(m["url"].(string), "http://")
		s.ops, _ = strings.CutPrefix(m["ops"].(string), "http://")
		if !found || strings.HasSuffix(s.addr, ":0") {
			t.Fatalf("serving line %v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no serving line:\n%s", s.log)
	}
	return s
}

// stop ends the server's context, as SIGTERM does, and returns what the
// command returned.
func (s *served) stop(t *testing.T, within time.Duration) error {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		return s.err
	case <-time.After(within):
		t.Fatalf("serve did not stop within %s of the signal", within)
		return nil
	}
}

func get(t *testing.T, url string) (int, string) {
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

// TestServe starts heron serve on a free port, asks it for /v2/ and the
// operations endpoints, and stops it by ending its context.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0")
	if s.ops != s.addr {
		t.Errorf("operations on %s, want the registry's %s", s.ops, s.addr)
	}
	resp, err := http.Get("http://" + s.addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "{}" || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("GET /v2/ = %d %q %v", resp.StatusCode, body, resp.Header)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, "http://"+s.addr+p); code != 200 || body != "ok\n" {
			t.Errorf("GET %s = %d %q", p, code, body)
		}
	}
	code, metrics := get(t, "http://"+s.addr+"/metrics")
	for _, want := range []string{
		`heron_http_requests_total{code="200",method="GET",route="base"} 1`,
		`heron_cache_requests_total{cache="repository",result="hit"} 0`,
		"heron_http_connections 1",
		"go_goroutines ",
		"process_open_fds ",
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("GET /metrics = %d, without %q:\n%s", code, want, metrics)
		}
	}
	reqs := s.log.lines(t, "request")
	if len(reqs) != 1 || reqs[0]["route"] != "base" || reqs[0]["status"] != float64(200) || reqs[0]["level"] != "INFO" {
		t.Errorf("request log lines %v, want the one GET /v2/", reqs)
	}

	if err := s.stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
	if _, err := http.Get("http://" + s.addr + "/v2/"); err == nil {
		t.Error("the server still answers after shutdown")
	}
	if len(s.log.lines(t, "stopped")) != 1 {
		t.Errorf("no stopped line:\n%s", s.log)
	}
}

// TestServeConfig: settings from a config file and the environment reach
// the server; the command line wins.
func TestServeConfig(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	cfg := writeConfig(t, fmt.Sprintf("root: %s\naddr: 127.0.0.1:1\ncache-size: 5\nlog-level: debug\n", dir))
	t.Setenv("HERON_CONFIG", cfg)
	t.Setenv("HERON_CACHE_SIZE", "0") // over the file: no caches, so no cache metrics
	t.Setenv("HERON_LOG_LEVEL", "info")
	t.Setenv("HERON_MEMORY_LIMIT", "50000000")
	s := startServe(t, "--addr", "127.0.0.1:0") // over the file's unusable port
	if lines := s.log.lines(t, "serving"); len(lines) != 1 || lines[0]["memoryLimit"] != 50000000.0 {
		t.Errorf("HERON_MEMORY_LIMIT=50000000: serving lines %v", lines)
	}
	get(t, "http://"+s.addr+"/v2/")
	_, metrics := get(t, "http://"+s.addr+"/metrics")
	if strings.Contains(metrics, "heron_cache_requests_total") {
		t.Errorf("HERON_CACHE_SIZE=0 did not turn the caches off:\n%s", metrics)
	}
	if l := s.log.String(); strings.Contains(l, `"level":"DEBUG"`) || len(s.log.lines(t, "request")) != 1 {
		t.Errorf("log:\n%s", l)
	}
	if err := s.stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
}

func TestServeErrors(t *testing.T) {
	good := t.TempDir()
	writeLayoutFile(t, good, layout.EncodeLayoutFile())
	v2 := t.TempDir()
	writeLayoutFile(t, v2, []byte(`{"layoutVersion": 2}`))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		Description string
		Args        []string
		Env         map[string]string
		Want        string
	}{
		{Description: "wrong layout version", Args: []string{"--root", v2}, Want: "layout version 2 is not supported"},
		{Description: "not a tree", Args: []string{"--root", t.TempDir()}, Want: "is not a heron tree"},
		{Description: "no root", Args: []string{"--root", good + "/missing"}, Want: "open tree"},
		{Description: "root flag missing", Want: `"root" not set`},
		{Description: "positional argument", Args: []string{"--root", good, "extra"}, Want: "unknown command"},
		{Description: "bad base URL", Args: []string{"--root", good, "--blob-base-url", "cdn.example.com"}, Want: "absolute http:// or https:// URL"},
		{Description: "bad address", Args: []string{"--root", good, "--addr", "127.0.0.1:notaport"}, Want: "listen"},
		{Description: "negative cache size", Args: []string{"--root", good, "--cache-size", "-1"}, Want: "cache bounds must not be negative"},
		{Description: "log format", Args: []string{"--root", good, "--log-format", "xml"}, Want: `--log-format "xml": want text or json`},
		{Description: "log level", Args: []string{"--root", good, "--log-level", "loud"}, Want: `--log-level "loud"`},
		{Description: "negative connection limit", Args: []string{"--root", good, "--max-connections", "-1"}, Want: "--max-connections -1"},
		{Description: "metrics address in use", Args: []string{"--root", good, "--addr", "127.0.0.1:0", "--metrics-addr", busy.Addr().String()}, Want: "listen on --metrics-addr"},
		{Description: "unknown config key", Args: []string{"--config", writeConfig(t, "root: "+good+"\nport: 5000\n")}, Want: `unknown key "port"`},
		{Description: "bad environment value", Args: []string{"--root", good}, Env: map[string]string{"HERON_MAX_CONNECTIONS": "many"}, Want: "HERON_MAX_CONNECTIONS: invalid argument"},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			for k, v := range tc.Env {
				t.Setenv(k, v)
			}
			cmd := newRootCmd()
			cmd.SetArgs(append([]string{"serve"}, tc.Args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.Want) {
				t.Errorf("error = %v, want one containing %q", err, tc.Want)
			}
		})
	}
}
