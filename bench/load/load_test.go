package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
	vals := rand.Perm(10000)
	for _, v := range vals {
		h.Record(time.Duration(v+1) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.001, 10 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff > 0.008 || diff < -0.008 {
			t.Errorf("Quantile(%v) = %v, want %v within 0.8%%", tc.q, got, tc.want)
		}
	}
	if h.Count() != 10000 || h.Max() != 10*time.Millisecond {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
	var small Histogram
	for i := 0; i < 100; i++ {
		small.Record(time.Duration(i))
	}
	if small.Quantile(0.5) != 49 || small.Quantile(0.99) != 98 {
		t.Fatalf("small values are not exact: %v %v", small.Quantile(0.5), small.Quantile(0.99))
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&small)
	if m.Count() != 10100 || m.Max() != h.Max() {
		t.Fatal("merge")
	}
	for v := uint64(1); v < 1<<62; v = v*3 + 1 {
		i := bucket(v)
		if lowest(i) > v || lowest(i+1) <= v {
			t.Fatalf("value %d in bucket %d of [%d, %d)", v, i, lowest(i), lowest(i+1))
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1:80", true}, {"127.3.4.5:1", true}, {"[::1]:8080", true}, {"localhost:9", true},
		{"10.0.0.1:80", false}, {"example.com:80", false}, {"0.0.0.0:80", false}, {"127.0.0.1", false}} {
		err := CheckLoopback(tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("CheckLoopback(%q) = %v", tc.addr, err)
		}
	}
	_, err := Run(context.Background(), Config{Addr: "192.0.2.1:80", Requests: []Request{{Path: "/"}}, Duration: time.Second})
	if !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("Run on a remote address: %v", err)
	}
}

// TestRun drives a real net/http server through every way a response can
// end and checks what was counted.
func TestRun(t *testing.T) {
	body := strings.Repeat("x", 100_000)
	var sawAccept, hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/len", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Accept") == "a/b, c/d" {
			sawAccept.Add(1)
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method != http.MethodHead {
			w.Write([]byte(body))
		}
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 10; i++ {
			w.Write([]byte(body[:1000]))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("bye"))
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/len", http.StatusTemporaryRedirect)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "http://")

	tests := []struct {
		desc       string
		cfg        Config
		wantStatus int
		wantBody   int64 // per response; -1 to skip
		wantErrors bool
	}{
		{"GET with Content-Length", Config{Requests: []Request{{Path: "/len", Header: http.Header{"Accept": {"a/b, c/d"}}}}, ExpectStatus: 200, ExpectBodySize: int64(len(body))}, 200, int64(len(body)), false},
		{"HEAD reads no body", Config{Requests: []Request{{Method: "HEAD", Path: "/len"}}, ExpectStatus: 200, ExpectBodySize: int64(len(body))}, 200, 0, false},
		{"chunked", Config{Requests: []Request{{Path: "/chunked"}}, ExpectStatus: 200, ExpectBodySize: 10_000}, 200, 10_000, false},
		{"Connection: close", Config{Requests: []Request{{Path: "/close"}}, ExpectStatus: 200}, 200, 3, false},
		{"redirect not followed", Config{Requests: []Request{{Path: "/redirect"}}, ExpectStatus: 307}, 307, -1, false},
		{"wrong status is an error", Config{Requests: []Request{{Path: "/missing"}}, ExpectStatus: 200}, 404, -1, true},
		{"wrong size is an error", Config{Requests: []Request{{Path: "/close"}}, ExpectBodySize: 4}, 200, 3, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Addr, cfg.Concurrency, cfg.Duration, cfg.Warmup, cfg.MaxRequests = addr, 3, 2*time.Second, 20*time.Millisecond, 300
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 300 || res.Statuses[tc.wantStatus] != 300 {
				t.Fatalf("%d requests, statuses %s; want 300 of %d (first error %q)", res.Requests, res.StatusSummary(), tc.wantStatus, res.FirstError)
			}
			if (res.Errors > 0) != tc.wantErrors {
				t.Fatalf("%d errors (%q), want errors: %v", res.Errors, res.FirstError, tc.wantErrors)
			}
			if tc.wantBody >= 0 && res.BodyBytes != 300*tc.wantBody {
				t.Fatalf("%d body bytes, want %d", res.BodyBytes, 300*tc.wantBody)
			}
			if res.Latency.Count() != 300 || res.Latency.Quantile(0.5) <= 0 || res.RequestsPerSecond() <= 0 {
				t.Fatalf("latency %d samples, p50 %v, %.0f req/s", res.Latency.Count(), res.Latency.Quantile(0.5), res.RequestsPerSecond())
			}
		})
	}
	if sawAccept.Load() == 0 {
		t.Error("the Accept header never reached the server")
	}
}

