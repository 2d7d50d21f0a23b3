package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// heron by repository size (tags): one tree holds a repository of each
// size of -tag-sizes (10, 10,000 and 100,000 tags by default), every tag
// naming the one image of the other trees, written by heron's own
// publisher, so that the large ones are sharded as a publish shards them
// (docs/layout.md, "Large repositories: shards"). One heron serve with its
// defaults and one with --cache-size 0 answer the same requests for every
// size; heron tag times adding one tag.

// tagsTreeVersion names the cached tree: change it when what
// generateTagsTree writes changes.
const tagsTreeVersion = "tags-v1"

// tagSample is how many distinct tags of a repository a load visits, in a
// random order; tagPublishes how many times heron tag is timed per size.
const (
	tagSample    = 1000
	tagPublishes = 5
)

// tagsRepoName is the repository of n tags, tagName6 its tag i.
func tagsRepoName(n int) string { return fmt.Sprintf("tags/n%d", n) }

func tagName6(i int) string { return fmt.Sprintf("t%06d", i) }

// tagSizeResult is what was measured on the repository of one size.
type tagSizeResult struct {
	tags       int
	fileBytes  int64 // the repository file (the entry, without shards)
	shards     int   // tag shards it names
	shardBytes int64 // the tag shard files together
	get, head  *accum
	listFirst  *accum // tags/list?n=100
	listRandom *accum // tags/list?n=100&last=<random tag>
	coldGet    *accum // --cache-size 0, cfg.concurrency connections
	coldSeq    *accum // --cache-size 0, one connection: a request at a time
	tag        []time.Duration
	rm         []time.Duration
}

// tagsResult is the section of the report.
type tagsResult struct {
	sizes         []*tagSizeResult
	gen           string
	cached        bool
	peak, current int64  // the default server's VmHWM and VmRSS after all the load
	peakCold      int64  // the --cache-size 0 server's VmHWM
	shardCache    string // the default server's repository_shard cache counters
	concurrency   int    // of the loads
}

