package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/redirector/h1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

// Defaults of the server's limits. There is no read timeout (net/http
// would cancel a request's context when it passes during a long response)
// and no write timeout by default: a large blob download may take as long
// as it takes. Slow and idle clients are bounded by the header and idle
// timeouts and by the connection limit.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
	defaultShutdownTimeout   = 10 * time.Second
	defaultMaxConnections    = 10000
)

// serveConfig is what the flags of heron serve set.
type serveConfig struct {
	root              string
	addr              string
	blobBaseURL       string
	redirectManifests bool
	cacheSize         int
	cacheBytes        int64
	memoryLimit       int64
	logFormat         string
	logLevel          string
	metricsAddr       string
	maxConnections    int
	fastPath          bool
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	writeTimeout      time.Duration
	shutdownTimeout   time.Duration
}

func newCmdServe() *cobra.Command {
	var c serveConfig
	cmd := &cobra.Command{
		Use:   "serve --root DIR",
		Short: "Serve a heron tree as a read-only OCI registry",
		Long: `serve answers the OCI Distribution API (/v2/...) read-only from the tree at
--root. It reads nothing at start-up but heron-layout.json, and each request
reads the repository's file and at most one blob.

Parsed repository files, manifests and catalog shards are cached, each cache
bounded by --cache-size entries, all of them together by about --cache-bytes
of memory. A cached repository file (and the catalog index) is checked with
one stat per request, so a publish is seen by the next request;
--cache-size 0 gives the same answers without caching. The Go runtime's soft
memory limit is set to --cache-bytes + 16 MiB unless GOMEMLIMIT or
--memory-limit says otherwise, so that memory stays flat under load.

With --blob-base-url (or a repository's own blobBaseURL), blob requests are
redirected (307) to <URL>/blobs/<alg>/<hex>, where a CDN or static host serves
the tree; --redirect-manifests redirects manifest GETs there too.

Operations: GET /healthz (liveness), /readyz (the tree is readable and of a
layout version this heron reads) and /metrics (Prometheus) are answered on
--addr, or on --metrics-addr alone when it is set. One log line per request
is written at level info (--log-level warn turns them off); errors name the
file concerned. On SIGTERM or SIGINT the server stops accepting connections
and waits up to --shutdown-timeout for the requests in flight.

Every flag can also be set by the environment variable HERON_<FLAG> (upper
case, "_" for "-": HERON_CACHE_SIZE) or by the YAML file --config names, whose
keys are the flags' names (cache-size: 0). The command line wins over the
environment, which wins over the file. See docs/operating.md.`,
		Example: `  heron serve --root /srv/heron --addr :5000
  heron serve --config /etc/heron/serve.yaml --log-format json
  HERON_ROOT=/srv/heron HERON_BLOB_BASE_URL=https://cdn.example.com/heron heron serve`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyConfig(cmd.Flags(), os.LookupEnv)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), cmd.ErrOrStderr(), c)
		},
	}
	f := cmd.Flags()
	f.String(configFlag, "", "read settings from this YAML file (keys are the flags' names; the command line and HERON_* variables win)")
	f.StringVar(&c.root, "root", "", "the tree to serve (required)")
	f.StringVar(&c.addr, "addr", "127.0.0.1:5000", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&c.blobBaseURL, "blob-base-url", "", "redirect blob requests to URL/blobs/<alg>/<hex> for repositories without a blobBaseURL of their own")
	f.BoolVar(&c.redirectManifests, "redirect-manifests", false, "redirect manifest GETs to the blob base URL too (HEAD is always answered directly)")
	f.IntVar(&c.cacheSize, "cache-size", redirector.DefaultCacheSize, "entries of each cache (parsed repository files, manifests, catalog shards); 0 turns caching off")
	f.Int64Var(&c.cacheBytes, "cache-bytes", redirector.DefaultCacheBytes, "approximate memory of all the caches together, in bytes")
	f.Int64Var(&c.memoryLimit, "memory-limit", 0, "soft memory limit of the Go runtime, in bytes (0: --cache-bytes + 16 MiB, or GOMEMLIMIT when set; -1: none)")
	f.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info (one line per request), warn or error")
	f.StringVar(&c.metricsAddr, "metrics-addr", "", "serve /metrics, /healthz and /readyz on this address only (default: on --addr)")
	f.BoolVar(&c.fastPath, "fast-path", true, "answer GET and HEAD requests of /v2/ on heron's own HTTP/1.1 loop, handing every other request to Go's net/http (false: net/http for all; docs/operating.md)")
	f.IntVar(&c.maxConnections, "max-connections", defaultMaxConnections, "most client connections open at once; more wait to be accepted (0: no limit)")
	f.DurationVar(&c.readHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "time a client has to send a request's headers")
	f.DurationVar(&c.idleTimeout, "idle-timeout", defaultIdleTimeout, "time an idle keep-alive connection is kept open")
	f.DurationVar(&c.writeTimeout, "write-timeout", 0, "time to send a whole response, blobs included (0: no limit; set it only when blobs are redirected)")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "on SIGTERM, time given to the requests in flight before their connections are closed")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}