func TestRunDuration(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	addr := strings.TrimPrefix(ts.URL, "http://")
	start := time.Now()
	res, err := Run(context.Background(), Config{Addr: addr, Requests: []Request{{Path: "/a"}, {Path: "/b"}}, Concurrency: 4, Duration: 300 * time.Millisecond, ExpectStatus: 200})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second || res.Elapsed < 250*time.Millisecond || res.Elapsed > time.Second {
		t.Fatalf("took %v, measured %v", took, res.Elapsed)
	}
	if res.Requests == 0 || res.Errors != 0 {
		t.Fatalf("%d requests, %d errors: %s", res.Requests, res.Errors, res.FirstError)
	}

	// A server that goes away ends the run early with errors, not a hang.
	ts.Close()
	start = time.Now()
	res, err = Run(context.Background(), Config{Addr: addr, Requests: []Request{{Path: "/a"}}, Concurrency: 2, Duration: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second || res.Errors == 0 {
		t.Fatalf("dead server: %v, %d errors", time.Since(start), res.Errors)
	}
}

func TestBadRequests(t *testing.T) {
	for _, r := range []Request{{Path: "noslash"}, {Path: "/a b"}, {Path: "/a", Header: http.Header{"X": {"a\r\nb"}}}} {
		if _, err := Run(context.Background(), Config{Addr: "127.0.0.1:1", Requests: []Request{r}, Duration: time.Second}); err == nil {
			t.Errorf("request %+v accepted", r)
		}
	}
	if _, err := Run(context.Background(), Config{Addr: "127.0.0.1:1", Duration: time.Second}); err == nil {
		t.Error("no requests accepted")
	}
}

// TestHeaderOnEveryRequest checks that a request's headers (Authorization,
// as a client sends after login) go with every request of every
// connection, and that each of several requests keeps its own.
func TestHeaderOnEveryRequest(t *testing.T) {
	var with, without, other atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Basic YmVuY2g6cHc=":
			if r.Header.Get("Accept") != "a/b" {
				other.Add(1)
			}
			with.Add(1)
		case "":
			without.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
		default:
			other.Add(1)
		}
	}))
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "http://")
	reqs := []Request{
		{Path: "/a", Header: http.Header{"Authorization": {"Basic YmVuY2g6cHc="}, "Accept": {"a/b"}}},
		{Path: "/b"},
	}
	res, err := Run(context.Background(), Config{Addr: addr, Requests: reqs, Concurrency: 4, Duration: 5 * time.Second, MaxRequests: 400})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 400 || res.Statuses[200]+res.Statuses[401] != 400 {
		t.Fatalf("%d requests, statuses %s", res.Requests, res.StatusSummary())
	}
	// Warm-up is 0: every request is counted; each connection alternates.
	if with.Load() != res.Statuses[200] || without.Load() != res.Statuses[401] || other.Load() != 0 || with.Load() < 100 || without.Load() < 100 {
		t.Fatalf("with credentials %d, without %d, other %d; statuses %s", with.Load(), without.Load(), other.Load(), res.StatusSummary())
	}
}
