package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/heron-registry/heron/internal/s3test"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/opencontainers/go-digest"
)

// A tree in a bucket (issue 12). One versitygw (the S3-compatible server
// the tests use, internal/s3test; posix back end: every object is a file
// on this machine's disk) on 127.0.0.1 holds a bucket, and the same image
// is published by heron into a folder and into the bucket. Then:
//
//   - the same manifest GET by tag, cache warm, on heron serve --root DIR
//     and heron serve --root s3://…, taking turns as the peers do;
//   - the blob GET answered 307: unsigned by the file-system server with
//     --blob-base-url, presigned by the bucket's server (its signature
//     cache warm), and unsigned by the bucket's server with
//     --blob-base-url (what the presigned URL costs over a redirect);
//   - heron publish of an image of -s3-publish-size bytes (an OCI image
//     layout of random layers, cached) into a new prefix of the bucket, in
//     rounds with bench/s3upload, the AWS SDK's transfer manager alone
//     uploading the same files with the same part size and as many parts
//     in flight (one file after another, and 4 files at once), the
//     commands taking turns; wall time, CPU and peak RSS (getrusage of the
//     child) of each, and versitygw's CPU during each.

// Target names of the bucket scenarios.
const (
	tFSTree         = "heron --root DIR"
	tFSTreeRedirect = "heron --root DIR --blob-base-url"
	tBucket         = "heron --root s3://…"
	tBucketRedirect = "heron --root s3://… --blob-base-url"
)

// s3PublishConfig holds the flags of the publish scenario.
type s3PublishConfig struct {
	versitygw string
	s3upload  string
	imagegen  string
	size      int64
	layers    int
	runs      int
}

func (c *s3PublishConfig) addFlags() {
	flag.StringVar(&c.versitygw, "versitygw", "", "versitygw binary (default: on PATH, in $HERON_CACHE/bin or <repo>/.cache/bin, where make tools puts it)")
	flag.StringVar(&c.s3upload, "s3upload", "", "bench/s3upload binary, the SDK-only upload heron publish is compared with (bench/run.sh builds it)")
	flag.StringVar(&c.imagegen, "imagegen", "", "bench/publish/gen binary, which writes the image published to the bucket (bench/run.sh builds it)")
	flag.Int64Var(&c.size, "s3-publish-size", 1<<30, "bytes of the image published to the bucket (its layers together)")
	flag.IntVar(&c.layers, "s3-publish-layers", 4, "layers of the image published to the bucket")
	flag.IntVar(&c.runs, "s3-publish-runs", 5, "measured rounds (heron publish and two SDK uploads) after one unmeasured round; 0 skips the publish scenario")
}

func (c *s3PublishConfig) check() error {
	switch {
	case c.runs < 0 || c.runs > 50:
		return fmt.Errorf("-s3-publish-runs %d: want 0 to 50", c.runs)
	case c.layers < 1 || c.layers > 100:
		return fmt.Errorf("-s3-publish-layers %d: want 1 to 100", c.layers)
	case c.size < int64(c.layers) || c.size > 64<<30:
		return fmt.Errorf("-s3-publish-size %d: want at least one byte a layer, at most 64 GiB", c.size)
	}
	return nil
}

// s3Result is the section of the report.
type s3Result struct {
	versitygw string // its version and how it runs
	scenarios []scenarioResult
	memory    []string
	publish   *s3PublishResult
}

// s3Run is one command of the publish scenario.
type s3Run struct {
	wall, cpu time.Duration
	rss       int64         // peak RSS (getrusage of the child)
	serverCPU time.Duration // versitygw's CPU time during the command
}

// The commands of the publish scenario: heron publish, and two plain
// uploads of the same files with the SDK's transfer manager, both with at
// most s3store.DefaultConcurrency parts in flight as heron: one file after
// another, parts of each at once (the transfer manager's way), and every
// file at once, one part of each at a time (as heron, which copies
// several blobs at once through one pool of part buffers).
const (
	cmdHeron = iota
	cmdSDK
	cmdSDKFiles
	numPublishCommands
)

