// Command peers is heron's benchmark driver (`make bench`). In one run, on
// 127.0.0.1 and with one load generator (bench/load), it measures:
//
//   - the same manifest and blob requests answered by nginx serving the
//     tree's files (the limit for serving files on this machine), by
//     distribution's registry (registry:2, filesystem storage) holding the
//     same image, and by heron serve, blobs served directly and redirected;
//   - for trees of growing size (1,000 to 1,000,000 repositories, made by
//     bench/treegen and cached): heron's time from exec to the first
//     answered request, its peak memory under load, manifest requests
//     spread over many repositories, and /v2/_catalog pages;
//   - for repositories of growing size (10 to 100,000 tags, written by
//     heron's publisher and cached): manifest requests by tag with and
//     without the server's caches, tags/list pages, and heron tag adding
//     one tag;
//   - a tree in an S3-compatible bucket (versitygw on 127.0.0.1, s3.go):
//     manifest requests and presigned 307s of heron serve --root s3://…
//     next to the same tree on the file system, and heron publish of a
//     1 GiB image to the bucket next to a plain multipart upload of the
//     same bytes with the AWS SDK alone (bench/s3upload);
//   - blobs fetched on demand from an upstream registry:2 (ondemand.go):
//     time to last byte of a first pull of a 256 MiB layer through heron
//     next to the same GET straight from the registry, and heron's RSS
//     while 20 clients pull a 1 GiB layer at once (one upstream GET);
//   - pushes (push.go): crane push of a 1 GiB image into heron serve
//     --push on a new tree next to the same push into registry:2 on the
//     same disk, heron's peak RSS meanwhile, and a second push of the same
//     image (every blob present).
//
// It installs nothing (bench/install.sh does), starts every server itself
// on a free loopback port, stops each one by its PID, and writes a
// markdown report to stdout and to -out.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
	"github.com/heron-registry/heron/layout"
)

// config holds the flags.
type config struct {
	heron       string
	heronprof   string
	cacheDir    string
	out         string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	sizes       []int
	tagSizes    []int
	tagsOnly    bool
	s3          bool
	s3Only      bool
	s3Publish   s3PublishConfig
	ondemand    ondemandConfig
	odOn        bool
	odOnly      bool
	push        pushConfig
	pushOn      bool
	pushOnly    bool
	peerRepos   int
	startups    int
	keep        bool
	command     string
}

// tagsPerRepo is the number of tags of each generated repository, and
// tagsRepo the one repository of tagsRepoTags tags, for tags/list.
const (
	tagsPerRepo  = 3
	tagsRepo     = "library/tags100"
	tagsRepoTags = 100
)