// parseTagSizes parses -tag-sizes: "" or "none" is no section.
func parseTagSizes(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 999_999 {
			return nil, fmt.Errorf("bad tag count %q (want 1 to 999999)", f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("tag count %d given twice", n)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// ensureTagsTree returns the cached tree of the tags scenario, generating
// it the first time. The tree is complete once its .txt (the line of the
// report) is written; a folder without it is made again.
func ensureTagsTree(ctx context.Context, cacheDir string, img *treegen.Image, sizes []int, tr *tagsResult) (string, error) {
	var parts []string
	for _, n := range sizes {
		parts = append(parts, strconv.Itoa(n))
	}
	dir, err := filepath.Abs(filepath.Join(cacheDir, "trees", tagsTreeVersion+"-"+strings.Join(parts, "-")))
	if err != nil {
		return "", err
	}
	info := dir + ".txt"
	if data, err := os.ReadFile(info); err == nil {
		err := checkTagsTree(dir, sizes)
		if err == nil {
			tr.gen, tr.cached = strings.TrimSpace(string(data)), true
			return dir, nil
		}
		logf("the cached tree %s is not as generated (%v): generating it again", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	os.Remove(info)
	logf("generating a tree of repositories of %s tags in %s", strings.Join(parts, ", "), dir)
	took, err := generateTagsTree(ctx, dir, img, sizes)
	if err != nil {
		return "", err
	}
	if err := checkTagsTree(dir, sizes); err != nil {
		return "", err
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	line := fmt.Sprintf("repositories %s of %s tags (%s tags) written by one publish (heron's publisher, package publish) in %s",
		strings.Join(mapInts(sizes, tagsRepoName), ", "), strings.Join(mapInts(sizes, func(n int) string { return num(float64(n)) }), ", "),
		num(float64(total)), took.Round(time.Millisecond))
	if err := os.WriteFile(info, []byte(line+"\n"), 0o644); err != nil {
		return "", err
	}
	tr.gen = line
	logf("%s", line)
	return dir, nil
}

func mapInts(ns []int, f func(int) string) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = f(n)
	}
	return out
}

// generateTagsTree writes an OCI image layout holding img next to dir,
// then publishes it into dir, in one call, to every tag of every
// repository of sizes.
func generateTagsTree(ctx context.Context, dir string, img *treegen.Image, sizes []int) (time.Duration, error) {
	src := dir + "-src"
	if err := os.RemoveAll(src); err != nil {
		return 0, err
	}
	defer os.RemoveAll(src)
	if err := writeImageLayout(src, img, "img"); err != nil {
		return 0, err
	}
	s, err := source.Parse("oci:" + src + ":img")
	if err != nil {
		return 0, err
	}
	defer s.Close()
	var targets []publish.Target
	for _, n := range sizes {
		for i := range n {
			targets = append(targets, publish.Target{Repository: tagsRepoName(n), Tag: tagName6(i)})
		}
	}
	t0 := time.Now()
	if _, err := publish.New(publish.NewFSSink(layout.Root(dir))).Publish(ctx, s, targets); err != nil {
		return 0, fmt.Errorf("publish the tags tree: %w", err)
	}
	return time.Since(t0), nil
}

// writeImageLayout writes an OCI image layout of img, its manifest named
// ref.
func writeImageLayout(dir string, img *treegen.Image, ref string) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	for _, b := range []struct {
		d    digest.Digest
		data []byte
	}{{img.ManifestDigest, img.Manifest}, {img.ConfigDigest, img.Config}, {img.LayerDigest, img.Layer}} {
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", b.d.Encoded()), b.data, 0o644); err != nil {
			return err
		}
	}
	idx, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: treegen.ManifestMediaType, Digest: img.ManifestDigest, Size: int64(len(img.Manifest)),
			Annotations: map[string]string{ocispec.AnnotationRefName: ref},
		}},
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// tagsEntry reads the repository file of the repository of n tags alone,
// without its shards.
func tagsEntry(dir string, n int) (*layout.Repository, int64, error) {
	name := tagsRepoName(n)
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return nil, 0, err
	}
	data, err := os.ReadFile(layout.Root(dir).Path(key))
	if err != nil {
		return nil, 0, err
	}
	r, err := layout.DecodeRepositoryFile(name, data)
	if err != nil {
		return nil, 0, err
	}
	return r, int64(len(data)), nil
}

// checkTagsTree checks that every repository is there with its tags, and
// that those past the file's limit keep their tags in shards, as heron's
// publisher writes them.
func checkTagsTree(dir string, sizes []int) error {
	for _, n := range sizes {
		r, _, err := tagsEntry(dir, n)
		if err != nil {
			return err
		}
		count := len(r.Tags)
		for _, ref := range r.TagShards {
			count += ref.Count
		}
		switch {
		case count != n:
			return fmt.Errorf("%s: %d tags, want %d", r.Name, count, n)
		case n > layout.InlineMax && len(r.TagShards) == 0:
			return fmt.Errorf("%s: %d tags, not sharded", r.Name, n)
		case n <= layout.InlineMax && len(r.TagShards) > 0:
			return fmt.Errorf("%s: %d tags, sharded", r.Name, n)
		}
	}
	return nil
}

