package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// On-demand blobs (issue 13). distribution's registry (registry:2, the
// upstream most people would mirror from) holds two images of one layer of
// random bytes each, pushed with go-containerregistry (remote.Write) from
// OCI image layouts that bench/publish/gen writes under <cache>/ondemand
// (its storage is kept there too, so a later run pushes nothing). Then:
//
//   - time to last byte of a first pull of the -ondemand-ttlb-size layer
//     (256 MiB): heron publish --policy on_demand of the image from the
//     registry into a new tree, heron serve on it, and one GET of the
//     blob through heron read to its end with net/http's client, against
//     the same GET straight from the registry; -ondemand-rounds rounds,
//     the two taking turns (each round starts with the other), a new tree
//     and a new heron every round, so that each is a first pull;
//   - heron serve's memory while -ondemand-clients (20) clients GET the
//     -ondemand-rss-size layer (1 GiB) at once, its first pull: VmRSS
//     just before, then VmHWM reset (/proc/PID/clear_refs "5") and VmRSS
//     sampled every 50 ms during the load. Every client hashes what it
//     reads; the registry is reached through a reverse proxy of this
//     program that counts its blob GETs (exactly one is wanted).

// ondemandConfig holds the flags of the on-demand section.
type ondemandConfig struct {
	rounds   int
	clients  int
	ttlbSize int64
	rssSize  int64
	linkMbit int64
}

func (c *ondemandConfig) addFlags() {
	flag.IntVar(&c.rounds, "ondemand-rounds", 5, "rounds of the on-demand first pull, heron and the upstream taking turns")
	flag.IntVar(&c.clients, "ondemand-clients", 20, "clients pulling the large on-demand layer at once")
	flag.Int64Var(&c.ttlbSize, "ondemand-ttlb-size", 256<<20, "bytes of the layer of the on-demand first-pull timing")
	flag.Int64Var(&c.rssSize, "ondemand-rss-size", 1<<30, "bytes of the layer of the on-demand memory scenario")
	flag.Int64Var(&c.linkMbit, "ondemand-link", 1000, "also time the first pull with the upstream behind a link of this many Mbit/s (a pacing proxy); 0 skips it")
}

func (c *ondemandConfig) check() error {
	switch {
	case c.rounds < 1 || c.rounds > 50:
		return fmt.Errorf("-ondemand-rounds %d: want 1 to 50", c.rounds)
	case c.clients < 1 || c.clients > 200:
		return fmt.Errorf("-ondemand-clients %d: want 1 to 200", c.clients)
	case c.ttlbSize < 1<<20 || c.ttlbSize > 16<<30:
		return fmt.Errorf("-ondemand-ttlb-size %d: want 1 MiB to 16 GiB", c.ttlbSize)
	case c.rssSize < 1<<20 || c.rssSize > 16<<30:
		return fmt.Errorf("-ondemand-rss-size %d: want 1 MiB to 16 GiB", c.rssSize)
	case c.linkMbit < 0 || (c.linkMbit > 0 && c.linkMbit < 100):
		return fmt.Errorf("-ondemand-link %d: want 0 (none) or at least 100 Mbit/s", c.linkMbit)
	}
	return nil
}

// The ways of the first pull: through heron and straight from the
// registry, on loopback; through a plain Go reverse proxy (what one more
// hop that only copies costs); and heron and the registry again, the
// registry behind a paced link.
const (
	wHeron        = "heron"
	wUpstream     = "upstream"
	wProxy        = "Go proxy"
	wHeronLink    = "heron, link"
	wUpstreamLink = "upstream, link"
)

var wayNames = map[string]string{
	wHeron:        "through `heron serve`, first pull (on demand)",
	wUpstream:     "straight from registry:2",
	wProxy:        "through a plain Go reverse proxy (`httputil.ReverseProxy` in the benchmark; no hash, no spool)",
	wHeronLink:    "link: through `heron serve`, first pull, registry:2 behind the link",
	wUpstreamLink: "link: straight from registry:2 behind the link",
}