func main() {
	var cfg config
	var sizes, tagSizes string
	flag.StringVar(&cfg.heron, "heron", "", "the heron binary to measure (required)")
	flag.StringVar(&cfg.heronprof, "heronprof", "", "bench/heronprof binary: if set, also profile heron's CPU under load")
	flag.StringVar(&cfg.cacheDir, "cache", ".cache/bench", "folder for generated trees (kept between runs) and results")
	flag.StringVar(&cfg.out, "out", "", "write the report here too (default <cache>/results.md)")
	flag.IntVar(&cfg.concurrency, "c", 16, "connections of the load generator")
	flag.DurationVar(&cfg.duration, "d", 3*time.Second, "measured time of one round of one scenario on one server")
	flag.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "unmeasured time before each round")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds per scenario; servers take turns within a round")
	flag.StringVar(&sizes, "sizes", "1000,100000,1000000", "tree sizes (repositories) for start-up, memory and catalog")
	flag.StringVar(&tagSizes, "tag-sizes", "10,10000,100000", "repository sizes (tags) for requests by tag, tags/list and heron tag; \"none\" skips them")
	flag.BoolVar(&cfg.tagsOnly, "tags-only", false, "measure the repositories of -tag-sizes only (no peers, no tree sizes, no profiles, no bucket)")
	flag.BoolVar(&cfg.s3, "s3", true, "measure a tree in a bucket (versitygw): serve and publish (-s3=false skips it)")
	flag.BoolVar(&cfg.s3Only, "s3-only", false, "measure a tree in a bucket only (no peers, no tree sizes, no tags, no profiles)")
	cfg.s3Publish.addFlags()
	flag.BoolVar(&cfg.odOn, "ondemand", true, "measure blobs fetched on demand from an upstream registry:2 (-ondemand=false skips it)")
	flag.BoolVar(&cfg.odOnly, "ondemand-only", false, "measure blobs fetched on demand only (no peers, no tree sizes, no tags, no bucket, no profiles)")
	cfg.ondemand.addFlags()
	flag.BoolVar(&cfg.pushOn, "push", true, "measure crane push into heron serve --push and into registry:2 (-push=false skips it)")
	flag.BoolVar(&cfg.pushOnly, "push-only", false, "measure pushes only (no peers, no tree sizes, no tags, no bucket, no on-demand, no profiles)")
	cfg.push.addFlags()
	flag.IntVar(&cfg.peerRepos, "peer-repos", 1000, "repositories of the tree the servers are compared on")
	flag.IntVar(&cfg.startups, "startups", 5, "start-ups measured per tree size")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the run folder (server logs, configurations)")
	var floorMode, floorAddr, floorLocation, floorDigest string
	flag.StringVar(&floorMode, "floor-serve", "", "(internal) serve a floor of the 307 scenario: nethttp or loop")
	flag.StringVar(&floorAddr, "floor-addr", "", "(internal) with -floor-serve: the address")
	flag.StringVar(&floorLocation, "floor-location", "", "(internal) with -floor-serve: the Location")
	flag.StringVar(&floorDigest, "floor-digest", "", "(internal) with -floor-serve: the Docker-Content-Digest")
	flag.Parse()
	if floorMode != "" {
		ln, err := net.Listen("tcp", floorAddr)
		if err == nil {
			err = floorServe(floorMode, ln, floorLocation, floorDigest)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "peers:", err)
			os.Exit(1)
		}
		return
	}
	cfg.command = strings.Join(os.Args, " ")
	if cfg.heron == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: peers -heron BIN [flags]")
		flag.PrintDefaults()
		os.Exit(2)
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "peers: bad size %q\n", s)
			os.Exit(2)
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	var err error
	if cfg.tagSizes, err = parseTagSizes(tagSizes); err != nil {
		fmt.Fprintln(os.Stderr, "peers: -tag-sizes:", err)
		os.Exit(2)
	}
	if cfg.tagsOnly && len(cfg.tagSizes) == 0 {
		fmt.Fprintln(os.Stderr, "peers: -tags-only needs -tag-sizes")
		os.Exit(2)
	}
	if n := btoi(cfg.tagsOnly) + btoi(cfg.s3Only) + btoi(cfg.odOnly) + btoi(cfg.pushOnly); n > 1 {
		fmt.Fprintln(os.Stderr, "peers: -tags-only, -s3-only, -ondemand-only and -push-only exclude each other")
		os.Exit(2)
	}
	if err := cfg.s3Publish.check(); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	if err := cfg.ondemand.check(); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	if err := cfg.push.check(); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(2)
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(cfg.cacheDir, "results.md")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(ctx context.Context, cfg *config) (err error) {
	began := time.Now()
	heron, err := filepath.Abs(cfg.heron)
	if err != nil {
		return err
	}
	if _, err := os.Stat(heron); err != nil {
		return fmt.Errorf("heron binary: %w", err)
	}
	cfg.heron = heron
	runDir, err := os.MkdirTemp("", "heron-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep || err != nil {
			logf("server logs and configurations kept in %s", runDir)
			return
		}
		os.RemoveAll(runDir)
	}()

	img, err := treegen.NewImage(treegen.DefaultLayerSize)
	if err != nil {
		return err
	}
	fx := &fixture{img: img, repo: treegen.RepositoryName(1), tagsRepo: tagsRepo, tagsCount: tagsRepoTags}

	rep := &report{cfg: cfg, began: began}
	rep.machine = machineInfo(heron)

	only := cfg.tagsOnly || cfg.s3Only || cfg.odOnly || cfg.pushOnly
	if !only {
		if err := measurePeersAndSizes(ctx, cfg, fx, runDir, rep); err != nil {
			return err
		}
	}
	if len(cfg.tagSizes) > 0 && !cfg.s3Only && !cfg.odOnly && !cfg.pushOnly {
		rep.tags = &tagsResult{}
		tree, err := ensureTagsTree(ctx, cfg.cacheDir, img, cfg.tagSizes, rep.tags)
		if err != nil {
			return err
		}
		if err := measureTagSizes(ctx, cfg, fx, tree, runDir, rep.tags); err != nil {
			return err
		}
	}
	if (cfg.s3 && !only) || cfg.s3Only {
		if rep.s3, err = measureS3(ctx, cfg, fx, runDir); err != nil {
			return err
		}
	}
	if (cfg.odOn && !only) || cfg.odOnly {
		if rep.ondemand, err = measureOndemand(ctx, cfg, runDir); err != nil {
			return err
		}
	}
	if (cfg.pushOn && !only) || cfg.pushOnly {
		if rep.push, err = measurePush(ctx, cfg, runDir); err != nil {
			return err
		}
	}
	if cfg.heronprof != "" && !only {
		if rep.profiles, err = profileSizes(ctx, cfg, fx, runDir, rep); err != nil {
			return err
		}
	}
	rep.took = time.Since(began)

	md := rep.markdown()
	fmt.Print(md)
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, []byte(md), 0o644); err != nil {
		return err
	}
	logf("report written to %s (%s)", cfg.out, rep.took.Round(time.Second))
	return nil
}