// newLogger returns the logger of --log-format and --log-level, writing to
// w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serve runs the server until ctx ends (main ends it on SIGTERM and
// SIGINT), then shuts it down gracefully.
func serve(ctx context.Context, stderr io.Writer, c serveConfig) error {
	logger, err := newLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return err
	}
	if c.maxConnections < 0 {
		return fmt.Errorf("--max-connections %d: want 0 (no limit) or more", c.maxConnections)
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	memoryLimit := c.memoryLimit
	if _, set := os.LookupEnv("GOMEMLIMIT"); memoryLimit == 0 && !set {
		memoryLimit = redirector.MemoryLimit(c.cacheBytes)
	}
	if memoryLimit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(memoryLimit))
	}

	reg := prometheus.NewRegistry()
	var open atomic.Int64 // the registry's client connections
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "heron_http_connections",
			Help: "Client connections open now (see --max-connections).",
		}, func() float64 { return float64(open.Load()) }),
	)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errorLog, ErrorHandling: promhttp.ContinueOnError})

	opts := []redirector.Option{
		redirector.WithLogger(logger),
		redirector.WithAccessLog(logger),
		redirector.WithMetrics(reg),
		redirector.WithRedirectManifests(c.redirectManifests),
		redirector.WithCacheSize(c.cacheSize),
		redirector.WithCacheBytes(c.cacheBytes),
	}
	if c.blobBaseURL != "" {
		opts = append(opts, redirector.WithRedirectBase(c.blobBaseURL))
	}
	if c.metricsAddr == "" {
		opts = append(opts, redirector.WithOpsEndpoints(metrics))
	}
	h, err := redirector.New(c.root, opts...)
	if err != nil {
		return err
	}
	defer h.Close()

	lc := &net.ListenConfig{}
	ln, err := lc.Listen(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	registry := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.readHeaderTimeout,
		IdleTimeout:       c.idleTimeout,
		WriteTimeout:      c.writeTimeout,
		ErrorLog:          errorLog,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	// The connection limit is kept by the loop (h1.Server.MaxConnections)
	// for both ways of serving: a limiting net.Listener would wrap the
	// connections and hide the ReadFrom that sends files with sendfile.
	fast := redirector.IsAPITarget
	if !c.fastPath {
		fast = h1.NoFastPath
	}
	servers := []server{&h1.Server{HTTP: registry, FastPath: fast, MaxConnections: c.maxConnections}}
	listeners := []net.Listener{ln}
	opsURL := "http://" + ln.Addr().String()
	if c.metricsAddr != "" {
		mln, err := lc.Listen(ctx, "tcp", c.metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on --metrics-addr: %w", err)
		}
		servers = append(servers, &http.Server{
			Handler:           h.OpsHandler(metrics),
			ReadHeaderTimeout: c.readHeaderTimeout,
			IdleTimeout:       c.idleTimeout,
			WriteTimeout:      time.Minute,
			ErrorLog:          errorLog,
		})
		listeners = append(listeners, mln)
		opsURL = "http://" + mln.Addr().String()
	}
	logger.Info("serving", "root", c.root, "url", "http://"+ln.Addr().String(), "ops", opsURL, "memoryLimit", debug.SetMemoryLimit(-1))

	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	running := len(servers)
	var failed error
	select {
	case err := <-errc:
		running--
		failed = fmt.Errorf("serve: %w", err)
		logger.Error("a listener failed; shutting down", "err", err)
	case <-ctx.Done():
		logger.Info("shutting down: no new connections; waiting for the requests in flight", "timeout", c.shutdownTimeout)
	}
	// The deadline is shared: the operations server (when it has its own
	// listener) goes on answering probes and scrapes while the registry
	// drains.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("shutdown timeout reached: closing the connections still open", "timeout", c.shutdownTimeout, "err", err)
			srv.Close()
		}
	}
	for ; running > 0; running-- {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) && failed == nil {
			failed = fmt.Errorf("serve: %w", err)
		}
	}
	if failed == nil {
		logger.Info("stopped")
	}
	return failed
}

// server is what serve runs: the registry's h1.Server and the operations
// endpoints' http.Server.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}
