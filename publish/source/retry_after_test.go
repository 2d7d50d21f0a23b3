package source

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 7 ", 7 * time.Second, true},
		{"99999999999", 24 * time.Hour, true},
		{"-1", 0, false},
		{"", 0, false},
		{"soon", 0, false},
		{"1.5", 0, false},
		{"Mon, 23 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Mon, 23 Nov 2026 11:59:00 GMT", -time.Minute, true},
	} {
		got, ok := parseRetryAfter(tc.v, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRetryAfterBounds checks that a wait asked for is cut at the bound,
// and by the request's context.
func TestRetryAfterBounds(t *testing.T) {
	answer := func(status int, after string) http.RoundTripper {
		return roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {after}}, Body: http.NoBody}, nil
		})
	}
	req, _ := http.NewRequest(http.MethodGet, "http://registry.example.com/v2/", nil)

	start := time.Now()
	rt := &retryAfter{inner: answer(http.StatusTooManyRequests, "3600"), max: 50 * time.Millisecond}
	if resp, err := rt.RoundTrip(req); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("%v %v", resp, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 30*time.Second {
		t.Errorf("waited %s for Retry-After: 3600 bounded at 50 ms", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	rt = &retryAfter{inner: answer(http.StatusServiceUnavailable, "3600"), max: time.Hour}
	if _, err := rt.RoundTrip(req.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("waited %s after the request's context ended", d)
	}

	start = time.Now()
	rt = &retryAfter{inner: answer(http.StatusOK, "3600"), max: time.Hour}
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("waited %s on a 200", d)
	}
}
