//go:build reliability

package reliability

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// soakTags are the tags the soak test's publisher moves.
var soakTags = []string{"t1", "t2", "t3", "t4"}

// soakRepo is one repository of the soak test, whose tags the publisher
// moves between two versions, a and b.
type soakRepo struct {
	name     string
	versions map[string]*content // "a", "b"
	roots    map[digest.Digest]string
}

// soakProblems collects what went wrong, keeping the first few messages.
type soakProblems struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (p *soakProblems) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if len(p.first) < 20 {
		p.first = append(p.first, fmt.Sprintf(format, args...))
	}
}

// TestSoak runs a publisher that moves tags between two versions of an
// image and of an image index, in a loop, with real `heron publish`
// processes, while clients pull those tags concurrently through three
// `heron serve`: with its caches, without (--cache-size 0), and with blobs
// redirected to a static file server. It runs for HERON_SOAK_DURATION
// (30s by default, 5s with -short) with HERON_SOAK_CLIENTS clients (6).
//
// A pull is HEAD and GET of the tag's manifest, then GET of everything that
// manifest references: for an index every child manifest by digest, and
// for each image manifest its config and layers. The manifest a pull gets
// determines exactly the requests that follow. The test asserts no 5xx and
// no transport error at all; that every manifest's bytes hash to its
// Docker-Content-Digest and are the root of version a or b; that every
// request that follows is a 200 whose bytes match their digest and belong
// to that same version (never a mix of the two); and that no publish fails.
func TestSoak(t *testing.T) {
	duration := envDuration(t, "HERON_SOAK_DURATION", 30*time.Second)
	if testing.Short() && os.Getenv("HERON_SOAK_DURATION") == "" {
		duration = 5 * time.Second
	}
	clients := envInt(t, "HERON_SOAK_CLIENTS", 6)
	seed := uint64(time.Now().UnixNano())

	dir := t.TempDir()
	src, tree := filepath.Join(dir, "src"), filepath.Join(dir, "tree")
	gen, err := generateLayout(src, seed, []imageSpec{
		{ref: "img-a", layers: []int64{64 << 10, 1 << 20, 256 << 10}},
		{ref: "img-b", layers: []int64{64 << 10, 1 << 20, 256 << 10}},
		{ref: "idx-a", children: [][]int64{{128 << 10, 512 << 10}, {128 << 10, 512 << 10}}},
		{ref: "idx-b", children: [][]int64{{128 << 10, 512 << 10}, {128 << 10, 512 << 10}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	repos := []*soakRepo{
		{name: "soak/img", versions: map[string]*content{"a": gen["img-a"], "b": gen["img-b"]}},
		{name: "soak/idx", versions: map[string]*content{"a": gen["idx-a"], "b": gen["idx-b"]}},
	}
	for _, r := range repos {
		r.roots = map[digest.Digest]string{}
		for v, c := range r.versions {
			r.roots[c.digest] = v
		}
	}
	// Version a is published before the servers start; b's content is
	// written while the clients pull.
	publishVersion := func(r *soakRepo, v string, tags []string) *publishRun {
		args := []string{"oci:" + src + ":" + r.versions[v].ref, "--root", tree}
		for _, tag := range tags {
			args = append(args, "--to", r.name+":"+tag)
		}
		return runPublish(args, -1)
	}
	for _, r := range repos {
		if run := publishVersion(r, "a", soakTags); run.err != nil {
			t.Fatalf("%s: %v\n%s", run, run.err, &run.stderr)
		}
	}

	cdn := startCDN(t, tree)
	servers := []*server{
		startServe(t, "heron serve (caches)", tree),
		startServe(t, "heron serve (no caches)", tree, "--cache-size", "0"),
		startServe(t, "heron serve (blobs redirected)", tree, "--blob-base-url", cdn),
	}
	serverCounts := make([]counts, len(servers))

	var problems soakProblems
	var publishes, pulls, mixedPulls atomic.Int64
	seen := map[string]*atomic.Int64{"a": {}, "b": {}}
	start := time.Now()
	deadline := start.Add(duration)
	var wg sync.WaitGroup

	wg.Add(1)
	go func() { // the publisher
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1))
		for i := 0; time.Now().Before(deadline); i++ {
			r := repos[i%len(repos)]
			v := []string{"a", "b"}[(i/len(repos))%2]
			var tags []string
			for _, tag := range soakTags {
				if rng.IntN(2) == 0 {
					tags = append(tags, tag)
				}
			}
			if len(tags) == 0 {
				tags = soakTags
			}
			run := publishVersion(r, v, tags)
			if run.err != nil {
				problems.add("%s: %v\n%s", run, run.err, &run.stderr)
				continue
			}
			publishes.Add(1)
		}
	}()

	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(100+c)))
			hcs := make([]*http.Client, len(servers))
			for i := range servers {
				hcs[i] = newClient(&serverCounts[i])
			}
			for n := 0; time.Now().Before(deadline); n++ {
				i := rng.IntN(len(servers))
				p := &puller{hc: hcs[i], c: &serverCounts[i], base: servers[i].base(), problems: &problems}
				r := repos[rng.IntN(len(repos))]
				tag := soakTags[rng.IntN(len(soakTags))]
				switch {
				case n%50 == 0:
					p.catalog(repos)
				case n%10 == 0:
					p.tagsList(r)
				default:
					v, mixed := p.pull(r, tag)
					if v != "" {
						seen[v].Add(1)
					}
					if mixed {
						mixedPulls.Add(1)
					}
					pulls.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if _, err := verifyTree(tree, nil); err != nil {
		problems.add("after the soak: %v", err)
	}
	if _, found, err := checkTree(tree, checkedBlobs{}); err != nil || len(found) > 0 {
		problems.add("after the soak: %v %s", err, strings.Join(found, "\n"))
	}

	var total counts
	var lines []string
	for i, s := range servers {
		c := &serverCounts[i]
		total.requests.Add(c.requests.Load())
		total.s5xx.Add(c.s5xx.Load())
		total.transportErrors.Add(c.transportErrors.Load())
		lines = append(lines, fmt.Sprintf("  %s: %s", s.Name, c))
		if c.s5xx.Load() > 0 || c.transportErrors.Load() > 0 {
			problems.add("%s: %d 5xx, %d transport errors", s.Name, c.s5xx.Load(), c.transportErrors.Load())
		}
		if l := s.errorLines(); len(l) > 0 {
			problems.add("%s logged %d warning(s) or error(s), the first: %s", s.Name, len(l), l[0])
		}
	}
	if publishes.Load() < 4 || seen["a"].Load() == 0 || seen["b"].Load() == 0 {
		problems.add("too little happened to tell anything: %d publishes, pulls of version a %d, of b %d",
			publishes.Load(), seen["a"].Load(), seen["b"].Load())
	}
	fmt.Printf("soak: %s with %d clients and 1 publisher: %d publishes, %d pulls (version a %d, b %d; the tag moved between HEAD and GET in %d), "+
		"%d requests, %d 5xx, %d transport errors, %d problems\n%s\n",
		elapsed.Round(time.Second), clients, publishes.Load(), pulls.Load(), seen["a"].Load(), seen["b"].Load(), mixedPulls.Load(),
		total.requests.Load(), total.s5xx.Load(), total.transportErrors.Load(), problems.n, strings.Join(lines, "\n"))
	if problems.n > 0 {
		t.Errorf("%d problem(s); the first ones:\n%s", problems.n, strings.Join(problems.first, "\n"))
	}
}

// puller is one client's view of one server.
type puller struct {
	hc       *http.Client
	c        *counts
	base     string
	problems *soakProblems
}

// get fetches url and checks that the answer is a 200 carrying want
// (size bytes): by its Docker-Content-Digest, and for a GET by its bytes.
// A blob redirected to the static server is checked by its bytes only.
func (p *puller) get(method, url string, want digest.Digest, size int64, keep bool) *answer {
	a, err := fetch(p.hc, p.c, method, url, keep)
	if err != nil {
		p.problems.add("%v", err)
		return nil
	}
	if a.status == http.StatusOK && a.header.Get("Docker-Content-Digest") == "" && method == http.MethodGet {
		// The static server (after a 307) sends no digest header.
		a.header.Set("Docker-Content-Digest", a.got.String())
	}
	if err := a.checkContent(method, url, want, size); err != nil {
		p.problems.add("%v", err)
		return nil
	}
	return a
}

// pull pulls tag of r and returns the version it got, and whether the tag
// had moved between the HEAD and the GET.
func (p *puller) pull(r *soakRepo, tag string) (version string, moved bool) {
	u := p.base + "/v2/" + r.name
	a, err := fetch(p.hc, p.c, http.MethodHead, u+"/manifests/"+tag, false)
	if err != nil {
		p.problems.add("%v", err)
		return "", false
	}
	headDigest := digest.Digest(a.header.Get("Docker-Content-Digest"))
	hv, ok := r.roots[headDigest]
	if a.status != http.StatusOK || !ok {
		p.problems.add("HEAD %s/manifests/%s: %d, Docker-Content-Digest %q: not version a or b", u, tag, a.status, headDigest)
		return "", false
	}
	if err := a.checkContent(http.MethodHead, u+"/manifests/"+tag, headDigest, r.versions[hv].size); err != nil {
		p.problems.add("%v", err)
	}

	a, err = fetch(p.hc, p.c, http.MethodGet, u+"/manifests/"+tag, true)
	if err != nil {
		p.problems.add("%v", err)
		return "", false
	}
	v, ok := r.roots[a.got]
	if a.status != http.StatusOK || !ok {
		p.problems.add("GET %s/manifests/%s: %d, %d bytes of digest %s: not version a or b", u, tag, a.status, a.n, a.got)
		return "", false
	}
	want := r.versions[v]
	if err := a.checkContent(http.MethodGet, u+"/manifests/"+tag, a.got, want.size); err != nil {
		p.problems.add("%v", err)
		return "", false
	}
	if ct := a.header.Get("Content-Type"); ct != want.mediaType {
		p.problems.add("GET %s/manifests/%s: Content-Type %q, want %q", u, tag, ct, want.mediaType)
	}
	p.fetchManifestContent(u, a.body, want)
	return v, hv != v
}

// fetchManifestContent fetches everything the manifest body references,
// and checks that it is exactly what version want holds.
func (p *puller) fetchManifestContent(u string, body []byte, want *content) {
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		p.problems.add("manifest %s: %v", want.digest, err)
		return
	}
	if want.children != nil {
		if len(m.Manifests) != len(want.children) {
			p.problems.add("index %s lists %d manifests, want %d", want.digest, len(m.Manifests), len(want.children))
			return
		}
		for i, d := range m.Manifests {
			ch := want.children[i]
			if d.Digest != ch.digest {
				p.problems.add("index %s: child %d is %s, want %s", want.digest, i, d.Digest, ch.digest)
				return
			}
			a := p.get(http.MethodGet, u+"/manifests/"+d.Digest.String(), d.Digest, d.Size, true)
			if a == nil {
				return
			}
			p.fetchManifestContent(u, a.body, ch)
		}
		return
	}
	var refs []ocispec.Descriptor
	if m.Config != nil {
		refs = append(refs, *m.Config)
	}
	refs = append(refs, m.Layers...)
	if !slices.EqualFunc(refs, want.blobs, func(a, b ocispec.Descriptor) bool { return a.Digest == b.Digest && a.Size == b.Size }) {
		p.problems.add("manifest %s references %v, want %v", want.digest, refs, want.blobs)
		return
	}
	for _, b := range refs {
		p.get(http.MethodGet, u+"/blobs/"+b.Digest.String(), b.Digest, b.Size, false)
	}
}

// tagsList checks that r lists exactly the soak's tags.
func (p *puller) tagsList(r *soakRepo) {
	u := p.base + "/v2/" + r.name + "/tags/list"
	a, err := fetch(p.hc, p.c, http.MethodGet, u, true)
	if err != nil {
		p.problems.add("%v", err)
		return
	}
	var tl struct{ Tags []string }
	if a.status != http.StatusOK || json.Unmarshal(a.body, &tl) != nil || !slices.Equal(tl.Tags, soakTags) {
		p.problems.add("GET %s: %d %s, want tags %v", u, a.status, a.body, soakTags)
	}
}

// catalog checks that the catalog lists exactly the soak's repositories.
func (p *puller) catalog(repos []*soakRepo) {
	u := p.base + "/v2/_catalog"
	a, err := fetch(p.hc, p.c, http.MethodGet, u, true)
	if err != nil {
		p.problems.add("%v", err)
		return
	}
	var want []string
	for _, r := range repos {
		want = append(want, r.name)
	}
	slices.Sort(want)
	var cat struct{ Repositories []string }
	if a.status != http.StatusOK || json.Unmarshal(a.body, &cat) != nil || !slices.Equal(cat.Repositories, want) {
		p.problems.add("GET %s: %d %s, want %v", u, a.status, a.body, want)
	}
}
