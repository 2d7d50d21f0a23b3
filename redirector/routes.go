package redirector

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/julienschmidt/httprouter"
)

// endpoint is what a path under /v2/ asks for.
type endpoint int

const (
	endpointUnknown   endpoint = iota
	endpointBase               // /v2/
	endpointCatalog            // /v2/_catalog
	endpointTags               // /v2/<name>/tags/list
	endpointManifest           // /v2/<name>/manifests/<reference>
	endpointBlob               // /v2/<name>/blobs/<digest>
	endpointReferrers          // /v2/<name>/referrers/<digest>
	endpointUpload             // /v2/<name>/blobs/uploads/[<id>]
)

// route is a parsed /v2/ path: the endpoint, and the repository name and
// reference when it has them (the metrics' route label is its endpoint).
// Nothing in it is validated yet.
type route struct {
	endpoint endpoint
	name     string
	ref      string
}

// parsePath parses what follows "/v2/" from the right, because repository
// names contain "/" while the endpoint's own segments are fixed: the last
// two segments are "tags/list" or "<kind>/<reference>", and everything
// before them is the name.
func parsePath(rest string) route {
	switch rest {
	case "":
		return route{endpoint: endpointBase}
	case "_catalog":
		return route{endpoint: endpointCatalog}
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return route{endpoint: endpointTags, name: name}
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return route{}
	}
	if name, ok := strings.CutSuffix(rest[:i], "/"+uploadsSegment); ok {
		return route{endpoint: endpointUpload, name: name, ref: rest[i+1:]}
	}
	head, ref := rest[:i], rest[i+1:]
	name, kind := "", head
	if j := strings.LastIndexByte(head, '/'); j >= 0 {
		name, kind = head[:j], head[j+1:]
	}
	var e endpoint
	switch kind {
	case "manifests":
		e = endpointManifest
	case "blobs":
		e = endpointBlob
	case "referrers":
		e = endpointReferrers
	default:
		return route{}
	}
	return route{endpoint: e, name: name, ref: ref}
}

// IsAPITarget reports whether a request target (path and query, as sent)
// is under /v2, the registry API: what heron serve answers on its own
// HTTP/1.1 loop (package h1). The operations endpoints are served by
// net/http.
func IsAPITarget(target string) bool {
	rest, ok := strings.CutPrefix(target, "/v2")
	return ok && (rest == "" || rest[0] == '/' || rest[0] == '?')
}

// routes builds the router: one catch-all /v2/*path for reads, the same
// path answering 405 for every method that would write, and OCI errors
// for anything else. httprouter's path "fixing" redirects are off: a path
// is answered as it was sent, or refused.
func (s *Server) routes() http.Handler {
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false

	read := func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		s.respond(w, req, s.serveV2(w, req, strings.TrimPrefix(ps.ByName("path"), "/")))
	}
	base := func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) {
		s.respond(w, req, s.serveBase(w, req))
	}
	write := func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		s.respond(w, req, clientGone(req, s.serveWrite(w, req, strings.TrimPrefix(ps.ByName("path"), "/"))))
	}
	writeBase := func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) {
		w.Header().Set("Allow", "GET, HEAD")
		s.respond(w, req, ErrUnsupported)
	}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		r.Handle(m, "/v2", base)
		r.Handle(m, "/v2/*path", read)
	}
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		r.Handle(m, "/v2", writeBase)
		r.Handle(m, "/v2/*path", write)
	}
	if s.guard != nil && s.guard.a.Tokens() {
		tokens := s.guard.a.TokenHandler()
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			r.Handler(m, tokenPath, tokens)
		}
	}
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.respond(w, req, ErrNotFound)
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.respond(w, req, ErrUnsupported)
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.respond(w, req, fmt.Errorf("panic: %v", v))
	}
	return r
}

// serveV2 answers a GET or HEAD under /v2/.
func (s *Server) serveV2(w http.ResponseWriter, r *http.Request, rest string) error {
	if err := checkPath(r, rest); err != nil {
		return err
	}
	rt := parsePath(rest)
	switch rt.endpoint {
	case endpointBase:
		return s.serveBase(w, r)
	case endpointCatalog:
		return s.serveCatalog(w, r)
	case endpointUnknown:
		return ErrNotFound
	}
	if s.pull != nil {
		rt.name = s.pull.namespaced(r, rt.name)
	}
	if err := layout.ValidateRepository(rt.name); err != nil {
		return ErrNameInvalid.WithDetail(err.Error())
	}
	if s.guard != nil {
		var err error
		if r, err = s.guard.authorize(w, r, rt); err != nil {
			return err
		}
	}
	// A caller who may not read the repository gets the answer of a
	// missing one, and makes no upstream call.
	if s.pull != nil && rt.endpoint == endpointManifest && !hidden(r.Context()) {
		if err := s.pullManifest(r.Context(), rt.name, rt.ref); err != nil {
			return err
		}
	}
	err := s.serveRepository(w, r, rt)
	if errors.Is(err, errRepoShardGone) {
		// A publish replaced the repository file, and removed a shard
		// the file read named, between the two reads: the new file names
		// shards that exist; answer again from it (once), read anew.
		s.repos.forget(rt.name)
		err = s.serveRepository(w, r, rt)
	}
	return err
}

// checkPath refuses the paths no endpoint answers whatever they parse as.
func checkPath(r *http.Request, rest string) error {
	// An encoded slash would let a client make one segment of what the
	// router splits as two (or the reverse); no name, tag or digest
	// contains one, so the whole path is refused.
	if p := r.URL.EscapedPath(); strings.IndexByte(p, '%') >= 0 && strings.Contains(strings.ToLower(p), "%2f") {
		return ErrNameInvalid.WithDetail("encoded slash in path")
	}
	// Dot segments are refused wherever they are, so that every such path
	// gets the same answer whether or not it parses as an endpoint.
	for seg := range strings.SplitSeq(rest, "/") {
		if seg == "." || seg == ".." {
			return ErrNameInvalid.WithDetail("dot segment in path")
		}
	}
	return nil
}

// serveRepository answers a request for the repository of rt.
func (s *Server) serveRepository(w http.ResponseWriter, r *http.Request, rt route) error {
	switch rt.endpoint {
	case endpointTags:
		return s.serveTags(w, r, rt.name)
	case endpointManifest:
		return s.serveManifest(w, r, rt.name, rt.ref)
	case endpointBlob:
		return s.serveBlob(w, r, rt.name, rt.ref)
	case endpointReferrers:
		return s.serveReferrers(w, r, rt.name, rt.ref)
	case endpointUpload:
		if rt.ref == "" || r.Method != http.MethodGet {
			return ErrNotFound
		}
		return s.serveUploadStatus(w, r, rt.name, rt.ref)
	}
	return ErrNotFound
}

// serveBase answers /v2/, the API version check
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#determining-support).
func (s *Server) serveBase(w http.ResponseWriter, r *http.Request) error {
	if s.guard != nil {
		if err := s.guard.guardBase(w, r); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}
