// Package httpd runs heron serve's HTTP servers: a [redirector.Server] for
// the tree, answered on the [h1] loop with net/http behind it (over TLS,
// by net/http alone, with certificates reloaded as they rotate: tls.go),
// the operations endpoints and their Prometheus registry, the Go runtime's
// memory limit, and a graceful shutdown when the context ends.
//
// It sits above both redirector and h1, neither of which imports the
// other, the way cmd/heron sits above it: the command parses flags into a
// Config and calls Run.
package httpd

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/redirector/auth"
	"github.com/heron-registry/heron/redirector/h1"
	"github.com/heron-registry/heron/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of the limits of Config, which heron serve's flags start
// from. There is no read timeout (net/http would cancel a request's context
// when it passes during a long response) and no write timeout by default:
// a large blob download may take as long as it takes. Slow and idle clients
// are bounded by the header and idle timeouts and by the connection limit.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultMaxConnections    = 10000
)

// opsWriteTimeout bounds the answers of the operations endpoints on a
// listener of their own: they are small, and a stuck scraper must not hold
// a connection.
const opsWriteTimeout = time.Minute

// Config is how Run serves a tree: the settings of heron serve, each
// field named after its flag (docs/operating.md). Its zero value is not the
// flags' defaults: a zero timeout or limit is none, and a zero CacheSize or
// CacheBytes turns the caches off.
type Config struct {
	// Addr is where the registry listens (host:port; port 0 picks a free
	// one).
	Addr string
	// MetricsAddr, when set, is the only address /metrics, /healthz and
	// /readyz are answered on ([redirector.Server.OpsHandler]). When empty
	// they are answered on Addr, beside the registry
	// ([redirector.WithOpsEndpoints]).
	MetricsAddr string
	// Logger gets the server's log and one line per request at Info
	// ([redirector.WithLogger], [redirector.WithAccessLog]). Nil:
	// slog.Default().
	Logger *slog.Logger
	// BlobBaseURL, RedirectManifests, CacheSize and CacheBytes are passed
	// to [redirector.New] as WithRedirectBase (when not empty),
	// WithRedirectManifests, WithCacheSize and WithCacheBytes.
	BlobBaseURL       string
	RedirectManifests bool
	CacheSize         int
	CacheBytes        int64
	// RedirectSigningKey, when set, is the file of the key that signs
	// every redirect to a blob base URL, with RedirectSigningScheme
	// (empty: hmac-sha256) and valid for at least RedirectSigningExpiry
	// ([redirector.LoadSigningKey], [redirector.NewURLSigner],
	// [redirector.WithRedirectSigner]).
	RedirectSigningKey    string
	RedirectSigningScheme string
	RedirectSigningExpiry time.Duration
	// Store, when set, is the tree Run serves ([redirector.NewFromStore]),
	// and Run's root only names it in the log: a bucket (store/s3).
	// ServeBlobs, PresignExpiry (0: the default) and RevalidateAfter (0:
	// the default; negative: on every request) are its options
	// [redirector.WithServeBlobs], WithPresignExpiry and
	// WithRevalidateAfter.
	Store store.Store
	// Filler, when set, fetches the blobs repositories list as not
	// stored ([redirector.WithFiller]); with ReadOnly they are streamed
	// but never stored.
	Filler   redirector.Filler
	ReadOnly bool
	// SpoolDir is where blobs fetched on demand are spooled
	// ([redirector.WithSpoolDir]); empty: the system's temporary folder.
	SpoolDir        string
	ServeBlobs      bool
	PresignExpiry   time.Duration
	RevalidateAfter time.Duration
	// PullThrough, when not empty, are the pull-through caches, which
	// Puller brings into the tree, each tag checked upstream at most once
	// per PullThroughTTL (0: the default) ([redirector.WithPullThrough]).
	PullThrough    []redirector.PullThrough
	PullThroughTTL time.Duration
	Puller         redirector.Puller
	// Pusher, when set, takes pushes (and deletes, per Push)
	// ([redirector.WithPusher]).
	Pusher redirector.Pusher
	Push   redirector.PushOptions
	// MemoryLimit is the Go runtime's soft memory limit while Run runs, in
	// bytes: 0 is [redirector.MemoryLimit](CacheBytes), unless GOMEMLIMIT
	// is set, which then stands; -1 sets none. Run puts back the limit it
	// found when it returns.
	MemoryLimit int64
	// FastPath answers GET and HEAD requests of /v2/ on the HTTP/1.1 loop
	// ([h1.Server] with [redirector.IsAPITarget]); false hands every
	// connection to net/http.
	FastPath bool
	// MaxConnections bounds the client connections open at once; more wait
	// to be accepted. 0: no limit.
	MaxConnections int
	// ReadHeaderTimeout, IdleTimeout and WriteTimeout are those of the
	// registry's http.Server, and apply to the loop's connections too.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	WriteTimeout      time.Duration
	// ShutdownTimeout is the time the requests in flight are given once
	// ctx ends, before their connections are closed.
	ShutdownTimeout time.Duration
	// TLSCert and TLSKey, when set (both or neither), are the PEM files of
	// the certificate (its chain after it) and private key the registry is
	// served with over HTTPS, by net/http over HTTP/1.1 or HTTP/2 (the
	// loop, FastPath, serves plain HTTP only); TLS 1.2 at least. They are
	// reloaded when they change (docs/operating.md, "TLS"). TLSClientCA,
	// when set, is a PEM bundle of the CAs client certificates are
	// verified with: a client may send one (r.TLS.VerifiedChains) or none.
	// MetricsAddr stays plain HTTP.
	TLSCert, TLSKey, TLSClientCA string
	// Htpasswd, Access, TokenKeys, TokenRealm, TokenService, TokenExpiry
	// and DenyAnonymous configure authentication and authorization
	// ([auth.Options]: HtpasswdFile, AccessFile, TokenKeyFiles, …;
	// docs/access.md); with any of Htpasswd, TokenKeys or TLSClientCA,
	// every request is authenticated and authorized
	// ([redirector.WithAuth]). A certificate TLSClientCA verifies names
	// its user.
	Htpasswd      string
	Access        string
	TokenKeys     []string
	TokenRealm    string
	TokenService  string
	TokenExpiry   time.Duration
	DenyAnonymous bool
}

