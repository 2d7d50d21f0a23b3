package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Push (issue 14): `crane push` of an image of -push-size bytes
// (-push-layers layers of random bytes: an OCI image layout that
// bench/publish/gen writes under <cache>/publish, the image of the
// bucket's publish scenario) into `heron serve --push
// --insecure-anonymous-push` on a new tree, and into registry:2 (its
// production configuration, registry.go) on a new storage folder, both in
// the run folder (the same disk). -push-rounds rounds, the two taking
// turns (each round starts with the other one). Each push has a new server
// on a new folder, started before and removed after, outside the timing;
// `sync` first, and the source in the page cache. Measured: crane push
// until it exits; then `sync` on its own (what the server had not written
// to the disk yet: heron syncs every file it writes, registry:2 does not);
// the server's CPU time and its peak RSS (VmHWM, reset by
// /proc/PID/clear_refs "5" before the push); and a second push of the same
// image to another tag of the same repository, where every blob is found
// (a HEAD each) and only the manifest is sent. After the first push, every
// layer is checked with a HEAD (its size) and the manifest by its digest.

// pushConfig holds the flags of the push section.
type pushConfig struct {
	rounds int
	size   int64
	layers int
	crane  string
}

func (c *pushConfig) addFlags() {
	flag.IntVar(&c.rounds, "push-rounds", 5, "rounds of the push, heron and registry:2 taking turns")
	flag.Int64Var(&c.size, "push-size", 1<<30, "bytes of the image pushed (its layers together)")
	flag.IntVar(&c.layers, "push-layers", 4, "layers of the image pushed")
	flag.StringVar(&c.crane, "crane", "", "crane binary (default: on PATH, in $HERON_CACHE/bin or <repo>/.cache/bin, where make tools puts it)")
}

func (c *pushConfig) check() error {
	switch {
	case c.rounds < 1 || c.rounds > 50:
		return fmt.Errorf("-push-rounds %d: want 1 to 50", c.rounds)
	case c.layers < 1 || c.layers > 100:
		return fmt.Errorf("-push-layers %d: want 1 to 100", c.layers)
	case c.size < int64(c.layers) || c.size > 64<<30:
		return fmt.Errorf("-push-size %d: want at least one byte a layer, at most 64 GiB", c.size)
	}
	return nil
}

// The servers pushed to.
const (
	pHeron    = "heron"
	pRegistry = "registry:2"
)

var pushServers = []string{pHeron, pRegistry}

var pushServerNames = map[string]string{
	pHeron:    "`heron serve --push --insecure-anonymous-push`",
	pRegistry: "registry:2",
}

// pushRun is one push into one server.
type pushRun struct {
	wall      time.Duration // crane push, to its exit
	sync      time.Duration // sync(2) right after
	again     time.Duration // the second push, to another tag
	serverCPU time.Duration // the server's CPU time during the first push
	idle, hwm int64         // VmRSS before, VmHWM after (since the reset when hwmReset)
}

// pushResult is the section of the report.
type pushResult struct {
	crane    string // its path and version
	image    string // how the image came to be
	dir      string // where the trees were, and their file system
	size     int64  // bytes of the image's blobs
	label    string // its size as the flags give it
	layers   int
	hwmReset bool
	runs     map[string][]pushRun // by server, round by round
	order    [][]string
	load     [2]string // /proc/loadavg before and after
}

// findCrane returns the crane binary: flagged, on PATH, or where make
// tools installs it.
func findCrane(flagged string) (string, error) {
	if flagged != "" {
		return filepath.Abs(flagged)
	}
	if p, err := exec.LookPath("crane"); err == nil {
		return filepath.Abs(p)
	}
	var dirs []string
	if hc := os.Getenv("HERON_CACHE"); hc != "" {
		dirs = append(dirs, filepath.Join(hc, "bin"))
	}
	dirs = append(dirs, filepath.Join(".cache", "bin"))
	for _, d := range dirs {
		p := filepath.Join(d, "crane")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return filepath.Abs(p)
		}
	}
	return "", errors.New("crane not found on PATH, in $HERON_CACHE/bin or .cache/bin (make tools installs it); or give -crane")
}

// pushImage is what the pushed image is made of, read from its layout.
type pushImageInfo struct {
	manifest string // its digest
	layers   []ocispec.Descriptor
	total    int64 // bytes of its blobs (config and layers)
}