// measureTagSizes measures the repositories of the tags tree: the
// requests on a server with default settings and on one without caches,
// then heron tag on a copy of the tree.
func measureTagSizes(ctx context.Context, cfg *config, fx *fixture, tree, runDir string, tr *tagsResult) error {
	byDefault, err := startServe(ctx, cfg, "heron-tags", tree, runDir)
	if err != nil {
		return err
	}
	defer byDefault.stop()
	cold, err := startServe(ctx, cfg, "heron-tags-nocache", tree, runDir, "--cache-size", "0")
	if err != nil {
		return err
	}
	defer cold.stop()
	tr.concurrency = cfg.concurrency
	warmT, coldT := target{name: tHeron, addr: byDefault.addr}, target{name: tHeronNoCache, addr: cold.addr}

	accept := http.Header{"Accept": {acceptManifests}}
	manifestSize := func(f *fixture) int64 { return int64(len(f.img.Manifest)) }
	type loads struct {
		get, head, listFirst, listRandom []load.Request
	}
	reqs := make([]loads, len(cfg.tagSizes))
	for i, n := range cfg.tagSizes {
		tr.sizes = append(tr.sizes, &tagSizeResult{tags: n})
		sr := tr.sizes[i]
		r, size, err := tagsEntry(tree, n)
		if err != nil {
			return err
		}
		sr.fileBytes, sr.shards = size, len(r.TagShards)
		for _, ref := range r.TagShards {
			key, err := layout.RepositoryShardKey(r.Name, ref.ID)
			if err != nil {
				return err
			}
			fi, err := os.Stat(layout.Root(tree).Path(key))
			if err != nil {
				return err
			}
			sr.shardBytes += fi.Size()
		}
		name := tagsRepoName(n)
		rng := rand.New(rand.NewPCG(uint64(n), 11))
		for range tagSample {
			tag := tagName6(rng.IntN(n))
			reqs[i].get = append(reqs[i].get, load.Request{Path: fx.manifestPath(name, tag), Header: accept})
			reqs[i].head = append(reqs[i].head, load.Request{Method: http.MethodHead, Path: fx.manifestPath(name, tag), Header: accept})
			reqs[i].listRandom = append(reqs[i].listRandom, load.Request{Path: "/v2/" + name + "/tags/list?n=100&last=" + url.QueryEscape(tagName6(rng.IntN(n)))})
		}
		reqs[i].listFirst = []load.Request{{Path: "/v2/" + name + "/tags/list?n=100"}}
		// Every server gives the right answer before the load.
		for _, t := range []target{warmT, coldT} {
			if err := preflightTags(fx, t, name, n); err != nil {
				return err
			}
		}
	}

	// The warm GET, whose ratio between sizes is a target, runs
	// cfg.rounds rounds; the others one. "One at a time" is the cold
	// GET on one connection: the latency of a request alone.
	one := *cfg
	one.concurrency = 1
	runs := []struct {
		what   string
		cfg    *config
		t      target
		reqs   func(i int) []load.Request
		size   func(*fixture) int64
		into   func(sr *tagSizeResult) **accum
		rounds int
	}{
		{"GET manifest by tag, warm", cfg, warmT, func(i int) []load.Request { return reqs[i].get }, manifestSize,
			func(sr *tagSizeResult) **accum { return &sr.get }, cfg.rounds},
		{"HEAD manifest by tag, warm", cfg, warmT, func(i int) []load.Request { return reqs[i].head }, nil,
			func(sr *tagSizeResult) **accum { return &sr.head }, 1},
		{"tags/list?n=100, first page", cfg, warmT, func(i int) []load.Request { return reqs[i].listFirst }, nil,
			func(sr *tagSizeResult) **accum { return &sr.listFirst }, 1},
		{"tags/list?n=100&last=<random>", cfg, warmT, func(i int) []load.Request { return reqs[i].listRandom }, nil,
			func(sr *tagSizeResult) **accum { return &sr.listRandom }, 1},
		{"GET manifest by tag, --cache-size 0", cfg, coldT, func(i int) []load.Request { return reqs[i].get }, manifestSize,
			func(sr *tagSizeResult) **accum { return &sr.coldGet }, 1},
		{"the same, one request at a time", &one, coldT, func(i int) []load.Request { return reqs[i].get }, manifestSize,
			func(sr *tagSizeResult) **accum { return &sr.coldSeq }, 1},
	}
	for _, r := range runs {
		for round := 0; round < r.rounds; round++ {
			// The sizes take turns, starting with another one each
			// round, so that a drift of the machine hits all alike.
			for j := range cfg.tagSizes {
				i := (j + round) % len(cfg.tagSizes)
				res, err := runLoad(ctx, r.cfg, r.t, r.reqs(i), 200, r.size, fx)
				if err != nil {
					return err
				}
				into := r.into(tr.sizes[i])
				if *into == nil {
					*into = newAccum()
				}
				(*into).add(res)
			}
		}
		for _, sr := range tr.sizes {
			logf("%7d tags: %-36s %s", sr.tags, r.what, (*r.into(sr)).summary())
		}
	}
	if tr.peak, tr.current, err = memory(byDefault.pid()); err != nil {
		return err
	}
	if tr.peakCold, _, err = memory(cold.pid()); err != nil {
		return err
	}
	if metrics, err := get("http://" + byDefault.addr + "/metrics"); err == nil {
		tr.shardCache = shardCacheCounters(string(metrics))
	}
	logf("tags: peak RSS %s (default settings), %s (--cache-size 0); repository shard cache: %s", mb(tr.peak), mb(tr.peakCold), tr.shardCache)
	byDefault.stop()
	cold.stop()

	return timeTagPublishes(ctx, cfg, tree, runDir, tr)
}

