package redirector

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkObserved measures what the metrics and the access log add to a
// request, on the cheapest routes (where it shows most), with the caches
// on: go test -run '^$' -bench Observed -benchmem ./redirector
//
//	plain         neither (the other benchmarks' cache=on)
//	metrics       WithMetrics
//	metrics+log   WithMetrics and a JSON access log (to io.Discard: the
//	              cost of formatting, not of the write(2) to stderr)
//	metrics+off   WithMetrics and an access log whose level is Warn
func BenchmarkObserved(b *testing.B) {
	f := newBenchFixture(b)
	modes := []struct {
		name string
		opts func() []Option
	}{
		{"plain", func() []Option { return nil }},
		{"metrics", func() []Option { return []Option{WithMetrics(prometheus.NewRegistry())} }},
		{"metrics+log", func() []Option {
			return []Option{WithMetrics(prometheus.NewRegistry()), WithAccessLog(slog.New(slog.NewJSONHandler(io.Discard, nil)))}
		}},
		{"metrics+off", func() []Option {
			l := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return []Option{WithMetrics(prometheus.NewRegistry()), WithAccessLog(l)}
		}},
	}
	routes := []struct {
		name, method, target string
		header               map[string]string
		code                 int
	}{
		{"ManifestGetByTag", http.MethodGet, manifestURL("bench/app", "v050"), map[string]string{"Accept": acceptManifests}, 200},
		{"BlobRedirect", http.MethodGet, blobURL("bench/cdn", f.cdnLayer.Digest), nil, http.StatusTemporaryRedirect},
		{"BlobHead", http.MethodHead, blobURL("bench/app", f.bigLayer.Digest), nil, 200},
	}
	for _, rt := range routes {
		b.Run("route="+rt.name, func(b *testing.B) {
			for _, mode := range modes {
				b.Run("obs="+mode.name, func(b *testing.B) {
					opts := append([]Option{WithCacheSize(DefaultCacheSize), withRacyWindow(0)}, mode.opts()...)
					s, err := New(f.dir, opts...)
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					req := httptest.NewRequest(rt.method, rt.target, nil)
					for k, v := range rt.header {
						req.Header.Set(k, v)
					}
					w := &discardWriter{h: http.Header{}}
					s.ServeHTTP(w, req)
					if w.code != rt.code {
						b.Fatalf("status %d, want %d", w.code, rt.code)
					}
					b.ReportAllocs()
					for b.Loop() {
						w.reset()
						s.ServeHTTP(w, req)
					}
				})
			}
		})
	}
}