// measurePeersAndSizes compares heron with its peers on the tree of
// cfg.peerRepos repositories, then measures it on the tree of each size.
func measurePeersAndSizes(ctx context.Context, cfg *config, fx *fixture, runDir string, rep *report) error {
	peerTree, err := ensureTree(ctx, cfg.cacheDir, cfg.peerRepos, rep)
	if err != nil {
		return err
	}
	if err := comparePeers(ctx, cfg, fx, peerTree, runDir, rep); err != nil {
		return err
	}
	for _, n := range cfg.sizes {
		tree, err := ensureTree(ctx, cfg.cacheDir, n, rep)
		if err != nil {
			return err
		}
		sr, err := measureSize(ctx, cfg, fx, tree, n, runDir)
		if err != nil {
			return err
		}
		rep.sizes = append(rep.sizes, sr)
	}
	return nil
}

// profileSizes profiles heron's CPU on the peers' tree and on the
// largest tree.
func profileSizes(ctx context.Context, cfg *config, fx *fixture, runDir string, rep *report) ([]profileResult, error) {
	var err error
	if cfg.heronprof, err = filepath.Abs(cfg.heronprof); err != nil {
		return nil, err
	}
	peerTree, err := ensureTree(ctx, cfg.cacheDir, cfg.peerRepos, rep)
	if err != nil {
		return nil, err
	}
	big := cfg.sizes[len(cfg.sizes)-1]
	bigTree, err := ensureTree(ctx, cfg.cacheDir, big, rep)
	if err != nil {
		return nil, err
	}
	return profileHeron(ctx, cfg, fx, peerTree, bigTree, big, runDir)
}

