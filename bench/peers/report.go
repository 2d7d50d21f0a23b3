package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/heron-registry/heron/bench/load"
)

// accum adds up the rounds of one scenario on one server.
type accum struct {
	requests, errors, bytes int64
	elapsed                 time.Duration
	hist                    *load.Histogram
	rounds                  []float64 // req/s of each round
	firstErr                string
}

func newAccum() *accum { return &accum{hist: &load.Histogram{}} }

func (a *accum) add(r *load.Result) {
	a.requests += r.Requests
	a.errors += r.Errors
	a.bytes += r.BodyBytes
	a.elapsed += r.Elapsed
	a.hist.Merge(r.Latency)
	a.rounds = append(a.rounds, r.RequestsPerSecond())
	if a.firstErr == "" && r.FirstError != "" {
		a.firstErr = r.FirstError
	}
}

func (a *accum) rps() float64 {
	if a == nil || a.elapsed <= 0 {
		return 0
	}
	return float64(a.requests) / a.elapsed.Seconds()
}

func (a *accum) mibps() float64 {
	if a == nil || a.elapsed <= 0 {
		return 0
	}
	return float64(a.bytes) / (1 << 20) / a.elapsed.Seconds()
}

func (a *accum) p(q float64) time.Duration {
	if a == nil {
		return 0
	}
	return a.hist.Quantile(q)
}

func (a *accum) spread() string {
	if len(a.rounds) < 2 {
		return ""
	}
	lo, hi := a.rounds[0], a.rounds[0]
	for _, r := range a.rounds {
		lo, hi = min(lo, r), max(hi, r)
	}
	return fmt.Sprintf("%s–%s", num(lo), num(hi))
}

func (a *accum) summary() string {
	s := fmt.Sprintf("%9s req/s  p50 %8s  p99 %8s", num(a.rps()), dur(a.p(0.5)), dur(a.p(0.99)))
	if a.bytes > 0 {
		s += fmt.Sprintf("  %7.0f MiB/s", a.mibps())
	}
	if a.errors > 0 {
		s += fmt.Sprintf("  %d errors (%s)", a.errors, a.firstErr)
	}
	return s
}

// num formats a rate with thousands separators.
func num(f float64) string {
	n := int64(f + 0.5)
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// dur formats a latency in ms with three significant digits or so.
func dur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	default:
		return fmt.Sprintf("%.1f ms", ms)
	}
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

type serverResult struct {
	target string
	*accum
}

type scenarioResult struct {
	sc      scenario
	results []serverResult
}

// find returns the result of the named server, or nil.
func (s *scenarioResult) find(name string) *accum {
	for _, r := range s.results {
		if r.target == name {
			return r.accum
		}
	}
	return nil
}

// nginx returns the result of nginx as production runs it, the baseline
// of every ratio: with its open file cache, or nginx's 307.
func (s *scenarioResult) nginx() *accum {
	if a := s.find(tNginx); a != nil {
		return a
	}
	return s.find(tNginxRedirect)
}

// heron returns the result of heron as configured by default (blobs
// redirected in the redirect scenario).
func (s *scenarioResult) heron() *accum {
	if a := s.find(tHeron); a != nil {
		return a
	}
	return s.find(tHeronRedirect)
}

// rate is the number compared: MiB/s for a transfer, req/s otherwise.
func (s *scenarioResult) rate(a *accum) float64 {
	if s.sc.throughput {
		return a.mibps()
	}
	return a.rps()
}

type genInfo struct {
	repos  int
	line   string
	cached bool
}

type report struct {
	cfg        *config
	began      time.Time
	took       time.Duration
	machine    []string
	gen        []genInfo
	scenarios  []scenarioResult
	peerMemory []string
	sizes      []*sizeResult
	tags       *tagsResult
	s3         *s3Result
	ondemand   *ondemandResult
	push       *pushResult
	profiles   []profileResult
}

func (r *report) hasGen(n int) bool {
	for _, g := range r.gen {
		if g.repos == n {
			return true
		}
	}
	return false
}

func (r *report) markdown() string {
	var b strings.Builder
	cfg := r.cfg
	fmt.Fprintf(&b, "## Run of %s\n\n", r.began.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Command: `%s`, %s in all.\n\n", cfg.command, r.took.Round(time.Second))
	for _, m := range r.machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	fmt.Fprintf(&b, "- load: bench/load, %d keep-alive connections on 127.0.0.1, %d rounds of %s (after %s warm-up) per scenario and server, servers taking turns\n\n",
		cfg.concurrency, cfg.rounds, cfg.duration, cfg.warmup)

	if len(r.scenarios) > 0 {
		r.peersMarkdown(&b)
	}
	if len(r.sizes) > 0 {
		r.sizesMarkdown(&b)
	}
	if r.tags != nil {
		r.tags.markdown(&b, cfg)
	}
	if r.s3 != nil {
		r.s3.markdown(&b, cfg)
	}
	if r.ondemand != nil {
		r.ondemand.markdown(&b)
	}
	if r.push != nil {
		r.push.markdown(&b)
	}
	b.WriteString("\n### Targets\n\n| target | measured | met |\n| --- | --- | --- |\n")
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t[0], t[1], t[2])
	}
	b.WriteString("\n")
	for _, p := range r.profiles {
		fmt.Fprintf(&b, "<details><summary>CPU profile of heron under %s (%s req/s with the profiler on): <code>%s</code></summary>\n\n```\n%s```\n</details>\n\n",
			p.what, num(p.load.rps()), p.file, p.top)
	}
	return b.String()
}

