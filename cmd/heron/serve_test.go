package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector"
	"github.com/opencontainers/go-digest"
)

func writeLayoutFile(t *testing.T, dir string, content []byte) {
	t.Helper()
	if err := os.WriteFile(layout.Root(dir).Path(layout.LayoutFileKey()), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTreeFile writes data at key under dir.
func writeTreeFile(t *testing.T, dir, key string, data []byte) {
	t.Helper()
	p := layout.Root(dir).Path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// bigBlobTree writes a tree whose repository "big" lists one blob of size
// bytes, larger than what the loopback's socket buffers hold, so that a
// client that stops reading keeps its request in flight.
func bigBlobTree(t *testing.T, size int) (dir string, d digest.Digest) {
	t.Helper()
	dir = t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	data := make([]byte, size)
	x := uint32(2463534242)
	for i := range data {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		data[i] = byte(x)
	}
	d = digest.FromBytes(data)
	key, err := layout.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	writeTreeFile(t, dir, key, data)
	repo := layout.NewRepository("big")
	repo.Blobs[d] = layout.Blob{Size: int64(size)}
	enc, err := repo.Encode()
	if err != nil {
		t.Fatal(err)
	}
	key, err = layout.RepositoryKey("big")
	if err != nil {
		t.Fatal(err)
	}
	writeTreeFile(t, dir, key, enc)
	return dir, d
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

// TestServeMetricsAddr: with --metrics-addr, the operations endpoints are
// there only, and the registry there is not.
func TestServeMetricsAddr(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	if s.ops == s.addr || s.ops == "" {
		t.Fatalf("operations on %q, registry on %q", s.ops, s.addr)
	}
	for _, tc := range []struct {
		url  string
		code int
	}{
		{"http://" + s.addr + "/v2/", 200},
		{"http://" + s.addr + "/metrics", 404},
		{"http://" + s.addr + "/readyz", 404},
		{"http://" + s.ops + "/metrics", 200},
		{"http://" + s.ops + "/healthz", 200},
		{"http://" + s.ops + "/readyz", 200},
		{"http://" + s.ops + "/v2/", 404},
	} {
		if code, _ := get(t, tc.url); code != tc.code {
			t.Errorf("GET %s = %d, want %d", tc.url, code, tc.code)
		}
	}
	if err := s.stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
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
	s := startServe(t, "--addr", "127.0.0.1:0") // over the file's unusable port
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

// TestServeGracefulShutdown: a download in flight when the signal comes
// completes, whole, while new connections are refused; then the command
// returns.
func TestServeGracefulShutdown(t *testing.T) {
	const size = 32 << 20
	dir, d := bigBlobTree(t, size)
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0", "--cache-size", "0")
	resp, err := http.Get("http://" + s.addr + "/v2/big/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 64<<10); err != nil {
		t.Fatal(err)
	}

	s.cancel()
	// The listener closes: new connections are refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections are still accepted after the signal")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The download is still in flight: the command waits for it.
	select {
	case <-s.done:
		t.Fatalf("serve returned (%v) with a download in flight", s.err)
	case <-time.After(300 * time.Millisecond):
	}
	// The client reads the rest slowly.
	buf := make([]byte, 1<<20)
	for {
		n, err := resp.Body.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("download cut: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)); got != d {
		t.Errorf("downloaded %s, want %s", got, d)
	}
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("serve ended with %v", s.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the download completed")
	}
	if len(s.log.lines(t, "shutdown timeout reached")) != 0 {
		t.Errorf("the shutdown timed out:\n%s", s.log)
	}
}

// TestServeShutdownTimeout: a client that stops reading does not hold the
// server past --shutdown-timeout.
func TestServeShutdownTimeout(t *testing.T) {
	dir, d := bigBlobTree(t, 32<<20)
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0", "--shutdown-timeout", "300ms")
	resp, err := http.Get("http://" + s.addr + "/v2/big/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	if err := s.stop(t, 10*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
	if e := time.Since(start); e < 300*time.Millisecond {
		t.Errorf("serve returned after %s, before the shutdown timeout", e)
	}
	if len(s.log.lines(t, "shutdown timeout reached: closing the connections still open")) != 1 {
		t.Errorf("log:\n%s", s.log)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("the download completed although its connection was closed")
	}
}

// TestServeSlowLoris: a client that sends its headers a byte at a time is
// disconnected after --read-header-timeout, and others are served
// meanwhile.
func TestServeSlowLoris(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0", "--read-header-timeout", "300ms")
	// Before the dial: the server's deadline starts when it accepts the
	// connection, which may come a moment before Dial returns here.
	start := time.Now()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	closed := make(chan time.Duration, 1)
	go func() {
		// The server closes the connection without an answer.
		io.Copy(io.Discard, c)
		closed <- time.Since(start)
	}()
	header := "GET /v2/ HTTP/1.1\r\nHost: heron\r\nUser-Agent: slow" + strings.Repeat("w", 100)
	var elapsed time.Duration
loop:
	for i := 0; ; i++ {
		if _, err := c.Write([]byte{header[i%len(header)]}); err != nil {
			elapsed = time.Since(start)
			break
		}
		select {
		case elapsed = <-closed:
			break loop
		case <-time.After(50 * time.Millisecond):
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("a client sending its headers slowly is still connected after 5s")
		}
		if i == 3 {
			// Meanwhile, others are answered.
			if code, _ := get(t, "http://"+s.addr+"/v2/"); code != 200 {
				t.Errorf("GET /v2/ = %d while a slow client is connected", code)
			}
		}
	}
	if elapsed < 300*time.Millisecond {
		t.Errorf("disconnected after %s, before the header timeout", elapsed)
	}
}

// TestServeMaxConnections: with --max-connections 1, a second client waits
// until the first one's connection closes.
func TestServeMaxConnections(t *testing.T) {
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	s := startServe(t, "--root", dir, "--addr", "127.0.0.1:0", "--max-connections", "1")
	request := "GET /v2/ HTTP/1.1\r\nHost: heron\r\n\r\n"
	status := func(c net.Conn, timeout time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(timeout))
		return bufio.NewReader(c).ReadString('\n')
	}
	first, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, request)
	if line, err := status(first, 5*time.Second); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("first client: %q %v", line, err)
	}
	// first stays open (keep-alive): the second waits.
	second, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	io.WriteString(second, request)
	if line, err := status(second, 300*time.Millisecond); err == nil {
		t.Fatalf("second client answered %q beyond the connection limit", line)
	}
	first.Close()
	if line, err := status(second, 5*time.Second); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("second client after the first left: %q %v", line, err)
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

// TestServeMemoryLimit: serve sets the Go runtime's soft memory limit to
// the caches' budget plus the headroom, or to --memory-limit, and puts
// back the one it found when it returns.
func TestServeMemoryLimit(t *testing.T) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		t.Skip("GOMEMLIMIT is set: serve leaves the limit to it")
	}
	dir := t.TempDir()
	writeLayoutFile(t, dir, layout.EncodeLayoutFile())
	before := debug.SetMemoryLimit(-1)
	for _, tc := range []struct {
		flags []string
		want  int64
	}{
		{nil, redirector.DefaultCacheBytes + redirector.MemoryHeadroom},
		{[]string{"--cache-bytes", "1048576"}, 1<<20 + redirector.MemoryHeadroom},
		{[]string{"--memory-limit", "50000000"}, 50000000},
		{[]string{"--memory-limit", "-1"}, before},
	} {
		s := startServe(t, append([]string{"--root", dir, "--addr", "127.0.0.1:0"}, tc.flags...)...)
		lines := s.log.lines(t, "serving")
		if len(lines) != 1 || lines[0]["memoryLimit"] != float64(tc.want) {
			t.Errorf("%v: serving lines %v, want memoryLimit %d", tc.flags, lines, tc.want)
		}
		if err := s.stop(t, 15*time.Second); err != nil {
			t.Errorf("serve ended with %v", err)
		}
		if got := debug.SetMemoryLimit(-1); got != before {
			t.Errorf("%v: after serve, the limit is %d, want %d as before", tc.flags, got, before)
		}
	}
}
