package redirector

import (
	"context"
	"errors"
	"net/http"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector/auth"
)

// Access control (WithAuth): who may read and write which repository.
//
// Every request under /v2/ is authenticated (HTTP basic against the
// htpasswd file, a bearer token of heron's token endpoint, or a client
// certificate) and authorized for the repository it names and the actions
// its method needs: pull for GET and HEAD, pull and push for uploads and
// manifest PUTs, delete for DELETE. What a denial looks like depends on
// who asks, so that no caller learns what it may not read:
//
//   - bad credentials: 401 with a challenge (error="invalid_token" for a
//     token);
//   - an anonymous caller, or a token that lacks the scope: 401 with a
//     challenge for the scope, so that a client fetches the token it needs
//     (insufficient_scope for a token of a known user). An anonymous
//     caller also gets it for a repository that does not exist, or whose
//     file says it is protected: the same 401 for both;
//   - a user (basic or certificate) who may not pull a repository: the
//     answer to a repository that does not exist (ErrNameUnknown, and an
//     empty referrers list), whatever is there;
//   - a user who may pull but not write: 403 DENIED. (The decision is made
//     from the name alone, never from what the tree holds.)
//
// /v2/ answers 401 to anonymous callers (docker login checks credentials
// there), the catalog lists only what the caller may pull, and the token
// endpoint is /token.

// WithAuth makes the server authenticate and authorize every request with
// a (see package auth), and answer the token endpoint at /token when a
// issues tokens.
func WithAuth(a *auth.Auth) Option {
	return func(o *options) { o.auth = a }
}

// guard is the access control of a Server.
type guard struct {
	a *auth.Auth
}

// tokenPath is where the token endpoint is answered.
const tokenPath = "/token"

// ErrUnauthorized is the answer that asks for credentials (401, with a
// WWW-Authenticate challenge).
var ErrUnauthorized = &Error{Code: CodeUnauthorized, Status: http.StatusUnauthorized, Message: "authentication required"}

// ErrDenied is the answer to a caller who may not do what it asks (403).
var ErrDenied = &Error{Code: CodeDenied, Status: http.StatusForbidden, Message: "requested access to the resource is denied"}

// challenge is an answer of 401 with the WWW-Authenticate header that asks
// for the scope: respond writes it.
type challenge struct {
	e       *Error
	caller  *auth.Caller
	authErr error
	scopes  []auth.Scope
}

func (c *challenge) Error() string { return c.e.Error() }
func (c *challenge) Unwrap() error { return c.e }

// access is what the guard decided about a request, carried in its
// context for the handlers.
type access struct {
	caller *auth.Caller
	// hidden: the caller may not read the repository; it is answered as
	// one that does not exist.
	hidden bool
}

type accessKey struct{}

// accessOf returns the access decided for the request of ctx: nil when
// the server has no guard, or for an anonymous caller the guard let
// through (see authorize).
func accessOf(ctx context.Context) *access {
	a, _ := ctx.Value(accessKey{}).(*access)
	return a
}

// hidden reports whether the guard answers the request of ctx as one
// for a repository that does not exist.
func hidden(ctx context.Context) bool {
	acc := accessOf(ctx)
	return acc != nil && acc.hidden
}

// actionsOf are the actions a request of method on rt needs.
func actionsOf(method string, rt route) []auth.Action {
	if rt.endpoint == endpointUpload {
		// A session is part of a push, whatever the method.
		return []auth.Action{auth.Pull, auth.Push}
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return []auth.Action{auth.Pull}
	case http.MethodDelete:
		return []auth.Action{auth.Delete}
	}
	return []auth.Action{auth.Pull, auth.Push}
}

// authenticate returns the caller of r, or the 401 for bad credentials,
// and names the caller in the request's log line, refused or not.
func (g *guard) authenticate(w http.ResponseWriter, r *http.Request) (*auth.Caller, error) {
	c, err := g.a.Authenticate(r)
	if err != nil {
		return nil, &challenge{e: ErrUnauthorized.WithDetail("bad credentials"), authErr: err}
	}
	if !c.Anonymous() {
		noteUser(w, c.Name)
	}
	return c, nil
}