var publishCommandNames = [numPublishCommands]string{
	"`heron publish`",
	"SDK upload, one file after another, 4 parts at once",
	"SDK upload, 4 files at once, 1 part each",
}

var publishCommandShort = [numPublishCommands]string{"heron", "SDK", "SDK 4 files"}

// s3PublishResult is what the publish scenario measured.
type s3PublishResult struct {
	size   int64
	layers int
	files  int
	gen    string
	cached bool
	// runs[c] are the measured runs of command c, round by round; order
	// the order of the commands in each round.
	runs  [numPublishCommands][]s3Run
	order [][numPublishCommands]int
}

// bucket is a running versitygw with a bucket.
type bucket struct {
	*s3test.Server // only its exported fields and methods: Client, Env, URL
	proc           *proc
}

// env is the driver's environment with the bucket's credentials and
// region, for heron and s3upload.
func (b *bucket) env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			out = append(out, kv)
		}
	}
	return append(out, b.Env()...)
}

// startBucket starts versitygw on a free port with its posix back end in
// runDir and creates a bucket.
func startBucket(ctx context.Context, bin, runDir string) (*bucket, error) {
	dir := filepath.Join(runDir, "versitygw")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	srv := &s3test.Server{
		AccessKey: "heronbench", SecretKey: strconv.FormatInt(time.Now().UnixNano(), 36) + "secret",
		Bucket: "heron-bench", Dir: dir,
	}
	var p *proc
	var last error
	// A port free a moment ago may be taken by the time versitygw binds
	// it: a few tries.
	for attempt := 0; attempt < 3 && p == nil; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		// versitygw gets no environment of the driver (no AWS settings).
		cand, err := startEnv("versitygw", addr, runDir, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir},
			bin, "--access", srv.AccessKey, "--secret", srv.SecretKey, "--port", addr, "--quiet", "--keep-alive", "posix", dir)
		if err != nil {
			return nil, err
		}
		if last = cand.waitTCP(ctx, 15*time.Second); last != nil {
			cand.stop()
			continue
		}
		p, srv.Endpoint = cand, "http://"+addr
	}
	if p == nil {
		return nil, fmt.Errorf("versitygw: %w", last)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := srv.Client().CreateBucket(cctx, &s3.CreateBucketInput{Bucket: aws.String(srv.Bucket)}); err != nil {
		p.stop()
		return nil, fmt.Errorf("create bucket %s on versitygw: %w", srv.Bucket, err)
	}
	return &bucket{Server: srv, proc: p}, nil
}

// waitTCP waits until the process accepts connections on its address.
func (p *proc) waitTCP(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); see %s:\n%s", p.name, p.err, p.log, tail(p.log, 20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", p.addr, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after %s; see %s", p.name, p.addr, timeout, p.log)
}

// deletePrefix deletes every object under prefix/.
func (b *bucket) deletePrefix(ctx context.Context, prefix string) error {
	c := b.Client()
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(b.Bucket), Prefix: aws.String(prefix + "/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		var ids []types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(b.Bucket), Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return err
		}
		if len(out.Errors) > 0 {
			return fmt.Errorf("delete %s: %s", aws.ToString(out.Errors[0].Key), aws.ToString(out.Errors[0].Message))
		}
	}
	return nil
}

// findVersitygw returns the versitygw binary and its module version.
func findVersitygw(flagged string) (string, string, error) {
	bin := flagged
	if bin == "" {
		var err error
		if bin, err = s3test.Find(); err != nil {
			return "", "", fmt.Errorf("%w; or give -versitygw", err)
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return "", "", err
	}
	version := "?"
	if out, err := exec.Command("go", "version", "-m", bin).Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/versity/versitygw" {
				version = f[2]
			}
		}
	}
	return bin, version, nil
}

// s3Scenarios are the loads of the bucket section.
func s3Scenarios() []scenario {
	return []scenario{
		{id: "s3-manifest-get-tag", title: "GET manifest by tag", method: http.MethodGet, accept: true,
			path:     func(f *fixture) string { return f.manifestPath(f.repo, "latest") },
			status:   200,
			bodySize: func(f *fixture) int64 { return int64(len(f.img.Manifest)) },
			targets:  []string{tFSTree, tBucket}, check: checkManifest},
		{id: "s3-blob-307", title: "GET blob, answered 307", method: http.MethodGet,
			path:    func(f *fixture) string { return f.blobPath(f.repo, f.img.LayerDigest) },
			status:  307,
			targets: []string{tFSTreeRedirect, tBucket, tBucketRedirect}, check: checkBlobLocation},
	}
}

