package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/servetest"
	"github.com/heron-registry/heron/layout"
)

func writeLayoutFile(t *testing.T, dir string, content []byte) {
	t.Helper()
	if err := os.WriteFile(layout.Root(dir).Path(layout.LayoutFileKey()), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// startServe runs heron serve with args and JSON logs, and waits for its
// "serving" line.
func startServe(t *testing.T, args ...string) *servetest.Server {
	t.Helper()
	return servetest.Start(t, func(ctx context.Context, log io.Writer) error {
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"serve", "--log-format", "json"}, args...))
		cmd.SetOut(io.Discard)
		cmd.SetErr(log)
		return cmd.ExecuteContext(ctx)
	})
}

// TestServe starts heron serve on a free port, asks it for /v2/ and the
// operations endpoints, and stops it by ending its context.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0")
	if s.Ops != s.Addr {
		t.Errorf("operations on %s, want the registry's %s", s.Ops, s.Addr)
	}
	resp, err := http.Get("http://" + s.Addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "{}" || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("GET /v2/ = %d %q %v", resp.StatusCode, body, resp.Header)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := servetest.Get(t, "http://"+s.Addr+p); code != 200 || body != "ok\n" {
			t.Errorf("GET %s = %d %q", p, code, body)
		}
	}
	code, metrics := servetest.Get(t, "http://"+s.Addr+"/metrics")
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
	reqs := s.Log.Lines(t, "request")
	if len(reqs) != 1 || reqs[0]["route"] != "base" || reqs[0]["status"] != float64(200) || reqs[0]["level"] != "INFO" {
		t.Errorf("request log lines %v, want the one GET /v2/", reqs)
	}

	if err := s.Stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
	if _, err := http.Get("http://" + s.Addr + "/v2/"); err == nil {
		t.Error("the server still answers after shutdown")
	}
	if len(s.Log.Lines(t, "stopped")) != 1 {
		t.Errorf("no stopped line:\n%s", s.Log)
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
	if lines := s.Log.Lines(t, "serving"); len(lines) != 1 || lines[0]["memoryLimit"] != 50000000.0 {
		t.Errorf("HERON_MEMORY_LIMIT=50000000: serving lines %v", lines)
	}
	servetest.Get(t, "http://"+s.Addr+"/v2/")
	_, metrics := servetest.Get(t, "http://"+s.Addr+"/metrics")
	if strings.Contains(metrics, "heron_cache_requests_total") {
		t.Errorf("HERON_CACHE_SIZE=0 did not turn the caches off:\n%s", metrics)
	}
	if l := s.Log.String(); strings.Contains(l, `"level":"DEBUG"`) || len(s.Log.Lines(t, "request")) != 1 {
		t.Errorf("log:\n%s", l)
	}
	if err := s.Stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
}

func TestServeErrors(t *testing.T) {
	good := t.TempDir()
	writeLayoutFile(t, good, layout.EncodeLayoutFile())
	v2 := t.TempDir()
	writeLayoutFile(t, v2, []byte(`{"layoutVersion": 2}`))
	keys := t.TempDir()
	shortKey, goodKey := filepath.Join(keys, "short.key"), filepath.Join(keys, "good.key")
	if err := os.WriteFile(shortKey, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(goodKey, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
		{Description: "signing key missing", Args: []string{"--root", good, "--redirect-signing-key", good + "/nokey"}, Want: "--redirect-signing-key: redirect signing key " + good + "/nokey: no such file"},
		{Description: "signing key short", Args: []string{"--root", good, "--redirect-signing-key", shortKey}, Want: "16 bytes, want at least 32"},
		{Description: "signing scheme", Args: []string{"--root", good, "--redirect-signing-key", goodKey, "--redirect-signing-scheme", "md5"}, Want: `"md5": want hmac-sha256 or nginx`},
		{Description: "signing expiry", Args: []string{"--root", good, "--redirect-signing-key", goodKey, "--redirect-signing-expiry", "0s"}, Want: "expiry 0s: want a second or more"},
		{Description: "bad address", Args: []string{"--root", good, "--addr", "127.0.0.1:notaport"}, Want: "listen"},
		{Description: "negative cache size", Args: []string{"--root", good, "--cache-size", "-1"}, Want: "cache bounds must not be negative"},
		{Description: "log format", Args: []string{"--root", good, "--log-format", "xml"}, Want: `--log-format "xml": want text or json`},
		{Description: "log level", Args: []string{"--root", good, "--log-level", "loud"}, Want: `--log-level "loud"`},
		{Description: "negative connection limit", Args: []string{"--root", good, "--max-connections", "-1"}, Want: "--max-connections -1"},
		{Description: "metrics address in use", Args: []string{"--root", good, "--addr", "127.0.0.1:0", "--metrics-addr", busy.Addr().String()}, Want: "listen on --metrics-addr"},
		{Description: "unknown config key", Args: []string{"--config", writeConfig(t, "root: "+good+"\nport: 5000\n")}, Want: `unknown key "port"`},
		{Description: "push without authentication", Args: []string{"--root", good, "--push"}, Want: "--push needs authentication"},
		{Description: "anonymous push with users", Args: []string{"--root", good, "--push", "--insecure-anonymous-push", "--htpasswd", writeConfig(t, "ci:$2y$05$abcdefghijklmnopqrstuu5Jx1aVgVJ0zHc6rZ2W6pAqGkQ3QnS6\n")}, Want: "cannot be combined with --htpasswd"},
		{Description: "delete without push", Args: []string{"--root", good, "--delete"}, Want: "--delete needs --push"},
		{Description: "push read-only", Args: []string{"--root", good, "--push", "--insecure-anonymous-push", "--read-only"}, Want: "cannot be used with --read-only"},
		{Description: "negative upload size", Args: []string{"--root", good, "--push", "--insecure-anonymous-push", "--max-upload-size", "-1"}, Want: "--max-upload-size -1"},
		{Description: "access without authentication", Args: []string{"--root", good, "--access", goodKey}, Want: "--access needs a way to authenticate"},
		{Description: "htpasswd missing", Args: []string{"--root", good, "--htpasswd", good + "/nohtpasswd"}, Want: good + "/nohtpasswd"},
		{Description: "htpasswd not bcrypt", Args: []string{"--root", good, "--htpasswd", writeConfig(t, "ci:{SHA}abc\n")}, Want: "only bcrypt"},
		{Description: "token key not a key", Args: []string{"--root", good, "--token-key", goodKey}, Want: goodKey},
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