// Run serves the tree at root with a [redirector.Server] over HTTP or,
// with cfg.TLSCert, HTTPS, as heron serve does, until ctx ends or a listener fails, then shuts the server
// down gracefully: it stops accepting connections, closes the idle ones and
// waits up to cfg.ShutdownTimeout for the requests in flight before it
// closes the rest.
//
// Run registers the server's metrics, the Go runtime's and the process's
// and heron_http_connections (client connections open now) on a registry
// of its own, served on /metrics. It logs "serving" with the registry's
// url (https:// over TLS) once it listens, "shutting down" when ctx ends and "stopped" when it
// is done; operators and the test suites read these lines. It returns nil
// after a shutdown that ctx asked for, even when the timeout cut requests
// off, and an error when it could not start (whose message names the flag
// of heron serve at fault, if one is) or a listener failed.
func Run(ctx context.Context, root string, cfg Config) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.MaxConnections < 0 {
		return fmt.Errorf("--max-connections %d: want 0 (no limit) or more", cfg.MaxConnections)
	}
	tlsFiles, err := newTLSFiles(cfg, logger)
	if err != nil {
		return err
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	if limit := cfg.memoryLimit(); limit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
	}

	var open atomic.Int64 // the registry's client connections
	reg := newRegistry(&open)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: errorLog, ErrorHandling: promhttp.ContinueOnError})
	opts := cfg.options(logger, reg, metrics)
	if cfg.RedirectSigningKey != "" {
		signer, err := cfg.signer()
		if err != nil {
			return err
		}
		opts = append(opts, redirector.WithRedirectSigner(signer))
	}
	if cfg.Filler != nil {
		opts = append(opts, redirector.WithFiller(cfg.Filler, cfg.ReadOnly))
		if cfg.SpoolDir != "" {
			opts = append(opts, redirector.WithSpoolDir(cfg.SpoolDir))
		}
	}
	if len(cfg.PullThrough) > 0 {
		if cfg.Puller == nil {
			return errors.New("--pull-through: no puller to fill the caches with")
		}
		opts = append(opts, redirector.WithPullThrough(cfg.Puller, cfg.PullThrough, cfg.PullThroughTTL))
	}
	if cfg.Pusher != nil {
		opts = append(opts, redirector.WithPusher(cfg.Pusher, cfg.Push))
	}
	guard, err := cfg.auth(logger)
	if err != nil {
		return err
	}
	if guard != nil {
		defer guard.Close()
		opts = append(opts, redirector.WithAuth(guard))
	}
	var h *redirector.Server
	if cfg.Store != nil {
		opts = append(opts, redirector.WithServeBlobs(cfg.ServeBlobs))
		if cfg.PresignExpiry != 0 {
			opts = append(opts, redirector.WithPresignExpiry(cfg.PresignExpiry))
		}
		if cfg.RevalidateAfter != 0 {
			opts = append(opts, redirector.WithRevalidateAfter(max(cfg.RevalidateAfter, 0)))
		}
		h, err = redirector.NewFromStore(cfg.Store, opts...)
	} else {
		h, err = redirector.New(root, opts...)
	}
	if err != nil {
		return err
	}
	defer h.Close()

	servers, err := cfg.listen(ctx, h, h.OpsHandler(metrics), tlsFiles, errorLog, &open)
	if err != nil {
		return err
	}
	if tlsFiles != nil {
		wctx, cancel := context.WithCancel(ctx)
		defer tlsFiles.watch(wctx)()
		defer cancel()
	}
	logger.Info("serving", "root", root, "url", servers[0].url, "ops", servers[len(servers)-1].url, "memoryLimit", debug.SetMemoryLimit(-1))
	return serveUntilDone(ctx, logger, cfg.ShutdownTimeout, servers)
}

