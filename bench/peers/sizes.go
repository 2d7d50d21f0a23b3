package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
)

// sizeResult is what was measured on the tree of one size.
type sizeResult struct {
	repos         int
	startups      []time.Duration
	spread        *accum // manifest GET by tag over spreadRepos repositories
	concentrated  *accum // the same GET over concentratedRepos repositories
	blob          *accum // blob GET
	catFirst      *accum // /v2/_catalog?n=100
	catRandom     *accum // /v2/_catalog?n=100&last=<random name>
	peak, current int64  // heron's VmHWM and VmRSS after all the load
	peakNoCatalog int64  // heron's VmHWM before the catalog load
}

// spreadRepos is how many distinct repositories the spread load visits,
// one after the other (the worst order for a cache that cannot hold them
// all); concentratedRepos the few the concentrated load visits, which
// every cache holds. Their ratio is what a cache miss costs.
const (
	spreadRepos       = 20_000
	concentratedRepos = 100
)

// measureSize measures heron on the tree of n repositories: start-up
// time, then one server under load for memory, manifests over many
// repositories, and the catalog.
func measureSize(ctx context.Context, cfg *config, fx *fixture, tree string, n int, runDir string) (*sizeResult, error) {
	sr := &sizeResult{repos: n}
	probe := fx.manifestPath(treegen.RepositoryName(n-1), "latest")
	for i := 0; i < cfg.startups; i++ {
		d, err := startupTime(ctx, cfg.heron, tree, probe, runDir)
		if err != nil {
			return nil, err
		}
		sr.startups = append(sr.startups, d)
	}
	sort.Slice(sr.startups, func(i, j int) bool { return sr.startups[i] < sr.startups[j] })

	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := start(fmt.Sprintf("heron-%d", n), addr, runDir, cfg.heron, "serve", "--root", tree, "--addr", addr, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if err := p.waitReady(ctx, "http://"+addr+probe, 200, 10*time.Second); err != nil {
		return nil, err
	}
	t := target{name: tHeron, addr: addr}
	accept := http.Header{"Accept": {acceptManifests}}

	over := func(k int) []load.Request {
		k = min(n, k)
		reqs := make([]load.Request, 0, k)
		for j := 0; j < k; j++ {
			name := treegen.RepositoryName(j * n / k)
			reqs = append(reqs, load.Request{Path: fx.manifestPath(name, treegen.TagName(j%tagsPerRepo)), Header: accept})
		}
		return reqs
	}
	spread, concentrated := over(spreadRepos), over(concentratedRepos)
	k := min(n, spreadRepos)
	blobs := make([]load.Request, 0, 1000)
	for j := 0; j < k; j += max(k/1000, 1) {
		blobs = append(blobs, load.Request{Path: fx.blobPath(treegen.RepositoryName(j*n/k), fx.img.LayerDigest)})
	}
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	catalog := make([]load.Request, 1000)
	for j := range catalog {
		last := treegen.RepositoryName(rng.IntN(n))
		catalog[j] = load.Request{Path: "/v2/_catalog?n=100&last=" + url.QueryEscape(last)}
	}

	runs := []struct {
		what   string
		reqs   []load.Request
		size   func(*fixture) int64
		into   **accum
		rounds int
	}{
		{fmt.Sprintf("manifest GET by tag over %s repositories", num(float64(min(n, concentratedRepos)))), concentrated, func(f *fixture) int64 { return int64(len(f.img.Manifest)) }, &sr.concentrated, 2},
		{fmt.Sprintf("manifest GET by tag over %s repositories", num(float64(min(n, spreadRepos)))), spread, func(f *fixture) int64 { return int64(len(f.img.Manifest)) }, &sr.spread, 2},
		{"blob GET", blobs, func(f *fixture) int64 { return int64(len(f.img.Layer)) }, &sr.blob, 1},
		{"catalog first page", []load.Request{{Path: "/v2/_catalog?n=100"}}, nil, &sr.catFirst, 1},
		{"catalog random page", catalog, nil, &sr.catRandom, 1},
	}
	for _, r := range runs {
		if r.into == &sr.catFirst {
			if sr.peakNoCatalog, _, err = memory(p.pid()); err != nil {
				return nil, err
			}
		}
		a := newAccum()
		for i := 0; i < r.rounds; i++ {
			res, err := runLoad(ctx, cfg, t, r.reqs, 200, r.size, fx)
			if err != nil {
				return nil, err
			}
			a.add(res)
		}
		*r.into = a
		logf("%8d repositories: %-38s %s", n, r.what, a.summary())
	}
	if sr.peak, sr.current, err = memory(p.pid()); err != nil {
		return nil, err
	}
	logf("%8d repositories: first answer %v (fastest of %d: %v); peak RSS %s (%s before the catalog load)",
		n, sr.startups[len(sr.startups)/2], len(sr.startups), sr.startups[0], mb(sr.peak), mb(sr.peakNoCatalog))
	return sr, nil
}

// startupTime starts heron on tree and returns the time from just before
// the exec to the first 200 answer to GET probe.
func startupTime(ctx context.Context, heron, tree, probe, runDir string) (time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	p, err := start("heron-startup", addr, runDir, heron, "serve", "--root", tree, "--addr", addr, "--log-level", "warn")
	if err != nil {
		return 0, err
	}
	defer p.stop()
	deadline := t0.Add(10 * time.Second)
	req := []byte("GET " + probe + " HTTP/1.1\r\nHost: " + addr + "\r\nAccept: " + acceptManifests + "\r\nConnection: close\r\n\r\n")
	for {
		if ok, err := probeOnce(addr, req); ok {
			return time.Since(t0), nil
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("heron on %s: no answer to %s within 10s: %v; see %s", tree, probe, err, p.log)
		}
		select {
		case <-p.done:
			return 0, fmt.Errorf("heron exited (%v); see %s", p.err, p.log)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// probeOnce sends req on a new connection and reports whether the answer
// is a 200.
func probeOnce(addr string, req []byte) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(req); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	return true, nil
}