// peersMarkdown writes the table of the servers compared.
func (r *report) peersMarkdown(b *strings.Builder) {
	cfg := r.cfg
	fmt.Fprintf(b, "### Same requests, same bytes (tree of %s repositories)\n\n", num(float64(cfg.peerRepos)))
	b.WriteString("| scenario | server | req/s | rounds (req/s) | MiB/s | p50 | p99 | × nginx | × registry:2 | errors |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range r.scenarios {
		base, reg := s.nginx(), s.find(tRegistry)
		for _, sr := range s.results {
			a := sr.accum
			mibs, xn, xr := "", "", ""
			if s.sc.throughput {
				mibs = fmt.Sprintf("%.0f", a.mibps())
			}
			if base != nil && s.rate(base) > 0 && a != base {
				xn = fmt.Sprintf("%.2f", s.rate(a)/s.rate(base))
			}
			if reg != nil && s.rate(reg) > 0 && a != reg && !strings.HasPrefix(sr.target, tNginx) {
				xr = fmt.Sprintf("%.1f", s.rate(a)/s.rate(reg))
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n",
				s.sc.title, sr.target, num(a.rps()), a.spread(), mibs, dur(a.p(0.5)), dur(a.p(0.99)), xn, xr, a.errors)
		}
	}
	b.WriteString("\nregistry:2 (filesystem storage) cannot redirect blobs, so it has no 307 row.\n")
	if len(r.peerMemory) > 0 {
		fmt.Fprintf(b, "Peak RSS after these runs: %s.\n", strings.Join(r.peerMemory, ", "))
	}
}

// sizesMarkdown writes the table of heron by tree size.
func (r *report) sizesMarkdown(b *strings.Builder) {
	b.WriteString("\n### heron by tree size\n\n")
	fmt.Fprintf(b, "| repositories | first answer after exec (median; min–max) | manifest GET by tag over %s repos: req/s, p50, p99 | the same over %s repos: req/s, p50, p99 | spread × concentrated | blob GET MiB/s | `_catalog?n=100` first page: req/s, p50, p99 | `_catalog?n=100&last=<random>`: req/s, p50, p99 | peak RSS (VmHWM): manifests and blobs | peak RSS: all, catalog too | RSS after |\n",
		num(concentratedRepos), num(spreadRepos))
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range r.sizes {
		fmt.Fprintf(b, "| %s | %s (%s–%s) | %s, %s, %s | %s, %s, %s | %.2f | %.0f | %s, %s, %s | %s, %s, %s | %s | %s | %s |\n",
			num(float64(s.repos)), dur(s.startups[len(s.startups)/2]), dur(s.startups[0]), dur(s.startups[len(s.startups)-1]),
			num(s.concentrated.rps()), dur(s.concentrated.p(0.5)), dur(s.concentrated.p(0.99)),
			num(s.spread.rps()), dur(s.spread.p(0.5)), dur(s.spread.p(0.99)), s.spread.rps()/s.concentrated.rps(), s.blob.mibps(),
			num(s.catFirst.rps()), dur(s.catFirst.p(0.5)), dur(s.catFirst.p(0.99)),
			num(s.catRandom.rps()), dur(s.catRandom.p(0.5)), dur(s.catRandom.p(0.99)),
			mb(s.peakNoCatalog), mb(s.peak), mb(s.current))
	}
	b.WriteString("\nTrees:\n\n")
	for _, g := range r.gen {
		c := ""
		if g.cached {
			c = " (cached from an earlier run)"
		}
		fmt.Fprintf(b, "- %s: %s%s\n", num(float64(g.repos)), g.line, c)
	}
}