// pull is one timed GET of a blob.
type pull struct {
	headers time.Duration // until the status line and headers arrived
	last    time.Duration // until the last byte was read
	// CPU time (user and system) until the last byte: of heron serve
	// (through heron only) and of the registry.
	heronCPU, registryCPU time.Duration
}

// procStatus is what /proc/PID/status says of a process's memory, in
// bytes.
type procStatus struct {
	rss, hwm, anon, file, shmem int64
}

// ondemandResult is the section of the report.
type ondemandResult struct {
	registry string   // what the upstream is
	spool    string   // where heron's spool and the trees were
	images   []string // how each image came to be

	// First pull.
	ttlbSize int64
	linkMbit int64
	ways     []string          // the ways measured, in the order of the table
	pulls    map[string][]pull // by way, round by round
	order    [][]string        // the order of the ways, by round
	load     [2]string         // /proc/loadavg before and after

	// Memory.
	rssSize      int64
	clients      int
	idle         int64      // VmRSS just before the load
	hwmReset     bool       // clear_refs "5" was accepted
	hwm          int64      // VmHWM after the load (since the reset when hwmReset)
	sampled      procStatus // the sample of largest VmRSS
	samples      int
	after        int64         // VmRSS after the load
	wall         time.Duration // from the clients' start to the last one's end
	verified     int           // clients that read the whole layer with the right digest
	upstreamGETs int64         // GETs of the layer the registry saw
	upstreamAll  []string      // every request the registry saw, counted
	fetchLog     string        // heron's log line of the fetch
}

// peak is the largest RSS seen during the load.
func (r *ondemandResult) peak() int64 {
	if r.hwmReset {
		return max(r.hwm, r.sampled.rss)
	}
	return r.sampled.rss
}

// odImage is one image of the section.
type odImage struct {
	dir   string // the OCI image layout
	repo  string // its name in the registry and in heron's trees
	layer digest.Digest
	size  int64
}

// ensureOndemandImage returns the OCI image layout of one layer of size
// random bytes under <cache>/ondemand, generating it the first time with
// bench/publish/gen.
func ensureOndemandImage(ctx context.Context, cfg *config, size int64) (*odImage, string, error) {
	dir, err := filepath.Abs(filepath.Join(cfg.cacheDir, "ondemand", fmt.Sprintf("src-%d", size)))
	if err != nil {
		return nil, "", err
	}
	line := fmt.Sprintf("%s: an OCI image layout of one layer of random bytes (uncompressed tar media type), bench/publish/gen", mib(size))
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		line += ", cached from an earlier run"
	} else {
		gen := cfg.s3Publish.imagegen
		if gen == "" {
			return nil, "", errors.New("the on-demand section needs -imagegen (bench/run.sh builds bench/publish/gen)")
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, "", err
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return nil, "", err
		}
		logf("generating %s in %s", line, dir)
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, gen, "-dir", dir, "-size", strconv.FormatInt(size, 10), "-layers", "1", "-ref", "bench").CombinedOutput()
		if err != nil {
			return nil, "", fmt.Errorf("%s: %v: %s", gen, err, out)
		}
		line += fmt.Sprintf(", generated in %s", time.Since(t0).Round(time.Millisecond))
	}
	img := &odImage{dir: dir, repo: fmt.Sprintf("bench/ondemand-%dm", size>>20)}
	lp, err := ggcrlayout.FromPath(dir)
	if err != nil {
		return nil, "", err
	}
	im, err := onlyImage(lp)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", dir, err)
	}
	layers, err := im.Layers()
	if err != nil {
		return nil, "", err
	}
	if len(layers) != 1 {
		return nil, "", fmt.Errorf("%s: %d layers, want 1", dir, len(layers))
	}
	h, err := layers[0].Digest()
	if err != nil {
		return nil, "", err
	}
	if img.size, err = layers[0].Size(); err != nil {
		return nil, "", err
	}
	img.layer = digest.Digest(h.String())
	if img.size != size {
		return nil, "", fmt.Errorf("%s: a layer of %d bytes, want %d", dir, img.size, size)
	}
	return img, line, nil
}

