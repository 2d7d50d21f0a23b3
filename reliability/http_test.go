//go:build reliability

package reliability

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// counts are the HTTP exchanges of a test, by status class, with every
// hop of a redirect counted.
type counts struct {
	requests, s2xx, s3xx, s4xx, s5xx, transportErrors atomic.Int64
	bytes                                             atomic.Int64
}

func (c *counts) String() string {
	return fmt.Sprintf("%d requests (2xx %d, 3xx %d, 4xx %d, 5xx %d, transport errors %d), %.1f MiB of bodies",
		c.requests.Load(), c.s2xx.Load(), c.s3xx.Load(), c.s4xx.Load(), c.s5xx.Load(), c.transportErrors.Load(),
		float64(c.bytes.Load())/(1<<20))
}

// countingTransport counts every exchange that goes through it.
type countingTransport struct {
	next http.RoundTripper
	c    *counts
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.requests.Add(1)
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.c.transportErrors.Add(1)
		return nil, err
	}
	switch {
	case resp.StatusCode >= 500:
		t.c.s5xx.Add(1)
	case resp.StatusCode >= 400:
		t.c.s4xx.Add(1)
	case resp.StatusCode >= 300:
		t.c.s3xx.Add(1)
	default:
		t.c.s2xx.Add(1)
	}
	return resp, nil
}

// newClient returns an HTTP client that counts into c and follows
// redirects (a blob's 307 to the static server).
func newClient(c *counts) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Timeout: 60 * time.Second, Transport: countingTransport{next: tr, c: c}}
}

// answer is a response read whole (or, for a blob, hashed as it streams).
type answer struct {
	status int
	header http.Header
	body   []byte        // manifests and lists only
	got    digest.Digest // sha256 of the body
	n      int64
}

// fetch sends method to url and reads the answer: up to 16 MiB of body is
// kept when keep is true; the body is always hashed.
func fetch(hc *http.Client, c *counts, method, url string, keep bool) (*answer, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	a := &answer{status: resp.StatusCode, header: resp.Header}
	dg := digest.SHA256.Digester()
	var w io.Writer = dg.Hash()
	if keep {
		w = io.MultiWriter(w, (*appendWriter)(&a.body))
	}
	a.n, err = io.Copy(w, io.LimitReader(resp.Body, 1<<30))
	if c != nil {
		c.bytes.Add(a.n)
	}
	if err != nil {
		return a, fmt.Errorf("%s %s: reading the body: %w", method, url, err)
	}
	a.got = dg.Digest()
	return a, nil
}

// checkContent reports a problem unless a is a 200 whose
// Docker-Content-Digest is want and, for a GET, whose body is want's
// bytes, size bytes long.
func (a *answer) checkContent(method, url string, want digest.Digest, size int64) error {
	if a.status != http.StatusOK {
		return fmt.Errorf("%s %s: %d, want 200", method, url, a.status)
	}
	if h := a.header.Get("Docker-Content-Digest"); h != want.String() {
		return fmt.Errorf("%s %s: Docker-Content-Digest %q, want %s", method, url, h, want)
	}
	if method == http.MethodHead {
		if l := a.header.Get("Content-Length"); l != strconv.FormatInt(size, 10) {
			return fmt.Errorf("%s %s: Content-Length %q, want %d", method, url, l, size)
		}
		return nil
	}
	if a.n != size || a.got != want {
		return fmt.Errorf("%s %s: %d bytes with digest %s, want %d bytes of %s", method, url, a.n, a.got, size, want)
	}
	return nil
}

// sweepMemo is what sweeps remember from one to the next.
type sweepMemo struct {
	mu sync.Mutex
	// fetched are the blob files whose bytes a GET checked: a file renamed
	// into place is never written again, so later sweeps ask with HEAD.
	fetched blobMemo
	// inShard remembers, for the manifests and blobs of sharded kinds
	// ("kind repository digest"), the shard they were answered from.
	inShard map[string]string
	// skipUnchanged skips those whose shard is the same as then: their
	// answer depends on the blob file and that shard, neither changed.
	skipUnchanged bool
}