// targets checks the numbers against the goals of the issue.
func (r *report) targets() [][3]string {
	var out [][3]string
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	for _, s := range r.scenarios {
		heron := s.heron()
		base, reg := s.nginx(), s.find(tRegistry)
		if heron == nil || base == nil {
			continue
		}
		xn := s.rate(heron) / s.rate(base)
		switch s.sc.id {
		case "manifest-get-tag", "manifest-head-tag":
			out = append(out, [3]string{s.sc.title + ": ≥ 1.0× nginx (open_file_cache)", fmt.Sprintf("%.2f×", xn), yes(xn >= 1.0)})
			if reg != nil {
				xr := s.rate(heron) / s.rate(reg)
				out = append(out, [3]string{s.sc.title + ": ≥ 30× registry:2", fmt.Sprintf("%.1f×", xr), yes(xr >= 30)})
			}
		case "manifest-get-digest":
			out = append(out, [3]string{s.sc.title + ": ≥ 0.9× nginx (open_file_cache)", fmt.Sprintf("%.2f×", xn), yes(xn >= 0.9)})
		case "tags-list":
			out = append(out, [3]string{s.sc.title + ": ≥ 1.0× nginx (open_file_cache)", fmt.Sprintf("%.2f×", xn), yes(xn >= 1.0)})
		case "blob-307":
			out = append(out, [3]string{"blob 307: ≥ 0.9× nginx's 307", fmt.Sprintf("%.2f×", xn), yes(xn >= 0.9)})
		case "blob-get":
			out = append(out, [3]string{"blob GET direct: ≥ 0.9× nginx's MiB/s", fmt.Sprintf("%.2f× (%.0f vs %.0f MiB/s)", xn, heron.mibps(), base.mibps()), yes(xn >= 0.9)})
		}
	}
	if len(r.sizes) > 0 {
		var worst int64
		var parts []string
		for _, s := range r.sizes {
			worst = max(worst, s.peak)
			parts = append(parts, fmt.Sprintf("%s at %s", mb(s.peak), num(float64(s.repos))))
		}
		out = append(out, [3]string{"RSS under load ≤ 40 MB", strings.Join(parts, ", "), yes(worst <= 40e6)})
		small, large := r.sizes[0], r.sizes[len(r.sizes)-1]
		if small.repos != large.repos {
			d := float64(large.peak-small.peak) / float64(small.peak)
			dm := float64(large.peakNoCatalog-small.peakNoCatalog) / float64(small.peakNoCatalog)
			out = append(out, [3]string{fmt.Sprintf("RSS the same (±10%%) at %s and %s repositories", num(float64(small.repos)), num(float64(large.repos))),
				fmt.Sprintf("%+.0f%% with the catalog load, %+.0f%% under manifests and blobs only", 100*d, 100*dm), yes(d <= 0.1 && d >= -0.1)})
		}
		var slowest time.Duration
		for _, s := range r.sizes {
			slowest = max(slowest, s.startups[len(s.startups)-1])
		}
		out = append(out, [3]string{"first answer ≤ 50 ms after exec, any size", "slowest of all start-ups " + dur(slowest), yes(slowest <= 50*time.Millisecond)})
		if large.repos >= 1_000_000 {
			x := large.spread.rps() / large.concentrated.rps()
			out = append(out, [3]string{fmt.Sprintf("at %s repositories, manifest GET over %s repositories ≥ 0.8× over %s, peak RSS ≤ 40 MB",
				num(float64(large.repos)), num(spreadRepos), num(concentratedRepos)),
				fmt.Sprintf("%.2f× (%s vs %s req/s), %s", x, num(large.spread.rps()), num(large.concentrated.rps()), mb(large.peakNoCatalog)),
				yes(x >= 0.8 && large.peakNoCatalog <= 40e6)})
			out = append(out, [3]string{fmt.Sprintf("`_catalog?n=100` p50 < 1 ms at %s repositories", num(float64(large.repos))),
				fmt.Sprintf("first page %s, random page %s", dur(large.catFirst.p(0.5)), dur(large.catRandom.p(0.5))),
				yes(large.catFirst.p(0.5) < time.Millisecond && large.catRandom.p(0.5) < time.Millisecond)})
		}
	}
	if r.tags != nil {
		out = append(out, r.tags.targets(yes)...)
	}
	if r.s3 != nil {
		out = append(out, r.s3.targets(yes)...)
	}
	if r.ondemand != nil {
		out = append(out, r.ondemand.targets(yes)...)
	}
	if r.push != nil {
		out = append(out, r.push.targets(yes)...)
	}
	return out
}

func numCPU() int { return runtime.NumCPU() }

// machineInfo describes the machine and the versions measured.
func machineInfo(heron string) []string {
	var out []string
	model := ""
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	out = append(out, fmt.Sprintf("machine: %d cores (%s), Linux %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel))))
	commit := cmdOutput("git", "rev-parse", "--short", "HEAD")
	// Only heron's own code counts: the benchmark's files do not change
	// what is measured.
	if cmdOutput("git", "status", "--porcelain", "--untracked-files=no", "--", "cmd", "layout", "redirector", "publish", "go.mod", "go.sum") != "" {
		commit += " (with uncommitted changes)"
	}
	out = append(out, fmt.Sprintf("heron: %s at commit %s, built with %s, --log-level warn (no line per request), metrics on, default caches and memory limit", heron, commit, runtime.Version()))
	out = append(out, "nginx: "+strings.TrimPrefix(cmdOutput("nginx", "-v"), "nginx version: ")+", 2 workers, access log off, sendfile on, `"+nginxTuning+"` (the reference of every × nginx); the same without open_file_cache as a second row")
	out = append(out, "registry:2: "+cmdOutput(registryBin, "--version")+", filesystem storage, in-memory blob descriptor cache, access log off")
	return out
}

func cmdOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
