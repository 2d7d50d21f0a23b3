package redirector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/heron-registry/heron/layout"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Page sizes of /v2/_catalog: a page without n has catalogDefaultN names,
// and no page has more than catalogMaxN (the specification lets a registry
// return fewer than asked, with a Link to the rest).
const (
	catalogDefaultN = 100
	catalogMaxN     = 1000
)

// page is the pagination a list request asks for
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags):
// at most n entries (all when n < 0) sorting after last.
type page struct {
	n    int
	last string
}

// parsePage reads n and last; n < 0 means "no n given". An n that is not a
// non-negative integer is ErrPaginationNumberInvalid.
func parsePage(r *http.Request) (page, error) {
	q := r.URL.Query()
	p := page{n: -1, last: q.Get("last")}
	if q.Has("n") {
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil || n < 0 {
			return page{}, ErrPaginationNumberInvalid.WithDetail(map[string]string{"n": q.Get("n")})
		}
		p.n = n
	}
	return p, nil
}

// setLink sets the Link header to the next page of path.
func setLink(w http.ResponseWriter, path, last string, n int) {
	q := url.Values{"last": {last}, "n": {strconv.Itoa(n)}}
	w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", path, q.Encode()))
}

// serveTags answers GET /v2/<name>/tags/list?n=&last=: the repository's
// tags in lexical order, with a Link header when more remain.
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, name string) error {
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	repo, err := s.repository(r.Context(), name)
	if err != nil {
		return err
	}
	if repo.Shards(layout.TagKind) > 0 {
		return s.serveShardedTags(w, r, name, repo, p)
	}
	start, end := repo.TagsAfter(p.last), repo.Tags()
	if p.n >= 0 && p.n < end-start {
		end = start + p.n
		if p.n > 0 {
			setLink(w, "/v2/"+name+"/tags/list", repo.TagAt(end-1), p.n)
		}
	}
	writeBody(w, http.StatusOK, "application/json", tagsJSON(name, []tagRun{{repo, start, end}}))
	return nil
}

// serveShardedTags is serveTags for a repository whose tags are in
// shards: a page reads the shards that hold it (one, or two where it
// crosses from one to the next); the whole list reads them all.
func (s *Server) serveShardedTags(w http.ResponseWriter, r *http.Request, name string, repo layout.RepositoryView, p page) error {
	var runs []tagRun
	left := p.n // < 0: all
	more := false
	n := repo.Shards(layout.TagKind)
	for i := repo.ShardAfter(layout.TagKind, p.last); i < n && left != 0; i++ {
		sh, _, err := s.shard(r.Context(), name, repo, layout.TagKind, i)
		if err != nil {
			return err
		}
		start, end := sh.TagsAfter(p.last), sh.Tags()
		if left >= 0 && end-start > left {
			end, more = start+left, true
		}
		if left >= 0 {
			left -= end - start
		}
		runs = append(runs, tagRun{sh, start, end})
		if left == 0 && !more {
			more = i+1 < n // shards are never empty
		}
	}
	if more && p.n > 0 {
		last := runs[len(runs)-1]
		setLink(w, "/v2/"+name+"/tags/list", last.view.TagAt(last.end-1), p.n)
	}
	writeBody(w, http.StatusOK, "application/json", tagsJSON(name, runs))
	return nil
}

// tagRun is the tags start to end of a view (a repository's, or a shard's).
type tagRun struct {
	view       layout.RepositoryView
	start, end int
}

// tagsJSON is the body of a tags/list answer, {"name":…,"tags":[…]} with
// the tags of runs, as encoding/json would write it: names and
// tags have no character it escapes (see layout.ValidateRepository and
// layout.ValidateTag), so they are written as they are.
func tagsJSON(name string, runs []tagRun) []byte {
	n := len(`{"name":"","tags":[]}`) + len(name)
	for _, run := range runs {
		for i := run.start; i < run.end; i++ {
			n += len(run.view.TagAt(i)) + 3
		}
	}
	b := make([]byte, 0, n)
	b = append(b, `{"name":"`...)
	b = append(b, name...)
	b = append(b, `","tags":[`...)
	first := true
	for _, run := range runs {
		for i := run.start; i < run.end; i++ {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '"')
			b = append(b, run.view.TagAt(i)...)
			b = append(b, '"')
		}
	}
	return append(b, "]}"...)
}

// serveCatalog answers GET /v2/_catalog?n=&last=
// (https://github.com/opencontainers/distribution-spec/blob/main/detail.md#catalog)
// from catalog/index.json and the shards a page needs. A tree without a
// catalog has no repositories to list.
func (s *Server) serveCatalog(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePage(r)
	if err != nil {
		return err
	}
	switch {
	case p.n < 0:
		p.n = catalogDefaultN
	case p.n > catalogMaxN:
		p.n = catalogMaxN
	}
	var keep func(name string, protected bool) bool
	if s.guard != nil {
		if keep, err = s.guard.guardCatalog(w, r); err != nil {
			return err
		}
	}
	names, more, err := s.catalogPage(r.Context(), p, keep)
	if errors.Is(err, errShardGone) {
		// publish replaced the catalog between our two reads: the new
		// index names shards that exist, read it again (once).
		names, more, err = s.catalogPage(r.Context(), p, keep)
	}
	if err != nil {
		return err
	}
	if more {
		setLink(w, "/v2/_catalog", names[len(names)-1], p.n)
	}
	writeJSON(w, http.StatusOK, struct {
		Repositories []string `json:"repositories"`
	}{names})
	return nil
}

