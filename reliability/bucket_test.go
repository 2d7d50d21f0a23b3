//go:build reliability

package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/internal/s3test"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/store"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/opencontainers/go-digest"
)

// bucketPool is the images TestCrashBucket publishes, a batch at a time:
// small ones, kept in memory until they are committed (one PutObject
// each); medium ones whose first layer is of 1.5 to 3 MiB, and a large
// one with a layer of 6 to 10 MiB, staged as multipart uploads of one
// part (heron's parts are 16 MiB) while their other layers are copied; a
// huge one with a layer of 20 to 28 MiB, two parts, the first sent while
// the rest is read; and image indexes, whose children's layers may be
// over 1 MiB.
func bucketPool(rng *rand.Rand, prefix string) []imageSpec {
	kib := func(lo, hi int) int64 { return int64(lo+rng.IntN(hi-lo+1)) << 10 }
	var specs []imageSpec
	for i := range 5 {
		layers := make([]int64, 1+rng.IntN(3))
		for j := range layers {
			layers[j] = kib(1, 512)
		}
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%ssmall-%d", prefix, i), layers: layers})
	}
	for i := range 3 {
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%smedium-%d", prefix, i), layers: []int64{kib(1536, 3072), kib(16, 768), kib(1, 64)}})
	}
	specs = append(specs, imageSpec{ref: prefix + "large-0", layers: []int64{kib(6144, 10240), kib(512, 1024)}})
	specs = append(specs, imageSpec{ref: prefix + "huge-0", layers: []int64{kib(20480, 28672), kib(1, 128)}})
	for i := range 2 {
		children := make([][]int64, 2+rng.IntN(2))
		for j := range children {
			children[j] = []int64{kib(64, 2560), kib(1, 64)}
		}
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%sindex-%d", prefix, i), children: children})
	}
	return specs
}

// bucketCrash is the bucket TestCrashBucket publishes into, and what the
// test keeps between its checks.
type bucketCrash struct {
	t      *testing.T
	ctx    context.Context
	srv    *s3test.Server
	env    []string // the environment that points heron at srv
	root   string   // s3://BUCKET/tree
	prefix string   // "tree/": the tree's objects in the bucket
	st     *s3store.Store
	client *s3.Client
	// hashed remembers the blob objects whose content was checked, by
	// key, with the ETag they had: an object written again would have
	// another.
	hashed map[string]string
	// hashedBytes counts what was read to check them.
	hashedBytes int64
}

// object is one object of a snapshot of the tree.
type object struct {
	size int64
	etag string
}

// bucketSnap is what the bucket holds under the tree's prefix: every
// object by key (relative to the prefix), and every incomplete multipart
// upload, by upload id, with its key.
type bucketSnap struct {
	objects map[string]object
	uploads map[string]string
}

func (a bucketSnap) equal(b bucketSnap) bool {
	return maps.Equal(a.objects, b.objects) && maps.Equal(a.uploads, b.uploads)
}

// run runs heron against the bucket (see runHeron).
func (b *bucketCrash) run(args []string, killAfter time.Duration) *publishRun {
	return runHeron(args, b.env, killAfter)
}

