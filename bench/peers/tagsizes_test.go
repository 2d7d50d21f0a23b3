package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
	"github.com/heron-registry/heron/redirector"
)

func TestParseTagSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{"10,10000,100000", []int{10, 10000, 100000}, false},
		{" 100000, 10 ", []int{10, 100000}, false},
		{"", nil, false},
		{"none", nil, false},
		{"0", nil, true},
		{"10,x", nil, true},
		{"10,10", nil, true},
		{"1000000", nil, true},
	} {
		got, err := parseTagSizes(tc.in)
		if (err != nil) != tc.bad || strings.Join(mapInts(got, tagName6), ",") != strings.Join(mapInts(tc.want, tagName6), ",") {
			t.Errorf("parseTagSizes(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// TestTagsTree generates the tree of the tags scenario at small sizes (one
// of them sharded), reuses it from the cache, and checks that heron's
// server gives the answers the preflight expects.
func TestTagsTree(t *testing.T) {
	ctx := context.Background()
	img, err := treegen.NewImage(4096)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	sizes := []int{3, 2345}
	var tr tagsResult
	tree, err := ensureTagsTree(ctx, cache, img, sizes, &tr)
	if err != nil {
		t.Fatal(err)
	}
	if tr.cached || !strings.Contains(tr.gen, "2,348 tags") {
		t.Fatalf("first call: cached %v, %q", tr.cached, tr.gen)
	}
	r, _, err := tagsEntry(tree, 2345)
	if err != nil || len(r.TagShards) != 3 {
		t.Fatalf("2345 tags: %v shards, %v", len(r.TagShards), err)
	}
	var again tagsResult
	if tree2, err := ensureTagsTree(ctx, cache, img, sizes, &again); err != nil || tree2 != tree || !again.cached || again.gen != tr.gen {
		t.Fatalf("second call: %s, cached %v, %v", tree2, again.cached, err)
	}

	srv, err := redirector.New(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv)
	defer hs.Close()
	fx := &fixture{img: img}
	tg := target{name: tHeron, addr: strings.TrimPrefix(hs.URL, "http://")}
	for _, n := range sizes {
		if err := preflightTags(fx, tg, tagsRepoName(n), n); err != nil {
			t.Error(err)
		}
	}
	// A wrong page is caught.
	if err := preflightTags(fx, tg, tagsRepoName(2345), 150); err == nil {
		t.Error("a repository of 2345 tags passes as one of 150")
	}
}

func TestShardCacheCounters(t *testing.T) {
	metrics := `# HELP heron_cache_entries Entries in each cache now.
heron_cache_entries{cache="repository"} 1
heron_cache_entries{cache="repository_shard"} 100
heron_cache_requests_total{cache="repository_shard",result="hit"} 321754
heron_cache_requests_total{cache="repository_shard",result="miss"} 128
heron_cache_weight_bytes{cache="repository_shard"} 1.5e+06
`
	if got, want := shardCacheCounters(metrics), "hit 321,754, miss 128, 100 entries, 1.5 MB"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := shardCacheCounters(""); got != "no metrics" {
		t.Errorf("no metrics: %q", got)
	}
}

// TestTagsReport renders the section and its targets from made-up
// numbers.
func TestTagsReport(t *testing.T) {
	acc := func(rps float64, p50 time.Duration) *accum {
		a := newAccum()
		h := &load.Histogram{}
		n := int64(rps)
		for range n {
			h.Record(p50)
		}
		a.add(&load.Result{Requests: n, Elapsed: time.Second, Latency: h})
		return a
	}
	size := func(tags int, rps float64, cold, pub time.Duration) *tagSizeResult {
		return &tagSizeResult{tags: tags, fileBytes: 1700, get: acc(rps, 500*time.Microsecond), head: acc(rps, 400*time.Microsecond),
			listFirst: acc(rps, 500*time.Microsecond), listRandom: acc(rps, 600*time.Microsecond),
			coldGet: acc(200, 50*time.Millisecond), coldSeq: acc(150, cold),
			tag: []time.Duration{pub, pub, pub}, rm: []time.Duration{pub}}
	}
	tr := &tagsResult{sizes: []*tagSizeResult{size(10, 30000, 80*time.Microsecond, 40*time.Millisecond), size(100000, 21000, 6*time.Millisecond, 90*time.Millisecond)},
		peak: 31e6, concurrency: 16, gen: "a tree", shardCache: "hit 1"}
	tr.sizes[1].shards, tr.sizes[1].shardBytes = 100, 16e6
	rep := &report{cfg: &config{concurrency: 16, tagSizes: []int{10, 100000}}, tags: tr}
	md := rep.markdown()
	for _, want := range []string{"### heron by repository size (tags)", "| 100,000 | 1.7 KB | 100 (16.0 MB together) | 21,000,", "| 0.70 |",
		"warm GET manifest by tag ≥ 0.8× the throughput at 10 tags | 0.70× (21,000 vs 30,000 req/s) | **no** |",
		"cold GET manifest by tag ≤ 5 ms", "| **no** |\n| at 100,000 tags, `tags/list?n=100` page p50 ≤ 1 ms",
		"publish of one tag ≤ 100 ms (`heron tag`, median) | 90.", "| yes |"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}