// errShardGone is returned when a shard the catalog index names is not
// there.
var errShardGone = errors.New("catalog shard named by the index is gone")

// catalogPage reads one page of at most p.n (>= 0) names after p.last, and
// whether more follow. keep, when not nil, says which names the caller may
// see (the guard's filter); nil keeps the names that are not protected.
func (s *Server) catalogPage(ctx context.Context, p page, keep func(name string, protected bool) bool) (names []string, more bool, err error) {
	if keep != nil {
		return s.filteredCatalogPage(ctx, p, keep)
	}
	names = make([]string, 0, p.n)
	idx, err := s.index.catalogIndex(ctx)
	if errors.Is(err, errNotFound) {
		return names, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if s.afterCatalogIndex != nil {
		s.afterCatalogIndex()
	}
	if p.n == 0 {
		return names, false, nil
	}
	// Protected repositories are left out (see Server.repository): a
	// shard of protected names only is skipped unread.
	for i := idx.ShardAfter(p.last); i < len(idx.Shards); i++ {
		if public(idx.Shards[i]) == 0 {
			continue
		}
		shard, err := s.shards.catalogShard(ctx, idx.Shards[i].ID)
		if errors.Is(err, errNotFound) {
			return nil, false, fmt.Errorf("%w: %w", errShardGone, err)
		}
		if err != nil {
			return nil, false, err
		}
		for j := shard.After(p.last); j < shard.Len(); j++ {
			if shard.Protected(j) {
				continue
			}
			if len(names) == p.n {
				return names, true, nil
			}
			names = append(names, shard.At(j))
		}
		if len(names) == p.n {
			// More names follow if a following shard has public ones.
			return names, slices.ContainsFunc(idx.Shards[i+1:], func(s layout.CatalogShard) bool { return public(s) > 0 }), nil
		}
	}
	return names, false, nil
}

// filteredCatalogPage is catalogPage with a filter: the shards are read
// until the page is full and one more name is kept (then more follow), or
// none is left.
func (s *Server) filteredCatalogPage(ctx context.Context, p page, keep func(name string, protected bool) bool) (names []string, more bool, err error) {
	names = make([]string, 0, min(p.n, 1000))
	idx, err := s.index.catalogIndex(ctx)
	if errors.Is(err, errNotFound) {
		return names, false, nil
	}
	if err != nil || p.n == 0 {
		return names, false, err
	}
	for i := idx.ShardAfter(p.last); i < len(idx.Shards); i++ {
		shard, err := s.shards.catalogShard(ctx, idx.Shards[i].ID)
		if errors.Is(err, errNotFound) {
			return nil, false, fmt.Errorf("%w: %w", errShardGone, err)
		}
		if err != nil {
			return nil, false, err
		}
		for j := shard.After(p.last); j < shard.Len(); j++ {
			if !keep(shard.At(j), shard.Protected(j)) {
				continue
			}
			if len(names) == p.n {
				return names, true, nil
			}
			names = append(names, shard.At(j))
		}
	}
	return names, false, nil
}

// public is how many names of a catalog shard are not protected.
func public(s layout.CatalogShard) int { return s.Count - s.Protected }

// serveReferrers answers GET /v2/<name>/referrers/<digest>?artifactType=
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers):
// an image index of the manifests whose subject is digest, from the
// repository file. A digest nothing refers to, listed or not, has an empty
// index: the specification forbids a 404 from this endpoint for it.
func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request, name, ref string) error {
	d, err := layout.ParseDigest(ref)
	if err != nil {
		return ErrDigestInvalid.WithDetail(err.Error())
	}
	// A repository that does not exist (or that the caller may not
	// read) has no referrers: the answer is an empty list, as the
	// conformance suite expects of a repository nothing was pushed to.
	var refs []v1.Descriptor
	repo, err := s.repository(r.Context(), name)
	switch {
	case errors.Is(err, ErrNameUnknown):
	case err != nil:
		return err
	default:
		h, ok, err := s.holder(r.Context(), name, repo, layout.ReferrerKind, string(d))
		if err != nil {
			return err
		}
		if ok {
			refs = h.Referrers(d)
		}
	}
	artifactType := r.URL.Query().Get("artifactType")
	manifests := []v1.Descriptor{}
	for _, desc := range refs {
		if artifactType == "" || desc.ArtifactType == artifactType {
			manifests = append(manifests, desc)
		}
	}
	if artifactType != "" {
		w.Header().Set(filtersHeader, "artifactType")
	}
	index := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: manifests}
	index.SchemaVersion = 2
	body, err := json.Marshal(index)
	if err != nil {
		return err
	}
	writeBody(w, http.StatusOK, v1.MediaTypeImageIndex, body)
	return nil
}