// pushOndemandImage pushes the image to the registry at addr as
// img.repo:latest with go-containerregistry; blobs the registry holds
// already are not sent again.
func pushOndemandImage(ctx context.Context, addr string, img *odImage) error {
	lp, err := ggcrlayout.FromPath(img.dir)
	if err != nil {
		return err
	}
	im, err := onlyImage(lp)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(addr+"/"+img.repo+":latest", name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, im, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// countingProxy is a reverse proxy in front of the registry that counts
// the requests it passes on, by method and kind.
type countingProxy struct {
	addr  string
	srv   *http.Server
	mu    sync.Mutex
	count map[string]int64 // "GET blob sha256:…", "HEAD manifest", …
}

// startCountingProxy starts a proxy to the registry at upstream that
// sends answers at most rate bytes a second each (0: as fast as it can).
func startCountingProxy(upstream string, rate int64) (*countingProxy, error) {
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: ln.Addr().String(), count: map[string]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			p.count[requestKind(r.Method, r.URL.Path)]++
			p.mu.Unlock()
			if rate > 0 {
				w = &pacedWriter{ResponseWriter: w, rate: rate, start: time.Now()}
			}
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go p.srv.Serve(ln)
	return p, nil
}

// pacedWriter sends an answer at most rate bytes a second: a link of that
// bandwidth (without its latency).
type pacedWriter struct {
	http.ResponseWriter
	rate  int64
	start time.Time
	sent  int64
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.sent += int64(n)
	due := time.Duration(float64(w.sent) / float64(w.rate) * float64(time.Second))
	if ahead := due - time.Since(w.start); ahead > 0 {
		time.Sleep(ahead)
	}
	return n, err
}

func (w *pacedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestKind names a distribution API request for the counts: the
// method, then "blob <digest>", "manifest", "upload" or the path.
func requestKind(method, path string) string {
	if i := strings.LastIndex(path, "/blobs/uploads"); i >= 0 {
		return method + " upload"
	}
	if i := strings.LastIndex(path, "/blobs/"); i >= 0 {
		return method + " blob " + path[i+len("/blobs/"):]
	}
	if strings.Contains(path, "/manifests/") {
		return method + " manifest"
	}
	return method + " " + path
}

// reset forgets the counts.
func (p *countingProxy) reset() {
	p.mu.Lock()
	clear(p.count)
	p.mu.Unlock()
}

// get returns one count.
func (p *countingProxy) get(kind string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[kind]
}

// summary lists the counts, sorted.
func (p *countingProxy) summary() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k, n := range p.count {
		out = append(out, fmt.Sprintf("%s ×%d", k, n))
	}
	slices.Sort(out)
	return out
}

func (p *countingProxy) close() { _ = p.srv.Close() }

// readStatus reads the memory lines of /proc/PID/status.
func readStatus(pid int) (procStatus, error) {
	var st procStatus
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	defer f.Close()
	return parseStatus(f)
}

func parseStatus(r io.Reader) (procStatus, error) {
	var st procStatus
	fields := map[string]*int64{"VmRSS": &st.rss, "VmHWM": &st.hwm, "RssAnon": &st.anon, "RssFile": &st.file, "RssShmem": &st.shmem}
	sc := bufio.NewScanner(r)
	seen := 0
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		p := fields[k]
		if !ok || p == nil {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return st, fmt.Errorf("status: unexpected %s line %q", k, v)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return st, fmt.Errorf("status: %s: %w", k, err)
		}
		*p = kb << 10
		seen++
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if seen != len(fields) {
		return st, fmt.Errorf("status: %d of the %d memory lines", seen, len(fields))
	}
	return st, nil
}

// getBlob GETs url with a new connection and reads the answer to its end,
// hashing it when verify is set; it checks the status, the length and
// Docker-Content-Digest, and with verify the bytes.
func getBlob(ctx context.Context, u string, want digest.Digest, size int64, verify bool) (pull, error) {
	tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: noRedirect}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return pull{}, err
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return pull{}, err
	}
	defer resp.Body.Close()
	var p pull
	p.headers = time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return p, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	if dg := resp.Header.Get("Docker-Content-Digest"); dg != "" && dg != want.String() {
		return p, fmt.Errorf("GET %s: Docker-Content-Digest %s, want %s", u, dg, want)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if verify {
			h.Write(buf[:k])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return p, fmt.Errorf("GET %s: after %d bytes: %w", u, n, err)
		}
	}
	p.last = time.Since(t0)
	if n != size {
		return p, fmt.Errorf("GET %s: %d bytes, want %d", u, n, size)
	}
	if verify {
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
			return p, fmt.Errorf("GET %s: the bytes read are %s, want %s", u, got, want)
		}
	}
	return p, nil
}