// checkBlobLocation checks that the Location of a 307 names the layer's
// object (a presigned URL has a query too).
func checkBlobLocation(f *fixture, resp *http.Response, _ []byte) error {
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	if !strings.HasSuffix(loc.Path, "/blobs/sha256/"+f.img.LayerDigest.Encoded()) {
		return fmt.Errorf("Location %q does not name the blob", loc)
	}
	if dg := resp.Header.Get("Docker-Content-Digest"); dg != string(f.img.LayerDigest) {
		return fmt.Errorf("Docker-Content-Digest %q, want %s", dg, f.img.LayerDigest)
	}
	return nil
}

// checkPresigned follows the presigned Location of the bucket's server
// once: versitygw must answer it with the layer.
func checkPresigned(fx *fixture, addr string) error {
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect}
	resp, err := client.Get("http://" + addr + fx.blobPath(fx.repo, fx.img.LayerDigest))
	if err != nil {
		return err
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "X-Amz-Signature=") {
		return fmt.Errorf("blob GET: %s, Location %q: not a presigned redirect", resp.Status, loc)
	}
	resp, err = client.Get(loc)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || digest.FromBytes(body) != fx.img.LayerDigest {
		return fmt.Errorf("GET of the presigned URL: %s, %d bytes, not the layer: %.200s", resp.Status, len(body), body)
	}
	return nil
}

