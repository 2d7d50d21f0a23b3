//go:build reliability

package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// The sharded repositories of TestCrash (docs/layout.md, "Large
// repositories: shards"), set up before the kills begin:
//
//   - crash/tags keeps its tags in shards: 2,000 tags, bulk-00000 to
//     bulk-01999, added by one heron tag, which makes two shards of
//     exactly layout.ShardMax tags, so that the next tag added to either
//     splits it; before a publish that is to split a shard and finds none
//     full, the test fills one up with heron tag (not killed);
//   - crash/wide keeps its manifests, blobs and tags in shards: an image
//     index of 1,000 small images, each with a config of its own and one
//     layer they share, is 1,001 manifests and 1,001 blobs, two shards of
//     each, which every image published into it adds to. (Two full shards
//     of each would take 4,000 files, whose checks after every publish
//     would double the test's time; tag shards are split, and the split
//     is the same for every kind.)
const (
	tagsRepo   = "crash/tags"
	wideRepo   = "crash/wide"
	tagsStart  = 2 * layout.ShardMax
	wideImages = layout.InlineMax
)

// What a publish into a sharded repository is aimed at.
const (
	opSplit = "add a tag to a full tag shard of crash/tags (splits it)"
	opMove  = "move a tag of crash/tags, in any shard, to another image"
	opEnd   = "add or move a tag t0-t3 of crash/tags (its last tag shard)"
	opWide  = "publish an image into crash/wide (adds to its manifest, blob and tag shards)"
)

var opOrder = []string{opSplit, opMove, opEnd, opWide}

// bulkTagName is the i-th tag of crash/tags at the start.
func bulkTagName(i int) string { return fmt.Sprintf("bulk-%05d", i) }

// setupSharded creates crash/tags and crash/wide in tree (img is an image
// already in the tree), checks their shards, and returns how long a
// publish of an image whose content is all in the tree takes into each
// (what kill delays are drawn from).
func setupSharded(t *testing.T, tree, dir string, seed uint64, img *crashImage) map[string]time.Duration {
	t.Helper()
	start := time.Now()
	r := runPublish([]string{img.source, "--root", tree, "--to", tagsRepo + ":" + bulkTagName(tagsStart-1)}, -1)
	if r.err != nil {
		t.Fatalf("%s: %v\n%s", r, r.err, &r.stderr)
	}
	args := []string{"tag", "--root", tree, tagsRepo + ":" + bulkTagName(tagsStart-1)}
	for i := range tagsStart - 1 {
		args = append(args, bulkTagName(i))
	}
	if out, err := heron(args...).CombinedOutput(); err != nil {
		t.Fatalf("heron tag %s ... (%d tags): %v\n%.2000s", args[3], len(args)-4, err, out)
	}
	tagged := time.Since(start)

	start = time.Now()
	src := filepath.Join(dir, "wide-src")
	if _, err := generateWideIndex(src, seed, "wide", wideImages); err != nil {
		t.Fatal(err)
	}
	generated := time.Since(start)
	start = time.Now()
	r = runPublish([]string{"oci:" + src + ":wide", "--root", tree, "--to", wideRepo + ":wide"}, -1)
	if r.err != nil {
		t.Fatalf("%s: %v\n%s", r, r.err, &r.stderr)
	}
	published := time.Since(start)
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}

	// Two full tag shards in crash/tags; two shards of 1,001 manifests
	// and blobs in crash/wide, whose one tag is in a shard too (tags are
	// sharded when manifests are).
	half := (wideImages + 1) / 2
	for _, want := range []struct {
		repo  string
		kind  layout.ShardKind
		count []int
	}{
		{tagsRepo, layout.TagKind, []int{layout.ShardMax, layout.ShardMax}},
		{wideRepo, layout.ManifestKind, []int{half, wideImages + 1 - half}},
		{wideRepo, layout.BlobKind, []int{half, wideImages + 1 - half}},
		{wideRepo, layout.TagKind, []int{1}},
	} {
		rf, err := readRepositoryFile(tree, want.repo)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, ref := range rf.Shards(want.kind) {
			got = append(got, ref.Count)
		}
		if !slices.Equal(got, want.count) {
			t.Fatalf("%s: %s shards of %v entries, want %v", want.repo, want.kind, got, want.count)
		}
	}

	// How long a publish of an image already in the tree takes into each.
	took := map[string]time.Duration{}
	for _, repo := range []string{tagsRepo, wideRepo} {
		r := runPublish([]string{img.source, "--root", tree, "--to", repo + ":t0"}, -1)
		if r.err != nil {
			t.Fatalf("%s: %v\n%s", r, r.err, &r.stderr)
		}
		took[repo] = r.took
	}
	t.Logf("sharded repositories: %s: %d tags added by heron tag in %s; %s: an index of %d images generated in %s, published in %s; a publish of an image in the tree takes %s into %s, %s into %s",
		tagsRepo, tagsStart-1, tagged.Round(time.Millisecond), wideRepo, wideImages, generated.Round(time.Millisecond), published.Round(time.Millisecond),
		took[tagsRepo].Round(time.Millisecond), tagsRepo, took[wideRepo].Round(time.Millisecond), wideRepo)
	return took
}

