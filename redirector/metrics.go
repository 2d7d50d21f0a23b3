package redirector

import (
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The server's Prometheus metrics (see WithMetrics and docs/operating.md).
// Labels only take values from small fixed sets: the route is the endpoint
// a path parses as, never the path itself, so that no client can make the
// number of series grow.
const (
	metricRequests      = "heron_http_requests_total"
	metricInFlight      = "heron_http_requests_in_flight"
	metricDuration      = "heron_http_request_duration_seconds"
	metricResponseBytes = "heron_http_response_bytes_total"
	metricContent       = "heron_http_content_responses_total"
	metricCacheRequests = "heron_cache_requests_total"
	metricCacheEntries  = "heron_cache_entries"
	metricCacheWeight   = "heron_cache_weight_bytes"
	metricFetches       = "heron_ondemand_fetches_total"
	metricFetchedBytes  = "heron_ondemand_fetched_bytes_total"
	labelRoute          = "route"
	labelMethod         = "method"
	labelCode           = "code"
	labelDelivery       = "delivery"
	labelCache          = "cache"
	labelResult         = "result"
	deliveryRedirect    = "redirect"
	deliveryDirect      = "direct"
	cacheRepositories   = "repository"
	cacheManifests      = "manifest"
	cacheCatalogShards  = "catalog_shard"
	cacheRepoShards     = "repository_shard"
	cacheCatalogIndex   = "catalog_index"
	cacheResultHit      = "hit"
	cacheResultMiss     = "miss"
	methodOther         = "other"
)

// durationBuckets are the upper bounds of the latency histogram, in
// seconds: from 100µs (a cached manifest) to minutes (a large blob sent to
// a slow client: a blob GET lasts as long as its transfer).
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
}

// routeNames are the values of the route label, one per endpoint.
var routeNames = [...]string{
	endpointUnknown:   "unknown",
	endpointBase:      "base",
	endpointCatalog:   "catalog",
	endpointTags:      "tags",
	endpointManifest:  "manifest",
	endpointBlob:      "blob",
	endpointReferrers: "referrers",
	endpointUpload:    "upload",
}

// routeIndex is e's index in routeNames; an endpoint added to routes.go
// without a name here counts as unknown rather than panicking.
func routeIndex(e endpoint) int {
	if e < 0 || int(e) >= len(routeNames) {
		return int(endpointUnknown)
	}
	return int(e)
}

// String returns the endpoint's route label.
func (e endpoint) String() string { return routeNames[routeIndex(e)] }

// methodNames are the values of the method label; any other method is
// "other".
var methodNames = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost,
	http.MethodPatch, http.MethodDelete, methodOther,
}

func methodIndex(m string) uint8 {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPut:
		return 2
	case http.MethodPost:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	}
	return 6
}

// requestKey is one series of heron_http_requests_total.
type requestKey struct {
	route  uint8
	method uint8
	code   int
}

// metrics holds the server's collectors, with the children of every label
// set resolved once: a request then costs a few atomic additions and no
// label lookup or allocation.
type metrics struct {
	requests *prometheus.CounterVec
	// inFlight is read by a GaugeFunc at scrape time: an atomic addition
	// is cheaper than a Gauge's compare-and-swap of a float.
	inFlight atomic.Int64
	duration [len(routeNames)]prometheus.Observer
	bytes    [len(routeNames)]prometheus.Counter
	// redirected and direct count the successful answers of the content
	// routes (blob, manifest); nil for the others.
	redirected, direct [len(routeNames)]prometheus.Counter

	// children maps each requestKey seen so far to its counter. It is
	// replaced, never modified, so that readers need no lock; mu
	// serialises the writers. Status codes come from the server's own
	// small set, so the map stays small.
	children atomic.Pointer[map[requestKey]prometheus.Counter]
	mu       sync.Mutex

	reg        prometheus.Registerer
	collectors []prometheus.Collector // registered on reg
}

// newMetrics creates the server's collectors and registers them on reg.
func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricRequests,
			Help: "Requests answered under /v2/, by route, method and status code.",
		}, []string{labelRoute, labelMethod, labelCode}),
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricInFlight,
		Help: "Requests under /v2/ being answered now.",
	}, func() float64 { return float64(m.inFlight.Load()) })
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricDuration,
		Help:    "Time to answer a request under /v2/, by route, from its headers to the last byte of the response handed to the connection.",
		Buckets: durationBuckets,
	}, []string{labelRoute})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricResponseBytes,
		Help: "Bytes of response bodies sent under /v2/ (headers not included), by route.",
	}, []string{labelRoute})
	content := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricContent,
		Help: "Successful answers for blobs and manifests, by route and delivery: redirect (307 to the blob base URL) or direct (sent by heron: 200, 206, 304).",
	}, []string{labelRoute, labelDelivery})
	for i, name := range routeNames {
		m.duration[i] = duration.WithLabelValues(name)
		m.bytes[i] = bytes.WithLabelValues(name)
	}
	for _, e := range []endpoint{endpointBlob, endpointManifest} {
		m.redirected[e] = content.WithLabelValues(e.String(), deliveryRedirect)
		m.direct[e] = content.WithLabelValues(e.String(), deliveryDirect)
	}
	m.children.Store(&map[requestKey]prometheus.Counter{})
	m.reg = reg
	collectors := []prometheus.Collector{m.requests, inFlight, duration, bytes, content, newCacheCollector(s)}
	if s.fill != nil {
		collectors = append(collectors, newFillCollector(s.fill))
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, err
		}
		m.collectors = append(m.collectors, c)
	}
	return m, nil
}

