//go:build reliability

package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// crashPool is the images the crash test publishes: small ones, medium
// ones with a layer of a few MiB, large ones with a layer of 6 to 10 MiB
// (so that kills land in the middle of a copy), and image indexes.
func crashPool(rng *rand.Rand, prefix string) []imageSpec {
	kib := func(lo, hi int) int64 { return int64(lo+rng.IntN(hi-lo+1)) << 10 }
	var specs []imageSpec
	for i := range 10 {
		layers := make([]int64, 1+rng.IntN(3))
		for j := range layers {
			layers[j] = kib(1, 512)
		}
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%ssmall-%d", prefix, i), layers: layers})
	}
	for i := range 6 {
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%smedium-%d", prefix, i), layers: []int64{kib(16, 256), kib(1024, 3072), kib(1, 64)}})
	}
	for i := range 4 {
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%slarge-%d", prefix, i), layers: []int64{kib(6144, 10240), kib(1, 128)}})
	}
	for i := range 4 {
		children := make([][]int64, 2+rng.IntN(2))
		for j := range children {
			children[j] = []int64{kib(64, 1024), kib(1, 64)}
		}
		specs = append(specs, imageSpec{ref: fmt.Sprintf("%sindex-%d", prefix, i), children: children})
	}
	return specs
}

// publishRun is one `heron publish` (or other heron command) the test
// started.
type publishRun struct {
	args   []string
	stderr strings.Builder
	took   time.Duration
	// killed is true when SIGKILL ended it; false when it had exited on
	// its own (err then tells how).
	killed bool
	err    error
}

// staleFor is how long after a kill the test waits before it asks the
// server again when its answers did not match the tree: a server trusts
// the change counter, and answers from what it cached, for a second at
// most (docs/layout.md), and a writer killed between a change and its
// increment of the counter never tells it.
const staleFor = 1100 * time.Millisecond

// publishTimeout bounds a publish that is not to be killed: one that has
// not finished by then (waiting for a lock a dead process held, say) is
// killed and fails the test.
const publishTimeout = 2 * time.Minute

// runPublish runs heron publish with args and, when killAfter >= 0, sends
// SIGKILL to its PID after that long.
func runPublish(args []string, killAfter time.Duration) *publishRun {
	return runHeron(append([]string{"publish"}, args...), nil, killAfter)
}

// runHeron runs heron with args (the command first), with env added to its
// environment, and, when killAfter >= 0, sends SIGKILL to its PID after
// that long.
func runHeron(args, env []string, killAfter time.Duration) *publishRun {
	r := &publishRun{args: args}
	cmd := heron(args...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = &r.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.err = err
		return r
	}
	if killAfter >= 0 {
		time.Sleep(killAfter)
		_ = cmd.Process.Kill()
	} else {
		watchdog := time.AfterFunc(publishTimeout, func() { _ = cmd.Process.Kill() })
		defer watchdog.Stop()
	}
	err := cmd.Wait()
	r.took = time.Since(start)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			r.killed = true
			if killAfter < 0 {
				r.killed = false
				r.err = fmt.Errorf("still running after %s: killed", publishTimeout)
			}
			return r
		}
	}
	r.err = err
	return r
}

func (r *publishRun) String() string {
	return "heron " + strings.Join(r.args, " ")
}