// readRepositoryFile reads and decodes the repository file of name (not
// its shards).
func readRepositoryFile(tree, name string) (*layout.Repository, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(layout.Root(tree).Path(key))
	if err != nil {
		return nil, err
	}
	return layout.DecodeRepositoryFile(name, b)
}

// shardKeys reads the keys of one shard of repository name.
func shardKeys(tree, name string, kind layout.ShardKind, ref layout.ShardRef) ([]string, error) {
	key, err := layout.RepositoryShardKey(name, ref.ID)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(layout.Root(tree).Path(key))
	if err != nil {
		return nil, err
	}
	s, err := layout.DecodeRepositoryShard(b, kind, ref)
	if err != nil {
		return nil, err
	}
	return s.Keys(), nil
}

// newTagsIn returns k tags that crash/tags does not have and that sort
// inside the range of its tag shard ref (after its first tag, before its
// last), so that adding them changes that shard alone; and anchor, an
// existing tag of the shard. Each new tag is an existing tag of the shard
// with a suffix.
func newTagsIn(rng *rand.Rand, tree string, ref layout.ShardRef, k int, label string) (tags []string, anchor string, err error) {
	keys, err := shardKeys(tree, tagsRepo, layout.TagKind, ref)
	if err != nil {
		return nil, "", err
	}
	for range 100 {
		anchor = keys[rng.IntN(len(keys)-1)] // not the last
		if len(anchor) > 96 {
			continue
		}
		tags = tags[:0]
		for j := range k {
			tag := fmt.Sprintf("%s-%s%04d", anchor, label, j)
			if tag >= ref.Last || slices.Contains(keys, tag) {
				break
			}
			tags = append(tags, tag)
		}
		if len(tags) == k {
			return tags, anchor, nil
		}
	}
	return nil, "", fmt.Errorf("%s: no room for %d new tags in the shard from %q to %q", tagsRepo, k, ref.First, ref.Last)
}

// aimSharded picks what a publish into a sharded repository does: the
// repository, the tag it publishes to and why (one of opOrder). To split
// a shard it needs a full one: when there is none, it fills one up first
// with heron tag, and reports that it did (the tree changed).
func aimSharded(t *testing.T, rng *rand.Rand, tree string, attempt int) (repo, tag, op string, filled bool) {
	t.Helper()
	if rng.IntN(4) == 0 {
		return wideRepo, fmt.Sprintf("t%d", rng.IntN(4)), opWide, false
	}
	rf, err := readRepositoryFile(tree, tagsRepo)
	if err != nil {
		t.Fatal(err)
	}
	refs := rf.Shards(layout.TagKind)
	switch rng.IntN(3) {
	case 0:
		var full []int
		for i, ref := range refs {
			if ref.Count == layout.ShardMax {
				full = append(full, i)
			}
		}
		var ref layout.ShardRef
		if len(full) > 0 {
			ref = refs[full[rng.IntN(len(full))]]
		} else {
			// Fill the fullest shard up to layout.ShardMax.
			i := 0
			for j, r := range refs {
				if r.Count > refs[i].Count {
					i = j
				}
			}
			add, anchor, err := newTagsIn(rng, tree, refs[i], layout.ShardMax-refs[i].Count, fmt.Sprintf("f%d-", attempt))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := heron(append([]string{"tag", "--root", tree, tagsRepo + ":" + anchor}, add...)...).CombinedOutput(); err != nil {
				t.Fatalf("heron tag %s:%s (%d tags, to fill a shard up): %v\n%.2000s", tagsRepo, anchor, len(add), err, out)
			}
			if rf, err = readRepositoryFile(tree, tagsRepo); err != nil {
				t.Fatal(err)
			}
			refs = rf.Shards(layout.TagKind)
			ref = refs[layout.ShardFor(refs, add[0])]
			if ref.Count != layout.ShardMax {
				t.Fatalf("%s: the shard filled up holds %d tags, want %d", tagsRepo, ref.Count, layout.ShardMax)
			}
			filled = true
		}
		add, _, err := newTagsIn(rng, tree, ref, 1, fmt.Sprintf("s%d-", attempt))
		if err != nil {
			t.Fatal(err)
		}
		return tagsRepo, add[0], opSplit, filled
	case 1:
		ref := refs[rng.IntN(len(refs))]
		keys, err := shardKeys(tree, tagsRepo, layout.TagKind, ref)
		if err != nil {
			t.Fatal(err)
		}
		return tagsRepo, keys[rng.IntN(len(keys))], opMove, false
	}
	return tagsRepo, fmt.Sprintf("t%d", rng.IntN(4)), opEnd, false
}

