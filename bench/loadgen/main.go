// Command loadgen runs bench/load from the command line against one URL on
// a loopback address, for ad hoc measurements:
//
//	go run ./bench/loadgen -c 16 -d 5s -method HEAD \
//	    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
//	    http://127.0.0.1:5000/v2/library/app/manifests/latest
//
// Redirects are never followed. It prints req/s, MiB/s, p50, p99, max and
// the statuses seen.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/heron-registry/heron/bench/load"
)

type headers http.Header

func (h headers) String() string { return fmt.Sprint(http.Header(h)) }

func (h headers) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("want 'Name: value', got %q", s)
	}
	http.Header(h).Add(strings.TrimSpace(k), strings.TrimSpace(v))
	return nil
}

func main() {
	h := headers{}
	var cfg load.Config
	method := flag.String("method", "GET", "request method")
	flag.IntVar(&cfg.Concurrency, "c", 16, "connections")
	flag.DurationVar(&cfg.Duration, "d", 5*time.Second, "measured duration")
	flag.DurationVar(&cfg.Warmup, "warmup", 500*time.Millisecond, "unmeasured warm-up")
	flag.Int64Var(&cfg.MaxRequests, "n", 0, "stop after this many measured requests (0: no limit)")
	flag.IntVar(&cfg.ExpectStatus, "status", 0, "count answers of another status as errors (0: any)")
	flag.Var(h, "H", "request header 'Name: value' (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: loadgen [flags] http://127.0.0.1:PORT/PATH")
		os.Exit(2)
	}
	u, err := url.Parse(flag.Arg(0))
	if err != nil || u.Scheme != "http" {
		fmt.Fprintln(os.Stderr, "loadgen: want an http:// URL")
		os.Exit(2)
	}
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":80"
	}
	cfg.Requests = []load.Request{{Method: *method, Path: u.RequestURI(), Header: http.Header(h)}}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := load.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Printf("%d requests in %s: %.0f req/s, %.1f MiB/s, p50 %s, p99 %s, max %s; %s; %d errors",
		res.Requests, res.Elapsed.Round(time.Millisecond), res.RequestsPerSecond(), res.MiBPerSecond(),
		res.Latency.Quantile(0.5), res.Latency.Quantile(0.99), res.Latency.Max(), res.StatusSummary(), res.Errors)
	if res.FirstError != "" {
		fmt.Printf(" (first: %s)", res.FirstError)
	}
	fmt.Println()
}