// verifyTree runs `heron verify --deep --root tree` if the binary has it,
// and returns an error with its output when it finds a problem.
//
// A repository killed between its repository file and the catalog step is
// served but not listed by /v2/_catalog yet: publish writes the repository
// file first so that the catalog never names a repository that does not
// exist. heron verify reports such repositories apart from its problems
// (as "unlisted"; heron gc lists them). They are counted and returned as
// lags when mayLag(X) is true for each of them (its last publish was
// killed); an unlisted repository whose last publish was not killed, or any
// problem, fails. docs/reliability.md discusses it. It also returns the
// shard files of repositories that no repository file names (left by a
// killed publish: not a problem; heron gc deletes them).
func verifyTree(tree string, mayLag func(repo string) bool) (verifyCounts, error) {
	var vc verifyCounts
	if !hasVerify {
		return vc, nil
	}
	var stdout, stderr strings.Builder
	cmd := heron("verify", "--deep", "--root", tree, "-o", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep struct {
		Problems []struct {
			Key     string `json:"key"`
			Message string `json:"problem"`
		} `json:"problems"`
		Unlisted                []string `json:"unlisted"`
		UnnamedRepositoryShards int      `json:"unnamedRepositoryShards"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		return vc, fmt.Errorf("heron verify --deep -o json: %v (%v)\n%s%s", runErr, err, &stdout, &stderr)
	}
	vc.unnamedShards = rep.UnnamedRepositoryShards
	var other []string
	for _, p := range rep.Problems {
		other = append(other, p.Key+": "+p.Message)
	}
	for _, name := range rep.Unlisted {
		if mayLag != nil && mayLag(name) {
			vc.lags++
			continue
		}
		other = append(other, "repository "+name+" is not in the catalog, and its last publish was not killed")
	}
	switch {
	case len(other) > 0:
		return vc, fmt.Errorf("heron verify --deep: %d problem(s):\n%s", len(other), strings.Join(other, "\n"))
	case runErr != nil:
		return vc, fmt.Errorf("heron verify --deep: %v\n%s", runErr, &stderr)
	}
	return vc, nil
}

// verifyCounts are what heron verify counted besides problems.
type verifyCounts struct {
	lags          int // repositories not in the catalog yet, whose last publish was killed
	unnamedShards int // unnamedRepositoryShards
}

// crashImage is one image of the crash test's pool.
type crashImage struct {
	source string // oci:DIR:REF
	ref    string
	digest digest.Digest
	// took is how long its last publish that ran to the end took: the
	// kill delays are drawn up to 1.1 times that.
	took time.Duration
	// complete is set once all its content is in the tree (a publish of
	// it ran to the end, or was killed after its blobs were in place);
	// publishing it again only writes repository files.
	complete bool
}

// crashPools generates the crash test's images, a batch of 24 at a time:
// once every image of the pool is in the tree, a new batch brings fresh
// content, so that kills keep landing while blobs are copied.
type crashPools struct {
	dir     string
	seed    uint64
	rng     *rand.Rand
	images  []*crashImage
	batches int
	bytes   int64
}

// addBatch generates a batch of images and times a publish of each into a
// scratch tree, where it writes everything.
func (p *crashPools) addBatch(t *testing.T) {
	t.Helper()
	p.batches++
	src := filepath.Join(p.dir, fmt.Sprintf("src-%d", p.batches))
	specs := crashPool(p.rng, fmt.Sprintf("b%d-", p.batches))
	pool, err := generateLayout(src, p.seed+uint64(p.batches), specs)
	if err != nil {
		t.Fatal(err)
	}
	scratch := filepath.Join(p.dir, "scratch")
	defer os.RemoveAll(scratch)
	for _, s := range specs {
		img := &crashImage{source: "oci:" + src + ":" + s.ref, ref: s.ref, digest: pool[s.ref].digest}
		r := runPublish([]string{img.source, "--root", scratch, "--to", "calibrate:latest"}, -1)
		if r.err != nil {
			t.Fatalf("%s: %v\n%s", r, r.err, &r.stderr)
		}
		img.took = r.took
		p.images = append(p.images, img)
		p.bytes += pool[s.ref].total()
	}
}

// pick returns an image to publish: one whose content is not all in the
// tree yet three times in four (a new batch when there is none left), any
// image otherwise.
func (p *crashPools) pick(t *testing.T) *crashImage {
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

// pickComplete returns an image whose content is all in the tree (a
// publish of it only edits repositories), or pick's when there is none.
func (p *crashPools) pickComplete(t *testing.T) *crashImage {
	var done []*crashImage
	for _, img := range p.images {
		if img.complete {
			done = append(done, img)
		}
	}
	if len(done) == 0 {
		return p.pick(t)
	}
	return done[p.rng.IntN(len(done))]
}

// TestCrash kills heron publish at random moments until HERON_CRASH_KILLS
// publishes (100 by default, 20 with -short) were killed before they
// finished, and checks the tree and what a server over it answers after
// each kill. One publish in five runs alongside another, unkilled, publish
// into the same repository, which must succeed with its update kept. Two
// in five go into a sharded repository (sharded_test.go): to split a
// full tag shard, to move a tag, to add a tag at the end, or to add an
// image's manifests and blobs to manifest and blob shards. After every
// publish, no tag and no manifest may be lost, every shard file a
// repository file names must be there and verify, and heron verify must
// count the shard files none names as the test does.
// After the kills every image is published again, and heron gc --grace 0
// must delete the leftovers and nothing else. HERON_CRASH_SEED replays a
// run's choices (images, targets and delays; not the timing of the
// machine); HERON_CRASH_BUDGET (5m) bounds its time.
func TestCrash(t *testing.T) {
	kills := envInt(t, "HERON_CRASH_KILLS", 100)
	if testing.Short() && os.Getenv("HERON_CRASH_KILLS") == "" {
		kills = 20
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERON_CRASH_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("HERON_CRASH_SEED=%q: %v", s, err)
		}
	}
	budget := envDuration(t, "HERON_CRASH_BUDGET", 5*time.Minute)
	t.Logf("seed %d: rerun with HERON_CRASH_SEED=%d HERON_CRASH_KILLS=%d", seed, seed, kills)
	start := time.Now()

	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	pools := &crashPools{dir: dir, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x6865726f6e))}
	rng := pools.rng
	pools.addBatch(t)

	first := runPublish([]string{pools.images[0].source, "--root", tree, "--to", "crash/r00:t0"}, -1)
	if first.err != nil {
		t.Fatalf("%s: %v\n%s", first, first.err, &first.stderr)
	}
	pools.images[0].complete = true
	bigTook := setupSharded(t, tree, dir, seed, pools.images[0])
	srv := startServe(t, "heron serve", tree)
	var httpCounts counts
	hc := newClient(&httpCounts)
	checked, memo := checkedBlobs{}, newSweepMemo()

	// lastKilled tells, per repository, whether the last publish to it
	// was killed: only such a repository may be missing from the catalog
	// (a kill between its repository file and the catalog).
	lastKilled := map[string]bool{}
	phases := map[string]int{}
	maxTemps, lagging, maxLagging, verifyLags := 0, 0, 0, 0
	killed, attempts := 0, 0
	sh := newShardedStats()
	// spent is the time the checks after each publish took: heron
	// verify, the test's own check of the files, the requests to heron
	// serve.
	var spent [3]time.Duration
	// staleSweeps counts the kills after which the server answered from
	// the repository file it had cached, and right a second later.
	staleSweeps := 0
	// aimAt is where in a publish into a sharded repository the kills
	// aim, as a fraction of how long such a publish takes.
	aimAt := map[string]float64{}
	st, found, err := checkTree(tree, checked)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Fatalf("after setting up the sharded repositories: %s", strings.Join(found, "\n"))
	}
	for ; killed < kills; attempts++ {
		if time.Since(start) > budget || attempts >= 4*kills {
			t.Fatalf("%d publishes were killed in %s and %d attempts, fewer than the %d wanted (time budget HERON_CRASH_BUDGET=%s)",
				killed, time.Since(start).Round(time.Second), attempts, kills, budget)
		}
		img := pools.pick(t)
		args := []string{img.source, "--root", tree}
		touched := map[string]bool{}
		aimed := map[string][]string{}
		ordinary := 1 + rng.IntN(4)/3 // a second target one time in four
		// Two times in five, the first target is a sharded repository, and
		// three in four of those publish an image whose content is in the
		// tree, so that the kill lands in the edit of the repository and
		// its shards.
		var op, bigRepo string
		if rng.IntN(5) < 2 {
			var tag string
			var filled bool
			bigRepo, tag, op, filled = aimSharded(t, rng, tree, attempts)
			if filled {
				sh.fills++
				if st, found, err = checkTree(tree, checked); err != nil || len(found) > 0 {
					t.Fatalf("after filling a shard of %s up: %v %s", tagsRepo, err, strings.Join(found, "\n"))
				}
			}
			if rng.IntN(4) != 0 {
				img = pools.pickComplete(t)
				args[0] = img.source
			}
			touched[bigRepo] = true
			aimed[bigRepo] = append(aimed[bigRepo], tag)
			args = append(args, "--to", bigRepo+":"+tag)
			ordinary--
			sh.attempts[op]++
		}
		for range ordinary {
			repo := fmt.Sprintf("crash/r%02d", rng.IntN(32))
			tag := fmt.Sprintf("t%d", rng.IntN(4))
			touched[repo] = true
			aimed[repo] = append(aimed[repo], tag)
			args = append(args, "--to", repo+":"+tag)
		}
		wasComplete := img.complete
		delay := time.Duration(rng.Int64N(int64(img.took) * 11 / 10))
		aimKey := ""
		if bigRepo != "" {
			// The edit of a sharded repository comes last, after the copy
			// (none when the content is there): the delay homes in on it,
			// later when the kills land before it, earlier when the
			// publish is done before them.
			base := bigTook[bigRepo]
			aimKey = bigRepo
			if !img.complete {
				base += img.took
				aimKey += " (copying)"
			}
			if _, ok := aimAt[aimKey]; !ok {
				aimAt[aimKey] = 0.8
			}
			frac := min(max(aimAt[aimKey]+(rng.Float64()-0.5)*0.2, 0.02), 1.3)
			delay = time.Duration(float64(base) * frac)
		}
		// One time in five, another publish (not killed) runs at the same
		// time into one of the same repositories, under a tag of its own:
		// the kill must not block it (a lock the dead process held) nor
		// lose its update.
		var companion *crashImage
		var companionRepo, companionTag string
		if rng.IntN(5) == 0 {
			companion = pools.images[rng.IntN(len(pools.images))]
			companionRepo = slices.Sorted(maps.Keys(touched))[0]
			companionTag = fmt.Sprintf("c%d", attempts)
		}

		before, err := takeSnapshot(tree)
		if err != nil {
			t.Fatal(err)
		}
		var crun *publishRun
		var cwg sync.WaitGroup
		if companion != nil {
			cwg.Add(1)
			go func() {
				defer cwg.Done()
				crun = runPublish([]string{companion.source, "--root", tree, "--to", companionRepo + ":" + companionTag}, -1)
			}()
		}
		run := runPublish(args, delay)
		cwg.Wait()
		what := fmt.Sprintf("attempt %d (seed %d): %s, SIGKILL after %s", attempts+1, seed, run, delay.Round(time.Microsecond))
		if run.err != nil {
			t.Fatalf("%s: it failed on its own: %v\n%s", what, run.err, &run.stderr)
		}
		for r := range touched {
			lastKilled[r] = run.killed
		}
		if crun != nil {
			what += fmt.Sprintf(", alongside %s", crun)
			if crun.err != nil {
				t.Fatalf("%s: the concurrent publish failed: %v\n%s", what, crun.err, &crun.stderr)
			}
			lastKilled[companionRepo] = false
		}

		var problems []string
		t0 := time.Now()
		vc, err := verifyTree(tree, func(repo string) bool { return lastKilled[repo] })
		spent[0] += time.Since(t0)
		if err != nil {
			problems = append(problems, err.Error())
		}
		if vc.lags > 0 {
			verifyLags++
		}
		prev := st
		t0 = time.Now()
		st, found, err = checkTree(tree, checked)
		spent[1] += time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		problems = append(problems, found...)
		if hasVerify && err == nil && vc.unnamedShards != st.unnamed {
			problems = append(problems, fmt.Sprintf("heron verify counts %d shard files no repository file names, the test's own check %d", vc.unnamedShards, st.unnamed))
		}
		sh.maxUnnamed = max(sh.maxUnnamed, st.unnamed)
		var companionDigest digest.Digest
		if companion != nil {
			companionDigest = companion.digest
		}
		problems = append(problems, checkNoLoss(prev, st, aimed, img.digest, companionRepo, companionTag, companionDigest)...)
		sh.countSplits(prev, st)
		if crun != nil {
			if r, ok := st.repos[companionRepo]; !ok || r.Tags[companionTag] != companion.digest {
				problems = append(problems, fmt.Sprintf("the concurrent publish's update was lost: %s:%s is not %s", companionRepo, companionTag, companion.digest))
			}
		}
		inCatalog := map[string]bool{}
		for _, n := range st.catalog {
			inCatalog[n] = true
		}
		lagging = 0
		for n := range st.repos {
			if !inCatalog[n] {
				lagging++
				if !lastKilled[n] {
					problems = append(problems, fmt.Sprintf("repository %s is not in the catalog, and its last publish was not killed", n))
				}
			}
		}
		maxLagging = max(maxLagging, lagging)

		// Ask the server for every repository this publish touched, and
		// for all of them, every entry of every shard, every tenth time.
		only := touched
		memo.skipUnchanged = attempts%10 != 0
		if !memo.skipUnchanged {
			only = nil
		}
		t0 = time.Now()
		answers := sweep(hc, &httpCounts, srv.base(), st, memo, only)
		if len(answers) > 0 && run.killed {
			// A publish killed after it renamed a repository file into
			// place but before it incremented the change counter leaves
			// servers answering from the file they cached for up to a
			// second (docs/layout.md, .heron/changes): what they answer
			// then must be right.
			time.Sleep(staleFor)
			stale := answers
			answers = sweep(hc, &httpCounts, srv.base(), st, memo, only)
			if len(answers) == 0 {
				staleSweeps++
				t.Logf("%s: heron serve answered from its cache, and right %s later:\n%s", what, staleFor, strings.Join(stale, "\n"))
			}
		}
		problems = append(problems, answers...)
		spent[2] += time.Since(t0)

		phase := phaseDone
		switch {
		case run.killed && crun != nil:
			// What changed is both publishes' doing: no phase can be told.
			phase = phaseConcurrent
			killed++
		case run.killed:
			phase = phaseOf(before, st, prev.named)
			killed++
		case crun == nil && bigRepo != "" && wasComplete:
			bigTook[bigRepo] = run.took
		case crun == nil && bigRepo == "":
			img.took = run.took
		}
		if run.killed && bigRepo != "" {
			sh.kills[op]++
			if sh.phases[op] == nil {
				sh.phases[op] = map[string]int{}
			}
			sh.phases[op][phase]++
		}
		if aimKey != "" && crun == nil {
			switch phase {
			case phaseBefore, phaseCopy, phaseRename:
				aimAt[aimKey] = min(aimAt[aimKey]+0.03, 1.2)
			case phaseDone:
				aimAt[aimKey] = max(aimAt[aimKey]-0.03, 0.1)
			}
		}
		if phase == phaseDone || phase == phaseShards || phase == phaseRepository || phase == phaseDropShards || phase == phaseCatalog {
			img.complete = true
		}
		if crun != nil {
			companion.complete = true
		}
		phases[phase]++
		maxTemps = max(maxTemps, st.temps)
		if len(problems) > 0 {
			t.Fatalf("%s, in phase %q: %d problem(s):\n%s", what, phase, len(problems), strings.Join(problems, "\n"))
		}
	}

	// The tree is still usable: publishing every image again, with no
	// kill, succeeds, and everything is served whole.
	for _, img := range pools.images {
		r := runPublish([]string{img.source, "--root", tree, "--to", "crash/final:" + img.ref}, -1)
		if r.err != nil {
			t.Fatalf("after the kills, %s: %v\n%s", r, r.err, &r.stderr)
		}
	}
	if _, err := verifyTree(tree, func(repo string) bool { return lastKilled[repo] }); err != nil {
		t.Fatal(err)
	}
	st, problems, err := checkTree(tree, checkedBlobs{})
	if err != nil {
		t.Fatal(err)
	}
	endTemps := st.temps
	problems = append(problems, sweep(hc, &httpCounts, srv.base(), st, newSweepMemo(), nil)...)
	if len(problems) > 0 {
		t.Fatalf("after the kills and a publish of every image: %s", strings.Join(problems, "\n"))
	}

	// heron gc deletes what the kills left (temporary files, blobs no
	// repository lists), and only that: everything is still served.
	gcDeleted := "no heron gc"
	if hasGC {
		out, err := heron("gc", "--root", tree, "--grace", "0", "-o", "json").Output()
		if err != nil {
			t.Fatalf("heron gc --grace 0: %v\n%s", err, out)
		}
		var res struct {
			Deleted []struct {
				Key  string `json:"key"`
				Kind string `json:"kind"`
			} `json:"deleted"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("heron gc -o json: %v\n%s", err, out)
		}
		kinds := map[string]int{}
		for _, d := range res.Deleted {
			kinds[d.Kind]++
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(kinds)) {
			parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
		}
		gcDeleted = fmt.Sprintf("deleted %d files (%s)", len(res.Deleted), strings.Join(parts, ", "))
		// gc lists what the kills left unlisted: nothing may lag now.
		if _, err := verifyTree(tree, nil); err != nil {
			t.Fatalf("after heron gc: %v", err)
		}
		after, problems, err := checkTree(tree, checkedBlobs{})
		if err != nil {
			t.Fatal(err)
		}
		if after.temps > 0 {
			problems = append(problems, fmt.Sprintf("%d temporary files left after heron gc --grace 0", after.temps))
		}
		if after.unnamed > 0 {
			problems = append(problems, fmt.Sprintf("%d shard files no repository file names left after heron gc --grace 0", after.unnamed))
		}
		st = after
		problems = append(problems, sweep(hc, &httpCounts, srv.base(), after, newSweepMemo(), nil)...)
		if len(problems) > 0 {
			t.Fatalf("after heron gc: %s", strings.Join(problems, "\n"))
		}
	}
	if lines := srv.errorLines(); len(lines) > 0 {
		t.Errorf("heron serve logged %d warning(s) or error(s):\n%s", len(lines), strings.Join(lines, "\n"))
	}

	var lines []string
	for _, p := range phaseOrder {
		lines = append(lines, fmt.Sprintf("  %4d  %s", phases[p], p))
	}
	verified := "the test's own check of every file"
	if hasVerify {
		verified = "heron verify --deep and the test's own check of every file"
	}
	fmt.Printf("crash: %d kills survived in %d publishes (%d had finished before their SIGKILL), seed %d, %s\n"+
		"crash: %d images in %d batches, %.1f MiB; after each publish, checked by %s, and through heron serve: %s\n"+
		"crash: what each publish had done when it was killed:\n%s\n"+
		"crash: temporary files left in the tree: %d at most, %d at the end; heron gc --grace 0 then %s, and everything was still served\n"+
		"crash: repositories served but missing from the catalog (the last publish to each was killed between its repository file and the catalog): "+
		"%d at most, %d at the end; heron verify reported that, and only that, after %d of the publishes\n%s\n"+
		"crash: the checks after the publishes took %s: heron verify --deep %s, the test's own check of every file %s, the requests to heron serve %s; "+
		"after %d kills heron serve answered from the repository file it had cached (the kill came between a repository file and the change counter), and right %s later\n",
		killed, attempts, attempts-killed, seed, time.Since(start).Round(time.Second),
		len(pools.images), pools.batches, float64(pools.bytes)/(1<<20), verified, &httpCounts,
		strings.Join(lines, "\n"), maxTemps, endTemps, gcDeleted, maxLagging, lagging, verifyLags, sh.summary(st),
		(spent[0] + spent[1] + spent[2]).Round(time.Second), spent[0].Round(time.Second), spent[1].Round(time.Second), spent[2].Round(time.Second),
		staleSweeps, staleFor)
}

