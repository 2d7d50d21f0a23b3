package redirector

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// bigTagged writes repository name with n tags t00000… naming two images
// (even and odd), in tag shards of size, and returns the two manifests.
func bigTagged(tt *testTree, name string, n, size int) (even, odd v1.Descriptor) {
	tt.t.Helper()
	r := layout.NewRepository(name)
	for i, desc := range []*v1.Descriptor{&even, &odd} {
		m := v1.Manifest{Config: tt.blob(v1.MediaTypeImageConfig, []byte(fmt.Sprintf(`{"n":%d}`, i))), Layers: []v1.Descriptor{}}
		*desc, _ = tt.manifest(m)
		addImage(r, *desc, m)
	}
	for i := range n {
		d := even.Digest
		if i%2 == 1 {
			d = odd.Digest
		}
		r.Tags[fmt.Sprintf("t%05d", i)] = d
	}
	// Only the tags are sharded: the manifests stay in the file.
	keys := r.Keys(layout.TagKind)
	var refs []layout.ShardRef
	for len(keys) > 0 {
		part := keys[:min(size, len(keys))]
		keys = keys[len(part):]
		sh, err := r.ShardOf(layout.TagKind, part, nil)
		if err != nil {
			tt.t.Fatal(err)
		}
		data, id, err := layout.EncodeRepositoryShard(sh)
		if err != nil {
			tt.t.Fatal(err)
		}
		key, _ := layout.RepositoryShardKey(name, id)
		tt.write(key, data)
		refs = append(refs, layout.ShardRef{ID: id, First: part[0], Last: part[len(part)-1], Count: len(part)})
	}
	r.TagShards = refs
	saved := tt.shardSize
	tt.shardSize = 0
	tt.repository(r)
	tt.shardSize = saved
	return even, odd
}

// TestShardedTagPages walks tags/list of a repository of 2,345 tags in
// shards of 100 with pages of several sizes: every tag once, in order,
// with a Link while more follow.
func TestShardedTagPages(t *testing.T) { forEachCacheMode(t, testShardedTagPages) }

func testShardedTagPages(t *testing.T, mode cacheMode) {
	tt := newTestTree(t)
	const n = 2345
	bigTagged(tt, "big", n, 100)
	srv, _, _ := mode.newServer(t, tt.dir())
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("t%05d", i))
	}
	// The whole list.
	resp, body := fetch(t, srv, http.MethodGet, "/v2/big/tags/list", nil)
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &tl); err != nil || resp.StatusCode != 200 || tl.Name != "big" || strings.Join(tl.Tags, ",") != strings.Join(want, ",") {
		t.Fatalf("whole list: %d, %d tags, %v", resp.StatusCode, len(tl.Tags), err)
	}
	for _, size := range []int{1, 7, 100, 250, 1000} {
		var got []string
		url := fmt.Sprintf("/v2/big/tags/list?n=%d", size)
		for pages := 0; url != ""; pages++ {
			if pages > n+1 {
				t.Fatalf("n=%d: more pages than tags", size)
			}
			resp, body := fetch(t, srv, http.MethodGet, url, nil)
			tl.Tags = nil
			if err := json.Unmarshal(body, &tl); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", url, resp.StatusCode, body)
			}
			if len(tl.Tags) > size || (len(tl.Tags) < size && resp.Header.Get("Link") != "") {
				t.Fatalf("%s: %d tags, Link %q", url, len(tl.Tags), resp.Header.Get("Link"))
			}
			got = append(got, tl.Tags...)
			url = ""
			if link := resp.Header.Get("Link"); link != "" {
				url = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("n=%d: %d tags, want %d", size, len(got), n)
		}
	}
	// Pages that start at a shard's edge, between shards, past the end.
	for _, tc := range []struct{ query, want string }{
		{"?n=2&last=t00099", `{"name":"big","tags":["t00100","t00101"]}`},
		{"?n=2&last=t00098", `{"name":"big","tags":["t00099","t00100"]}`},
		{"?n=2&last=t00099a", `{"name":"big","tags":["t00100","t00101"]}`},
		{"?n=3&last=t02343", `{"name":"big","tags":["t02344"]}`},
		{"?last=t02344", `{"name":"big","tags":[]}`},
		{"?n=0", `{"name":"big","tags":[]}`},
		{"?n=1&last=a", `{"name":"big","tags":["t00000"]}`},
	} {
		resp, body := fetch(t, srv, http.MethodGet, "/v2/big/tags/list"+tc.query, nil)
		if resp.StatusCode != 200 || string(body) != tc.want {
			t.Errorf("%s: %d %s, want %s", tc.query, resp.StatusCode, body, tc.want)
		}
	}
}