// startServe starts heron serve on tree, with --log-level warn and extra
// flags, and waits until it answers.
func startServe(ctx context.Context, cfg *config, name, tree, runDir string, flags ...string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	argv := append([]string{cfg.heron, "serve", "--root", tree, "--addr", addr, "--log-level", "warn"}, flags...)
	p, err := start(name, addr, runDir, argv...)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, "http://"+addr+"/v2/", 200, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// preflightTags checks t's answers for the repository of n tags: a
// manifest by tag (GET and HEAD), the first page of tags/list and a page
// in the middle.
func preflightTags(fx *fixture, t target, name string, n int) error {
	last := tagName6(n - 1)
	for _, sc := range []scenario{
		{title: "GET manifest by tag", method: http.MethodGet, accept: true, status: 200, check: checkManifest,
			path: func(f *fixture) string { return f.manifestPath(name, last) }},
		{title: "HEAD manifest by tag", method: http.MethodHead, accept: true, status: 200, check: checkManifest,
			path: func(f *fixture) string { return f.manifestPath(name, tagName6(n/2)) }},
		{title: "tags/list first page", method: http.MethodGet, status: 200, check: checkTagPage(name, 0, n),
			path: func(*fixture) string { return "/v2/" + name + "/tags/list?n=100" }},
		{title: "tags/list page", method: http.MethodGet, status: 200, check: checkTagPage(name, n/2+1, n),
			path: func(*fixture) string { return "/v2/" + name + "/tags/list?n=100&last=" + tagName6(n/2) }},
	} {
		if err := sc.preflight(fx, t); err != nil {
			return fmt.Errorf("%s of %s on %s: %w", sc.title, name, t.name, err)
		}
	}
	return nil
}

// checkTagPage checks a page of tags/list?n=100 of the repository of n
// tags that starts at tag from.
func checkTagPage(name string, from, n int) func(*fixture, *http.Response, []byte) error {
	return func(_ *fixture, resp *http.Response, body []byte) error {
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &tl); err != nil {
			return err
		}
		var want []string
		for i := from; i < min(from+100, n); i++ {
			want = append(want, tagName6(i))
		}
		if tl.Name != name || !slices.Equal(tl.Tags, want) {
			return fmt.Errorf("%s with %d tags, want %s with %d tags from %s", tl.Name, len(tl.Tags), name, len(want), tagName6(from))
		}
		if more := from+100 < n; more != (resp.Header.Get("Link") != "") {
			return fmt.Errorf("Link %q with %d tags after the page", resp.Header.Get("Link"), n-from-100)
		}
		return nil
	}
}