// checkNoLoss compares the repositories before a publish and after it
// (killed or not): every repository is still there; every tag it had is
// still there, naming the same manifest, unless the publish aimed at it,
// when it names the old manifest or the publish's; every new tag is one
// the publish, or the publish that ran alongside it, aimed at, naming its
// manifest; every manifest listed before is still listed.
func checkNoLoss(before, after *treeState, aimed map[string][]string, want digest.Digest, companionRepo, companionTag string, companion digest.Digest) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for name, old := range before.repos {
		r, ok := after.repos[name]
		if !ok {
			bad("repository %s is gone (or unreadable)", name)
			continue
		}
		for tag, d := range old.Tags {
			now, ok := r.Tags[tag]
			switch {
			case !ok:
				bad("%s:%s is lost (it named %s)", name, tag, d)
			case now == d:
			case slices.Contains(aimed[name], tag) && now == want:
			default:
				bad("%s:%s names %s, it named %s and the publish did not aim at it", name, tag, now, d)
			}
		}
		for d := range old.Manifests {
			if _, ok := r.Manifests[d]; !ok {
				bad("%s: manifest %s is no longer listed", name, d)
			}
		}
	}
	for name, r := range after.repos {
		old := before.repos[name]
		for tag, d := range r.Tags {
			if old != nil {
				if _, ok := old.Tags[tag]; ok {
					continue
				}
			}
			switch {
			case slices.Contains(aimed[name], tag) && d == want:
			case name == companionRepo && tag == companionTag && d == companion:
			default:
				bad("%s:%s (%s) is new, and no publish aimed at it", name, tag, d)
			}
		}
	}
	return problems
}

// shortPhase names the phases in a line.
var shortPhase = map[string]string{
	phaseBefore:     "before any write",
	phaseCopy:       "copying blobs",
	phaseRename:     "renaming blobs",
	phaseShards:     "writing shards",
	phaseRepository: "writing the repository file",
	phaseDropShards: "removing old shards",
	phaseCatalog:    "writing the catalog",
	phaseDone:       "done",
	phaseConcurrent: "alongside another publish",
}

// shardedStats are the figures of the kills that hit sharded publishes.
type shardedStats struct {
	attempts, kills map[string]int            // by op
	phases          map[string]map[string]int // of the kills, by op
	splits          map[layout.ShardKind]int
	fills           int
	maxUnnamed      int
}

func newShardedStats() *shardedStats {
	return &shardedStats{attempts: map[string]int{}, kills: map[string]int{}, phases: map[string]map[string]int{}, splits: map[layout.ShardKind]int{}}
}

// countSplits counts the shards of the sharded repositories that a publish
// added (a split, or a kind sharded anew).
func (s *shardedStats) countSplits(before, after *treeState) {
	for _, name := range []string{tagsRepo, wideRepo} {
		b, a := before.repos[name], after.repos[name]
		if b == nil || a == nil {
			continue
		}
		for _, kind := range layout.ShardKinds {
			if n := len(a.Shards(kind)) - len(b.Shards(kind)); n > 0 {
				s.splits[kind] += n
			}
		}
	}
}

// summary is the figures, for the test's output.
func (s *shardedStats) summary(st *treeState) string {
	kills := 0
	var ops []string
	all := map[string]int{}
	for _, op := range opOrder {
		kills += s.kills[op]
		var when []string
		for _, p := range phaseOrder {
			if n := s.phases[op][p]; n > 0 {
				when = append(when, fmt.Sprintf("%d %s", n, shortPhase[p]))
				all[p] += n
			}
		}
		ops = append(ops, fmt.Sprintf("  %4d killed of %4d  %s: %s", s.kills[op], s.attempts[op], op, strings.Join(when, ", ")))
	}
	var phases []string
	for _, p := range phaseOrder {
		if all[p] > 0 {
			phases = append(phases, fmt.Sprintf("  %4d  %s", all[p], p))
		}
	}
	var shards []string
	for _, name := range []string{tagsRepo, wideRepo} {
		r := st.repos[name]
		if r == nil {
			continue
		}
		var kinds []string
		for _, kind := range layout.ShardKinds {
			if n := len(r.Shards(kind)); n > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, kind))
			}
		}
		shards = append(shards, fmt.Sprintf("%s %d tags, %d manifests, %d blobs in %s shards", name, len(r.Tags), len(r.Manifests), len(r.Blobs), strings.Join(kinds, ", ")))
	}
	return fmt.Sprintf("crash: sharded: %d kills in publishes into the sharded repositories, by what the publish was to do:\n%s\n"+
		"crash: sharded: what those had done when killed:\n%s\n"+
		"crash: sharded: shards added by publishes (splits, killed or not): %d tag, %d manifest, %d blob; %d tag shards filled up by heron tag to be split; "+
		"shard files no repository file named (left by kills, counted by heron verify as unnamedRepositoryShards): %d at most; at the end %s",
		kills, strings.Join(ops, "\n"), strings.Join(phases, "\n"),
		s.splits[layout.TagKind], s.splits[layout.ManifestKind], s.splits[layout.BlobKind], s.fills, s.maxUnnamed, strings.Join(shards, "; "))
}