// TestShardedManifestByTag: every tag of a sharded repository resolves,
// from its shard, to its manifest with the headers of an inline one.
func TestShardedManifestByTag(t *testing.T) { forEachCacheMode(t, testShardedManifestByTag) }

func testShardedManifestByTag(t *testing.T, mode cacheMode) {
	tt := newTestTree(t)
	even, odd := bigTagged(tt, "big", 500, 50)
	srv, _, _ := mode.newServer(t, tt.dir())
	for i := 0; i < 500; i += 7 {
		want := even
		if i%2 == 1 {
			want = odd
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, _ := fetch(t, srv, method, manifestURL("big", fmt.Sprintf("t%05d", i)), nil)
			if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.Digest.String() ||
				resp.Header.Get("Content-Type") != v1.MediaTypeImageManifest || resp.Header.Get("Content-Length") != fmt.Sprint(want.Size) {
				t.Fatalf("%s t%05d: %d %v", method, i, resp.StatusCode, resp.Header)
			}
		}
	}
	for _, tag := range []string{"t00049a", "a", "zzz", "t00500"} {
		resp, body := fetch(t, srv, http.MethodGet, manifestURL("big", tag), nil)
		if resp.StatusCode != 404 || !strings.Contains(string(body), string(CodeManifestUnknown)) {
			t.Errorf("%s: %d %s", tag, resp.StatusCode, body)
		}
	}
}

// TestRepoShardReplaced reproduces a publish that replaces a repository
// file, and removes the shard the old file named, between the server's
// reads of the file and of the shard: the server reads the new file once
// more and answers from it.
func TestRepoShardReplaced(t *testing.T) { forEachCacheMode(t, testRepoShardReplaced) }