// shardCacheCounters returns the repository_shard lines of heron's cache
// metrics, as "hit 123, miss 4, 5 entries, 6.7 KB".
func shardCacheCounters(metrics string) string {
	var hit, miss, entries, weight string
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.Contains(line, `cache="repository_shard"`) || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		labels, value, _ := strings.Cut(rest, "} ")
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(name, "_requests_total") && strings.Contains(labels, `result="hit"`):
			hit = "hit " + num(v)
		case strings.HasSuffix(name, "_requests_total") && strings.Contains(labels, `result="miss"`):
			miss = "miss " + num(v)
		case strings.HasSuffix(name, "_entries"):
			entries = num(v) + " entries"
		case strings.HasSuffix(name, "_weight_bytes"):
			weight = kb(int64(v))
		}
	}
	var out []string
	for _, s := range []string{hit, miss, entries, weight} {
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return "no metrics"
	}
	return strings.Join(out, ", ")
}

// timeTagPublishes copies the tree (the cached one stays as generated)
// and times, per repository, tagPublishes runs of heron tag adding one new
// tag to its first tag's manifest, each followed by a heron rm of that tag
// (timed too, as information), so that every run adds a tag to the
// repository of n tags.
func timeTagPublishes(ctx context.Context, cfg *config, tree, runDir string, tr *tagsResult) error {
	dir := filepath.Join(runDir, "tags-tree")
	if err := copyTree(tree, dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	run := func(args ...string) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, cfg.heron, args...)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("heron %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return d, nil
	}
	for _, sr := range tr.sizes {
		name := tagsRepoName(sr.tags)
		for k := range tagPublishes {
			newTag := fmt.Sprintf("new-%d", k)
			d, err := run("tag", "--root", dir, name+":"+tagName6(0), newTag)
			if err != nil {
				return err
			}
			sr.tag = append(sr.tag, d)
			if d, err = run("rm", "--root", dir, name+":"+newTag); err != nil {
				return err
			}
			sr.rm = append(sr.rm, d)
		}
		// The copy still holds the n tags, and only them.
		if r, _, err := tagsEntry(dir, sr.tags); err != nil {
			return err
		} else if err := checkTagsTree(dir, []int{sr.tags}); err != nil {
			return fmt.Errorf("after heron tag and rm: %w (%d shards)", err, len(r.TagShards))
		}
		slices.Sort(sr.tag)
		slices.Sort(sr.rm)
		logf("%7d tags: heron tag %s (median of %d; %s–%s), heron rm %s", sr.tags, dur(median(sr.tag)), len(sr.tag),
			dur(sr.tag[0]), dur(sr.tag[len(sr.tag)-1]), dur(median(sr.rm)))
	}
	return nil
}

// median of sorted durations.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)/2]
}