func newSweepMemo() *sweepMemo { return &sweepMemo{fetched: blobMemo{}, inShard: map[string]string{}} }

// sweepWorkers is how many requests a sweep has in flight.
const sweepWorkers = 4

// sweep asks the server at base for everything the tree holds, as
// checkTree read it: the catalog, and for every repository (or those of
// only, when it is not nil) its tags list (page by page, following the
// Link headers), every tag, every listed manifest and every listed blob.
// Blobs whose file was fetched whole before (memo.fetched) are asked with
// HEAD; the others with GET, their bytes checked against their digest.
// With memo.skipUnchanged, the manifests and blobs of a sharded kind whose
// shard has not changed since a sweep checked them are not asked again
// (every tag is). It returns every discrepancy.
func sweep(hc *http.Client, c *counts, base string, st *treeState, memo *sweepMemo, only map[string]bool) []string {
	var mu sync.Mutex
	var problems []string
	bad := func(err error) {
		mu.Lock()
		problems = append(problems, err.Error())
		mu.Unlock()
	}

	a, err := fetch(hc, c, http.MethodGet, base+"/v2/_catalog?n=10000", true)
	if err != nil {
		bad(err)
	} else {
		var cat struct{ Repositories []string }
		if a.status != http.StatusOK || json.Unmarshal(a.body, &cat) != nil {
			bad(fmt.Errorf("GET /v2/_catalog: %d %s", a.status, a.body))
		} else if !slices.Equal(cat.Repositories, st.catalog) && !(len(cat.Repositories) == 0 && len(st.catalog) == 0) {
			bad(fmt.Errorf("GET /v2/_catalog: %v, the catalog files say %v", cat.Repositories, st.catalog))
		}
	}

	names := make([]string, 0, len(st.repos))
	for n := range st.repos {
		if only == nil || only[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var checks []func() error
	for _, name := range names {
		r := st.repos[name]
		u := base + "/v2/" + name
		if tags, err := listTags(hc, c, base, name); err != nil {
			bad(err)
		} else if want := r.SortedTags(); !slices.Equal(tags, want) {
			bad(fmt.Errorf("GET %s/tags/list: %s, the repository file says %s", u, brief(tags), brief(want)))
		}
		// Every tag: a GET for the first tag of each manifest, a HEAD
		// for the others (a repository of thousands of tags naming a
		// few manifests).
		got := map[digest.Digest]bool{}
		for _, tag := range r.SortedTags() {
			d := r.Tags[tag]
			m := r.Manifests[d]
			method := http.MethodGet
			if got[d] {
				method = http.MethodHead
			}
			got[d] = true
			checks = append(checks, func() error {
				a, err := fetch(hc, c, method, u+"/manifests/"+tag, true)
				if err == nil {
					err = a.checkContent(method, u+"/manifests/"+tag, d, m.Size)
				}
				if err == nil && a.header.Get("Content-Type") != m.MediaType {
					err = fmt.Errorf("%s %s/manifests/%s: Content-Type %q, want %q", method, u, tag, a.header.Get("Content-Type"), m.MediaType)
				}
				return err
			})
		}
		// shardOf returns the memo key of d of kind and its shard's id,
		// or "" when the kind is not sharded.
		shardOf := func(kind layout.ShardKind, d digest.Digest) (string, string) {
			refs := r.Shards(kind)
			i, ok := layout.ShardContaining(refs, string(d))
			if !ok {
				return "", ""
			}
			return kind.String() + " " + name + " " + string(d), refs[i].ID
		}
		unchanged := func(key, id string) bool {
			memo.mu.Lock()
			defer memo.mu.Unlock()
			return key != "" && memo.skipUnchanged && memo.inShard[key] == id
		}
		remember := func(key, id string) {
			if key != "" {
				memo.mu.Lock()
				memo.inShard[key] = id
				memo.mu.Unlock()
			}
		}
		for d, m := range r.Manifests {
			key, id := shardOf(layout.ManifestKind, d)
			if unchanged(key, id) {
				continue
			}
			checks = append(checks, func() error {
				url := u + "/manifests/" + d.String()
				a, err := fetch(hc, c, http.MethodGet, url, true)
				if err == nil {
					err = a.checkContent(http.MethodGet, url, d, m.Size)
				}
				if err == nil {
					remember(key, id)
				}
				return err
			})
		}
		for d, b := range r.Blobs {
			if !b.IsStored() {
				continue
			}
			key, id := shardOf(layout.BlobKind, d)
			if unchanged(key, id) {
				continue
			}
			checks = append(checks, func() error {
				bk, err := layout.BlobKey(d)
				if err != nil {
					return err
				}
				fid := st.snap[bk].id
				method := http.MethodGet
				memo.mu.Lock()
				if prev, ok := memo.fetched[bk]; ok && prev == fid {
					method = http.MethodHead
				}
				memo.mu.Unlock()
				url := u + "/blobs/" + d.String()
				a, err := fetch(hc, c, method, url, false)
				if err == nil {
					err = a.checkContent(method, url, d, b.Size)
				}
				if err != nil {
					return err
				}
				memo.mu.Lock()
				memo.fetched[bk] = fid
				memo.mu.Unlock()
				remember(key, id)
				return nil
			})
		}
	}
	work := make(chan func() error)
	var wg sync.WaitGroup
	for range sweepWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for check := range work {
				if err := check(); err != nil {
					bad(err)
				}
			}
		}()
	}
	for _, check := range checks {
		work <- check
	}
	close(work)
	wg.Wait()
	sort.Strings(problems)
	return problems
}

