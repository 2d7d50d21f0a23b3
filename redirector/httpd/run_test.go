package httpd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"go/build"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/servetest"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector"
	"github.com/opencontainers/go-digest"
)

// flagDefaults is the Config heron serve's flags default to, on a free
// port of the loopback.
func flagDefaults() Config {
	return Config{
		Addr:              "127.0.0.1:0",
		CacheSize:         redirector.DefaultCacheSize,
		CacheBytes:        redirector.DefaultCacheBytes,
		FastPath:          true,
		MaxConnections:    DefaultMaxConnections,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		ShutdownTimeout:   DefaultShutdownTimeout,
	}
}

// emptyTree writes a tree with nothing in it but its layout file.
func emptyTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeTreeFile(t, dir, layout.LayoutFileKey(), layout.EncodeLayoutFile())
	return dir
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
	dir = emptyTree(t)
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

// start runs Run on root with cfg and a JSON logger, and waits for its
// "serving" line.
func start(t *testing.T, root string, cfg Config) *servetest.Server {
	t.Helper()
	return servetest.Start(t, func(ctx context.Context, log io.Writer) error {
		cfg.Logger = slog.New(slog.NewJSONHandler(log, nil))
		return Run(ctx, root, cfg)
	})
}

// TestDeps keeps the imports pointing downward: httpd puts redirector and
// its HTTP loop together (serving a tree in a store.Store when given one,
// with the access control of redirector/auth), and imports nothing else
// of this module.
func TestDeps(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		switch rest, ok := strings.CutPrefix(imp, "github.com/heron-registry/heron/"); {
		case !ok, rest == "redirector", rest == "redirector/h1", rest == "redirector/auth", rest == "store":
		default:
			t.Errorf("httpd imports %s; of this module it may import redirector, redirector/h1, redirector/auth and store only", imp)
		}
	}
}

// TestRun serves a tree, answers /v2/ and the operations endpoints on one
// listener, and logs its start and its stop.
func TestRun(t *testing.T) {
	r := start(t, emptyTree(t), flagDefaults())
	if r.Ops != r.Addr {
		t.Errorf("operations on %s, want the registry's %s", r.Ops, r.Addr)
	}
	for _, p := range []string{"/v2/", "/healthz", "/readyz", "/metrics"} {
		if code, _ := servetest.Get(t, "http://"+r.Addr+p); code != 200 {
			t.Errorf("GET %s = %d", p, code)
		}
	}
	if err := r.Stop(t, 15*time.Second); err != nil {
		t.Errorf("Run returned %v", err)
	}
	if _, err := http.Get("http://" + r.Addr + "/v2/"); err == nil {
		t.Error("the server still answers after Run returned")
	}
	for _, msg := range []string{"shutting down: no new connections; waiting for the requests in flight", "stopped"} {
		if len(r.Log.Lines(t, msg)) != 1 {
			t.Errorf("no %q line:\n%s", msg, r.Log)
		}
	}
}

// TestRunMetricsAddr: with a MetricsAddr, the operations endpoints are
// there only, and the registry there is not.
func TestRunMetricsAddr(t *testing.T) {
	cfg := flagDefaults()
	cfg.MetricsAddr = "127.0.0.1:0"
	r := start(t, emptyTree(t), cfg)
	if r.Ops == r.Addr || r.Ops == "" {
		t.Fatalf("operations on %q, registry on %q", r.Ops, r.Addr)
	}
	for _, tc := range []struct {
		url  string
		code int
	}{
		{"http://" + r.Addr + "/v2/", 200},
		{"http://" + r.Addr + "/metrics", 404},
		{"http://" + r.Addr + "/readyz", 404},
		{"http://" + r.Ops + "/metrics", 200},
		{"http://" + r.Ops + "/healthz", 200},
		{"http://" + r.Ops + "/readyz", 200},
		{"http://" + r.Ops + "/v2/", 404},
	} {
		if code, _ := servetest.Get(t, tc.url); code != tc.code {
			t.Errorf("GET %s = %d, want %d", tc.url, code, tc.code)
		}
	}
	if err := r.Stop(t, 15*time.Second); err != nil {
		t.Errorf("Run returned %v", err)
	}
}

