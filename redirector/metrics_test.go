package redirector

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metricValue returns the value of the series of name with exactly labels
// (a counter's or gauge's value, a histogram's sample count), and whether
// there is one.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

// value is metricValue for a series that may not exist yet (0).
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := metricValue(t, g, name, labels)
	return v
}

// TestMetricsPerRequest sends one request per row and checks that exactly
// the series of its route, method and status moved, by one request, by
// the bytes the client received, and by one latency sample.
func TestMetricsPerRequest(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	srv, _, _ := newTestServer(t, f.tree.dir(), withRacyWindow(0), WithMetrics(reg),
		WithOpsEndpoints(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	for _, tc := range []struct {
		Description string
		Method      string
		URL         string
		Header      map[string]string
		Route       string
		MethodLabel string // Method when empty
		Code        int
		Delivery    string // "redirect", "direct" or "" (not counted)
	}{
		{"base", "GET", "/v2/", nil, "base", "", 200, ""},
		{"base without slash", "GET", "/v2", nil, "base", "", 200, ""},
		{"manifest by tag", "GET", manifestURL("library/alpine", "latest"), nil, "manifest", "", 200, "direct"},
		{"manifest HEAD", "HEAD", manifestURL("library/alpine", "latest"), nil, "manifest", "", 200, "direct"},
		{"manifest not modified", "GET", manifestURL("library/alpine", "latest"), map[string]string{"If-None-Match": etagOf(f.idx.Digest)}, "manifest", "", 304, "direct"},
		{"unknown manifest", "GET", manifestURL("library/alpine", "nope"), nil, "manifest", "", 404, ""},
		{"broken repository", "GET", manifestURL("broken", "latest"), nil, "manifest", "", 500, ""},
		{"invalid name", "GET", manifestURL("Upper", "latest"), nil, "manifest", "", 400, ""},
		{"blob", "GET", blobURL("library/alpine", f.layerA.Digest), nil, "blob", "", 200, "direct"},
		{"blob range", "GET", blobURL("library/alpine", f.layerA.Digest), map[string]string{"Range": "bytes=2-5"}, "blob", "", 206, "direct"},
		{"blob redirected", "GET", blobURL("team/app/api", f.layerC.Digest), nil, "blob", "", 307, "redirect"},
		{"blob of another repository", "GET", blobURL("other", f.layerA.Digest), nil, "blob", "", 404, ""},
		{"tags", "GET", "/v2/library/alpine/tags/list", nil, "tags", "", 200, ""},
		{"catalog", "GET", "/v2/_catalog?n=2", nil, "catalog", "", 200, ""},
		{"referrers", "GET", "/v2/team/app/api/referrers/" + f.image.Digest.String(), nil, "referrers", "", 200, ""},
		{"write", "PUT", manifestURL("library/alpine", "latest"), nil, "manifest", "", 405, ""},
		{"upload", "POST", "/v2/library/alpine/blobs/uploads/", nil, "upload", "", 405, ""},
		{"other method", "OPTIONS", "/v2/", nil, "base", "other", 405, ""},
		{"unknown endpoint", "GET", "/v2/library/alpine/nope/x", nil, "unknown", "", 404, ""},
		{"outside /v2/", "GET", "/favicon.ico", nil, "unknown", "", 404, ""},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			method := tc.MethodLabel
			if method == "" {
				method = tc.Method
			}
			reqLabels := map[string]string{"route": tc.Route, "method": method, "code": fmt.Sprint(tc.Code)}
			routeLabels := map[string]string{"route": tc.Route}
			before := value(t, reg, metricRequests, reqLabels)
			bytesBefore := value(t, reg, metricResponseBytes, routeLabels)
			samplesBefore := value(t, reg, metricDuration, routeLabels)
			contentBefore := map[string]float64{}
			for _, d := range []string{deliveryRedirect, deliveryDirect} {
				contentBefore[d] = value(t, reg, metricContent, map[string]string{"route": tc.Route, "delivery": d})
			}

			resp, body := fetch(t, srv, tc.Method, tc.URL, tc.Header)
			if resp.StatusCode != tc.Code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.Code)
			}
			n := len(body)
			if got := value(t, reg, metricRequests, reqLabels) - before; got != 1 {
				t.Errorf("%s%v moved by %v, want 1", metricRequests, reqLabels, got)
			}
			if got := value(t, reg, metricResponseBytes, routeLabels) - bytesBefore; got != float64(n) {
				t.Errorf("%s%v moved by %v, want the %d bytes received", metricResponseBytes, routeLabels, got, n)
			}
			if got := value(t, reg, metricDuration, routeLabels) - samplesBefore; got != 1 {
				t.Errorf("%s%v has %v new samples, want 1", metricDuration, routeLabels, got)
			}
			for d, b := range contentBefore {
				want := 0.0
				if d == tc.Delivery {
					want = 1
				}
				labels := map[string]string{"route": tc.Route, "delivery": d}
				if got := value(t, reg, metricContent, labels) - b; got != want {
					t.Errorf("%s%v moved by %v, want %v", metricContent, labels, got, want)
				}
			}
			if v := value(t, reg, metricInFlight, nil); v != 0 {
				t.Errorf("%s = %v after the request", metricInFlight, v)
			}
		})
	}

	// The operations endpoints are not counted.
	total := func() float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, fam := range families {
			if fam.GetName() == metricRequests {
				for _, m := range fam.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
		return sum
	}
	before := total()
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		if resp, _ := fetch(t, srv, "GET", p, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	if after := total(); after != before {
		t.Errorf("the operations endpoints moved %s from %v to %v", metricRequests, before, after)
	}
}

// TestMetricsCardinality: whatever paths clients send, the route label
// only takes the endpoint names, and the code label the server's codes.
func TestMetricsCardinality(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	srv, _, _ := newTestServer(t, f.tree.dir(), WithMetrics(reg))
	for i := range 40 {
		for _, p := range []string{
			fmt.Sprintf("/v2/random%d/manifests/t%d", i, i),
			fmt.Sprintf("/v2/x/y%d/blobs/sha256:%064d", i, i),
			fmt.Sprintf("/v2/x%d/nothing/%d", i, i),
			fmt.Sprintf("/other/%d", i),
			fmt.Sprintf("/v2/n%d/tags/list?n=%d", i, i),
		} {
			fetch(t, srv, "GET", p, nil)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				if l.GetName() == labelRoute && !slices.Contains(routeNames[:], l.GetValue()) {
					t.Errorf("%s has route %q", fam.GetName(), l.GetValue())
				}
			}
		}
	}
	// 8 routes of the histogram and the bytes, 4 content series, the 5
	// caches' 4 series each, the in-flight gauge, and a handful of request
	// series.
	if series > 46 {
		t.Errorf("%d series after 200 distinct paths", series)
	}
}