// copyTree copies the regular files and folders of src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// markdown writes the section of the report.
func (t *tagsResult) markdown(b *strings.Builder, cfg *config) {
	if len(t.sizes) == 0 {
		return
	}
	base := t.sizes[0]
	b.WriteString("\n### heron by repository size (tags)\n\n")
	fmt.Fprintf(b, "Every tag names one image. Loads of %d connections over %s random tags of the repository (a manifest GET or HEAD by tag, or a `tags/list` page after a random tag), "+
		"on one `heron serve` with default settings (warm: the load's warm-up visits every tag) and one with `--cache-size 0` (every request reads the repository file, a tag shard and the manifest); "+
		"\"one at a time\" is the same load on one connection. `heron tag` adds one tag to a copy of the tree (wall time of the command, %d runs, each followed by `heron rm` of that tag).\n\n",
		cfg.concurrency, num(tagSample), tagPublishes)
	fmt.Fprintf(b, "| tags | repository file | tag shards | GET by tag, warm: req/s, p50, p99 | × %s tags | HEAD by tag, warm: req/s, p50 | `tags/list?n=100` first page: req/s, p50 | `tags/list?n=100&last=<random>`: req/s, p50 | GET by tag, `--cache-size 0`: req/s, p50, p99 | the same, one at a time: p50, p99 | `heron tag` (median; min–max) | `heron rm` (median) |\n",
		num(float64(base.tags)))
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range t.sizes {
		shards := "none"
		if s.shards > 0 {
			shards = fmt.Sprintf("%d (%s together)", s.shards, kb(s.shardBytes))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s, %s, %s | %.2f | %s, %s | %s, %s | %s, %s | %s, %s, %s | %s, %s | %s (%s–%s) | %s |\n",
			num(float64(s.tags)), kb(s.fileBytes), shards,
			num(s.get.rps()), dur(s.get.p(0.5)), dur(s.get.p(0.99)), s.get.rps()/base.get.rps(),
			num(s.head.rps()), dur(s.head.p(0.5)),
			num(s.listFirst.rps()), dur(s.listFirst.p(0.5)),
			num(s.listRandom.rps()), dur(s.listRandom.p(0.5)),
			num(s.coldGet.rps()), dur(s.coldGet.p(0.5)), dur(s.coldGet.p(0.99)),
			dur(s.coldSeq.p(0.5)), dur(s.coldSeq.p(0.99)),
			dur(median(s.tag)), dur(s.tag[0]), dur(s.tag[len(s.tag)-1]), dur(median(s.rm)))
	}
	var errs []string
	for _, s := range t.sizes {
		for _, a := range []*accum{s.get, s.head, s.listFirst, s.listRandom, s.coldGet, s.coldSeq} {
			if a.errors > 0 {
				errs = append(errs, fmt.Sprintf("%d errors at %s tags (%s)", a.errors, num(float64(s.tags)), a.firstErr))
			}
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(b, "\nErrors: %s.\n", strings.Join(errs, "; "))
	}
	fmt.Fprintf(b, "\nPeak RSS (VmHWM) after all this load: %s with default settings (%s after), %s with `--cache-size 0`. Repository shard cache of the default server: %s.\n",
		mb(t.peak), mb(t.current), mb(t.peakCold), t.shardCache)
	c := ""
	if t.cached {
		c = " (cached from an earlier run)"
	}
	fmt.Fprintf(b, "\nTree: %s%s.\n", t.gen, c)
}

func kb(n int64) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f KB", float64(n)/1e3)
}

// targets checks the goals of issue 11 at the largest size.
func (t *tagsResult) targets(yes func(bool) string) [][3]string {
	if len(t.sizes) == 0 {
		return nil
	}
	small, large := t.sizes[0], t.sizes[len(t.sizes)-1]
	at := fmt.Sprintf("at %s tags", num(float64(large.tags)))
	var out [][3]string
	if small != large {
		x := large.get.rps() / small.get.rps()
		out = append(out, [3]string{fmt.Sprintf("%s, warm GET manifest by tag ≥ 0.8× the throughput at %s tags", at, num(float64(small.tags))),
			fmt.Sprintf("%.2f× (%s vs %s req/s)", x, num(large.get.rps()), num(small.get.rps())), yes(x >= 0.8)})
	}
	cold := large.coldSeq.p(0.5)
	out = append(out, [3]string{at + ", cold GET manifest by tag ≤ 5 ms (`--cache-size 0`, one request at a time, p50)",
		fmt.Sprintf("%s (p99 %s; under %d connections p50 %s)", dur(cold), dur(large.coldSeq.p(0.99)), t.concurrency, dur(large.coldGet.p(0.5))),
		yes(cold <= 5*time.Millisecond)})
	first, random := large.listFirst.p(0.5), large.listRandom.p(0.5)
	out = append(out, [3]string{at + ", `tags/list?n=100` page p50 ≤ 1 ms",
		fmt.Sprintf("first page %s, random page %s", dur(first), dur(random)),
		yes(first <= time.Millisecond && random <= time.Millisecond)})
	pub := median(large.tag)
	measured := fmt.Sprintf("%s (%s–%s", dur(pub), dur(large.tag[0]), dur(large.tag[len(large.tag)-1]))
	if small != large {
		measured += fmt.Sprintf("; at %s tags %s", num(float64(small.tags)), dur(median(small.tag)))
	}
	out = append(out, [3]string{at + ", publish of one tag ≤ 100 ms (`heron tag`, median)", measured + ")", yes(pub <= 100*time.Millisecond)})
	out = append(out, [3]string{"RSS under the loads by repository size ≤ 40 MB", mb(t.peak), yes(t.peak <= 40e6)})
	return out
}
