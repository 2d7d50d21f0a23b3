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

// sweep asks the server at base for everything the tree holds, as
// checkTree read it: the catalog, and for every repository (or those of
// only, when it is not nil) its tags list,
// every tag, every listed manifest and every listed blob. Blobs whose file
// was fetched whole before (same file identity, in fetched) are asked with
// HEAD; the others with GET, their bytes checked against their digest. It
// returns every discrepancy.
func sweep(hc *http.Client, c *counts, base string, st *treeState, fetched blobMemo, only map[string]bool) []string {
	var problems []string
	bad := func(err error) { problems = append(problems, err.Error()) }

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
	for _, name := range names {
		r := st.repos[name]
		u := base + "/v2/" + name
		if a, err := fetch(hc, c, http.MethodGet, u+"/tags/list?n=10000", true); err != nil {
			bad(err)
		} else {
			var tl struct{ Tags []string }
			if a.status != http.StatusOK || json.Unmarshal(a.body, &tl) != nil {
				bad(fmt.Errorf("GET %s/tags/list: %d %s", u, a.status, a.body))
			} else if want := r.SortedTags(); !slices.Equal(tl.Tags, want) {
				bad(fmt.Errorf("GET %s/tags/list: %v, the repository file says %v", u, tl.Tags, want))
			}
		}
		for _, tag := range r.SortedTags() {
			d := r.Tags[tag]
			m := r.Manifests[d]
			a, err := fetch(hc, c, http.MethodGet, u+"/manifests/"+tag, true)
			if err == nil {
				err = a.checkContent(http.MethodGet, u+"/manifests/"+tag, d, m.Size)
			}
			if err == nil && a.header.Get("Content-Type") != m.MediaType {
				err = fmt.Errorf("GET %s/manifests/%s: Content-Type %q, want %q", u, tag, a.header.Get("Content-Type"), m.MediaType)
			}
			if err != nil {
				bad(err)
			}
		}
		for d, m := range r.Manifests {
			url := u + "/manifests/" + d.String()
			a, err := fetch(hc, c, http.MethodGet, url, true)
			if err == nil {
				err = a.checkContent(http.MethodGet, url, d, m.Size)
			}
			if err != nil {
				bad(err)
			}
		}
		for d, b := range r.Blobs {
			if !b.IsStored() {
				continue
			}
			key, err := layout.BlobKey(d)
			if err != nil {
				bad(err)
				continue
			}
			id := st.snap[key].id
			method := http.MethodGet
			if prev, ok := fetched[key]; ok && prev == id {
				method = http.MethodHead
			}
			url := u + "/blobs/" + d.String()
			a, err := fetch(hc, c, method, url, false)
			if err == nil {
				err = a.checkContent(method, url, d, b.Size)
			}
			if err != nil {
				bad(err)
				continue
			}
			fetched[key] = id
		}
	}
	return problems
}