// ensureTree returns the cached tree of n repositories, generating it the
// first time. The folder name holds every parameter of the tree, so a
// change of parameters makes a new tree; a folder without the layout
// marker (an interrupted generation) is made again.
func ensureTree(ctx context.Context, cacheDir string, n int, rep *report) (string, error) {
	// v2: trees with the change counter (.heron/changes).
	name := fmt.Sprintf("v2-r%d-t%d", n, tagsPerRepo)
	dir, err := filepath.Abs(filepath.Join(cacheDir, "trees", name))
	if err != nil {
		return "", err
	}
	info := dir + ".txt"
	if _, err := os.Stat(filepath.Join(dir, "heron-layout.json")); err == nil {
		if data, err := os.ReadFile(info); err == nil && !rep.hasGen(n) {
			rep.gen = append(rep.gen, genInfo{repos: n, line: strings.TrimSpace(string(data)), cached: true})
		}
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	logf("generating a tree of %d repositories in %s", n, dir)
	st, err := treegen.Generate(ctx, treegen.Options{
		Root: dir, Repos: n, Tags: tagsPerRepo,
		Extra: []treegen.Extra{{Name: tagsRepo, Tags: tagsRepoTags}},
	})
	if err != nil {
		return "", err
	}
	line := fmt.Sprintf("%d repositories, %d files, %.0f MiB written in %s (repository files %s, catalog %s) with %d workers",
		st.Repositories, st.Files, float64(st.Bytes)/(1<<20), st.Total.Round(time.Millisecond),
		st.RepositoriesTime.Round(time.Millisecond), st.CatalogTime.Round(time.Millisecond), 4*numCPU())
	if err := os.WriteFile(info, []byte(line+"\n"), 0o644); err != nil {
		return "", err
	}
	rep.gen = append(rep.gen, genInfo{repos: n, line: line})
	logf("%s", line)
	return dir, nil
}

// comparePeers runs every scenario against nginx, registry:2 and heron.
func comparePeers(ctx context.Context, cfg *config, fx *fixture, tree, runDir string, rep *report) error {
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	launch := func(p *proc, err error) (*proc, error) {
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		return p, nil
	}

	// startHeron starts heron serve on the tree, on a free address, with
	// extra flags, and waits until it answers.
	startHeron := func(name string, flags ...string) (*proc, string, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		argv := append([]string{cfg.heron, "serve", "--root", tree, "--addr", addr, "--log-level", "warn"}, flags...)
		p, err := launch(start(name, addr, runDir, argv...))
		if err != nil {
			return nil, "", err
		}
		if err := p.waitReady(ctx, "http://"+addr+"/v2/", 200, 10*time.Second); err != nil {
			return nil, "", err
		}
		return p, addr, nil
	}

	// heron, blobs served directly.
	heron, heronAddr, err := startHeron("heron")
	if err != nil {
		return err
	}
	tagsList, err := get("http://" + heronAddr + "/v2/" + fx.tagsRepo + "/tags/list")
	if err != nil {
		return err
	}

	// nginx, the same files, as production runs it (open_file_cache), the
	// reference; its /blobs/ is heron's redirect target. The same nginx
	// without the open file cache, as a second row.
	startNginxSite := func(name string, tuned bool) (*proc, string, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, "", err
		}
		prefix := filepath.Join(runDir, name)
		if err := os.MkdirAll(prefix, 0o755); err != nil {
			return nil, "", err
		}
		p, err := launch(startNginx(&nginxSite{addr: addr, prefix: prefix, tree: tree, fx: fx, tagsList: tagsList, tuned: tuned}, runDir))
		if err != nil {
			return nil, "", err
		}
		return p, addr, p.waitReady(ctx, "http://"+addr+fx.manifestPath(fx.repo, "latest"), 200, 10*time.Second)
	}
	nginx, nginxAddr, err := startNginxSite("nginx", true)
	if err != nil {
		return err
	}
	_, nginxUntunedAddr, err := startNginxSite("nginx-untuned", false)
	if err != nil {
		return err
	}

	// heron, blobs redirected to nginx; the same two on net/http alone;
	// heron without its caches (every request reads the files).
	heronRedir, redirAddr, err := startHeron("heron-redirect", "--blob-base-url", "http://"+nginxAddr)
	if err != nil {
		return err
	}
	heronNetHTTP, netHTTPAddr, err := startHeron("heron-nethttp", "--fast-path=false")
	if err != nil {
		return err
	}
	heronRedirNetHTTP, redirNetHTTPAddr, err := startHeron("heron-redirect-nethttp", "--blob-base-url", "http://"+nginxAddr, "--fast-path=false")
	if err != nil {
		return err
	}
	heronNoCache, noCacheAddr, err := startHeron("heron-nocache", "--cache-size", "0")
	if err != nil {
		return err
	}

	// The floors of the 307 scenario (floor.go), this binary again.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	layerKey, err := layout.BlobKey(fx.img.LayerDigest)
	if err != nil {
		return err
	}
	startFloor := func(mode string) (string, error) {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		p, err := launch(start("floor-"+mode, addr, runDir, self, "-floor-serve", mode, "-floor-addr", addr,
			"-floor-location", "http://"+nginxAddr+"/"+layerKey, "-floor-digest", fx.img.LayerDigest.String()))
		if err != nil {
			return "", err
		}
		return addr, p.waitReady(ctx, "http://"+addr+"/", http.StatusTemporaryRedirect, 10*time.Second)
	}
	floorNetHTTPAddr, err := startFloor(floorNetHTTP)
	if err != nil {
		return err
	}
	floorLoopAddr, err := startFloor(floorLoop)
	if err != nil {
		return err
	}

	// registry:2, loaded with the same image.
	regAddr, err := freeAddr()
	if err != nil {
		return err
	}
	regDir := filepath.Join(runDir, "registry")
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		return err
	}
	registry, err := launch(startRegistry(regAddr, regDir, runDir))
	if err != nil {
		return err
	}
	if err := registry.waitReady(ctx, "http://"+regAddr+"/v2/", 200, 20*time.Second); err != nil {
		return err
	}
	if err := pushImage(ctx, regAddr, fx.repo, fx.img, []string{"latest"}); err != nil {
		return err
	}
	if err := pushImage(ctx, regAddr, fx.tagsRepo, fx.img, fx.tags()); err != nil {
		return err
	}

	targets := map[string]target{
		tNginx:         {name: tNginx, addr: nginxAddr},
		tNginxUntuned:  {name: tNginxUntuned, addr: nginxUntunedAddr},
		tNginxRedirect: {name: tNginxRedirect, addr: nginxAddr, prefix: nginxRedirectPrefix},
		tRegistry:      {name: tRegistry, addr: regAddr},
		tHeron:         {name: tHeron, addr: heronAddr},
		tHeronRedirect: {name: tHeronRedirect, addr: redirAddr},
		tHeronNoCache:  {name: tHeronNoCache, addr: noCacheAddr},

		tHeronNetHTTP:         {name: tHeronNetHTTP, addr: netHTTPAddr},
		tHeronRedirectNetHTTP: {name: tHeronRedirectNetHTTP, addr: redirNetHTTPAddr},
		tFloorNetHTTP:         {name: tFloorNetHTTP, addr: floorNetHTTPAddr},
		tFloorLoop:            {name: tFloorLoop, addr: floorLoopAddr},
	}
	scs := scenarios()
	for _, s := range scs {
		for _, tn := range s.targets {
			if err := s.preflight(fx, targets[tn]); err != nil {
				return fmt.Errorf("%s on %s: %w", s.title, tn, err)
			}
		}
	}
	logf("all servers give the same answers; measuring %d scenarios × %d rounds × %s", len(scs), cfg.rounds, cfg.warmup+cfg.duration)

	rows, err := measureScenarios(ctx, cfg, fx, scs, targets)
	if err != nil {
		return err
	}
	rep.scenarios = append(rep.scenarios, rows...)
	for _, p := range []*proc{heron, heronRedir, heronNetHTTP, heronRedirNetHTTP, heronNoCache, registry} {
		if peak, _, err := memory(p.pid()); err == nil {
			rep.peerMemory = append(rep.peerMemory, fmt.Sprintf("%s %.1f MiB", p.name, float64(peak)/(1<<20)))
		}
	}
	if peak, err := nginxMemory(nginx.pid()); err == nil {
		rep.peerMemory = append(rep.peerMemory, fmt.Sprintf("nginx %.1f MiB (master and workers)", float64(peak)/(1<<20)))
	}
	return nil
}