// AuthConfigured reports whether c authenticates callers (passwords,
// tokens or client certificates).
func (c Config) AuthConfigured() bool {
	return c.Htpasswd != "" || len(c.TokenKeys) > 0 || c.TLSClientCA != ""
}

// auth returns the access control of c, nil when c authenticates nobody
// (an access file or --deny-anonymous alone is an error: nobody could
// be given more than anonymous callers).
func (c Config) auth(logger *slog.Logger) (*auth.Auth, error) {
	if !c.AuthConfigured() {
		switch {
		case c.Access != "":
			return nil, errors.New("--access needs a way to authenticate callers: --htpasswd, --token-key or --tls-client-ca")
		case c.DenyAnonymous:
			return nil, errors.New("--deny-anonymous needs a way to authenticate callers: --htpasswd, --token-key or --tls-client-ca")
		}
		return nil, nil
	}
	a, err := auth.New(auth.Options{
		HtpasswdFile:  c.Htpasswd,
		AccessFile:    c.Access,
		TokenKeyFiles: c.TokenKeys,
		TokenRealm:    c.TokenRealm,
		Service:       c.TokenService,
		TokenExpiry:   c.TokenExpiry,
		DenyAnonymous: c.DenyAnonymous,
		ClientCerts:   c.TLSClientCA != "",
		Logger:        logger,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// memoryLimit is the soft memory limit Run sets, or 0 to leave the one the
// runtime has (GOMEMLIMIT's, or none).
func (c Config) memoryLimit() int64 {
	if _, set := os.LookupEnv("GOMEMLIMIT"); c.MemoryLimit == 0 && !set {
		return redirector.MemoryLimit(c.CacheBytes)
	}
	return max(c.MemoryLimit, 0)
}

// signer returns the signer of c's RedirectSigningKey, or an error that
// names the flag at fault.
func (c Config) signer() (*redirector.URLSigner, error) {
	key, err := redirector.LoadSigningKey(c.RedirectSigningKey)
	if err != nil {
		return nil, fmt.Errorf("--redirect-signing-key: %w", err)
	}
	s, err := redirector.NewURLSigner(key, c.RedirectSigningScheme, c.RedirectSigningExpiry)
	if err != nil {
		return nil, fmt.Errorf("--redirect-signing-key %s: %w", c.RedirectSigningKey, err)
	}
	return s, nil
}

// newRegistry returns the Prometheus registry Run serves: the Go
// runtime's and the process's collectors, and a gauge of the connections
// open counts. The Server registers its own metrics on it.
func newRegistry(open *atomic.Int64) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "heron_http_connections",
			Help: "Client connections open now (see --max-connections).",
		}, func() float64 { return float64(open.Load()) }),
	)
	return reg
}

