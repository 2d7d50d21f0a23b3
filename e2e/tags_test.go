//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// regctlPage is the page size of the walk with regctl tag ls --limit: not
// a multiple of the 1,000 tags of a shard, so that pages start and end
// inside shards and cross from one to the next.
const regctlPage = 4999

// lister is one real client's way of listing a repository's tags. list
// runs it against repo (host/name) and checks what it printed against want
// (the repository's tags, sorted), in the order printed.
type lister struct {
	name string
	bin  string
	list func(c *call, repo string, want []string)
}

// listers are the clients of TestTagList, each listing the tags the way a
// user of it would (docs/clients.md).
var listers = []lister{
	{name: "skopeo", bin: "skopeo", list: listSkopeo},
	{name: "podman", bin: "podman", list: listPodman},
	{name: "crane", bin: "crane", list: listCrane},
	{name: "oras", bin: "oras", list: listORAS},
	{name: "regctl", bin: "regctl", list: listRegctl},
}

// TestTagList lists the tags of the first of bulkRepos (the fixtures' tags
// and env.bulkTags more, in tag shards) with every client's own tag
// listing, in direct mode (tags/list is answered the same in both modes),
// and checks that each printed every tag once, in lexical order; then,
// from the tap, that heron answered every tags/list request with a 200,
// and that every Link header heron sent (a page with more after it) was
// followed: the client, or the test driving it page by page, asked for its
// target next.
func TestTagList(t *testing.T) {
	md := suite.modes[0]
	repo := bulkRepos[0]
	want := suite.tagsOf(repo)
	t.Run(md.name, func(t *testing.T) {
		for _, l := range listers {
			t.Run(l.name, func(t *testing.T) {
				countResult(t)
				bin, err := exec.LookPath(l.bin)
				if err != nil {
					msg := fmt.Sprintf("%s is not installed (make tools installs it): %v", l.bin, err)
					if suite.ci {
						t.Fatal(msg)
					}
					t.Skip(msg)
				}
				md.tap.quiet()
				mark := md.tap.mark()
				start := time.Now()
				c := newCall(t, bin, md)
				l.list(c, md.host()+"/"+repo, want)
				took := time.Since(start)
				if !md.tap.quiet() {
					t.Errorf("connections to heron still open 10s after %s exited", l.name)
				}
				exs := md.tap.since(mark)
				st := checkTagExchanges(t, exs, "/v2/"+repo+"/tags/list")
				t.Logf("%s listed %d tags of %s in %s: %s", l.name, len(want), repo, took.Round(time.Millisecond), st)
				if t.Failed() {
					for _, e := range exs {
						t.Logf("  %s", e)
					}
				}
			})
		}
	})
}

// tagStats are what a client's tags/list requests were.
type tagStats struct {
	requests int
	ns       []string // the values of n asked for ("" for none), in order of first use
	links    int      // Link headers heron sent
}

func (s tagStats) String() string {
	var ns []string
	for _, n := range s.ns {
		if n == "" {
			ns = append(ns, "without n")
		} else {
			ns = append(ns, "n="+n)
		}
	}
	return fmt.Sprintf("%d tags/list requests (%s), %d Link headers followed", s.requests, strings.Join(ns, ", "), s.links)
}

// checkTagExchanges checks the exchanges of a listing: every tags/list
// request of path answered 200 and read whole, and every Link heron sent
// followed by a request for its target (same path, same n and last). It
// returns what the requests were.
func checkTagExchanges(t *testing.T, exs []exchange, path string) tagStats {
	t.Helper()
	var st tagStats
	type query struct{ n, last string }
	var asked []query
	var links []query
	for _, e := range exs {
		if e.Err != "" {
			t.Errorf("unreadable exchange: %s", e)
		}
		if e.Status >= 500 {
			t.Errorf("server error: %s", e)
		}
		u, err := url.Parse(e.URI)
		if err != nil || u.Path != path || e.Method != "GET" {
			continue
		}
		st.requests++
		if e.Status != 200 {
			t.Errorf("tags/list not answered 200: %s", e)
		}
		q := u.Query()
		asked = append(asked, query{q.Get("n"), q.Get("last")})
		if n := q.Get("n"); !slices.Contains(st.ns, n) {
			st.ns = append(st.ns, n)
		}
		if e.Link == "" {
			continue
		}
		target, ok := strings.CutPrefix(e.Link, "<")
		target, _, ok2 := strings.Cut(target, ">")
		lu, err := url.Parse(target)
		if !ok || !ok2 || err != nil || lu.Path != path || !strings.HasSuffix(e.Link, `>; rel="next"`) {
			t.Errorf("Link header %q is not <%s?…>; rel=\"next\": %s", e.Link, path, e)
			continue
		}
		lq := lu.Query()
		links = append(links, query{lq.Get("n"), lq.Get("last")})
	}
	if st.requests == 0 {
		t.Errorf("no GET %s reached heron", path)
	}
	for _, l := range links {
		if !slices.Contains(asked, l) {
			t.Errorf("heron sent a Link to %s?n=%s&last=%s, and it was never asked for", path, l.n, l.last)
		}
	}
	st.links = len(links)
	return st
}