// measureScenarios runs every scenario of scs, cfg.rounds rounds, on each
// of its targets.
func measureScenarios(ctx context.Context, cfg *config, fx *fixture, scs []scenario, targets map[string]target) ([]scenarioResult, error) {
	var rows []scenarioResult
	for _, s := range scs {
		acc := map[string]*accum{}
		for r := 0; r < cfg.rounds; r++ {
			// Servers take turns, starting with another one each round,
			// so that a drift of the machine hits all of them alike.
			for i := range s.targets {
				tn := s.targets[(i+r)%len(s.targets)]
				res, err := runLoad(ctx, cfg, targets[tn], []load.Request{s.request(fx, targets[tn])}, s.status, s.bodySize, fx)
				if err != nil {
					return nil, err
				}
				if acc[tn] == nil {
					acc[tn] = newAccum()
				}
				acc[tn].add(res)
			}
		}
		row := scenarioResult{sc: s}
		for _, tn := range s.targets {
			row.results = append(row.results, serverResult{target: tn, accum: acc[tn]})
			logf("%-26s %-22s %s", s.title, tn, acc[tn].summary())
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// runLoad runs one measured load against t.
func runLoad(ctx context.Context, cfg *config, t target, reqs []load.Request, status int, size func(*fixture) int64, fx *fixture) (*load.Result, error) {
	lc := load.Config{
		Addr: t.addr, Requests: reqs, Concurrency: cfg.concurrency,
		Duration: cfg.duration, Warmup: cfg.warmup, ExpectStatus: status,
	}
	if size != nil {
		lc.ExpectBodySize = size(fx)
	}
	res, err := load.Run(ctx, lc)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// get returns the body of a 200 answer.
func get(url string) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// nginxMemory sums the peak RSS of nginx's master and its workers.
func nginxMemory(master int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
	if err != nil {
		return 0, err
	}
	total, _, err := memory(master)
	if err != nil {
		return 0, err
	}
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if peak, _, err := memory(pid); err == nil {
			total += peak
		}
	}
	return total, nil
}