// TestCrashFirstPublish kills the first publish into an empty folder
// around the moment it writes heron-layout.json, the file that makes the
// folder a tree: the delay homes in on that moment (later when nothing was
// written, earlier when the marker was there). Whatever the kill left, a
// new publish into the folder must succeed and give a consistent tree.
func TestCrashFirstPublish(t *testing.T) {
	kills := envInt(t, "HERON_CRASH_FIRST_KILLS", 40)
	if testing.Short() && os.Getenv("HERON_CRASH_FIRST_KILLS") == "" {
		kills = 10
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERON_CRASH_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("HERON_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d: rerun with HERON_CRASH_SEED=%d", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6669727374))
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if _, err := generateLayout(src, seed, []imageSpec{{ref: "img", layers: []int64{4 << 10, 64 << 10}}}); err != nil {
		t.Fatal(err)
	}
	source := "oci:" + src + ":img"
	cal := runPublish([]string{source, "--root", filepath.Join(dir, "calibrate"), "--to", "first:latest"}, -1)
	if cal.err != nil {
		t.Fatalf("%s: %v\n%s", cal, cal.err, &cal.stderr)
	}

	const jitter = 300 * time.Microsecond
	mid, step := cal.took/2, cal.took/4
	outcomes := map[string]int{}
	for i := range kills {
		root := filepath.Join(dir, fmt.Sprintf("root-%d", i))
		if i%2 == 0 {
			// An empty folder; the odd ones do not exist at all.
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		delay := max(0, mid+time.Duration(rng.Int64N(int64(2*jitter)))-jitter)
		run := runPublish([]string{source, "--root", root, "--to", "first:latest"}, delay)
		what := fmt.Sprintf("kill %d (seed %d): %s, SIGKILL after %s", i+1, seed, run, delay.Round(time.Microsecond))
		if run.err != nil {
			t.Fatalf("%s: it failed on its own: %v\n%s", what, run.err, &run.stderr)
		}
		snap, err := takeSnapshot(root)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		_, marked := snap[layout.LayoutFileKey()]
		var outcome string
		switch {
		case !run.killed:
			outcome = "published before the kill"
			mid -= step
		case marked:
			outcome = "killed after heron-layout.json was written"
			mid -= step
		case len(snap) == 0:
			outcome = "killed before anything was written"
			mid += step
		default:
			outcome = "killed while heron-layout.json was being written (a temporary file left)"
		}
		step = max(step*7/10, 100*time.Microsecond)
		outcomes[outcome]++

		again := runPublish([]string{source, "--root", root, "--to", "first:latest"}, -1)
		if again.err != nil {
			t.Fatalf("%s (%s; the folder held %v): publishing again failed: %v\n%s", what, outcome, keys(snap), again.err, &again.stderr)
		}
		if _, err := verifyTree(root, nil); err != nil {
			t.Fatalf("%s (%s), then published again: %v", what, outcome, err)
		}
		if _, problems, err := checkTree(root, checkedBlobs{}); err != nil || len(problems) > 0 {
			t.Fatalf("%s (%s), then published again: %v %s", what, outcome, err, strings.Join(problems, "\n"))
		}
	}
	var lines []string
	for o, n := range outcomes {
		lines = append(lines, fmt.Sprintf("  %4d  %s", n, o))
	}
	sort.Strings(lines)
	fmt.Printf("crash-first: %d first publishes into an empty folder killed around the write of heron-layout.json (seed %d); each folder was published into again and verified:\n%s\n",
		kills, seed, strings.Join(lines, "\n"))
}

// keys returns the keys of a snapshot, sorted.
func keys(s snapshot) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
