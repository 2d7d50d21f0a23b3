package redirector

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heron-registry/heron/layout"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// The benchmarks by repository size (issue 11): a request for a tag costs
// the same whatever the number of tags of its repository.
//
//	go test -run '^$' -bench 'ByTagSize|TagsListSize' -benchmem ./redirector
//
// The setup writes repositories of 10, 10,000 and 100,000 tags (a few
// seconds); go test without -bench does not run it.

// benchTagSizes are the repository sizes, in tags.
var benchTagSizes = []int{10, 10_000, 100_000}

// benchTagSample is how many distinct tags of a repository a benchmark
// visits, in a random order, so that a large repository is read across
// its shards rather than in one.
const benchTagSample = 1000

// tagsFixture is a tree of one repository per size, tags/n<N>, whose tags
// t000000, t000001, … all name one image. A repository of more than
// layout.InlineMax tags keeps them in shards, cut as heron's publisher
// cuts them: the fewest shards of at most layout.ShardMax tags, of equal
// length (100 shards of 1,000 tags at 100,000); its one manifest and its
// blobs stay in the repository file.
type tagsFixture struct {
	dir   string
	image v1.Descriptor
}

func tagsBenchRepo(n int) string { return fmt.Sprintf("tags/n%d", n) }

func tagsBenchTag(i int) string { return fmt.Sprintf("t%06d", i) }

func newTagsFixture(b *testing.B) *tagsFixture {
	b.Helper()
	tt := newTestTree(b)
	m := v1.Manifest{
		Config: tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`)),
		Layers: []v1.Descriptor{tt.blob(v1.MediaTypeImageLayerGzip, []byte("the one layer"))},
	}
	desc, _ := tt.manifest(m)
	for _, n := range benchTagSizes {
		r := layout.NewRepository(tagsBenchRepo(n))
		addImage(r, desc, m)
		for i := range n {
			r.Tags[tagsBenchTag(i)] = desc.Digest
		}
		if n > layout.InlineMax {
			keys := r.Keys(layout.TagKind)
			k := (n + layout.ShardMax - 1) / layout.ShardMax
			var refs []layout.ShardRef
			for j := range k {
				part := keys[j*n/k : (j+1)*n/k]
				sh, err := r.ShardOf(layout.TagKind, part, nil)
				if err != nil {
					b.Fatal(err)
				}
				data, id, err := layout.EncodeRepositoryShard(sh)
				if err != nil {
					b.Fatal(err)
				}
				key, err := layout.RepositoryShardKey(r.Name, id)
				if err != nil {
					b.Fatal(err)
				}
				tt.write(key, data)
				refs = append(refs, layout.ShardRef{ID: id, First: part[0], Last: part[len(part)-1], Count: len(part)})
			}
			r.TagShards = refs
		}
		tt.repository(r)
	}
	return &tagsFixture{dir: tt.dir(), image: desc}
}

// sample returns benchTagSample tags of the repository of n tags, drawn
// at random (the same on every run).
func (f *tagsFixture) sample(n int) []string {
	rng := rand.New(rand.NewPCG(uint64(n), 11))
	out := make([]string, benchTagSample)
	for i := range out {
		out[i] = tagsBenchTag(rng.IntN(n))
	}
	return out
}

// benchRequests serves every request once, checking the answer (which
// also fills the caches when they are on), then in a loop, one after the
// other.
func benchRequests(b *testing.B, dir string, opts []Option, reqs []*http.Request, wantCode int, wantBytes int64) {
	b.Helper()
	s, err := New(dir, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := &discardWriter{h: http.Header{}}
	for _, req := range reqs {
		w.reset()
		s.ServeHTTP(w, req)
		if w.code != wantCode || (wantBytes >= 0 && w.n != wantBytes) {
			b.Fatalf("%s %s: status %d with %d bytes, want %d with %d", req.Method, req.URL, w.code, w.n, wantCode, wantBytes)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		w.reset()
		s.ServeHTTP(w, reqs[i])
		if i++; i == len(reqs) {
			i = 0
		}
	}
	if w.code != wantCode {
		b.Fatalf("status %d, want %d", w.code, wantCode)
	}
}

// BenchmarkManifestByTagSize: GET of a manifest by tag, over 1,000
// random tags of a repository of 10, 10,000 and 100,000 tags; cache=on
// is the steady state (every shard cached after the first pass),
// cache=off reads the repository file, a tag shard and the manifest on
// every request.
func BenchmarkManifestByTagSize(b *testing.B) {
	f := newTagsFixture(b)
	for _, n := range benchTagSizes {
		var reqs []*http.Request
		for _, tag := range f.sample(n) {
			req := httptest.NewRequest(http.MethodGet, manifestURL(tagsBenchRepo(n), tag), nil)
			req.Header.Set("Accept", acceptManifests)
			reqs = append(reqs, req)
		}
		for _, mode := range benchModes {
			b.Run(fmt.Sprintf("tags=%d/%s", n, mode.name), func(b *testing.B) {
				benchRequests(b, f.dir, mode.opts, reqs, 200, f.image.Size)
			})
		}
	}
}

// BenchmarkTagsListSize: tags/list?n=100, the first page and a page
// after a random tag (1,000 of them in turn), of a repository of 10,
// 10,000 and 100,000 tags.
func BenchmarkTagsListSize(b *testing.B) {
	f := newTagsFixture(b)
	for _, n := range benchTagSizes {
		name := tagsBenchRepo(n)
		first := []*http.Request{httptest.NewRequest(http.MethodGet, "/v2/"+name+"/tags/list?n=100", nil)}
		var random []*http.Request
		for _, tag := range f.sample(n) {
			random = append(random, httptest.NewRequest(http.MethodGet, "/v2/"+name+"/tags/list?n=100&last="+tag, nil))
		}
		for _, page := range []struct {
			name string
			reqs []*http.Request
		}{{"first", first}, {"random", random}} {
			for _, mode := range benchModes {
				b.Run(fmt.Sprintf("tags=%d/page=%s/%s", n, page.name, mode.name), func(b *testing.B) {
					benchRequests(b, f.dir, mode.opts, page.reqs, 200, -1)
				})
			}
		}
	}
}
