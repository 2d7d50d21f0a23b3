package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
)

// profileResult is a CPU profile of heron under one load.
type profileResult struct {
	what string
	file string
	top  string // go tool pprof -top -cum
	load *accum
}

// profileHeron runs bench/heronprof (heron's server with a CPU profiler)
// under the loads where heron falls short and keeps the profiles under
// <cache>/profiles.
func profileHeron(ctx context.Context, cfg *config, fx *fixture, peerTree, bigTree string, bigRepos int, runDir string) ([]profileResult, error) {
	dir, err := filepath.Abs(filepath.Join(cfg.cacheDir, "profiles"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	accept := http.Header{"Accept": {acceptManifests}}
	var spread []load.Request
	for j := range min(bigRepos, spreadRepos) {
		name := treegen.RepositoryName(j * bigRepos / min(bigRepos, spreadRepos))
		spread = append(spread, load.Request{Path: fx.manifestPath(name, treegen.TagName(j%tagsPerRepo)), Header: accept})
	}
	cases := []struct {
		id, what, tree string
		reqs           []load.Request
	}{
		{"manifest-get-tag", "GET manifest by tag", peerTree,
			[]load.Request{{Path: fx.manifestPath(fx.repo, "latest"), Header: accept}}},
		{"tags-list", "GET tags/list (100 tags)", peerTree,
			[]load.Request{{Path: "/v2/" + fx.tagsRepo + "/tags/list"}}},
		{"manifest-spread", fmt.Sprintf("GET manifest by tag over %s repositories at %s repositories", num(float64(len(spread))), num(float64(bigRepos))), bigTree,
			spread},
		{"catalog", fmt.Sprintf("GET _catalog?n=100&last=<random> at %s repositories", num(float64(bigRepos))), bigTree,
			[]load.Request{
				{Path: "/v2/_catalog?n=100&last=" + url.QueryEscape(treegen.RepositoryName(bigRepos/3))},
				{Path: "/v2/_catalog?n=100&last=" + url.QueryEscape(treegen.RepositoryName(2*bigRepos/3))},
			}},
	}
	var out []profileResult
	for _, c := range cases {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, c.id+".pprof")
		p, err := start("heronprof-"+c.id, addr, runDir, cfg.heronprof, "-root", c.tree, "-addr", addr,
			"-cpuprofile", file, "-for", "10m")
		if err != nil {
			return nil, err
		}
		if err := p.waitReady(ctx, "http://"+addr+"/v2/", 200, 10*time.Second); err != nil {
			p.stop()
			return nil, err
		}
		a := newAccum()
		res, err := runLoad(ctx, cfg, target{name: tHeron, addr: addr}, c.reqs, 200, nil, fx)
		p.stop() // SIGTERM: the profile is written on the way out
		if err != nil {
			return nil, err
		}
		a.add(res)
		top, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=30", cfg.heronprof, file).Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof %s: %w", file, err)
		}
		out = append(out, profileResult{what: c.what, file: file, top: trimPprof(string(top)), load: a})
		logf("profile of %s: %s (%s)", c.what, file, a.summary())
	}
	return out, nil
}

// trimPprof drops pprof's header lines up to the column titles.
func trimPprof(s string) string {
	if i := strings.Index(s, "      flat"); i >= 0 {
		return s[i:]
	}
	return s
}
