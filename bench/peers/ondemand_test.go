package main

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestParseStatus(t *testing.T) {
	const status = "Name:\theron\nVmPeak:\t 1300000 kB\nVmHWM:\t   30000 kB\nVmRSS:\t   20000 kB\nRssAnon:\t    5000 kB\nRssFile:\t   15000 kB\nRssShmem:\t       0 kB\nThreads:\t8\n"
	st, err := parseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	want := procStatus{rss: 20000 << 10, hwm: 30000 << 10, anon: 5000 << 10, file: 15000 << 10}
	if st != want {
		t.Fatalf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{
		"VmRSS:\t 20000 kB\n", // lines missing
		strings.Replace(status, " kB\nVmRSS", " MB\nVmRSS", 1), // another unit
	} {
		if _, err := parseStatus(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
	// This process's own.
	if st, err := readStatus(os.Getpid()); err != nil || st.rss < 1<<20 || st.hwm < st.rss {
		t.Fatalf("own status: %+v, %v", st, err)
	}
}

func TestRequestKind(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/v2/bench/x/blobs/" + d, "GET blob " + d},
		{"HEAD", "/v2/org/blobs/app/blobs/" + d, "HEAD blob " + d},
		{"POST", "/v2/bench/x/blobs/uploads/", "POST upload"},
		{"PUT", "/v2/bench/x/blobs/uploads/1234?digest=" + d, "PUT upload"},
		{"GET", "/v2/bench/x/manifests/latest", "GET manifest"},
		{"GET", "/v2/", "GET /v2/"},
	} {
		if got := requestKind(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestFetchCounts(t *testing.T) {
	text := `# HELP heron_ondemand_fetches_total Blobs fetched on demand, by result.
# TYPE heron_ondemand_fetches_total counter
heron_ondemand_fetches_total{result="failed"} 0
heron_ondemand_fetches_total{result="stored"} 2
heron_ondemand_fetches_total{result="verified"} 1e+00
heron_ondemand_fetched_bytes_total 1.073741824e+09
`
	got := fetchCounts(text)
	if got["stored"] != 2 || got["verified"] != 1 || got["failed"] != 0 || len(got) != 3 {
		t.Fatalf("got %v", got)
	}
}

// TestProxyAndGetBlob runs getBlob against a server through the counting
// proxy, paced and not: the right bytes pass, other bytes, fewer bytes
// and another digest header fail, and the proxy counts the blob GETs.
func TestProxyAndGetBlob(t *testing.T) {
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	d := digest.FromBytes(blob)
	wrong := append([]byte{}, blob...)
	wrong[100] ^= 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := blob
		switch {
		case strings.HasPrefix(r.URL.Path, "/wrong/"):
			body = wrong
		case strings.HasPrefix(r.URL.Path, "/short/"):
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.Write(blob[:len(blob)/2])
			return
		case strings.HasPrefix(r.URL.Path, "/header/"):
			w.Header().Set("Docker-Content-Digest", digest.FromString("other").String())
		}
		w.Write(body)
	}))
	defer srv.Close()
	upstream := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	for _, rate := range []int64{0, 8 << 20} {
		p, err := startCountingProxy(upstream, rate)
		if err != nil {
			t.Fatal(err)
		}
		base := "http://" + p.addr
		got, err := getBlob(ctx, base+"/ok/blobs/"+d.String(), d, int64(len(blob)), true)
		if err != nil {
			t.Fatalf("rate %d: %v", rate, err)
		}
		if got.last < got.headers || got.last <= 0 {
			t.Errorf("rate %d: headers %s, last byte %s", rate, got.headers, got.last)
		}
		// 1 MiB at 8 MiB/s: at least 1/8 s (less a little for the
		// first write, which is not waited for).
		if rate > 0 && got.last < 100*time.Millisecond {
			t.Errorf("paced at %d B/s: 1 MiB in %s", rate, got.last)
		}
		for _, path := range []string{"/wrong/", "/short/", "/header/"} {
			if _, err := getBlob(ctx, base+path+"blobs/"+d.String(), d, int64(len(blob)), true); err == nil {
				t.Errorf("rate %d, %s: no error", rate, path)
			}
		}
		// Without verify, the length is still checked.
		if _, err := getBlob(ctx, base+"/short/blobs/"+d.String(), d, int64(len(blob)), false); err == nil {
			t.Errorf("rate %d: a short answer not verified passed", rate)
		}
		if n := p.get("GET blob " + d.String()); n != 5 {
			t.Errorf("rate %d: %d blob GETs counted, want 5 (%v)", rate, n, p.summary())
		}
		p.reset()
		if n := p.get("GET blob " + d.String()); n != 0 {
			t.Errorf("after reset: %d", n)
		}
		p.close()
	}
}