// options are the Server's options for c, its metrics registered on reg
// and, without a MetricsAddr, the operations endpoints (with metrics)
// answered beside the registry.
func (c Config) options(logger *slog.Logger, reg prometheus.Registerer, metrics http.Handler) []redirector.Option {
	opts := []redirector.Option{
		redirector.WithLogger(logger),
		redirector.WithAccessLog(logger),
		redirector.WithMetrics(reg),
		redirector.WithRedirectManifests(c.RedirectManifests),
		redirector.WithCacheSize(c.CacheSize),
		redirector.WithCacheBytes(c.CacheBytes),
	}
	if c.BlobBaseURL != "" {
		opts = append(opts, redirector.WithRedirectBase(c.BlobBaseURL))
	}
	if c.MetricsAddr == "" {
		opts = append(opts, redirector.WithOpsEndpoints(metrics))
	}
	return opts
}

// server is one of the servers Run runs, with its listener: the
// registry's h1.Server, then, with a MetricsAddr, the operations
// endpoints' http.Server.
type server struct {
	srv interface {
		Serve(net.Listener) error
		Shutdown(context.Context) error
		Close() error
	}
	ln  net.Listener
	url string // http:// or https:// and the address listened on
}

// listen listens on c.Addr, and on c.MetricsAddr when it is set, and
// returns the servers to run on them: the registry first, serving h (over
// TLS with tlsFiles' certificate when not nil), the operations endpoints
// (ops) last (the registry too, when they share its listener). open
// counts the registry's connections.
func (c Config) listen(ctx context.Context, h, ops http.Handler, tlsFiles *tlsFiles, errorLog *log.Logger, open *atomic.Int64) ([]server, error) {
	lc := &net.ListenConfig{}
	ln, err := lc.Listen(ctx, "tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	registry := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		WriteTimeout:      c.WriteTimeout,
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
	var servers []server
	if tlsFiles != nil {
		// Over TLS there is no sendfile to hide: a limiting listener
		// keeps the connection limit, under the TLS one, so that
		// net/http sees *tls.Conn (r.TLS, HTTP/2 by ALPN).
		registry.TLSConfig = tlsFiles.config()
		servers = append(servers, server{
			srv: tlsServer{registry},
			ln:  newLimitListener(ln, c.MaxConnections),
			url: "https://" + ln.Addr().String(),
		})
	} else {
		// The connection limit is kept by the loop
		// (h1.Server.MaxConnections) for both ways of serving: a
		// limiting net.Listener would wrap the connections and hide the
		// ReadFrom that sends files with sendfile.
		fast := redirector.IsAPITarget
		if !c.FastPath {
			fast = h1.NoFastPath
		}
		servers = append(servers, server{
			srv: &h1.Server{HTTP: registry, FastPath: fast, MaxConnections: c.MaxConnections},
			ln:  ln,
			url: "http://" + ln.Addr().String(),
		})
	}
	if c.MetricsAddr == "" {
		return servers, nil
	}
	mln, err := lc.Listen(ctx, "tcp", c.MetricsAddr)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on --metrics-addr: %w", err)
	}
	return append(servers, server{
		srv: &http.Server{
			Handler:           ops,
			ReadHeaderTimeout: c.ReadHeaderTimeout,
			IdleTimeout:       c.IdleTimeout,
			WriteTimeout:      opsWriteTimeout,
			ErrorLog:          errorLog,
		},
		ln:  mln,
		url: "http://" + mln.Addr().String(),
	}), nil
}

// serveUntilDone serves until ctx ends or a server fails, then shuts every
// server down within timeout, and closes those that are not done by then.
func serveUntilDone(ctx context.Context, logger *slog.Logger, timeout time.Duration, servers []server) error {
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.srv.Serve(s.ln) }()
	}
	running := len(servers)
	var failed error
	select {
	case err := <-errc:
		running--
		failed = fmt.Errorf("serve: %w", err)
		logger.Error("a listener failed; shutting down", "err", err)
	case <-ctx.Done():
		logger.Info("shutting down: no new connections; waiting for the requests in flight", "timeout", timeout)
	}
	// The deadline is shared: the operations server (when it has its own
	// listener) goes on answering probes and scrapes while the registry
	// drains.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for _, s := range servers {
		if err := s.srv.Shutdown(sctx); err != nil {
			logger.Warn("shutdown timeout reached: closing the connections still open", "timeout", timeout, "err", err)
			s.srv.Close()
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