// TestMetricsCaches: the caches' hits and misses are counted, one per
// request, and a server without caches reports none.
func TestMetricsCaches(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	srv, _, _ := newTestServer(t, f.tree.dir(), withRacyWindow(0), WithMetrics(reg))
	for range 3 {
		fetch(t, srv, "GET", manifestURL("library/alpine", "latest"), nil)
		fetch(t, srv, "GET", "/v2/_catalog?n=2", nil)
	}
	for _, tc := range []struct {
		cache        string
		hits, misses float64
		entries      float64
	}{
		{cacheRepositories, 2, 1, 1},
		{cacheManifests, 2, 1, 1},
		{cacheCatalogShards, 2, 1, 1},
		{cacheCatalogIndex, 2, 1, 1},
	} {
		hits := value(t, reg, metricCacheRequests, map[string]string{"cache": tc.cache, "result": "hit"})
		misses := value(t, reg, metricCacheRequests, map[string]string{"cache": tc.cache, "result": "miss"})
		entries := value(t, reg, metricCacheEntries, map[string]string{"cache": tc.cache})
		weight := value(t, reg, metricCacheWeight, map[string]string{"cache": tc.cache})
		if hits != tc.hits || misses != tc.misses || entries != tc.entries || weight <= 0 {
			t.Errorf("%s cache: %v hits, %v misses, %v entries, %v bytes; want %v, %v, %v and some bytes",
				tc.cache, hits, misses, entries, weight, tc.hits, tc.misses, tc.entries)
		}
	}

	off := prometheus.NewRegistry()
	srv, _, _ = newTestServer(t, f.tree.dir(), WithCacheSize(0), WithMetrics(off))
	fetch(t, srv, "GET", manifestURL("library/alpine", "latest"), nil)
	if _, ok := metricValue(t, off, metricCacheRequests, map[string]string{"cache": cacheRepositories, "result": "miss"}); ok {
		t.Error("a server without caches reports cache lookups")
	}
}

// TestMetricsRegistry: two servers cannot share a registry, and Close
// frees it for the next one.
func TestMetricsRegistry(t *testing.T) {
	tt := newTestTree(t)
	reg := prometheus.NewRegistry()
	s, err := New(tt.dir(), WithMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := New(tt.dir(), WithMetrics(reg)); err == nil || !strings.Contains(err.Error(), "metrics:") {
		if s2 != nil {
			s2.Close()
		}
		t.Errorf("second server on one registry: %v, want a metrics error", err)
	}
	s.Close()
	s, err = New(tt.dir(), WithMetrics(reg))
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	s.Close()
	// Servers on one registry wrapped with distinct labels coexist (on a
	// new registry: a name keeps its label names for a registry's life).
	reg = prometheus.NewRegistry()
	a, err := New(tt.dir(), WithMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"tree": "a"}, reg)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(tt.dir(), WithMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"tree": "b"}, reg)))
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestCallsObserved runs the main table against a server that measures and
// logs every request: the answers are the same.
func TestCallsObserved(t *testing.T) {
	mode := cacheMode{name: "cache=on", opts: []Option{
		withRacyWindow(0), WithMetrics(prometheus.NewRegistry()), WithAccessLog(discardLogger()),
	}}
	t.Run("calls", func(t *testing.T) { testCalls(t, mode) })
	mode.opts[1] = WithMetrics(prometheus.NewRegistry())
	t.Run("redirects", func(t *testing.T) { testRedirects(t, mode) })
}