// tagsPage is the page size listTags asks for: a page reads one tag shard
// or two.
const tagsPage = 1000

// listTags lists the tags of repository name page by page (n=tagsPage),
// following the Link headers, and checks each page: a 200, at most n tags,
// each after the last of the page before.
func listTags(hc *http.Client, c *counts, base, name string) ([]string, error) {
	var tags []string
	next := "/v2/" + name + "/tags/list?n=" + strconv.Itoa(tagsPage)
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			return nil, fmt.Errorf("GET /v2/%s/tags/list: more than 1000 pages of %d", name, tagsPage)
		}
		cur := next
		a, err := fetch(hc, c, http.MethodGet, base+cur, true)
		if err != nil {
			return nil, err
		}
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if a.status != http.StatusOK || json.Unmarshal(a.body, &tl) != nil || tl.Name != name {
			return nil, fmt.Errorf("GET %s: %d %.200s", cur, a.status, a.body)
		}
		if len(tl.Tags) > tagsPage {
			return nil, fmt.Errorf("GET %s: %d tags", cur, len(tl.Tags))
		}
		if len(tags) > 0 && len(tl.Tags) > 0 && tl.Tags[0] <= tags[len(tags)-1] {
			return nil, fmt.Errorf("GET %s: starts with %q, not after %q", cur, tl.Tags[0], tags[len(tags)-1])
		}
		tags = append(tags, tl.Tags...)
		next = ""
		if link := a.header.Get("Link"); link != "" {
			target, ok := strings.CutPrefix(link, "<")
			target, rest, ok2 := strings.Cut(target, ">")
			if !ok || !ok2 || rest != `; rel="next"` || !strings.HasPrefix(target, "/v2/"+name+"/tags/list?") {
				return nil, fmt.Errorf("GET %s: Link header %q", cur, link)
			}
			if len(tl.Tags) == 0 {
				return nil, fmt.Errorf("GET %s: no tags, and a Link header %q", cur, link)
			}
			next = target
		}
	}
	return tags, nil
}

// brief describes a list of tags in a line: their number, first and last.
func brief(tags []string) string {
	if len(tags) <= 8 {
		return fmt.Sprint(tags)
	}
	return fmt.Sprintf("%d tags [%s %s %s ... %s]", len(tags), tags[0], tags[1], tags[2], tags[len(tags)-1])
}