// TestRunGracefulShutdown: a download in flight when the context ends
// completes, whole, while new connections are refused; then Run returns.
func TestRunGracefulShutdown(t *testing.T) {
	const size = 32 << 20
	dir, d := bigBlobTree(t, size)
	cfg := flagDefaults()
	cfg.CacheSize = 0
	r := start(t, dir, cfg)
	resp, err := http.Get("http://" + r.Addr + "/v2/big/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 64<<10); err != nil {
		t.Fatal(err)
	}

	r.Cancel()
	// The listener closes: new connections are refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections are still accepted after the cancellation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The download is still in flight: Run waits for it.
	select {
	case <-r.Done:
		t.Fatalf("Run returned (%v) with a download in flight", r.Err)
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
	case <-r.Done:
		if r.Err != nil {
			t.Errorf("Run returned %v", r.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the download completed")
	}
	if len(r.Log.Lines(t, "shutdown timeout reached: closing the connections still open")) != 0 {
		t.Errorf("the shutdown timed out:\n%s", r.Log)
	}
}

// TestRunShutdownTimeout: a client that stops reading does not hold the
// server past the ShutdownTimeout.
func TestRunShutdownTimeout(t *testing.T) {
	dir, d := bigBlobTree(t, 32<<20)
	cfg := flagDefaults()
	cfg.ShutdownTimeout = 300 * time.Millisecond
	r := start(t, dir, cfg)
	resp, err := http.Get("http://" + r.Addr + "/v2/big/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	begin := time.Now()
	if err := r.Stop(t, 10*time.Second); err != nil {
		t.Errorf("Run returned %v", err)
	}
	if e := time.Since(begin); e < cfg.ShutdownTimeout {
		t.Errorf("Run returned after %s, before the shutdown timeout", e)
	}
	if len(r.Log.Lines(t, "shutdown timeout reached: closing the connections still open")) != 1 {
		t.Errorf("log:\n%s", r.Log)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("the download completed although its connection was closed")
	}
}

// TestRunSlowLoris: a client that sends its headers a byte at a time is
// disconnected after the ReadHeaderTimeout, and others are served
// meanwhile, on the loop and on net/http alike.
func TestRunSlowLoris(t *testing.T) {
	for _, fast := range []bool{true, false} {
		cfg := flagDefaults()
		cfg.FastPath = fast
		cfg.ReadHeaderTimeout = 300 * time.Millisecond
		r := start(t, emptyTree(t), cfg)
		// Before the dial: the server's deadline starts when it accepts
		// the connection, which may come a moment before Dial returns here.
		begin := time.Now()
		c, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		closed := make(chan time.Duration, 1)
		go func() {
			// The server closes the connection without an answer.
			io.Copy(io.Discard, c)
			closed <- time.Since(begin)
		}()
		header := "GET /v2/ HTTP/1.1\r\nHost: heron\r\nUser-Agent: slow" + strings.Repeat("w", 100)
		var elapsed time.Duration
	loop:
		for i := 0; ; i++ {
			if _, err := c.Write([]byte{header[i%len(header)]}); err != nil {
				elapsed = time.Since(begin)
				break
			}
			select {
			case elapsed = <-closed:
				break loop
			case <-time.After(50 * time.Millisecond):
			}
			if time.Since(begin) > 5*time.Second {
				t.Fatalf("FastPath %v: a client sending its headers slowly is still connected after 5s", fast)
			}
			if i == 3 {
				// Meanwhile, others are answered.
				if code, _ := servetest.Get(t, "http://"+r.Addr+"/v2/"); code != 200 {
					t.Errorf("FastPath %v: GET /v2/ = %d while a slow client is connected", fast, code)
				}
			}
		}
		if elapsed < cfg.ReadHeaderTimeout {
			t.Errorf("FastPath %v: disconnected after %s, before the header timeout", fast, elapsed)
		}
	}
}

// TestRunMaxConnections: with MaxConnections 1, a second client waits
// until the first one's connection closes, on the loop and on net/http
// alike.
func TestRunMaxConnections(t *testing.T) {
	for _, fast := range []bool{true, false} {
		cfg := flagDefaults()
		cfg.FastPath = fast
		cfg.MaxConnections = 1
		r := start(t, emptyTree(t), cfg)
		request := "GET /v2/ HTTP/1.1\r\nHost: heron\r\n\r\n"
		status := func(c net.Conn, timeout time.Duration) (string, error) {
			c.SetReadDeadline(time.Now().Add(timeout))
			return bufio.NewReader(c).ReadString('\n')
		}
		first, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		io.WriteString(first, request)
		if line, err := status(first, 5*time.Second); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("FastPath %v: first client: %q %v", fast, line, err)
		}
		// first stays open (keep-alive): the second waits.
		second, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		io.WriteString(second, request)
		if line, err := status(second, 300*time.Millisecond); err == nil {
			t.Fatalf("FastPath %v: second client answered %q beyond the connection limit", fast, line)
		}
		first.Close()
		if line, err := status(second, 5*time.Second); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("FastPath %v: second client after the first left: %q %v", fast, line, err)
		}
	}
}

// TestRunMemoryLimit: Run sets the Go runtime's soft memory limit to the
// caches' budget plus the headroom, or to MemoryLimit, leaves it alone
// with MemoryLimit -1 or when GOMEMLIMIT is set, and puts back the one it
// found when it returns.
func TestRunMemoryLimit(t *testing.T) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		t.Skip("GOMEMLIMIT is set: Run leaves the limit to it")
	}
	dir := emptyTree(t)
	before := debug.SetMemoryLimit(-1)
	for _, tc := range []struct {
		name        string
		cacheBytes  int64
		memoryLimit int64
		gomemlimit  string
		want        int64
	}{
		{"default", redirector.DefaultCacheBytes, 0, "", redirector.DefaultCacheBytes + redirector.MemoryHeadroom},
		{"cache bytes", 1 << 20, 0, "", 1<<20 + redirector.MemoryHeadroom},
		{"memory limit", redirector.DefaultCacheBytes, 50000000, "", 50000000},
		{"no limit", redirector.DefaultCacheBytes, -1, "", before},
		// The runtime read GOMEMLIMIT at start-up: Run leaves its limit.
		{"GOMEMLIMIT", redirector.DefaultCacheBytes, 0, "1GiB", before},
		{"memory limit over GOMEMLIMIT", redirector.DefaultCacheBytes, 50000000, "1GiB", 50000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gomemlimit != "" {
				t.Setenv("GOMEMLIMIT", tc.gomemlimit)
			}
			cfg := flagDefaults()
			cfg.CacheBytes, cfg.MemoryLimit = tc.cacheBytes, tc.memoryLimit
			r := start(t, dir, cfg)
			lines := r.Log.Lines(t, "serving")
			if len(lines) != 1 || lines[0]["memoryLimit"] != float64(tc.want) {
				t.Errorf("serving lines %v, want memoryLimit %d", lines, tc.want)
			}
			if err := r.Stop(t, 15*time.Second); err != nil {
				t.Errorf("Run returned %v", err)
			}
			if got := debug.SetMemoryLimit(-1); got != before {
				t.Errorf("after Run, the limit is %d, want %d as before", got, before)
			}
		})
	}
}

// TestRunErrors: Run does not start with a bad tree, setting or address,
// and says which.
func TestRunErrors(t *testing.T) {
	good := emptyTree(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name   string
		root   string
		config func(*Config)
		want   string
	}{
		{"not a tree", t.TempDir(), func(*Config) {}, "is not a heron tree"},
		{"bad base URL", good, func(c *Config) { c.BlobBaseURL = "cdn.example.com" }, "absolute http:// or https:// URL"},
		{"negative cache size", good, func(c *Config) { c.CacheSize = -1 }, "cache bounds must not be negative"},
		{"negative connection limit", good, func(c *Config) { c.MaxConnections = -1 }, "--max-connections -1"},
		{"address in use", good, func(c *Config) { c.Addr = busy.Addr().String() }, "listen: "},
		{"metrics address in use", good, func(c *Config) { c.MetricsAddr = busy.Addr().String() }, "listen on --metrics-addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := flagDefaults()
			cfg.Logger = slog.New(slog.DiscardHandler)
			tc.config(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := Run(ctx, tc.root, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