// runHeron runs a heron command to its end and returns its output.
func runHeron(ctx context.Context, cfg *config, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, cfg.heron, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("heron %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// measureS3 measures the bucket section.
func measureS3(ctx context.Context, cfg *config, fx *fixture, runDir string) (*s3Result, error) {
	bin, version, err := findVersitygw(cfg.s3Publish.versitygw)
	if err != nil {
		return nil, err
	}
	b, err := startBucket(ctx, bin, runDir)
	if err != nil {
		return nil, err
	}
	defer b.proc.stop()
	res := &s3Result{versitygw: "versitygw " + version + ", posix back end in " + os.TempDir() + " (each object a file on the same disk), on 127.0.0.1; heron talks to it with aws-sdk-go-v2, path-style"}
	logf("versitygw %s on %s, bucket %s", version, b.Endpoint, b.Bucket)
	env := b.env()

	// The same image, published by heron into a folder and into the bucket.
	src := filepath.Join(runDir, "s3-src")
	if err := writeImageLayout(src, fx.img, "img"); err != nil {
		return nil, err
	}
	dir := filepath.Join(runDir, "s3-fs-tree")
	treeURL := b.URL("tree")
	for _, root := range [][]string{{dir}, {treeURL, "--s3-endpoint", b.Endpoint}} {
		args := append([]string{"publish", "oci:" + src + ":img", "--root"}, root...)
		if _, err := runHeron(ctx, cfg, env, append(args, "--to", fx.repo+":latest", "--quiet")...); err != nil {
			return nil, err
		}
	}

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	serve := func(name, root string, flags ...string) (*proc, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		argv := append([]string{cfg.heron, "serve", "--root", root, "--addr", addr, "--log-level", "warn"}, flags...)
		if strings.HasPrefix(root, "s3://") {
			argv = append(argv, "--s3-endpoint", b.Endpoint)
		}
		p, err := startEnv(name, addr, runDir, env, argv...)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
		return p, p.waitReady(ctx, "http://"+addr+"/v2/", 200, 10*time.Second)
	}
	// The base URL of the unsigned redirects: the bucket's own URL, what a
	// public-read bucket or a CDN in front of it would be.
	base := b.Endpoint + "/" + b.Bucket + "/tree"
	fsTree, err := serve("heron-fs", dir)
	if err != nil {
		return nil, err
	}
	fsRedirect, err := serve("heron-fs-redirect", dir, "--blob-base-url", base)
	if err != nil {
		return nil, err
	}
	inBucket, err := serve("heron-s3", treeURL)
	if err != nil {
		return nil, err
	}
	bucketRedirect, err := serve("heron-s3-redirect", treeURL, "--blob-base-url", base)
	if err != nil {
		return nil, err
	}
	targets := map[string]target{
		tFSTree:         {name: tFSTree, addr: fsTree.addr},
		tFSTreeRedirect: {name: tFSTreeRedirect, addr: fsRedirect.addr},
		tBucket:         {name: tBucket, addr: inBucket.addr},
		tBucketRedirect: {name: tBucketRedirect, addr: bucketRedirect.addr},
	}
	scs := s3Scenarios()
	for _, s := range scs {
		for _, tn := range s.targets {
			if err := s.preflight(fx, targets[tn]); err != nil {
				return nil, fmt.Errorf("%s on %s: %w", s.title, tn, err)
			}
		}
	}
	if err := checkPresigned(fx, inBucket.addr); err != nil {
		return nil, fmt.Errorf("%s: %w", tBucket, err)
	}
	logf("the file-system and bucket servers give the same answers; measuring %d scenarios × %d rounds × %s", len(scs), cfg.rounds, cfg.warmup+cfg.duration)
	if res.scenarios, err = measureScenarios(ctx, cfg, fx, scs, targets); err != nil {
		return nil, err
	}
	for _, p := range []*proc{fsTree, fsRedirect, inBucket, bucketRedirect, b.proc} {
		if peak, _, err := memory(p.pid()); err == nil {
			res.memory = append(res.memory, fmt.Sprintf("%s %s", p.name, mb(peak)))
		}
	}
	for _, p := range procs {
		p.stop()
	}
	procs = nil

	if cfg.s3Publish.runs > 0 {
		if res.publish, err = measureS3Publish(ctx, cfg, b); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// ensurePublishImage returns the OCI image layout the publish scenario
// publishes, generating it the first time with bench/publish/gen under
// <cache>/publish, where bench/publish/run.sh keeps the same one.
func ensurePublishImage(ctx context.Context, cfg *config) (dir string, gen string, cached bool, err error) {
	return ensureImageLayout(ctx, cfg, cfg.s3Publish.size, cfg.s3Publish.layers)
}

// ensureImageLayout returns the OCI image layout of the given number of
// layers of random bytes, size bytes in all, under <cache>/publish,
// generating it with bench/publish/gen the first time.
func ensureImageLayout(ctx context.Context, cfg *config, size int64, layers int) (dir string, gen string, cached bool, err error) {
	pc := cfg.s3Publish
	dir, err = filepath.Abs(filepath.Join(cfg.cacheDir, "publish", fmt.Sprintf("src-%d-%d", size, layers)))
	if err != nil {
		return "", "", false, err
	}
	line := fmt.Sprintf("an OCI image layout of %d layers of random bytes, %s in all (bench/publish/gen)", layers, mib(size))
	complete := func() bool {
		for _, f := range []string{"index.json", "oci-layout"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return false
			}
		}
		return true
	}
	if complete() {
		return dir, line, true, nil
	}
	if pc.imagegen == "" {
		return "", "", false, errors.New("generating the image needs -imagegen (bench/run.sh builds bench/publish/gen)")
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", "", false, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", "", false, err
	}
	logf("generating %s in %s", line, dir)
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, pc.imagegen, "-dir", dir, "-size", strconv.FormatInt(size, 10),
		"-layers", strconv.Itoa(layers), "-ref", "bench").CombinedOutput()
	if err != nil {
		return "", "", false, fmt.Errorf("%s: %v: %s", pc.imagegen, err, out)
	}
	if !complete() {
		return "", "", false, fmt.Errorf("%s wrote no complete image layout in %s", pc.imagegen, dir)
	}
	return dir, fmt.Sprintf("%s, generated in %s", line, time.Since(t0).Round(time.Millisecond)), false, nil
}

func mib(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

// timed runs cmd to its end and measures it, and versitygw's CPU time
// meanwhile.
func timed(cmd *exec.Cmd, server int) (s3Run, []byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cpu0, _ := cpuTime(server)
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	cpu1, _ := cpuTime(server)
	if err != nil {
		return s3Run{}, nil, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	r := s3Run{wall: wall, cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), serverCPU: cpu1 - cpu0}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rss = ru.Maxrss << 10 // kilobytes on Linux
	}
	return r, stdout.Bytes(), nil
}

// cpuTime returns the user and system CPU time of a process so far, from
// /proc/PID/stat (in clock ticks of 1/100 s, what Linux reports to user
// space whatever its own tick).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// measureS3Publish times heron publish of the image into a new prefix of
// the bucket, in rounds with s3upload of its files into other prefixes.
func measureS3Publish(ctx context.Context, cfg *config, b *bucket) (*s3PublishResult, error) {
	pc := cfg.s3Publish
	if pc.s3upload == "" {
		return nil, errors.New("the bucket's publish scenario needs -s3upload (bench/run.sh builds bench/s3upload)")
	}
	src, gen, cached, err := ensurePublishImage(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(src, "blobs", "sha256"))
	if err != nil {
		return nil, err
	}
	var files []string
	var total int64
	for _, e := range ents {
		p := filepath.Join(src, "blobs", "sha256", e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(e.Name(), ".") || !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, p)
		total += fi.Size()
		// Every command reads the source from the page cache.
		if err := readAll(p); err != nil {
			return nil, err
		}
	}
	pr := &s3PublishResult{size: pc.size, layers: pc.layers, files: len(files), gen: gen, cached: cached}
	env := b.env()
	server := b.proc.pid()
	publish := func(n int) (s3Run, error) {
		prefix := fmt.Sprintf("publish/%d-heron", n)
		cmd := exec.CommandContext(ctx, cfg.heron, "publish", "oci:"+src+":bench", "--root", b.URL(prefix),
			"--s3-endpoint", b.Endpoint, "--to", "bench/big:latest", "--quiet", "--output", "json")
		cmd.Env = env
		r, out, err := timed(cmd, server)
		if err != nil {
			return r, err
		}
		// Every byte was sent: nothing was found present and skipped.
		var sum struct {
			BytesWritten int64 `json:"bytesWritten"`
			BlobsSkipped int   `json:"blobsSkipped"`
		}
		if err := json.Unmarshal(out, &sum); err != nil {
			return r, fmt.Errorf("heron publish --output json: %w: %.200s", err, out)
		}
		if sum.BytesWritten < total || sum.BlobsSkipped > 0 {
			return r, fmt.Errorf("heron publish wrote %d bytes and skipped %d blobs, want %d bytes written and none skipped", sum.BytesWritten, sum.BlobsSkipped, total)
		}
		return r, b.deletePrefix(ctx, prefix)
	}
	upload := func(name string, jobs, concurrency int) func(n int) (s3Run, error) {
		return func(n int) (s3Run, error) {
			prefix := fmt.Sprintf("publish/%d-%s", n, name)
			args := append([]string{"-to", b.URL(prefix + "/blobs/sha256"), "-endpoint", b.Endpoint,
				"-part-size", strconv.Itoa(s3store.DefaultPartSize),
				"-jobs", strconv.Itoa(jobs), "-concurrency", strconv.Itoa(concurrency)}, files...)
			cmd := exec.CommandContext(ctx, pc.s3upload, args...)
			cmd.Env = env
			r, _, err := timed(cmd, server)
			if err != nil {
				return r, err
			}
			return r, b.deletePrefix(ctx, prefix)
		}
	}
	commands := [numPublishCommands]func(n int) (s3Run, error){
		cmdHeron:    publish,
		cmdSDK:      upload("sdk", 1, s3store.DefaultConcurrency),
		cmdSDKFiles: upload("sdk-files", s3store.DefaultConcurrency, 1),
	}
	logf("publish of %s to the bucket: %d rounds of %s after one unmeasured round", mib(total), pc.runs, strings.Join(publishCommandShort[:], ", "))
	for n := 0; n <= pc.runs; n++ {
		// The commands take turns, starting with another one each
		// round, so that a drift of the machine hits all alike; what the
		// previous command wrote is on disk (sync) before the next starts.
		var order [numPublishCommands]int
		var got [numPublishCommands]s3Run
		for k := range order {
			order[k] = (k + n) % numPublishCommands
			syscall.Sync()
			if got[order[k]], err = commands[order[k]](n); err != nil {
				return nil, err
			}
		}
		var line []string
		for c, r := range got {
			line = append(line, fmt.Sprintf("%s %s (%s RSS)", publishCommandShort[c], dur(r.wall), mb(r.rss)))
		}
		if n == 0 {
			logf("unmeasured round: %s", strings.Join(line, ", "))
			continue
		}
		for c, r := range got {
			pr.runs[c] = append(pr.runs[c], r)
		}
		pr.order = append(pr.order, order)
		logf("round %d: %s", n, strings.Join(line, ", "))
	}
	return pr, nil
}

func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// ratios returns, round by round, command c's wall time over heron
// publish's (heron's throughput as a fraction of c's), and them sorted.
func (p *s3PublishResult) ratios(c int) (byRound, sorted []float64) {
	for i := range p.runs[cmdHeron] {
		byRound = append(byRound, p.runs[c][i].wall.Seconds()/p.runs[cmdHeron][i].wall.Seconds())
	}
	sorted = slices.Clone(byRound)
	slices.Sort(sorted)
	return byRound, sorted
}

func medianFloat(fs []float64) float64 {
	if len(fs) == 0 {
		return 0
	}
	return fs[len(fs)/2]
}

// stats returns the median and range of one figure of runs.
func stats(runs []s3Run, f func(s3Run) time.Duration) (med, lo, hi time.Duration) {
	ds := make([]time.Duration, len(runs))
	for i, r := range runs {
		ds[i] = f(r)
	}
	slices.Sort(ds)
	return median(ds), ds[0], ds[len(ds)-1]
}

func peakRSS(runs []s3Run) int64 {
	var m int64
	for _, r := range runs {
		m = max(m, r.rss)
	}
	return m
}

// markdown writes the section of the report.
func (r *s3Result) markdown(b *strings.Builder, cfg *config) {
	b.WriteString("\n### A tree in a bucket (versitygw)\n\n")
	fmt.Fprintf(b, "- %s\n", r.versitygw)
	b.WriteString("- the same image published by heron into a folder and into the bucket; `heron serve` with its defaults (`--revalidate-after 1s`, `--presign-expiry 15m`); the unsigned redirects point at the bucket's URL\n\n")
	b.WriteString("| scenario | server | req/s | rounds (req/s) | p50 | p99 | × file system | errors |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range r.scenarios {
		base := s.results[0].accum
		for _, sr := range s.results {
			a := sr.accum
			x := ""
			if a != base && base.rps() > 0 {
				x = fmt.Sprintf("%.2f", a.rps()/base.rps())
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %d |\n", s.sc.title, sr.target, num(a.rps()), a.spread(), dur(a.p(0.5)), dur(a.p(0.99)), x, a.errors)
		}
	}
	if len(r.memory) > 0 {
		fmt.Fprintf(b, "\nPeak RSS after these runs: %s.\n", strings.Join(r.memory, ", "))
	}
	p := r.publish
	if p == nil || len(p.runs[cmdHeron]) == 0 {
		return
	}
	fmt.Fprintf(b, "\nPublish of %s (%d files) into a new prefix of the bucket, %d rounds after one unmeasured round, the commands taking turns (each round starts with another), `sync` before each command, the source in the page cache: "+
		"`heron publish oci:DIR:bench --root s3://… --to bench/big:latest` (store/s3's defaults: parts of %s from a pool of %d part buffers, blobs copied %d at once; every byte verified against its digest, the repository file and catalog written after) "+
		"and two plain uploads of the same files with the SDK's transfer manager alone (`bench/s3upload`), with as many parts in flight as heron and no checksum beyond what the API requires, as heron: "+
		"one file after another, 4 parts of each at once (the transfer manager's way); and 4 files at once, one part of each at a time (as heron copies blobs). "+
		"Peak RSS is getrusage's of the child; versitygw's CPU is read from /proc before and after.\n\n",
		mib(p.size), p.files, len(p.runs[cmdHeron]), mib(s3store.DefaultPartSize), s3store.DefaultConcurrency, s3store.DefaultConcurrency)
	b.WriteString("| command | wall (median; min–max) | MiB/s (median) | CPU user+sys (median) | versitygw CPU meanwhile (median) | peak RSS (max) | heron's speed × this (median; min–max) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for c, runs := range p.runs {
		w, lo, hi := stats(runs, func(r s3Run) time.Duration { return r.wall })
		cpu, _, _ := stats(runs, func(r s3Run) time.Duration { return r.cpu })
		sc, _, _ := stats(runs, func(r s3Run) time.Duration { return r.serverCPU })
		x := ""
		if c != cmdHeron {
			_, rs := p.ratios(c)
			x = fmt.Sprintf("%.2f (%.2f–%.2f)", medianFloat(rs), rs[0], rs[len(rs)-1])
		}
		fmt.Fprintf(b, "| %s | %s (%s–%s) | %.0f | %s | %s | %s | %s |\n", publishCommandNames[c], secs(w), secs(lo), secs(hi),
			float64(p.size)/(1<<20)/w.Seconds(), secs(cpu), secs(sc), mb(peakRSS(runs)), x)
	}
	b.WriteString("\nRound by round (wall time; the order they ran in):\n\n")
	for i, order := range p.order {
		var parts []string
		for _, c := range order {
			parts = append(parts, fmt.Sprintf("%s %s", publishCommandShort[c], secs(p.runs[c][i].wall)))
		}
		fmt.Fprintf(b, "%d. %s\n", i+1, strings.Join(parts, ", "))
	}
	c := ""
	if p.cached {
		c = " (cached from an earlier run)"
	}
	fmt.Fprintf(b, "\nImage: %s%s.\n", p.gen, c)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// targets checks the goals of issue 12.
func (r *s3Result) targets(yes func(bool) string) [][3]string {
	var out [][3]string
	for _, s := range r.scenarios {
		switch s.sc.id {
		case "s3-manifest-get-tag":
			fs, bk := s.find(tFSTree), s.find(tBucket)
			x := bk.rps() / fs.rps()
			out = append(out, [3]string{"bucket: GET manifest by tag, cache warm, ≥ 0.9× the same tree on the file system",
				fmt.Sprintf("%.2f× (%s vs %s req/s; p50 %s vs %s, p99 %s vs %s)", x, num(bk.rps()), num(fs.rps()),
					dur(bk.p(0.5)), dur(fs.p(0.5)), dur(bk.p(0.99)), dur(fs.p(0.99))), yes(x >= 0.9)})
		case "s3-blob-307":
			fs, bk := s.find(tFSTreeRedirect), s.find(tBucket)
			x := bk.rps() / fs.rps()
			out = append(out, [3]string{"bucket: presigned 307 ≥ 0.8× the unsigned 307 (file system, `--blob-base-url`)",
				fmt.Sprintf("%.2f× (%s vs %s req/s)", x, num(bk.rps()), num(fs.rps())), yes(x >= 0.8)})
		}
	}
	if p := r.publish; p != nil && len(p.runs[cmdHeron]) > 0 {
		_, one := p.ratios(cmdSDK)
		_, files := p.ratios(cmdSDKFiles)
		x1, x2 := medianFloat(one), medianFloat(files)
		out = append(out, [3]string{fmt.Sprintf("bucket: publish of %s ≥ 0.8× a plain multipart upload with the SDK (wall time, median of %d rounds)", mib(p.size), len(one)),
			fmt.Sprintf("%.2f× the SDK one file after another (%.2f–%.2f), %.2f× the SDK 4 files at once (%.2f–%.2f)", x1, one[0], one[len(one)-1], x2, files[0], files[len(files)-1]),
			yes(x1 >= 0.8 && x2 >= 0.8)})
		peak := peakRSS(p.runs[cmdHeron])
		out = append(out, [3]string{"bucket: peak RSS of heron publish ≤ 100 MB", mb(peak) + " (largest of the runs)", yes(peak <= 100e6)})
	}
	return out
}