func readPushImage(dir string) (*pushImageInfo, error) {
	var idx ocispec.Index
	if err := readJSONFile(filepath.Join(dir, "index.json"), &idx); err != nil {
		return nil, err
	}
	if len(idx.Manifests) != 1 {
		return nil, fmt.Errorf("%s: index.json lists %d manifests, want 1", dir, len(idx.Manifests))
	}
	md := idx.Manifests[0].Digest
	var m ocispec.Manifest
	if err := readJSONFile(filepath.Join(dir, "blobs", md.Algorithm().String(), md.Encoded()), &m); err != nil {
		return nil, err
	}
	info := &pushImageInfo{manifest: md.String(), layers: m.Layers, total: m.Config.Size}
	for _, l := range m.Layers {
		info.total += l.Size
		// Every push reads the source from the page cache.
		if err := readAll(filepath.Join(dir, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded())); err != nil {
			return nil, err
		}
	}
	return info, nil
}

func readJSONFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// pushServer is a server pushed to, on a new folder.
type pushServer struct {
	*proc
	dir string
}

func startPushServer(ctx context.Context, cfg *config, runDir, server string, round int) (*pushServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("push-%s-%d", strings.TrimSuffix(server, ":2"), round)
	dir := filepath.Join(runDir, name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	var p *proc
	switch server {
	case pHeron:
		p, err = start(name, addr, runDir, cfg.heron, "serve", "--push", "--insecure-anonymous-push",
			"--root", filepath.Join(dir, "tree"), "--addr", addr, "--log-level", "warn")
	case pRegistry:
		if err = os.MkdirAll(dir, 0o755); err == nil {
			p, err = startRegistry(addr, dir, runDir)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, "http://"+addr+"/v2/", 200, 20*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return &pushServer{proc: p, dir: dir}, nil
}

// close stops the server and removes its folder, and syncs, so that the
// removal's writes do not fall into the next measurement.
func (s *pushServer) close() {
	s.stop()
	os.RemoveAll(s.dir)
	syscall.Sync()
}

// cranePush runs crane push of the layout src to ref and returns its wall
// time.
func cranePush(ctx context.Context, crane, src, ref string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, crane, "push", "--insecure", src, ref)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("crane push %s: %v: %s", ref, err, strings.TrimSpace(tailLines(out.String(), 5)))
	}
	return d, nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// checkPushed checks that the server holds the image at repo:tag: the
// manifest by tag has the image's digest, and every layer answers a HEAD
// with its size.
func checkPushed(ctx context.Context, addr, repo, tag string, img *pushImageInfo) error {
	base := "http://" + addr + "/v2/" + repo
	status, h, err := do(ctx, http.MethodHead, base+"/manifests/"+tag, nil, http.Header{"Accept": {ocispec.MediaTypeImageManifest}})
	if err != nil {
		return err
	}
	if status != http.StatusOK || h.Get("Docker-Content-Digest") != img.manifest {
		return fmt.Errorf("HEAD %s:%s: status %d, digest %q, want 200 and %s", repo, tag, status, h.Get("Docker-Content-Digest"), img.manifest)
	}
	for _, l := range img.layers {
		status, h, err := do(ctx, http.MethodHead, base+"/blobs/"+l.Digest.String(), nil, nil)
		if err != nil {
			return err
		}
		if status != http.StatusOK || h.Get("Content-Length") != fmt.Sprint(l.Size) {
			return fmt.Errorf("HEAD blob %s: status %d, length %q, want 200 and %d", l.Digest, status, h.Get("Content-Length"), l.Size)
		}
	}
	return nil
}

// measurePush measures the push section.
func measurePush(ctx context.Context, cfg *config, runDir string) (*pushResult, error) {
	pc := cfg.push
	crane, err := findCrane(pc.crane)
	if err != nil {
		return nil, err
	}
	src, gen, cached, err := ensureImageLayout(ctx, cfg, pc.size, pc.layers)
	if err != nil {
		return nil, err
	}
	if cached {
		gen += ", cached from an earlier run"
	}
	img, err := readPushImage(src)
	if err != nil {
		return nil, err
	}
	res := &pushResult{
		crane: crane + " (" + cmdOutput(crane, "version") + ", its default of 4 blobs at once)", image: gen,
		dir:  fmt.Sprintf("%s (%s)", runDir, fsType(runDir)),
		size: img.total, label: mib(pc.size), layers: len(img.layers), runs: map[string][]pushRun{},
	}
	const repo = "bench/push"
	push := func(server string, round int) (pushRun, error) {
		var r pushRun
		s, err := startPushServer(ctx, cfg, runDir, server, round)
		if err != nil {
			return r, err
		}
		defer s.close()
		pid := s.pid()
		if st, err := readStatus(pid); err == nil {
			r.idle = st.rss
		}
		reset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
		res.hwmReset = reset && (round == 0 || res.hwmReset)
		syscall.Sync()
		c0, _ := cpuTime(pid)
		if r.wall, err = cranePush(ctx, crane, src, s.addr+"/"+repo+":latest"); err != nil {
			return r, fmt.Errorf("%s: %w (see %s)", server, err, s.log)
		}
		t0 := time.Now()
		syscall.Sync()
		r.sync = time.Since(t0)
		c1, _ := cpuTime(pid)
		r.serverCPU = c1 - c0
		st, err := readStatus(pid)
		if err != nil {
			return r, err
		}
		r.hwm = st.hwm
		if err := checkPushed(ctx, s.addr, repo, "latest", img); err != nil {
			return r, fmt.Errorf("%s: %w (see %s)", server, err, s.log)
		}
		if r.again, err = cranePush(ctx, crane, src, s.addr+"/"+repo+":again"); err != nil {
			return r, fmt.Errorf("%s, second push: %w (see %s)", server, err, s.log)
		}
		if err := checkPushed(ctx, s.addr, repo, "again", img); err != nil {
			return r, fmt.Errorf("%s, second push: %w (see %s)", server, err, s.log)
		}
		return r, nil
	}
	logf("push of %s (%d layers) with crane: %d rounds of %s", mib(pc.size), len(img.layers), pc.rounds, strings.Join(pushServers, ", "))
	res.load[0] = loadAvg()
	for round := 0; round < pc.rounds; round++ {
		order := append(slices.Clone(pushServers[round%len(pushServers):]), pushServers[:round%len(pushServers)]...)
		var line []string
		for _, server := range order {
			r, err := push(server, round)
			if err != nil {
				return nil, fmt.Errorf("push, round %d: %w", round+1, err)
			}
			res.runs[server] = append(res.runs[server], r)
			line = append(line, fmt.Sprintf("%s %s (+ sync %s, CPU %s, VmHWM %s; again %s)", server, secs(r.wall), secs(r.sync), secs(r.serverCPU), mb(r.hwm), dur(r.again)))
		}
		res.order = append(res.order, order)
		logf("push, round %d: %s", round+1, strings.Join(line, ", "))
	}
	res.load[1] = loadAvg()
	return res, nil
}

// pushStats returns the median, min and max of one figure of runs.
func pushStats(runs []pushRun, f func(pushRun) time.Duration) (med, lo, hi time.Duration) {
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = f(r)
	}
	slices.Sort(ds)
	return median(ds), ds[0], ds[len(ds)-1]
}

// ratios returns heron's speed as a multiple of registry:2's, round by
// round (registry:2's time over heron's), sorted, for one figure.
func (r *pushResult) ratios(f func(pushRun) time.Duration) []float64 {
	hs, rs := r.runs[pHeron], r.runs[pRegistry]
	var out []float64
	for i := range hs {
		out = append(out, f(rs[i]).Seconds()/f(hs[i]).Seconds())
	}
	slices.Sort(out)
	return out
}

func wallOf(r pushRun) time.Duration     { return r.wall }
func durableOf(r pushRun) time.Duration  { return r.wall + r.sync }
func againOf(r pushRun) time.Duration    { return r.again }
func cpuOfPush(r pushRun) time.Duration  { return r.serverCPU }
func syncOfPush(r pushRun) time.Duration { return r.sync }

// markdown writes the section of the report.
func (r *pushResult) markdown(b *strings.Builder) {
	b.WriteString("\n### Push (issue 14)\n\n")
	fmt.Fprintf(b, "- client: crane push, %s\n- image: %s\n- the trees and registry:2's storage: %s\n\n", r.crane, r.image, r.dir)
	reset := "VmHWM reset by /proc/PID/clear_refs \"5\" before the push"
	if !r.hwmReset {
		reset = "VmHWM could not be reset, so it covers the start-up too"
	}
	fmt.Fprintf(b, "`crane push --insecure DIR ADDR/bench/push:latest` of the %s image (%d layers) into a new `heron serve --push --insecure-anonymous-push --root DIR` and into a new registry:2 (filesystem storage, its production configuration), "+
		"each on a new folder of the same disk, %d rounds, the two taking turns (each round starts with the other one); the server started and its folder removed outside the timing, `sync` before each push, the source in the page cache. "+
		"Then `sync` is timed on its own: what the server had not yet written to the disk when crane exited (heron syncs every file before it answers; registry:2 syncs nothing). "+
		"CPU is the server's user + system time during the push; peak RSS its VmHWM after the push (%s). "+
		"The second push is the same image to the tag `again` of the same repository: crane finds every blob (HEAD) and sends the manifest. Load average before and after: %s; %s.\n\n",
		r.label, r.layers, len(r.order), reset, r.load[0], r.load[1])
	b.WriteString("| server | crane push (median; min–max) | MiB/s (median) | then `sync` (median) | push + sync (median) | server CPU (median) | peak RSS (max) | second push, blobs present (median; min–max) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range pushServers {
		runs := r.runs[s]
		w, lo, hi := pushStats(runs, wallOf)
		sy, _, _ := pushStats(runs, syncOfPush)
		du, _, _ := pushStats(runs, durableOf)
		cpu, _, _ := pushStats(runs, cpuOfPush)
		a, alo, ahi := pushStats(runs, againOf)
		var hwm int64
		for _, run := range runs {
			hwm = max(hwm, run.hwm)
		}
		fmt.Fprintf(b, "| %s | %s (%s–%s) | %.0f | %s | %s | %s | %s | %s (%s–%s) |\n", pushServerNames[s], secs(w), secs(lo), secs(hi),
			float64(r.size)/(1<<20)/w.Seconds(), secs(sy), secs(du), secs(cpu), mb(hwm), dur(a), dur(alo), dur(ahi))
	}
	x := r.ratios(wallOf)
	xd := r.ratios(durableOf)
	xa := r.ratios(againOf)
	fmt.Fprintf(b, "\nheron's speed × registry:2's, round by round (registry:2's time over heron's): crane push %.2f (%.2f–%.2f); push + sync %.2f (%.2f–%.2f); second push %.2f (%.2f–%.2f).\n",
		medianFloat(x), x[0], x[len(x)-1], medianFloat(xd), xd[0], xd[len(xd)-1], medianFloat(xa), xa[0], xa[len(xa)-1])
	b.WriteString("\nRound by round (crane push; the order they ran in):\n\n")
	for i, order := range r.order {
		var parts []string
		for _, s := range order {
			run := r.runs[s][i]
			parts = append(parts, fmt.Sprintf("%s %s (+ sync %s)", s, secs(run.wall), secs(run.sync)))
		}
		fmt.Fprintf(b, "%d. %s\n", i+1, strings.Join(parts, ", "))
	}
}

// targets checks the goal of issue 14.
func (r *pushResult) targets(yes func(bool) string) [][3]string {
	x := r.ratios(wallOf)
	xd := r.ratios(durableOf)
	hw, _, _ := pushStats(r.runs[pHeron], wallOf)
	rw, _, _ := pushStats(r.runs[pRegistry], wallOf)
	var hwm int64
	for _, run := range r.runs[pHeron] {
		hwm = max(hwm, run.hwm)
	}
	return [][3]string{
		{fmt.Sprintf("push: crane push of a %s image into heron ≥ 1.0× the speed of the same push into registry:2 on the same disk (median of the rounds' ratios)", r.label),
			fmt.Sprintf("%.2f× (rounds %.2f–%.2f; medians %s vs %s, %.0f vs %.0f MiB/s); counting the `sync` after it %.2f× (%.2f–%.2f); heron's peak RSS %s",
				medianFloat(x), x[0], x[len(x)-1], secs(hw), secs(rw), float64(r.size)/(1<<20)/hw.Seconds(), float64(r.size)/(1<<20)/rw.Seconds(),
				medianFloat(xd), xd[0], xd[len(xd)-1], mb(hwm)),
			yes(medianFloat(x) >= 1.0)},
	}
}