// authorize decides r (on rt, whose name is valid) and returns the
// request to serve, carrying the decision, or the answer of a denial.
func (g *guard) authorize(w http.ResponseWriter, r *http.Request, rt route) (*http.Request, error) {
	c, err := g.authenticate(w, r)
	if err != nil {
		return nil, err
	}
	acts := actionsOf(r.Method, rt)
	acc := &access{caller: c}
	for _, act := range acts {
		if g.a.Allowed(c, rt.name, act) {
			continue
		}
		if c.Anonymous() || c.Method == auth.MethodToken {
			return nil, &challenge{e: ErrUnauthorized, caller: c, scopes: []auth.Scope{auth.RepositoryScope(rt.name, acts...)}}
		}
		if act == auth.Pull && len(acts) == 1 {
			acc.hidden = true
			break
		}
		return nil, ErrDenied.WithDetail(map[string]string{"name": rt.name, "action": string(act)})
	}
	if c.Anonymous() && !acc.hidden {
		// The common case of public pulls costs no copy of the request:
		// a request without a decision in its context is anonymous.
		return r, nil
	}
	return r.WithContext(context.WithValue(r.Context(), accessKey{}, acc)), nil
}

// hides reports whether the guard answers repository name, whose file
// exists (found) and says whether it is protected, as one that does not
// exist for the request of ctx; it returns the answer to give instead:
// the 401 for an anonymous caller (the same whether or not the repository
// exists), the 404 for anyone else.
func (s *Server) hides(ctx context.Context, name string, found, protected bool) error {
	if s.guard == nil {
		if !found || protected {
			return ErrNameUnknown.WithDetail(map[string]string{"name": name})
		}
		return nil
	}
	acc := accessOf(ctx)
	switch {
	case acc != nil && acc.hidden:
		return ErrNameUnknown.WithDetail(map[string]string{"name": name})
	case (acc == nil || acc.caller.Anonymous()) && (!found || protected):
		var c *auth.Caller
		if acc != nil {
			c = acc.caller
		}
		return &challenge{e: ErrUnauthorized, caller: c, scopes: []auth.Scope{auth.RepositoryScope(name, auth.Pull)}}
	case !found:
		return ErrNameUnknown.WithDetail(map[string]string{"name": name})
	}
	return nil
}

// public reports whether anonymous callers may read repository name, of
// which repo is the file: what decides whether its blobs may be
// redirected to a URL anyone can reuse.
func (s *Server) publicRepository(name string, repo layout.RepositoryView) bool {
	if repo.Protected() {
		return false
	}
	return s.guard == nil || s.guard.a.Public(name)
}

// setChallenge writes the WWW-Authenticate header of err, if it is a
// challenge.
func (s *Server) setChallenge(w http.ResponseWriter, r *http.Request, err error) {
	var c *challenge
	if s.guard == nil || !errors.As(err, &c) {
		return
	}
	s.guard.a.ChallengeFor(w.Header(), r, c.caller, c.authErr, c.scopes...)
}

// guardBase decides GET /v2/: 200 for a caller who authenticated, the
// challenge otherwise (also to anonymous callers, so that docker login
// learns how to log in and checks the credentials it is given).
func (g *guard) guardBase(w http.ResponseWriter, r *http.Request) error {
	c, err := g.authenticate(w, r)
	if err != nil {
		return err
	}
	if c.Anonymous() {
		return &challenge{e: ErrUnauthorized, caller: c}
	}
	return nil
}

// guardCatalog decides GET /v2/_catalog and returns the filter of its
// names.
func (g *guard) guardCatalog(w http.ResponseWriter, r *http.Request) (func(name string, protected bool) bool, error) {
	c, err := g.authenticate(w, r)
	if err != nil {
		return nil, err
	}
	if !g.a.CatalogAllowed(c) {
		if c.Anonymous() || c.Method == auth.MethodToken {
			return nil, &challenge{e: ErrUnauthorized, caller: c, scopes: []auth.Scope{auth.CatalogScope}}
		}
		return nil, ErrDenied
	}
	anonymous := c.Anonymous()
	return func(name string, protected bool) bool {
		return (!protected || !anonymous) && g.a.Listable(c, name)
	}, nil
}

// mayMount reports whether the caller of r may mount a blob from
// repository from (pull on it), or, with from empty, any blob of the tree
// (only where the caller may pull every repository: no access file).
func (g *guard) mayMount(r *http.Request, from string) bool {
	acc := accessOf(r.Context())
	if acc == nil { // anonymous
		return false
	}
	if from == "" {
		return !g.a.Restricted() && !acc.caller.Anonymous()
	}
	// The identity's rights, not its token's scopes: a user who may pull
	// from may mount from it (docker asks for both scopes; crane does not).
	return g.a.Listable(acc.caller, from)
}