func testRepoShardReplaced(t *testing.T, mode cacheMode) {
	tt := newTestTree(t)
	even, odd := bigTagged(tt, "big", 10, 5)
	srv, s, _ := mode.newServer(t, tt.dir())
	old, err := os.ReadDir(tt.root.Path("repositories/big/_shards"))
	if err != nil || len(old) != 2 {
		t.Fatal(len(old), err)
	}
	replace := false
	s.beforeRepoShard = func() {
		if !replace {
			return
		}
		replace = false
		// t00003 moves to the odd image: new shards, the old ones gone.
		for _, e := range old {
			if err := os.Remove(tt.root.Path("repositories/big/_shards/" + e.Name())); err != nil {
				t.Error(err)
			}
		}
		r := layout.NewRepository("big")
		r.Manifests[even.Digest] = layout.Manifest{MediaType: even.MediaType, Size: even.Size}
		r.Manifests[odd.Digest] = layout.Manifest{MediaType: odd.MediaType, Size: odd.Size}
		for i := range 10 {
			r.Tags[fmt.Sprintf("t%05d", i)] = odd.Digest
		}
		tt.shardSize = 3
		tt.repository(r)
		tt.shardSize = 0
	}
	// Warm the caches with the old file and shards.
	if resp, _ := fetch(t, srv, http.MethodGet, manifestURL("big", "t00002"), nil); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	// t00007 is in the other shard, not read yet (a cached shard is a
	// snapshot of the repository as the file read said: answering from it
	// is answering just before the publish).
	replace = true
	resp, body := fetch(t, srv, http.MethodGet, manifestURL("big", "t00007"), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != odd.Digest.String() {
		t.Fatalf("after the replacement: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if replace {
		t.Fatal("the hook did not run")
	}
}

// TestRepoShardMissing: a shard that stays missing is a broken tree: 500,
// logged, never an answer from elsewhere.
func TestRepoShardMissing(t *testing.T) {
	tt := newTestTree(t)
	bigTagged(tt, "big", 10, 5)
	entries, err := os.ReadDir(tt.root.Path("repositories/big/_shards"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Remove(tt.root.Path("repositories/big/_shards/" + e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	srv, _, logs := newTestServer(t, tt.dir())
	for _, url := range []string{manifestURL("big", "t00001"), "/v2/big/tags/list"} {
		resp, body := fetch(t, srv, http.MethodGet, url, nil)
		if resp.StatusCode != 500 || !strings.Contains(string(body), string(CodeUnknown)) {
			t.Errorf("%s: %d %s", url, resp.StatusCode, body)
		}
		if l := logs.take(); !strings.Contains(l, "repository shard named by the repository file is gone") {
			t.Errorf("log %q", l)
		}
	}
	// A tag in no shard's range needs no shard.
	if resp, _ := fetch(t, srv, http.MethodGet, manifestURL("big", "zzz"), nil); resp.StatusCode != 404 {
		t.Errorf("tag in no range: %d", resp.StatusCode)
	}
}

// TestRepoShardAltered: a shard whose bytes are not those of its id, or
// that holds other keys than its repository file says, is never served.
func TestRepoShardAltered(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		alter func(data []byte) []byte
	}{
		{"other bytes", func(b []byte) []byte { return append(b[:len(b)-1:len(b)-1], ' ', '\n') }},
		{"a tag moved", func(b []byte) []byte { return []byte(strings.Replace(string(b), "t00001", "t00009", 1)) }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tt := newTestTree(t)
			bigTagged(tt, "big", 10, 5)
			entries, _ := os.ReadDir(tt.root.Path("repositories/big/_shards"))
			for _, e := range entries {
				p := tt.root.Path("repositories/big/_shards/" + e.Name())
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tc.alter(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			srv, _, _ := newTestServer(t, tt.dir())
			for _, url := range []string{manifestURL("big", "t00001"), "/v2/big/tags/list"} {
				resp, body := fetch(t, srv, http.MethodGet, url, nil)
				if resp.StatusCode != 500 {
					t.Errorf("%s: %d %s", url, resp.StatusCode, body)
				}
			}
		})
	}
}

// TestRepoShardCache: with caches on, a shard is read once for many
// requests, and is counted in the metrics.
func TestRepoShardCache(t *testing.T) {
	tt := newTestTree(t)
	bigTagged(tt, "big", 100, 10)
	reg := prometheus.NewRegistry()
	srv, s, _ := newTestServer(t, tt.dir(), withRacyWindow(0), WithMetrics(reg))
	for range 5 {
		for i := 0; i < 100; i += 10 {
			if resp, _ := fetch(t, srv, http.MethodGet, manifestURL("big", fmt.Sprintf("t%05d", i)), nil); resp.StatusCode != 200 {
				t.Fatal(resp.StatusCode)
			}
		}
	}
	c, ok := s.repoShards.(*repoShardCache)
	if !ok {
		t.Fatalf("shards are not cached: %T", s.repoShards)
	}
	counts := c.cacheCounts()
	if counts.misses != 10 || counts.hits != 40 || counts.entries != 10 {
		t.Errorf("shard cache: %+v", counts)
	}
	if hits := value(t, reg, metricCacheRequests, map[string]string{"cache": cacheRepoShards, "result": "hit"}); hits != 40 {
		t.Errorf("metrics: %v shard cache hits", hits)
	}
}