// unregister removes the collectors from the registry, so that another
// server can register its own there.
func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.collectors = nil
}

// observe records one answered request.
func (m *metrics) observe(e endpoint, method string, code int, n int64, d time.Duration) {
	route := routeIndex(e)
	m.requestCounter(requestKey{route: uint8(route), method: methodIndex(method), code: code}).Inc()
	m.duration[route].Observe(d.Seconds())
	if n > 0 {
		m.bytes[route].Add(float64(n))
	}
	if m.direct[route] != nil {
		switch code {
		case http.StatusTemporaryRedirect:
			m.redirected[route].Inc()
		case http.StatusOK, http.StatusPartialContent, http.StatusNotModified:
			m.direct[route].Inc()
		}
	}
}

// requestCounter returns the counter of k, resolving it on first use.
func (m *metrics) requestCounter(k requestKey) prometheus.Counter {
	if c, ok := (*m.children.Load())[k]; ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.children.Load()
	if c, ok := old[k]; ok {
		return c
	}
	c := m.requests.WithLabelValues(routeNames[k.route], methodNames[k.method], strconv.Itoa(k.code))
	next := make(map[requestKey]prometheus.Counter, len(old)+1)
	maps.Copy(next, old)
	next[k] = c
	m.children.Store(&next)
	return c
}

// cacheCollector reports the caches' hits, misses and sizes from the
// counters they keep anyway, at scrape time: the request path does not
// pay for these metrics at all.
type cacheCollector struct {
	s                            *Server
	requests, entries, weightDsc *prometheus.Desc
}

func newCacheCollector(s *Server) *cacheCollector {
	return &cacheCollector{
		s: s,
		requests: prometheus.NewDesc(metricCacheRequests,
			"Lookups in the server's caches, by cache and result. A repository file or catalog index hit costs no system call while the tree's change counter is unchanged, one stat of the file otherwise.",
			[]string{labelCache, labelResult}, nil),
		entries: prometheus.NewDesc(metricCacheEntries,
			"Entries in each cache now.", []string{labelCache}, nil),
		weightDsc: prometheus.NewDesc(metricCacheWeight,
			"Approximate memory of each cache now, in bytes.", []string{labelCache}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.entries
	ch <- c.weightDsc
}

// Collect implements prometheus.Collector. The lookups that are caches
// report their counts (see cacheReporter); with caches off
// (WithCacheSize(0)) they are the tree's, which report nothing.
func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range [...]struct {
		cache  string
		lookup any
	}{
		{cacheRepositories, c.s.repos},
		{cacheRepoShards, c.s.repoShards},
		{cacheManifests, c.s.manifests},
		{cacheCatalogShards, c.s.shards},
		{cacheCatalogIndex, c.s.index},
	} {
		r, ok := l.lookup.(cacheReporter)
		if !ok {
			continue
		}
		n := r.cacheCounts()
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n.hits), l.cache, cacheResultHit)
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n.misses), l.cache, cacheResultMiss)
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(n.entries), l.cache)
		ch <- prometheus.MustNewConstMetric(c.weightDsc, prometheus.GaugeValue, float64(n.weight), l.cache)
	}
}

// fillCollector reports the fetches of blobs on demand (ondemand.go) from
// the counters the server keeps anyway, at scrape time.
type fillCollector struct {
	fl             *filling
	fetches, bytes *prometheus.Desc
}

func newFillCollector(fl *filling) *fillCollector {
	return &fillCollector{
		fl: fl,
		fetches: prometheus.NewDesc(metricFetches,
			"Blobs listed but not stored that were fetched from an upstream, by result: stored; verified (a read-only server stores nothing); store_failed (verified, not stored); failed (the upstream failed, or sent other bytes: nothing stored).",
			[]string{labelResult}, nil),
		bytes: prometheus.NewDesc(metricFetchedBytes,
			"Bytes received from upstreams by on-demand fetches, verified or not.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *fillCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fetches
	ch <- c.bytes
}

// Collect implements prometheus.Collector.
func (c *fillCollector) Collect(ch chan<- prometheus.Metric) {
	for i, result := range fillResults {
		ch <- prometheus.MustNewConstMetric(c.fetches, prometheus.CounterValue, float64(c.fl.results[i].Load()), result)
	}
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(c.fl.bytes.Load()))
}
