package redirector

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestNormalizeRanges(t *testing.T) {
	const same = "(as sent)"
	many := func(n int, spec func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = spec(i)
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	for _, tc := range []struct {
		header string
		size   int64
		want   string // "": no Range header, same: unchanged
	}{
		{"bytes=0-9", 100, same},
		{"bytes=10-19,30-39", 1000, "bytes=10-39"},
		{"bytes=10-19,130-139", 1000, same},
		{"bytes=-10", 100, same},
		{"bytes=90-", 100, same},
		{"items=0-9", 100, same},
		{"bytes=abc", 100, same},
		{"bytes=5-1", 100, same},
		{"bytes=200-300", 100, same},
		{"bytes=200-abc", 100, same},
		{"bytes=0-9,200-300", 100, same},
		{"bytes=-0", 100, ""},
		{"bytes=-0,3-4", 100, "bytes=3-4"},
		{"bytes=-1,-1,-\t\t\t\t\t0", 59, "bytes=58-58"},
		{"bytes=-5", 0, ""},
		{"bytes=0-9,5-14", 100, "bytes=0-14"},
		{"bytes=0-9,10-19", 100, "bytes=0-19"},
		{"bytes=0-9,50-59", 100, "bytes=0-59"},
		{"bytes=0-9,500-509", 1000, same},
		{"bytes=500-509,0-9,505-600", 1000, "bytes=500-600,0-9"},
		{"bytes=0-0,0-0,0-0", 100, "bytes=0-0"},
		{"bytes= 0-9 , ,20-29", 100, "bytes=0-29"},
		{"bytes=900-,0-9", 1000, same},
		{"bytes=900-999,100-199,850-950", 1000, "bytes=850-999,100-199"},
		{many(16, func(i int) string { return fmt.Sprintf("%d-%d", i*1000, i*1000) }), 100000, same},
		{many(17, func(i int) string { return fmt.Sprintf("%d-%d", i*1000, i*1000) }), 100000, ""},
		{many(256, func(int) string { return "0-0" }), 100000, "bytes=0-0"},
		{many(257, func(int) string { return "0-0" }), 100000, ""},
		{many(1000, func(i int) string { return fmt.Sprintf("%d-%d", i*1000, i*1000) }), 10000000, ""},
		{many(262000, func(int) string { return "0-0" }), 100000, ""},
	} {
		name := tc.header
		if len(name) > 60 {
			name = name[:60] + "…"
		}
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Range", tc.header)
			got := normalizeRanges(r, tc.size)
			want := tc.want
			if want == same {
				want = tc.header
				if got != r {
					t.Errorf("a copy of the request, want the request itself")
				}
			}
			if h := got.Header.Get("Range"); h != want {
				t.Errorf("Range %q, want %q", h, want)
			}
			if r.Header.Get("Range") != tc.header {
				t.Errorf("the request's own header changed")
			}
		})
	}
}

// TestManyRanges: a Range header of many tiny ranges (issue 10, defect 1)
// is answered with one range when they overlap, and with the whole blob
// past maxRanges, never with a multipart answer of a thousand parts.
func TestManyRanges(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 10000)
	serve := func(rng string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Range", rng)
		w := httptest.NewRecorder()
		http.ServeContent(w, normalizeRanges(r, int64(len(content))), "", time.Time{}, bytes.NewReader(content))
		return w
	}
	same := "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 200), ",")
	if w := serve(same); w.Code != http.StatusPartialContent || w.Header().Get("Content-Range") != "bytes 0-0/100000" || w.Body.String() != "0" {
		t.Errorf("200 times 0-0: %d %q, %d bytes", w.Code, w.Header().Get("Content-Range"), w.Body.Len())
	}
	if w := serve("bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 1001), ",")); w.Code != http.StatusOK || w.Body.Len() != len(content) {
		t.Errorf("1001 times 0-0: %d, %d bytes", w.Code, w.Body.Len())
	}
	var spread []string
	for i := range 1000 {
		spread = append(spread, fmt.Sprintf("%d-%d", i*97, i*97))
	}
	if w := serve("bytes=" + strings.Join(spread, ",")); w.Code != http.StatusOK || w.Body.Len() != len(content) {
		t.Errorf("1000 distinct ranges: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := serve("bytes=0-9,5000-5009"); w.Code != http.StatusPartialContent || !strings.HasPrefix(w.Header().Get("Content-Type"), "multipart/byteranges") {
		t.Errorf("two ranges: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}

func BenchmarkManyRanges(b *testing.B) {
	content := bytes.NewReader(bytes.Repeat([]byte("0123456789"), 10000))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Range", "bytes="+strings.TrimSuffix(strings.Repeat("0-0,", 1000), ","))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		http.ServeContent(w, normalizeRanges(r, content.Size()), "", time.Time{}, content)
	}
}