// ondemandServer is a heron serve on a new tree holding img published
// on_demand from the registry at upstream.
type ondemandServer struct {
	*proc
	tree string
}

func startOndemandServer(ctx context.Context, cfg *config, runDir, name, upstream string, img *odImage, logLevel string) (*ondemandServer, error) {
	tree := filepath.Join(runDir, name)
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	if _, err := runHeron(ctx, cfg, nil, "publish", "docker://"+upstream+"/"+img.repo+":latest", "--insecure",
		"--policy", "on_demand", "--root", tree, "--to", img.repo+":latest", "--quiet"); err != nil {
		return nil, err
	}
	key, err := layout.BlobKey(img.layer)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(layout.Root(tree).Path(key)); err == nil {
		return nil, fmt.Errorf("heron publish --policy on_demand stored the layer %s", img.layer)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := start(name, addr, runDir, cfg.heron, "serve", "--root", tree, "--addr", addr, "--log-level", logLevel)
	if err != nil {
		return nil, err
	}
	s := &ondemandServer{proc: p, tree: tree}
	if err := p.waitReady(ctx, "http://"+addr+"/v2/", 200, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return s, nil
}

func (s *ondemandServer) blobURL(img *odImage) string {
	return "http://" + s.addr + "/v2/" + img.repo + "/blobs/" + img.layer.String()
}

// waitStored waits until heron reports the fetch stored
// (heron_ondemand_fetches_total{result="stored"} 1 on /metrics) and the
// layer is in the tree.
func (s *ondemandServer) waitStored(ctx context.Context, img *odImage, timeout time.Duration) error {
	key, err := layout.BlobKey(img.layer)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		body, err := get("http://" + s.addr + "/metrics")
		if err == nil {
			counts := fetchCounts(string(body))
			for res, n := range counts {
				if res != "stored" && n > 0 {
					return fmt.Errorf("%s: on-demand fetch %s (see %s)", s.name, res, s.log)
				}
			}
			if counts["stored"] > 0 {
				fi, err := os.Stat(layout.Root(s.tree).Path(key))
				if err != nil {
					return fmt.Errorf("%s: fetch reported stored, but the layer is not in the tree: %w", s.name, err)
				}
				if fi.Size() != img.size {
					return fmt.Errorf("%s: the stored layer has %d bytes, want %d", s.name, fi.Size(), img.size)
				}
				return nil
			}
			last = fmt.Sprint(counts)
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: the layer not stored after %s (%s)", s.name, timeout, last)
}

// fetchCounts reads heron_ondemand_fetches_total by result from a
// Prometheus text exposition.
func fetchCounts(text string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, "heron_ondemand_fetches_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		var result string
		for _, l := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(l, `result="`); ok {
				result = strings.TrimSuffix(v, `"`)
			}
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if result == "" || err != nil {
			continue
		}
		out[result] += int64(f)
	}
	return out
}

// fsType names the file system a folder is on.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "?"
	}
	switch uint32(st.Type) {
	case 0x01021994:
		return "tmpfs"
	case 0xEF53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system type %#x", st.Type)
}

// measureOndemand measures the on-demand section.
func measureOndemand(ctx context.Context, cfg *config, runDir string) (*ondemandResult, error) {
	oc := cfg.ondemand
	small, smallLine, err := ensureOndemandImage(ctx, cfg, oc.ttlbSize)
	if err != nil {
		return nil, err
	}
	big, bigLine, err := ensureOndemandImage(ctx, cfg, oc.rssSize)
	if err != nil {
		return nil, err
	}
	res := &ondemandResult{images: []string{smallLine, bigLine}, ttlbSize: oc.ttlbSize, rssSize: oc.rssSize, clients: oc.clients}
	tmp := os.TempDir()
	res.spool = fmt.Sprintf("heron's spool: os.TempDir() = %s (%s); the trees: %s (%s)", tmp, fsType(tmp), runDir, fsType(runDir))

	// registry:2, its storage kept in the cache with the images.
	regDir, err := filepath.Abs(filepath.Join(cfg.cacheDir, "ondemand", "registry"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		return nil, err
	}
	regAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	registry, err := startRegistry(regAddr, regDir, runDir)
	if err != nil {
		return nil, err
	}
	defer registry.stop()
	if err := registry.waitReady(ctx, "http://"+regAddr+"/v2/", 200, 20*time.Second); err != nil {
		return nil, err
	}
	res.registry = "registry:2 (" + cmdOutput(registryBin, "--version") + "), filesystem storage in " + regDir + " (" + fsType(regDir) + "), on 127.0.0.1"
	t0 := time.Now()
	for _, img := range []*odImage{small, big} {
		if err := pushOndemandImage(ctx, regAddr, img); err != nil {
			return nil, err
		}
	}
	logf("registry:2 on %s holds %s and %s (pushed or found in %s)", regAddr, small.repo, big.repo, time.Since(t0).Round(time.Millisecond))

	if err := measureFirstPull(ctx, cfg, runDir, regAddr, registry.pid(), small, res); err != nil {
		return nil, err
	}
	if err := measureOndemandMemory(ctx, cfg, runDir, regAddr, big, res); err != nil {
		return nil, err
	}
	return res, nil
}

// measureFirstPull times the first pull of img through heron against the
// same GET from the registry, and the other ways, taking turns.
func measureFirstPull(ctx context.Context, cfg *config, runDir, regAddr string, regPID int, img *odImage, res *ondemandResult) error {
	blobPath := "/v2/" + img.repo + "/blobs/" + img.layer.String()
	// Unmeasured: the registry's file in the page cache, its descriptor
	// cache warm, the bytes checked once.
	if _, err := getBlob(ctx, "http://"+regAddr+blobPath, img.layer, img.size, true); err != nil {
		return err
	}
	proxy, err := startCountingProxy(regAddr, 0)
	if err != nil {
		return err
	}
	defer proxy.close()
	res.ways = []string{wHeron, wUpstream, wProxy}
	linkAddr := ""
	if mbit := cfg.ondemand.linkMbit; mbit > 0 {
		link, err := startCountingProxy(regAddr, mbit*1e6/8)
		if err != nil {
			return err
		}
		defer link.close()
		linkAddr = link.addr
		res.linkMbit = mbit
		res.ways = append(res.ways, wHeronLink, wUpstreamLink)
	}
	res.pulls = map[string][]pull{}

	// viaHeron publishes img from upstream into a new tree, serves it
	// with a new heron and pulls the layer through it.
	viaHeron := func(name, upstream string) (pull, error) {
		s, err := startOndemandServer(ctx, cfg, runDir, name, upstream, img, "warn")
		if err != nil {
			return pull{}, err
		}
		defer func() {
			s.stop()
			os.RemoveAll(s.tree)
		}()
		h0, _ := cpuTime(s.pid())
		r0, _ := cpuTime(regPID)
		p, err := getBlob(ctx, s.blobURL(img), img.layer, img.size, false)
		if err != nil {
			return p, fmt.Errorf("%s: %w (see %s)", s.name, err, s.log)
		}
		h1, _ := cpuTime(s.pid())
		r1, _ := cpuTime(regPID)
		p.heronCPU, p.registryCPU = h1-h0, r1-r0
		// Stored before the next GET, so that its writes do not
		// overlap another measurement.
		return p, s.waitStored(ctx, img, 2*time.Minute)
	}
	direct := func(addr string) (pull, error) {
		r0, _ := cpuTime(regPID)
		p, err := getBlob(ctx, "http://"+addr+blobPath, img.layer, img.size, false)
		r1, _ := cpuTime(regPID)
		p.registryCPU = r1 - r0
		return p, err
	}
	res.load[0] = loadAvg()
	for r := 0; r < cfg.ondemand.rounds; r++ {
		// Each round starts with the next way.
		order := append(slices.Clone(res.ways[r%len(res.ways):]), res.ways[:r%len(res.ways)]...)
		var line []string
		for _, way := range order {
			syscall.Sync()
			var p pull
			var err error
			switch way {
			case wHeron:
				p, err = viaHeron(fmt.Sprintf("heron-ondemand-%d", r), regAddr)
			case wHeronLink:
				p, err = viaHeron(fmt.Sprintf("heron-ondemand-link-%d", r), linkAddr)
			case wUpstream:
				p, err = direct(regAddr)
			case wUpstreamLink:
				p, err = direct(linkAddr)
			case wProxy:
				p, err = direct(proxy.addr)
			}
			if err != nil {
				return fmt.Errorf("first pull, %s: %w", way, err)
			}
			res.pulls[way] = append(res.pulls[way], p)
			l := fmt.Sprintf("%s %s", way, secs(p.last))
			if p.heronCPU > 0 {
				l += fmt.Sprintf(" (heron CPU %s)", secs(p.heronCPU))
			}
			line = append(line, l)
		}
		res.order = append(res.order, order)
		logf("on-demand first pull of %s, round %d: %s", mib(img.size), r+1, strings.Join(line, ", "))
	}
	res.load[1] = loadAvg()
	return nil
}

// loadAvg returns the load averages of /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// measureOndemandMemory measures heron serve's RSS while the clients pull
// img at once, its first pull, through a counting proxy in front of the
// registry.
func measureOndemandMemory(ctx context.Context, cfg *config, runDir, regAddr string, img *odImage, res *ondemandResult) error {
	proxy, err := startCountingProxy(regAddr, 0)
	if err != nil {
		return err
	}
	defer proxy.close()
	s, err := startOndemandServer(ctx, cfg, runDir, "heron-ondemand-rss", proxy.addr, img, "info")
	if err != nil {
		return err
	}
	defer func() {
		s.stop()
		os.RemoveAll(s.tree)
	}()
	pid := s.pid()
	syscall.Sync()
	time.Sleep(time.Second)
	proxy.reset()
	idle, err := readStatus(pid)
	if err != nil {
		return err
	}
	res.idle = idle.rss
	res.hwmReset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil

	// The sampler.
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := readStatus(pid); err == nil {
				res.samples++
				if st.rss > res.sampled.rss {
					res.sampled = st
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	errs := make([]error, res.clients)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for i := range res.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			_, errs[i] = getBlob(ctx, s.blobURL(img), img.layer, img.size, true)
		}()
	}
	t0 := time.Now()
	close(begin)
	wg.Wait()
	res.wall = time.Since(t0)
	close(stop)
	<-sampled
	st, err := readStatus(pid)
	if err != nil {
		return err
	}
	res.hwm = st.hwm
	var first error
	for _, err := range errs {
		if err == nil {
			res.verified++
		} else if first == nil {
			first = err
		}
	}
	if err := s.waitStored(ctx, img, 2*time.Minute); err != nil {
		return err
	}
	if st, err := readStatus(pid); err == nil {
		res.after = st.rss
	}
	res.upstreamGETs = proxy.get("GET blob " + img.layer.String())
	res.upstreamAll = proxy.summary()
	for _, line := range strings.Split(tail(s.log, 50), "\n") {
		if strings.Contains(line, "on-demand fetch") {
			res.fetchLog = strings.TrimSpace(line)
		}
	}
	logf("on-demand: %d clients × %s: peak RSS %s (idle %s), %d verified, %d upstream GETs of the layer, %s",
		res.clients, mib(img.size), mb(res.peak()), mb(res.idle), res.verified, res.upstreamGETs, secs(res.wall))
	if first != nil {
		return fmt.Errorf("on-demand: %d of %d clients failed: %w (see %s)", res.clients-res.verified, res.clients, first, s.log)
	}
	return nil
}

// ttlbStats returns the median, min and max time to last byte.
func ttlbStats(ps []pull) (med, lo, hi time.Duration) {
	ds := make([]time.Duration, len(ps))
	for i, p := range ps {
		ds[i] = p.last
	}
	slices.Sort(ds)
	return median(ds), ds[0], ds[len(ds)-1]
}

// medianOf returns the median of one figure of ps.
func medianOf(ps []pull, f func(pull) time.Duration) time.Duration {
	ds := make([]time.Duration, len(ps))
	for i, p := range ps {
		ds[i] = f(p)
	}
	slices.Sort(ds)
	return median(ds)
}

// speedRatio is heron's speed as a fraction of the upstream's, heron and
// upstream being two ways: their median times to last byte, upstream over
// heron; and round by round, sorted.
func (r *ondemandResult) speedRatio(heron, upstream string) (float64, []float64) {
	hs, us := r.pulls[heron], r.pulls[upstream]
	hm, _, _ := ttlbStats(hs)
	um, _, _ := ttlbStats(us)
	var rs []float64
	for i := range hs {
		rs = append(rs, us[i].last.Seconds()/hs[i].last.Seconds())
	}
	slices.Sort(rs)
	return um.Seconds() / hm.Seconds(), rs
}

// markdown writes the section of the report.
func (r *ondemandResult) markdown(b *strings.Builder) {
	b.WriteString("\n### On-demand blobs (issue 13)\n\n")
	fmt.Fprintf(b, "- upstream: %s\n- %s\n", r.registry, r.spool)
	for _, l := range r.images {
		fmt.Fprintf(b, "- image: %s\n", l)
	}
	link := ""
	if r.linkMbit > 0 {
		link = fmt.Sprintf(" The same two again with registry:2 behind a link of %d Mbit/s: a proxy in the benchmark that paces what it sends (bandwidth only, no added latency), heron's tree published from the proxy's address.", r.linkMbit)
	}
	fmt.Fprintf(b, "\nFirst pull of a %s layer: `heron publish docker://… --insecure --policy on_demand` into a new tree and a new `heron serve` each time, then one GET of the blob read to its end by net/http's client (a new connection, no hashing), "+
		"against the same GET straight from registry:2, and through a plain Go reverse proxy (one more hop that only copies).%s "+
		"%d rounds, the ways taking turns (each round starts with the next one), `sync` before each GET; the registry's file in the page cache (one unmeasured GET first). "+
		"heron's time ends at the client's last byte; heron's store of the blob into the tree starts as the fetch is verified, just before the last bytes are sent, and is waited for before the next GET. "+
		"CPU is user + system time from /proc/PID/stat, from the request to the last byte. Load average before and after: %s; %s.\n\n",
		mib(r.ttlbSize), link, len(r.order), r.load[0], r.load[1])
	b.WriteString("| GET of the layer | time to last byte (median; min–max) | MiB/s (median) | headers after (median) | heron CPU (median) | registry CPU (median) | × straight from registry:2 (median) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, way := range r.ways {
		ps := r.pulls[way]
		med, lo, hi := ttlbStats(ps)
		hc := ""
		if way == wHeron || way == wHeronLink {
			hc = secs(medianOf(ps, func(p pull) time.Duration { return p.heronCPU }))
		}
		x := ""
		switch way {
		case wHeron, wProxy:
			v, _ := r.speedRatio(way, wUpstream)
			x = fmt.Sprintf("%.2f", v)
		case wHeronLink:
			v, _ := r.speedRatio(way, wUpstreamLink)
			x = fmt.Sprintf("%.2f (same link)", v)
		}
		fmt.Fprintf(b, "| %s | %s (%s–%s) | %.0f | %s | %s | %s | %s |\n", wayNames[way], secs(med), secs(lo), secs(hi),
			float64(r.ttlbSize)/(1<<20)/med.Seconds(), dur(medianOf(ps, func(p pull) time.Duration { return p.headers })), hc,
			secs(medianOf(ps, func(p pull) time.Duration { return p.registryCPU })), x)
	}
	b.WriteString("\nRound by round (time to last byte; the order they ran in):\n\n")
	for i, o := range r.order {
		var parts []string
		for _, way := range o {
			parts = append(parts, way+" "+secs(r.pulls[way][i].last))
		}
		fmt.Fprintf(b, "%d. %s\n", i+1, strings.Join(parts, ", "))
	}
	reset := "VmHWM reset by /proc/PID/clear_refs \"5\" before the load, and VmRSS sampled every 50 ms"
	if !r.hwmReset {
		reset = "VmHWM could not be reset (clear_refs refused), so the peak is the largest VmRSS sampled every 50 ms"
	}
	fmt.Fprintf(b, "\nMemory: %d clients GET the %s layer at once, its first pull, through one `heron serve` (`--log-level info`); each client hashes what it reads. %s (%d samples). "+
		"registry:2 is reached through a reverse proxy in the benchmark that counts the requests.\n\n", r.clients, mib(r.rssSize), reset, r.samples)
	b.WriteString("| idle VmRSS before | peak (max of VmHWM and samples) | peak − idle | at the largest sample: RssAnon, RssFile, RssShmem | VmRSS after (stored) | clients with the right digest | upstream GETs of the layer | wall time of the clients |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	fmt.Fprintf(b, "| %s | %s | %s | %s, %s, %s | %s | %d of %d | %d | %s (%.0f MiB/s to all clients together) |\n",
		mb(r.idle), mb(r.peak()), mb(r.peak()-r.idle), mb(r.sampled.anon), mb(r.sampled.file), mb(r.sampled.shmem), mb(r.after),
		r.verified, r.clients, r.upstreamGETs, secs(r.wall), float64(r.rssSize)*float64(r.clients)/(1<<20)/r.wall.Seconds())
	fmt.Fprintf(b, "\nRequests the registry saw during the load: %s.\n", strings.Join(r.upstreamAll, ", "))
	if r.fetchLog != "" {
		fmt.Fprintf(b, "heron's log line of the fetch: `%s`\n", r.fetchLog)
	}
}

// targets checks the goals of issue 13.
func (r *ondemandResult) targets(yes func(bool) string) [][3]string {
	x, rs := r.speedRatio(wHeron, wUpstream)
	hm, _, _ := ttlbStats(r.pulls[wHeron])
	um, _, _ := ttlbStats(r.pulls[wUpstream])
	measured := fmt.Sprintf("%.2f× on loopback (%s vs %s; rounds %.2f–%.2f)", x, secs(hm), secs(um), rs[0], rs[len(rs)-1])
	if r.linkMbit > 0 {
		xl, rl := r.speedRatio(wHeronLink, wUpstreamLink)
		measured += fmt.Sprintf("; %.2f× with the registry behind a %d Mbit/s link (rounds %.2f–%.2f)", xl, r.linkMbit, rl[0], rl[len(rl)-1])
	}
	over := r.peak() - r.idle
	return [][3]string{
		{fmt.Sprintf("on demand: first pull of a %s layer through heron ≥ 0.8× the speed of the same GET from the upstream (median time to last byte; judged on loopback)", mib(r.ttlbSize)),
			measured, yes(x >= 0.8)},
		{fmt.Sprintf("on demand: peak RSS while %d clients pull a %s layer ≤ 32 MB above idle, one upstream GET, every client the right bytes", r.clients, mib(r.rssSize)),
			fmt.Sprintf("%s above idle (%s → %s), %d upstream GET, %d of %d clients verified", mb(over), mb(r.idle), mb(r.peak()), r.upstreamGETs, r.verified, r.clients),
			yes(over <= 32e6 && r.upstreamGETs == 1 && r.verified == r.clients)},
	}
}

// onlyImage returns the one image an OCI image layout's index lists.
func onlyImage(lp ggcrlayout.Path) (v1.Image, error) {
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("index.json lists %d manifests, want 1", len(im.Manifests))
	}
	return idx.Image(im.Manifests[0].Digest)
}
