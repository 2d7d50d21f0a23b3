// Command heronprof serves a tree like `heron serve` (the same redirector
// and the same http.Server settings) and writes a CPU profile of the server
// while it runs, for `go tool pprof`. heron serve has no profiling flag;
// this wrapper lets the benchmark show where a request's time goes without
// changing the server:
//
//	go run ./bench/heronprof -root TREE -addr 127.0.0.1:5000 -cpuprofile cpu.out -for 10s
//
// It stops by itself after -for, or on SIGTERM, and writes the profile then.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/redirector/h1"
	"github.com/heron-registry/heron/redirector/httpd"
)

func main() {
	var (
		root, addr, base, profile string
		dur                       time.Duration
		cacheSize                 int
		cacheBytes                int64
		fastPath                  bool
	)
	flag.StringVar(&root, "root", "", "the tree to serve")
	flag.StringVar(&addr, "addr", "127.0.0.1:5000", "loopback address to listen on")
	flag.StringVar(&base, "blob-base-url", "", "redirect blobs there, as heron serve --blob-base-url")
	flag.StringVar(&profile, "cpuprofile", "cpu.out", "write the CPU profile here")
	flag.IntVar(&cacheSize, "cache-size", redirector.DefaultCacheSize, "as heron serve --cache-size")
	flag.Int64Var(&cacheBytes, "cache-bytes", redirector.DefaultCacheBytes, "as heron serve --cache-bytes (the memory limit follows, as heron serve's does)")
	flag.BoolVar(&fastPath, "fast-path", true, "as heron serve --fast-path")
	flag.DurationVar(&dur, "for", 30*time.Second, "stop after this long")
	flag.Parse()
	opts := []redirector.Option{redirector.WithCacheSize(cacheSize), redirector.WithCacheBytes(cacheBytes)}
	debug.SetMemoryLimit(redirector.MemoryLimit(cacheBytes))
	if base != "" {
		opts = append(opts, redirector.WithRedirectBase(base))
	}
	if err := run(root, addr, profile, dur, fastPath, opts); err != nil {
		fmt.Fprintln(os.Stderr, "heronprof:", err)
		os.Exit(1)
	}
}

func run(root, addr, profile string, dur time.Duration, fastPath bool, opts []redirector.Option) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()

	// The options and server settings of heron serve (redirector/httpd.Run).
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts = append(opts, redirector.WithLogger(logger))
	h, err := redirector.New(root, opts...)
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpd.DefaultReadHeaderTimeout,
		IdleTimeout:       httpd.DefaultIdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv := &h1.Server{HTTP: hs, FastPath: redirector.IsAPITarget, MaxConnections: httpd.DefaultMaxConnections}
	if !fastPath {
		srv.FastPath = h1.NoFastPath
	}

	f, err := os.Create(profile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	pprof.StopCPUProfile()
	srv.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