// sameTags fails the test unless got (a client's listing, as printed) is
// want (sorted): every tag once, in lexical order.
func sameTags(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: %d tags, want %d; first difference at %d: %q, want %q", what, len(got), len(want), i, got[i], want[i])
			return
		}
	}
	t.Errorf("%s: %d tags, want %d (the shorter list is a prefix of the other)", what, len(got), len(want))
}

// listSkopeo lists the tags with skopeo list-tags (one request: heron
// answers a tags/list without n with every tag; skopeo would follow a
// Link).
func listSkopeo(c *call, repo string, want []string) {
	out := c.run("--policy", suite.policy, "--registries-conf", suite.registries,
		"list-tags", "--tls-verify=false", "docker://"+repo)
	var list struct{ Tags []string }
	if err := json.Unmarshal(out, &list); err != nil {
		c.t.Fatalf("skopeo list-tags: %v", err)
	}
	sameTags(c.t, "skopeo list-tags", list.Tags, want)
}

// listPodman lists the tags with podman search --list-tags, which lists 25
// unless told more with --limit.
func listPodman(c *call, repo string, want []string) {
	if os.Geteuid() != 0 {
		c.t.Skipf("podman runs as root in this suite (with its own --root and vfs storage), and this is uid %d", os.Geteuid())
	}
	runroot, err := os.MkdirTemp("", "podman-")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.RemoveAll(runroot) })
	out := c.run("--root", c.path("storage"), "--runroot", runroot, "--storage-driver", "vfs",
		"--tmpdir", c.path("tmp"), "--events-backend", "none", "--cgroup-manager", "cgroupfs",
		"search", "--tls-verify=false", "--list-tags", "--limit", strconv.Itoa(len(want)+1), "--format", "json", repo)
	var found []struct{ Tags []string }
	if err := json.Unmarshal(out, &found); err != nil || len(found) != 1 {
		c.t.Fatalf("podman search --list-tags: %v (%d results)", err, len(found))
	}
	sameTags(c.t, "podman search --list-tags", found[0].Tags, want)
}

// listCrane lists the tags with crane ls, which asks 1,000 at a time
// (n=1000) and follows heron's Link headers page after page.
func listCrane(c *call, repo string, want []string) {
	sameTags(c.t, "crane ls", lines(c.run("ls", "--insecure", repo)), want)
}

// listORAS lists the tags with oras repo tags, whole, and after the
// middle tag (--last).
func listORAS(c *call, repo string, want []string) {
	sameTags(c.t, "oras repo tags", lines(c.run("repo", "tags", "--plain-http", repo)), want)
	mid := want[len(want)/2]
	sameTags(c.t, "oras repo tags --last "+mid, lines(c.run("repo", "tags", "--plain-http", "--last", mid, repo)), want[len(want)/2+1:])
}

// listRegctl lists the tags with regctl tag ls, whole; then page by page,
// as a script that keeps its place would: regctl tag ls --limit N asks for
// one page (n=N) and does not follow the Link header, so the test asks for
// the next page with --last, the page's last tag, until a page is empty.
func listRegctl(c *call, repo string, want []string) {
	host := "reg=" + c.md.host() + ",tls=disabled"
	sameTags(c.t, "regctl tag ls", lines(c.run("--host", host, "tag", "ls", repo)), want)
	var got []string
	limit := strconv.Itoa(regctlPage)
	for pages := 0; ; pages++ {
		if pages > len(want)/regctlPage+2 {
			c.t.Fatalf("regctl tag ls --limit %d: more pages than %d tags need", regctlPage, len(want))
		}
		args := []string{"--host", host, "tag", "ls", "--limit", limit}
		if len(got) > 0 {
			args = append(args, "--last", got[len(got)-1])
		}
		page := lines(c.run(append(args, repo)...))
		if len(page) == 0 {
			break
		}
		if len(page) > regctlPage {
			c.t.Fatalf("regctl tag ls --limit %d: %d tags", regctlPage, len(page))
		}
		got = append(got, page...)
	}
	sameTags(c.t, fmt.Sprintf("regctl tag ls --limit %d --last …, page by page", regctlPage), got, want)
}
