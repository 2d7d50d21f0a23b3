package redirector

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Server answers the read-only OCI Distribution API from one tree. It is an
// http.Handler; Close releases the tree's directory handle.
type Server struct {
	// files is what blobs and the layout marker are read through: the
	// folder (tree, New) or the store (storeTree, NewFromStore).
	files reader
	// tree is the folder of a server made by New, nil for a store.
	tree *tree
	// presign, when not nil, answers blob requests that no base URL
	// redirects with a 307 to a presigned URL of the store.
	presign *presigner
	pull    *pullThrough // nil without WithPullThrough
	push    *pushing     // nil without WithPusher
	guard   *guard       // nil without WithAuth
	// What the handlers read the tree through (lookups.go): the tree
	// itself, or a cache wrapping it (cache.go).
	repos             repositories
	manifests         manifests
	shards            catalogShards
	repoShards        repositoryShards
	index             catalogIndexes
	router            http.Handler
	log               *slog.Logger
	redirectBase      string
	redirectManifests bool
	signer            *URLSigner   // nil without WithRedirectSigner
	metrics           *metrics     // nil without WithMetrics
	accessLog         *slog.Logger // nil without WithAccessLog
	ops               http.Handler // nil without WithOpsEndpoints
	readiness         atomic.Int32 // the last /readyz answer, to log changes
	protectedSeen     atomic.Bool  // a protected repository was asked for (logged once)
	// fill fetches blobs listed but not stored (ondemand.go); nil
	// without WithFiller.
	fill *filling

	// afterCatalogIndex, when set (by tests only), runs after the catalog
	// index is read and before its shards are, to reproduce a publish that
	// replaces the catalog between the two reads.
	afterCatalogIndex func()
	// beforeRepoShard, when set (by tests only), runs before a shard of a
	// repository is read, to reproduce a publish that replaces the
	// repository between the reads of its file and of a shard.
	beforeRepoShard func()
}

// Option configures a Server.
type Option func(*options)

type options struct {
	redirectBase      string
	logger            *slog.Logger
	redirectManifests bool
	cacheSize         int
	cacheBytes        int64
	racyWindow        time.Duration
	metrics           prometheus.Registerer
	accessLog         *slog.Logger
	ops               bool
	opsMetrics        http.Handler
	signer            *URLSigner
	// Blobs listed but not stored yet (WithFiller).
	filler       Filler
	fillReadOnly bool
	spoolDir     string
	// Pull-through caches (WithPullThrough).
	puller      Puller
	pullThrough []PullThrough
	pullTTL     time.Duration
	auth        *auth.Auth // WithAuth
	// Pushes (WithPusher).
	pusher Pusher
	push   PushOptions
	// For a tree in a store (NewFromStore).
	serveBlobs      bool
	presignExpiry   time.Duration
	revalidateAfter time.Duration
}

// WithRedirectBase makes the server answer blob requests with a 307 to
// base + "/blobs/<alg>/<hex>" for repositories whose file has no
// blobBaseURL of its own. base is an absolute http or https URL: the
// location a CDN or static host serves the tree's root at.
func WithRedirectBase(base string) Option {
	return func(o *options) { o.redirectBase = base }
}

// WithLogger sets the logger for what clients are not told: unreadable or
// inconsistent files and other internal errors. The default is
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRedirectManifests makes GET requests for manifests redirect to the
// blob base URL too, when the repository has one (as Crane's redirecting
// registry did). HEAD requests are still answered directly, because clients
// resolve tags with HEAD and need the exact Content-Type and digest.
func WithRedirectManifests(redirect bool) Option {
	return func(o *options) { o.redirectManifests = redirect }
}

// WithCacheSize bounds each of the server's caches (of parsed repository
// files, of manifests and of catalog shards) to n entries (DefaultCacheSize
// without this option). 0 turns them off: every request then reads the
// files, and gets the same answer, only slower.
func WithCacheSize(n int) Option {
	return func(o *options) { o.cacheSize = n }
}

// WithCacheBytes bounds the approximate memory of the server's caches, all
// together (DefaultCacheBytes without this option): a manifest weighs its
// bytes, a parsed repository file a multiple of its size on disk, a catalog
// shard its names. When they are full, the least recently used entries of
// any of them make room. The parsed catalog index, one entry, is bounded
// by n on its own.
func WithCacheBytes(n int64) Option {
	return func(o *options) { o.cacheBytes = n }
}