// snapshot lists the tree's objects and the incomplete multipart uploads
// under its prefix, with the SDK alone (not heron's code).
func (b *bucketCrash) snapshot() (bucketSnap, error) {
	s := bucketSnap{objects: map[string]object{}, uploads: map[string]string{}}
	pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.srv.Bucket, Prefix: &b.prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(b.ctx)
		if err != nil {
			return s, fmt.Errorf("list objects: %w", err)
		}
		for _, o := range page.Contents {
			s.objects[strings.TrimPrefix(aws.ToString(o.Key), b.prefix)] = object{size: aws.ToInt64(o.Size), etag: aws.ToString(o.ETag)}
		}
	}
	in := &s3.ListMultipartUploadsInput{Bucket: &b.srv.Bucket, Prefix: &b.prefix}
	for range 10000 {
		out, err := b.client.ListMultipartUploads(b.ctx, in)
		if err != nil {
			return s, fmt.Errorf("list multipart uploads: %w", err)
		}
		for _, u := range out.Uploads {
			s.uploads[aws.ToString(u.UploadId)] = strings.TrimPrefix(aws.ToString(u.Key), b.prefix)
		}
		if !aws.ToBool(out.IsTruncated) {
			return s, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	return s, errors.New("list multipart uploads: more than 10,000 pages")
}

// settle returns a snapshot once two taken 50 ms apart agree: a request
// whose body heron had handed to the kernel before its SIGKILL may still
// land on the server just after it, and the checks must see the bucket
// as the kill left it, not change under them.
func (b *bucketCrash) settle() bucketSnap {
	b.t.Helper()
	prev, err := b.snapshot()
	if err != nil {
		b.t.Fatal(err)
	}
	for range 40 {
		time.Sleep(50 * time.Millisecond)
		cur, err := b.snapshot()
		if err != nil {
			b.t.Fatal(err)
		}
		if cur.equal(prev) {
			return cur
		}
		prev = cur
	}
	b.t.Fatal("the bucket was still changing 2 s after the last heron process ended")
	return prev
}

// bucketState is what the checks read of the tree.
type bucketState struct {
	snap    bucketSnap
	repos   map[string]*layout.Repository
	catalog []string
	lagging []string // repositories with a repository file, not in the catalog
	report  *publish.VerifyReport
}

// checkBucket checks the tree in the bucket, as snap shows it, the way a
// reader relies on it. heron's own code: publish.VerifyTree over store/s3
// (every repository file parses and is valid; every manifest it lists is
// there, whole, and hashes to its digest; every stored blob it lists is
// there with its size; the catalog's files verify and name only
// repositories that have a file). The test's own, with the SDK: every
// object is of a kind the layout defines (no temporary object: a bucket
// has none), and every object under blobs/ hashes to the digest its key
// names, with the size it has (nothing partial under a final key). A
// repository missing from the catalog is allowed only when mayLag says
// so (its last publish was killed): the same rule as TestCrash.
func (b *bucketCrash) check(snap bucketSnap, mayLag func(string) bool) (*bucketState, []string) {
	b.t.Helper()
	st := &bucketState{snap: snap, repos: map[string]*layout.Repository{}}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for _, key := range slices.Sorted(maps.Keys(snap.objects)) {
		o := snap.objects[key]
		kind, _ := classify(key)
		switch kind {
		case kindUnexpected:
			bad("%s: an object the layout does not define", key)
		case kindTemp:
			bad("%s: a temporary object in a bucket", key)
		case kindBlob:
			if err := b.hashBlob(key, o); err != nil {
				bad("%v", err)
			}
		case kindRepository:
			name, _ := layout.RepositoryNameFromKey(key)
			r, err := publish.ReadRepository(b.ctx, b.st, name)
			if err != nil {
				bad("%s: %v", key, err)
				continue
			}
			st.repos[name] = r
		}
	}

	rep, err := publish.VerifyTree(b.ctx, b.st, publish.VerifyOptions{})
	if err != nil {
		b.t.Fatalf("verify: %v", err)
	}
	st.report = rep
	for _, p := range rep.Problems {
		bad("verify: %s: %s", p.Key, p.Message)
	}
	if rep.Temporary != 0 {
		bad("verify counts %d temporary files in a bucket", rep.Temporary)
	}

	names, err := publish.CatalogNames(b.ctx, b.st)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		bad("catalog: %v", err)
	}
	st.catalog = names
	listed := map[string]bool{}
	for _, n := range names {
		listed[n] = true
		if _, ok := st.repos[n]; !ok {
			bad("catalog: names repository %s, which has no repository file", n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(st.repos)) {
		if listed[n] {
			continue
		}
		st.lagging = append(st.lagging, n)
		if mayLag == nil || !mayLag(n) {
			bad("repository %s is not in the catalog, and its last publish was not killed", n)
		}
	}
	if !slices.Equal(rep.Unlisted, st.lagging) {
		bad("heron verify reports %v not in the catalog, the test's own check %v", rep.Unlisted, st.lagging)
	}
	return st, problems
}

// hashBlob reads the blob object key (of the tree) and checks it against
// the digest its key names and the size the listing gave, once per ETag.
func (b *bucketCrash) hashBlob(key string, o object) error {
	if b.hashed[key] == o.etag {
		return nil
	}
	d, _ := layout.DigestFromBlobKey(key)
	out, err := b.client.GetObject(b.ctx, &s3.GetObjectInput{Bucket: &b.srv.Bucket, Key: aws.String(b.prefix + key)})
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	defer out.Body.Close()
	v := d.Verifier()
	n, err := io.Copy(v, out.Body)
	b.hashedBytes += n
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if n != o.size || !v.Verified() {
		return fmt.Errorf("%s: a partial or wrong object under a final key: %d bytes (listed as %d) that do not hash to %s", key, n, o.size, d)
	}
	b.hashed[key] = o.etag
	return nil
}

// bucketPhase tells what a killed run had done from what changed in the
// bucket.
func bucketPhase(before, after bucketSnap) string {
	changed := func(kinds ...fileKind) bool {
		for key, o := range after.objects {
			k, _ := classify(key)
			if !slices.Contains(kinds, k) {
				continue
			}
			if old, ok := before.objects[key]; !ok || old != o {
				return true
			}
		}
		return false
	}
	newUploads := false
	for id := range after.uploads {
		if _, ok := before.uploads[id]; !ok {
			newUploads = true
		}
	}
	switch {
	case changed(kindCatalogIndex, kindCatalogShard):
		return s3PhaseCatalog
	case changed(kindRepository, kindRepositoryShard):
		return s3PhaseRepository
	case changed(kindBlob):
		return s3PhaseCommit
	case newUploads:
		return s3PhaseStage
	}
	return s3PhaseBefore
}

// The phases of a killed run, as told by what changed in the bucket.
const (
	s3PhaseBefore     = "before any object was written (reading the source, staging small blobs in memory)"
	s3PhaseStage      = "staging blobs (multipart uploads begun, nothing visible)"
	s3PhaseCommit     = "committing the staged blobs (repository files unchanged)"
	s3PhaseRepository = "writing the repository file(s) (catalog unchanged)"
	s3PhaseCatalog    = "writing the catalog"
	s3PhaseDone       = "after it had exited (not counted as a kill)"
	s3PhaseConcurrent = "while two other publishes raced it into the same repository (phase not told)"
)

var s3PhaseOrder = []string{s3PhaseBefore, s3PhaseStage, s3PhaseCommit, s3PhaseRepository, s3PhaseCatalog, s3PhaseConcurrent, s3PhaseDone}

// checkTagsKept compares the repositories before a run and after it
// (killed or not): every repository is still there; every tag still
// names the manifest it named, unless a run aimed at it, when it names
// that or the one the run meant; a new tag is one a run aimed at, naming
// what it meant; every manifest listed before is still listed. aimed maps
// a repository to its tags aimed at and the digest each was to name.
func checkTagsKept(before, after map[string]*layout.Repository, aimed map[string]map[string]digest.Digest) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for name, old := range before {
		r, ok := after[name]
		if !ok {
			bad("repository %s is gone (or unreadable)", name)
			continue
		}
		for tag, d := range old.Tags {
			switch now, ok := r.Tags[tag]; {
			case !ok:
				bad("%s:%s is lost (it named %s)", name, tag, d)
			case now == d:
			case aimed[name][tag] == now:
			default:
				bad("%s:%s names %s, it named %s and no run aimed at it", name, tag, now, d)
			}
		}
		for d := range old.Manifests {
			if _, ok := r.Manifests[d]; !ok {
				bad("%s: manifest %s is no longer listed", name, d)
			}
		}
	}
	for name, r := range after {
		for tag, d := range r.Tags {
			if old := before[name]; old != nil {
				if _, ok := old.Tags[tag]; ok {
					continue
				}
			}
			if aimed[name][tag] != d {
				bad("%s:%s (%s) is new, and no run aimed at it", name, tag, d)
			}
		}
	}
	return problems
}

// bucketRun is one run of the test: a heron command, what it aims at, and
// the images it publishes.
type bucketRun struct {
	kind   string // runPublish, runBatch, runTag
	args   []string
	aimed  map[string]map[string]digest.Digest
	images []*crashImage
	// estimate is how long it is expected to take; the SIGKILL comes
	// after a random delay of up to 1.1 times that.
	estimate time.Duration
}

const (
	kindPublish = "heron publish IMAGE"
	kindBatch   = "heron publish --batch"
	kindTag     = "heron tag"
)

var runKinds = []string{kindPublish, kindBatch, kindTag}

func (r *bucketRun) aim(repo, tag string, d digest.Digest) {
	if r.aimed == nil {
		r.aimed = map[string]map[string]digest.Digest{}
	}
	if r.aimed[repo] == nil {
		r.aimed[repo] = map[string]digest.Digest{}
	}
	r.aimed[repo][tag] = d
}

// bucketPools generates the images, a batch at a time. The first batch
// is timed, each image published into a prefix of the bucket of its own
// (where it writes everything); later batches are estimated from it (a
// fixed cost plus a cost per byte, fitted to those timings), so that a
// new batch costs its generation alone.
type bucketPools struct {
	crashPools
	b *bucketCrash
	// took is the time spent generating and timing batches.
	took time.Duration
	// base and perByte are the fitted estimate, in seconds.
	base, perByte float64
}

func (p *bucketPools) addBatch(t *testing.T) {
	t.Helper()
	start := time.Now()
	defer func() { p.took += time.Since(start) }()
	p.batches++
	src := filepath.Join(p.dir, fmt.Sprintf("src-%d", p.batches))
	specs := bucketPool(p.rng, fmt.Sprintf("b%d-", p.batches))
	pool, err := generateLayout(src, p.seed+uint64(p.batches), specs)
	if err != nil {
		t.Fatal(err)
	}
	scratch := p.b.srv.URL(fmt.Sprintf("calibrate-%d", p.batches))
	var xs, ys []float64
	for _, s := range specs {
		img := &crashImage{source: "oci:" + src + ":" + s.ref, ref: s.ref, digest: pool[s.ref].digest}
		size := pool[s.ref].total()
		if p.batches == 1 {
			r := p.b.run([]string{"publish", img.source, "--root", scratch, "--to", "calibrate:latest"}, -1)
			if r.err != nil {
				t.Fatalf("%s: %v\n%s", r, r.err, &r.stderr)
			}
			img.took = r.took
			xs, ys = append(xs, float64(size)), append(ys, r.took.Seconds())
		} else {
			img.took = time.Duration((p.base + p.perByte*float64(size)) * float64(time.Second))
		}
		p.images = append(p.images, img)
		p.bytes += size
	}
	if p.batches == 1 {
		p.base, p.perByte = fitLine(xs, ys)
	}
}

// fitLine returns a and b of the line y = a + b·x closest to the points
// (least squares); b is not negative.
func fitLine(xs, ys []float64) (a, b float64) {
	n := float64(len(xs))
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var cov, vx float64
	for i := range xs {
		cov += (xs[i] - mx) * (ys[i] - my)
		vx += (xs[i] - mx) * (xs[i] - mx)
	}
	if vx > 0 {
		b = max(cov/vx, 0)
	}
	return my - b*mx, b
}

// pick is crashPools.pick, with batches of bucketPool: an image whose
// content is not all in the tree yet three times in four.
func (p *bucketPools) pick(t *testing.T) *crashImage {
	var fresh []*crashImage
	for _, img := range p.images {
		if !img.complete {
			fresh = append(fresh, img)
		}
	}
	if p.rng.IntN(4) == 0 {
		return p.images[p.rng.IntN(len(p.images))]
	}
	if len(fresh) == 0 {
		p.addBatch(t)
		return p.pick(t)
	}
	return fresh[p.rng.IntN(len(fresh))]
}

// TestCrashBucket is TestCrash with the tree in an S3-compatible bucket
// (versitygw, started by internal/s3test): it kills, with SIGKILL at a
// random moment, `heron publish` of an image, `heron publish --batch` and
// `heron tag`, until HERON_CRASH_S3_KILLS runs (30% of
// HERON_CRASH_KILLS: 30 by default, 6 with -short) were killed before
// they finished. One run in four has two other publishes (not killed)
// racing it, and each other, into the same repository from processes of
// their own, which must succeed and keep their tags. After every kill the
// bucket is checked (see check: heron's VerifyTree over store/s3, and the
// test's own listing and hashing of every blob object), no tag is lost,
// and the killed command is run again, which must succeed and give the
// tags it aimed at. At the end heron gc --grace 0s must leave a tree that
// heron verify --deep passes, with no blob left that no repository lists;
// the incomplete multipart uploads that kills left (a bucket lifecycle
// rule aborts them) are counted. HERON_CRASH_SEED replays a run's choices,
// HERON_CRASH_BUDGET (5m) bounds its time.
func TestCrashBucket(t *testing.T) {
	// HERON_CRASH_KILLS (TestCrash's) scales it: 30% of it, 30 by
	// default, 6 with -short.
	base := envInt(t, "HERON_CRASH_KILLS", 100)
	if testing.Short() && os.Getenv("HERON_CRASH_KILLS") == "" {
		base = 20
	}
	kills := envInt(t, "HERON_CRASH_S3_KILLS", max(1, base*3/10))
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERON_CRASH_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("HERON_CRASH_SEED=%q: %v", s, err)
		}
	}
	budget := envDuration(t, "HERON_CRASH_BUDGET", 5*time.Minute)
	if !hasVerify || !hasGC {
		t.Skip("this heron has no verify or no gc")
	}
	if out, _ := heron("verify", "--help").CombinedOutput(); !strings.Contains(string(out), "--s3-endpoint") {
		t.Skip("this heron has no s3:// roots")
	}
	t.Logf("seed %d: rerun with HERON_CRASH_SEED=%d HERON_CRASH_S3_KILLS=%d", seed, seed, kills)
	start := time.Now()

	srv := s3test.Start(t)
	ctx := context.Background()
	b := &bucketCrash{t: t, ctx: ctx, srv: srv, env: srv.Env(), root: srv.URL("tree"), prefix: "tree/",
		client: srv.Client(), hashed: map[string]string{}}
	var err error
	b.st, err = s3store.Open(ctx, b.root, s3store.Options{Endpoint: srv.Endpoint, Region: s3test.Region, Credentials: srv.Credentials()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pools := &bucketPools{crashPools: crashPools{dir: dir, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6275636b6574))}, b: b}
	rng := pools.rng
	pools.addBatch(t)

	// The first publish makes the prefix a tree; a heron tag is timed.
	first := b.run([]string{"publish", pools.images[0].source, "--root", b.root, "--to", "s3/r00:t0"}, -1)
	if first.err != nil {
		t.Fatalf("%s: %v\n%s", first, first.err, &first.stderr)
	}
	pools.images[0].complete = true
	tagTook := b.run([]string{"tag", "--root", b.root, "s3/r00:t0", "t1"}, -1)
	if tagTook.err != nil {
		t.Fatalf("%s: %v\n%s", tagTook, tagTook.err, &tagTook.stderr)
	}
	estimates := map[string]time.Duration{kindTag: tagTook.took}

	snap := b.settle()
	state, problems := b.check(snap, nil)
	if len(problems) > 0 {
		t.Fatalf("after the first publish: %s", strings.Join(problems, "\n"))
	}

	aimAt := map[string]float64{} // by kind of run: the fraction of its estimate the aimed delays centre on
	lastKilled := map[string]bool{}
	mayLag := func(repo string) bool { return lastKilled[repo] }
	phases := map[string]int{}
	byKind := map[string]map[string]int{} // kind → phase → kills
	attemptsBy, killsBy := map[string]int{}, map[string]int{}
	var killed, attempts, raced, reruns, maxLagging, maxUploads int
	var spentCheck, spentRerun time.Duration

	for ; killed < kills; attempts++ {
		if time.Since(start) > budget || attempts >= 4*kills {
			t.Fatalf("%d runs were killed in %s and %d attempts, fewer than the %d wanted (time budget HERON_CRASH_BUDGET=%s)",
				killed, time.Since(start).Round(time.Second), attempts, kills, budget)
		}
		run := &bucketRun{}
		switch k := rng.IntN(10); {
		case k < 6:
			run.kind = kindPublish
			img := pools.pick(t)
			run.images = []*crashImage{img}
			run.args = []string{"publish", img.source, "--root", b.root}
			for range 1 + rng.IntN(4)/3 { // a second target one time in four
				repo, tag := fmt.Sprintf("s3/r%02d", rng.IntN(10)), fmt.Sprintf("t%d", rng.IntN(4))
				run.aim(repo, tag, img.digest)
				run.args = append(run.args, "--to", repo+":"+tag)
			}
			run.estimate = img.took
		case k < 8:
			run.kind = kindBatch
			type batchRepo struct {
				Name string            `json:"name"`
				Tags map[string]string `json:"tags"`
			}
			var file struct {
				Repositories []batchRepo `json:"repositories"`
			}
			bySource := map[string]*crashImage{}
			for _, i := range rng.Perm(6)[:2+rng.IntN(2)] {
				br := batchRepo{Name: fmt.Sprintf("s3/b%d", i), Tags: map[string]string{}}
				for range 1 + rng.IntN(2) {
					img := pools.pick(t)
					tag := fmt.Sprintf("t%d", rng.IntN(4))
					br.Tags[tag] = img.source // a tag picked twice keeps the last
					bySource[img.source] = img
					run.aim(br.Name, tag, img.digest)
				}
				file.Repositories = append(file.Repositories, br)
			}
			seen := map[*crashImage]bool{}
			for _, br := range file.Repositories {
				for _, tag := range slices.Sorted(maps.Keys(br.Tags)) {
					if img := bySource[br.Tags[tag]]; !seen[img] {
						seen[img] = true
						run.images = append(run.images, img)
					}
				}
			}
			// A batch reads each source once, then writes each
			// repository file and the catalog: about the time of its
			// slowest image and half of the others'.
			var slowest, sum time.Duration
			for _, img := range run.images {
				slowest = max(slowest, img.took)
				sum += img.took
			}
			run.estimate = slowest + (sum-slowest)/2
			if e, ok := estimates[kindBatch]; ok && rng.IntN(2) == 0 {
				run.estimate = e
			}
			raw, err := json.Marshal(file)
			if err != nil {
				t.Fatal(err)
			}
			bf := filepath.Join(dir, fmt.Sprintf("batch-%d.json", attempts))
			if err := os.WriteFile(bf, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			run.args = []string{"publish", "--root", b.root, "--batch", bf}
		default:
			run.kind = kindTag
			var tagged []string
			for name, r := range state.repos {
				if len(r.Tags) > 0 {
					tagged = append(tagged, name)
				}
			}
			slices.Sort(tagged)
			repo := tagged[rng.IntN(len(tagged))]
			tags := slices.Sorted(maps.Keys(state.repos[repo].Tags))
			from := tags[rng.IntN(len(tags))]
			run.args = []string{"tag", "--root", b.root, repo + ":" + from}
			for j := range 1 + rng.IntN(3) {
				tag := fmt.Sprintf("g%d-%d", attempts, j)
				run.aim(repo, tag, state.repos[repo].Tags[from])
				run.args = append(run.args, tag)
			}
			run.estimate = estimates[kindTag]
		}
		attemptsBy[run.kind]++
		// A third of the delays are drawn up to 1.1 times the estimate;
		// the others home in on the end of the run, where it commits
		// its blobs and writes the repository files and the catalog
		// (before that nothing is visible in a bucket): later after a
		// kill that came before those, earlier after a run that had
		// exited.
		delay := time.Duration(rng.Int64N(int64(run.estimate)*11/10 + 1))
		aimKey := ""
		if rng.IntN(3) != 0 {
			aimKey = run.kind
			for _, img := range run.images {
				if !img.complete {
					aimKey += " (copying)"
					break
				}
			}
			if _, ok := aimAt[aimKey]; !ok {
				aimAt[aimKey] = 0.9
			}
			frac := min(max(aimAt[aimKey]+(rng.Float64()-0.5)*0.3, 0.05), 1.5)
			delay = time.Duration(float64(run.estimate) * frac)
		}

		// One run in four, two other publishes (not killed) race it into
		// one of the same repositories, each under a tag of its own: they
		// must succeed, and their tags must be there. They publish images
		// whose content is in the tree when there are such (they only
		// edit the repository), start together, and so that they end
		// when the run would: their edits of the repository file and of
		// the catalog overlap, each other's and the run's.
		type racer struct {
			img *crashImage
			tag string
			run *publishRun
		}
		var racers []*racer
		racedRepo := ""
		if rng.IntN(4) == 0 {
			var done []*crashImage
			for _, img := range pools.images {
				if img.complete {
					done = append(done, img)
				}
			}
			if len(done) == 0 {
				done = pools.images
			}
			racedRepo = slices.Sorted(maps.Keys(run.aimed))[0]
			for i := range 2 {
				racers = append(racers, &racer{img: done[rng.IntN(len(done))], tag: fmt.Sprintf("c%d-%d", attempts, i)})
			}
		}
		allowed := map[string]map[string]digest.Digest{}
		for repo, tags := range run.aimed {
			allowed[repo] = maps.Clone(tags)
		}
		var racersDelay time.Duration
		for _, rc := range racers {
			allowed[racedRepo][rc.tag] = rc.img.digest
			racersDelay = max(racersDelay, run.estimate-rc.img.took)
		}

		before := snap
		var cwg sync.WaitGroup
		for _, rc := range racers {
			cwg.Go(func() {
				time.Sleep(racersDelay)
				rc.run = b.run([]string{"publish", rc.img.source, "--root", b.root, "--to", racedRepo + ":" + rc.tag}, -1)
			})
		}
		r := b.run(run.args, delay)
		cwg.Wait()
		what := fmt.Sprintf("attempt %d (seed %d): %s, SIGKILL after %s", attempts+1, seed, r, delay.Round(time.Microsecond))
		if r.err != nil {
			t.Fatalf("%s: it failed on its own: %v\n%s", what, r.err, &r.stderr)
		}
		for repo := range run.aimed {
			lastKilled[repo] = r.killed
		}
		for _, rc := range racers {
			what += ", alongside " + rc.run.String()
		}
		for _, rc := range racers {
			if rc.run.err != nil {
				t.Fatalf("%s: the racing %s failed: %v\n%s", what, rc.run, rc.run.err, &rc.run.stderr)
			}
			rc.img.complete = true
		}
		if len(racers) > 0 {
			lastKilled[racedRepo] = false
			raced++
		}

		t0 := time.Now()
		snap = b.settle()
		prev := state
		state, problems = b.check(snap, mayLag)
		problems = append(problems, checkTagsKept(prev.repos, state.repos, allowed)...)
		for _, rc := range racers {
			if rp := state.repos[racedRepo]; rp == nil || rp.Tags[rc.tag] != rc.img.digest {
				problems = append(problems, fmt.Sprintf("a racing publish's update was lost: %s:%s is not %s", racedRepo, rc.tag, rc.img.digest))
			}
		}
		spentCheck += time.Since(t0)
		maxLagging = max(maxLagging, len(state.lagging))
		maxUploads = max(maxUploads, len(snap.uploads))

		phase := s3PhaseDone
		switch {
		case r.killed && len(racers) > 0:
			phase = s3PhaseConcurrent
		case r.killed:
			phase = bucketPhase(before, snap)
		case len(racers) == 0:
			// Unkilled and alone: how long it takes now (an image
			// whose content is there only edits repositories).
			switch run.kind {
			case kindPublish:
				run.images[0].took = r.took
			default:
				estimates[run.kind] = r.took
			}
		}
		if aimKey != "" && len(racers) == 0 {
			switch phase {
			case s3PhaseBefore, s3PhaseStage, s3PhaseCommit:
				aimAt[aimKey] = min(aimAt[aimKey]+0.06, 1.4)
			case s3PhaseDone:
				aimAt[aimKey] = max(aimAt[aimKey]-0.06, 0.1)
			}
		}
		phases[phase]++
		if r.killed {
			killed++
			killsBy[run.kind]++
			if byKind[run.kind] == nil {
				byKind[run.kind] = map[string]int{}
			}
			byKind[run.kind][phase]++
		}
		if len(problems) > 0 {
			t.Fatalf("%s, in phase %q: %d problem(s):\n%s", what, phase, len(problems), strings.Join(problems, "\n"))
		}
		if !r.killed {
			for _, img := range run.images {
				img.complete = true
			}
			continue
		}

		// The killed command, run again, succeeds and gives the tags it
		// aimed at, in repositories that are in the catalog.
		t0 = time.Now()
		again := b.run(run.args, -1)
		reruns++
		if again.err != nil {
			t.Fatalf("%s (%s): running it again failed: %v\n%s", what, phase, again.err, &again.stderr)
		}
		for repo := range run.aimed {
			lastKilled[repo] = false
		}
		for _, img := range run.images {
			img.complete = true
		}
		snap = b.settle()
		prev = state
		state, problems = b.check(snap, mayLag)
		problems = append(problems, checkTagsKept(prev.repos, state.repos, run.aimed)...)
		for repo, tags := range run.aimed {
			for tag, d := range tags {
				if got := state.repos[repo]; got == nil || got.Tags[tag] != d {
					problems = append(problems, fmt.Sprintf("%s:%s is not %s after the run again", repo, tag, d))
				}
			}
		}
		spentRerun += time.Since(t0)
		if len(problems) > 0 {
			t.Fatalf("%s (%s), then run again: %d problem(s):\n%s", what, phase, len(problems), strings.Join(problems, "\n"))
		}
	}
	uploadsBeforeGC := len(snap.uploads)

	// heron gc --grace 0s deletes the blobs no repository lists (and
	// lists what lags behind in the catalog). The bucket's clock counts
	// whole seconds: what was written in the last one may look younger
	// than the cutoff.
	time.Sleep(1100 * time.Millisecond)
	out, err := heronWithEnv(b.env, "gc", "--root", b.root, "--grace", "0s", "-o", "json").Output()
	if err != nil {
		t.Fatalf("heron gc --grace 0s: %v\n%s", err, out)
	}
	var gc publish.GCResult
	if err := json.Unmarshal(out, &gc); err != nil {
		t.Fatalf("heron gc -o json: %v\n%s", err, out)
	}
	gcKinds := map[string]int{}
	for _, d := range gc.Deleted {
		gcKinds[d.Kind]++
	}
	snap = b.settle()
	after, problems := b.check(snap, nil)
	if after.report.Unreferenced != 0 {
		problems = append(problems, fmt.Sprintf("%d blobs no repository lists are left after heron gc --grace 0s", after.report.Unreferenced))
	}
	problems = append(problems, checkTagsKept(state.repos, after.repos, nil)...)
	// And heron verify --deep itself, from the command line, with the
	// environment that points it at the bucket: every blob hashed.
	var stdout, stderr strings.Builder
	cmd := heronWithEnv(b.env, "verify", "--deep", "--root", b.root, "-o", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	verr := cmd.Run()
	var vrep publish.VerifyReport
	if err := json.Unmarshal([]byte(stdout.String()), &vrep); err != nil || verr != nil {
		problems = append(problems, fmt.Sprintf("heron verify --deep: %v %v\n%s%s", verr, err, &stdout, &stderr))
	} else if len(vrep.Problems) > 0 || len(vrep.Unlisted) > 0 || vrep.Unreferenced != 0 {
		problems = append(problems, fmt.Sprintf("heron verify --deep after heron gc: %s", &stdout))
	}
	if len(problems) > 0 {
		t.Fatalf("after heron gc --grace 0s: %s", strings.Join(problems, "\n"))
	}

	var lines []string
	for _, p := range s3PhaseOrder {
		var per []string
		for _, k := range runKinds {
			if n := byKind[k][p]; n > 0 {
				per = append(per, fmt.Sprintf("%d %s", n, k))
			}
		}
		if p == s3PhaseDone {
			per = nil
		}
		line := fmt.Sprintf("  %4d  %s", phases[p], p)
		if len(per) > 0 {
			line += ": " + strings.Join(per, ", ")
		}
		lines = append(lines, line)
	}
	var kinds []string
	for _, k := range runKinds {
		kinds = append(kinds, fmt.Sprintf("%s %d killed of %d", k, killsBy[k], attemptsBy[k]))
	}
	var deleted []string
	for _, k := range slices.Sorted(maps.Keys(gcKinds)) {
		deleted = append(deleted, fmt.Sprintf("%d %s", gcKinds[k], k))
	}
	fmt.Printf("crash (s3): %d runs, %d killed (%s); %d raced by two other publishes into the same repository; seed %d, %s\n"+
		"crash (s3): %d images in %d batches, %.1f MiB, generated and timed in %s; after each run and each run again: heron's VerifyTree over store/s3 and every blob object hashed (%.1f MiB read)\n"+
		"crash (s3): what each run had done when it was killed:\n%s\n"+
		"crash (s3): every killed run was run again and gave its tags (%d runs again, %s); the checks took %s\n"+
		"crash (s3): repositories served but missing from the catalog (the last run into each was killed before the catalog): %d at most; incomplete multipart uploads in the bucket: %d at most\n"+
		"crash (s3): heron gc --grace 0s deleted %d objects (%s), listed %d repositories; heron verify --deep then passed (%d repositories, %d manifests, %d blobs)\n"+
		"crash (s3): %d kills survived, %d incomplete multipart uploads left (expected: a bucket lifecycle rule aborts them)\n",
		attempts, killed, strings.Join(kinds, ", "), raced, seed, time.Since(start).Round(time.Second),
		len(pools.images), pools.batches, float64(pools.bytes)/(1<<20), pools.took.Round(time.Millisecond), float64(b.hashedBytes)/(1<<20),
		strings.Join(lines, "\n"),
		reruns, spentRerun.Round(time.Millisecond), spentCheck.Round(time.Millisecond),
		maxLagging, maxUploads,
		len(gc.Deleted), strings.Join(deleted, ", "), len(gc.Listed), vrep.Repositories, vrep.Manifests, vrep.Blobs,
		killed, uploadsBeforeGC)
	t.Logf("where the aimed delays ended, as fractions of the estimates: %v", aimAt)
	if len(snap.uploads) != uploadsBeforeGC {
		t.Logf("heron gc changed the incomplete multipart uploads: %d before, %d after", uploadsBeforeGC, len(snap.uploads))
	}
}

// heronWithEnv is heron(args...) with env added to its environment.
func heronWithEnv(env []string, args ...string) *exec.Cmd {
	cmd := heron(args...)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}