// WithMetrics registers the server's Prometheus metrics on reg: requests by
// route, method and status, latency, bytes sent, redirected and direct
// answers, cache hits and misses (docs/operating.md lists them). Close
// unregisters them. Two servers cannot register on one registry unless it
// is wrapped with distinct labels (prometheus.WrapRegistererWith).
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) { o.metrics = reg }
}

// WithAccessLog logs one line per request under /v2/ to l, at Info (see
// logRequest for its fields). A handler whose level is above Info turns
// the lines off at the cost of one Enabled call per request.
func WithAccessLog(l *slog.Logger) Option {
	return func(o *options) { o.accessLog = l }
}

// WithOpsEndpoints makes the server answer /healthz, /readyz and, when
// metrics is not nil, /metrics itself, as OpsHandler does, beside the
// registry API on the same listener. These requests are neither logged nor
// counted in the metrics: probes and scrapes would drown the clients'.
func WithOpsEndpoints(metrics http.Handler) Option {
	return func(o *options) { o.ops, o.opsMetrics = true, metrics }
}

// New returns a Server for the tree at root. It opens the root, checks its
// heron-layout.json once (a missing marker or another layout version is an
// error) and reads nothing else.
func New(root string, opts ...Option) (*Server, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	t, err := openTree(root)
	if err != nil {
		return nil, err
	}
	s := &Server{
		files:      t,
		tree:       t,
		repos:      t,
		manifests:  t,
		shards:     t,
		repoShards: t,
		index:      t,
	}
	s.withCaches(o)
	return s.finish(o)
}

// newOptions applies opts to the defaults and checks what they say.
func newOptions(opts []Option) (options, error) {
	o := options{
		cacheSize: DefaultCacheSize, cacheBytes: DefaultCacheBytes, racyWindow: defaultRacyWindow,
		presignExpiry: DefaultPresignExpiry, revalidateAfter: DefaultRevalidateAfter,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	base, err := layout.NormalizeBlobBaseURL(o.redirectBase)
	if err != nil {
		return o, err
	}
	o.redirectBase = base
	if o.cacheSize < 0 || o.cacheBytes < 0 {
		return o, fmt.Errorf("cache bounds must not be negative (%d entries, %d bytes)", o.cacheSize, o.cacheBytes)
	}
	if o.presignExpiry <= 0 {
		return o, fmt.Errorf("presigned URLs must be valid for a positive time, not %s", o.presignExpiry)
	}
	if o.revalidateAfter < 0 {
		return o, fmt.Errorf("the revalidation window must not be negative (%s)", o.revalidateAfter)
	}
	return o, nil
}

// finish sets what every server has, whatever it reads: the settings of
// o, the router, the operations endpoints and the metrics. It closes what
// s reads when it fails.
func (s *Server) finish(o options) (*Server, error) {
	s.log = o.logger
	s.redirectBase = o.redirectBase
	s.redirectManifests = o.redirectManifests
	s.signer = o.signer
	if o.puller != nil && len(o.pullThrough) > 0 {
		s.pull = newPullThrough(o.puller, o.pullThrough, o.pullTTL)
	}
	if o.pusher != nil {
		s.push = &pushing{p: o.push, w: o.pusher}
	}
	if o.auth != nil {
		s.guard = &guard{a: o.auth}
	}
	s.router = s.routes()
	s.accessLog = o.accessLog
	if o.ops {
		s.ops = s.OpsHandler(o.opsMetrics)
	}
	if o.filler != nil {
		fill, err := newFilling(o)
		if err != nil {
			s.files.close()
			return nil, err
		}
		s.fill = fill
	}
	if o.metrics != nil {
		m, err := newMetrics(o.metrics, s)
		if err != nil {
			s.files.close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
		s.metrics = m
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.ops != nil && isOpsPath(r.URL.Path) {
		s.ops.ServeHTTP(w, r)
		return
	}
	w.Header()[apiVersionKey] = apiVersionValue
	if s.metrics == nil && s.accessLog == nil {
		s.router.ServeHTTP(w, r)
		return
	}
	s.serveObserved(w, r)
}

// Close cancels the blobs being fetched on demand (and waits for them to
// stop), releases the tree and unregisters the metrics. Requests served
// after Close fail.
func (s *Server) Close() error {
	if s.fill != nil {
		s.fill.close()
	}
	if s.metrics != nil {
		s.metrics.unregister()
	}
	return s.files.close()
}
