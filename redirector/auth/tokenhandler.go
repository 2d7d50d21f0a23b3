package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heron-registry/heron/layout"
)

// TokenHandler is the token endpoint of the Docker token flow, to be
// mounted at /token:
//
//   - GET ?service=&scope=…&scope=…&account=&offline_token= with optional
//     basic credentials (https://distribution.github.io/distribution/spec/auth/token/).
//     No credentials is the anonymous caller.
//   - POST of an OAuth2 form (https://distribution.github.io/distribution/spec/auth/oauth/),
//     as docker login and containerd send: grant_type=password with
//     username and password, or grant_type=refresh_token with a refresh
//     token this endpoint issued; scope is space-separated.
//
// The token grants the requested scopes that the access file allows the
// caller, never an error for asking too much. registry:catalog:* is
// granted to every caller (the server filters the catalog). A server
// without a private key answers 404.
func (a *Auth) TokenHandler() http.Handler {
	return http.HandlerFunc(a.serveToken)
}

// tokenResponse is the answer of the token endpoint. token and
// access_token are the same: older clients read the first, OAuth2 ones
// the second.
type tokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

type tokenErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// tokenError is both the registry's error envelope and RFC 6749's error
// answer, so that either kind of client shows the message.
type tokenError struct {
	Errors           []tokenErrorDetail `json:"errors"`
	Error            string             `json:"error,omitempty"`
	ErrorDescription string             `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeTokenError(w http.ResponseWriter, status int, code, oauth, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="heron"`)
	}
	writeJSON(w, status, tokenError{
		Errors:           []tokenErrorDetail{{Code: code, Message: msg}},
		Error:            oauth,
		ErrorDescription: msg,
	})
}

const maxTokenForm = 64 << 10

func (a *Auth) serveToken(w http.ResponseWriter, r *http.Request) {
	ks := a.keys.Load()
	if ks == nil || ks.signer == nil {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		a.tokenGet(w, r)
	case http.MethodPost:
		a.tokenPost(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeTokenError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "invalid_request", "the token endpoint takes GET and POST")
	}
}

// tokenCaller authenticates a request to the token endpoint: basic
// credentials, a client certificate, or nobody.
func (a *Auth) tokenCaller(r *http.Request) (*Caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, _, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "basic") {
			return nil, badCredentials("the token endpoint takes basic credentials, not %q", scheme)
		}
	}
	return a.Authenticate(r)
}

func (a *Auth) tokenGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if s := q.Get("service"); s != "" && s != a.o.Service {
		writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", "invalid_request", "unknown service "+quote(s)+": this is "+quote(a.o.Service))
		return
	}
	c, err := a.tokenCaller(r)
	if err != nil {
		a.log.Info("auth: token request refused", "err", err, "remote", r.RemoteAddr)
		writeTokenError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", "authentication required: wrong user name or password")
		return
	}
	if c.Anonymous() && a.o.DenyAnonymous {
		writeTokenError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid_client", "authentication required")
		return
	}
	refresh := c.Method == MethodBasic && q.Get("offline_token") == "true"
	a.issue(w, c, parseScopes(q["scope"]), refresh)
}

func (a *Auth) tokenPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenForm)
	if err := r.ParseForm(); err != nil {
		writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", "invalid_request", "not a form: "+err.Error())
		return
	}
	f := r.PostForm
	if s := f.Get("service"); s != "" && s != a.o.Service {
		writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", "invalid_request", "unknown service "+quote(s)+": this is "+quote(a.o.Service))
		return
	}
	scopes := parseScopes(f["scope"])
	switch gt := f.Get("grant_type"); gt {
	case "password":
		c, err := a.checkPassword(r.Context(), f.Get("username"), f.Get("password"))
		if err != nil {
			a.log.Info("auth: token request refused", "err", err, "remote", r.RemoteAddr)
			writeTokenError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", "wrong user name or password")
			return
		}
		a.issue(w, c, scopes, true)
	case "refresh_token":
		c, err := a.checkRefresh(f.Get("refresh_token"))
		if err != nil {
			a.log.Info("auth: refresh token refused", "err", err, "remote", r.RemoteAddr)
			writeTokenError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid_grant", "invalid or expired refresh token: log in again")
			return
		}
		a.issueWithRefresh(w, c, scopes, f.Get("refresh_token"))
	default:
		writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", "unsupported_grant_type", "grant_type "+quote(gt)+": expected password or refresh_token")
	}
}

// checkRefresh verifies a refresh token: signed by a known key, not
// expired, and its user still in the htpasswd file with the same password.
func (a *Auth) checkRefresh(raw string) (*Caller, error) {
	if raw == "" {
		return nil, errors.New("no refresh_token")
	}
	c, _, err := a.keys.Load().parse(raw, a.o.Service, a.o.Service+refreshAudienceSuffix, useRefresh, a.o.Now)
	if err != nil {
		return nil, err
	}
	u := a.users.Load()
	if u == nil {
		return nil, errors.New("no htpasswd file")
	}
	hash, ok := u.hash[c.Subject]
	if !ok {
		return nil, errors.New("user " + quote(c.Subject) + " no longer exists")
	}
	if c.PasswordTag != passwordTag(hash) {
		return nil, errors.New("the password of user " + quote(c.Subject) + " changed")
	}
	return a.caller(c.Subject, MethodBasic), nil
}

// parseScopes parses scope parameters, each one or more scopes separated
// by spaces. Scopes that do not parse are left out.
func parseScopes(params []string) []Scope {
	var out []Scope
	for _, p := range params {
		for _, s := range strings.Fields(p) {
			if sc, ok := parseScope(s); ok {
				out = append(out, sc)
			}
		}
	}
	return out
}

// grant is the part of the requested scopes that the caller may have, as
// the access claim of a token.
func (a *Auth) grant(c *Caller, scopes []Scope) []accessEntry {
	out := []accessEntry{}
	index := map[string]int{} // repository -> position in out
	catalog := false
	for _, s := range scopes {
		switch s.Type {
		case "repository":
			if layout.ValidateRepository(s.Name) != nil {
				continue
			}
			var want actionSet
			for _, act := range s.Actions {
				if act == "*" {
					want |= setAll
				}
				want |= actionBit(Action(act))
			}
			got := want & a.rights(c.Name, s.Name)
			if got == 0 {
				continue
			}
			if i, ok := index[s.Name]; ok {
				got |= setOf(out[i].Actions)
				out[i].Actions = got.actions()
				continue
			}
			index[s.Name] = len(out)
			out = append(out, accessEntry{Type: "repository", Name: s.Name, Actions: got.actions()})
		case "registry":
			if s.Name == "catalog" && !catalog {
				catalog = true
				out = append(out, accessEntry{Type: "registry", Name: "catalog", Actions: []string{"*"}})
			}
		}
	}
	return out
}

func setOf(acts []string) actionSet {
	var s actionSet
	for _, a := range acts {
		s |= actionBit(Action(a))
	}
	return s
}

func grantedScope(access []accessEntry) string {
	parts := make([]string, len(access))
	for i, e := range access {
		parts[i] = e.Type + ":" + e.Name + ":" + strings.Join(e.Actions, ",")
	}
	return strings.Join(parts, " ")
}

// issue answers an access token for c, and a new refresh token when
// refresh is set.
func (a *Auth) issue(w http.ResponseWriter, c *Caller, scopes []Scope, refresh bool) {
	rt := ""
	if refresh {
		var err error
		rt, err = a.refreshToken(c.Name)
		if err != nil {
			a.log.Error("auth: signing a refresh token", "err", err)
			writeTokenError(w, http.StatusInternalServerError, "UNKNOWN", "server_error", "cannot sign a token")
			return
		}
	}
	a.issueWithRefresh(w, c, scopes, rt)
}

func (a *Auth) issueWithRefresh(w http.ResponseWriter, c *Caller, scopes []Scope, refresh string) {
	now := a.o.Now()
	access := a.grant(c, scopes)
	tok, err := a.keys.Load().sign(&tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    a.o.Service,
			Subject:   c.Name,
			Audience:  jwt.ClaimStrings{a.o.Service},
			ExpiresAt: jwt.NewNumericDate(now.Add(a.o.TokenExpiry)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomID(),
		},
		Access: access,
	})
	if err != nil {
		a.log.Error("auth: signing a token", "err", err)
		writeTokenError(w, http.StatusInternalServerError, "UNKNOWN", "server_error", "cannot sign a token")
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		Token:        tok,
		AccessToken:  tok,
		ExpiresIn:    int(a.o.TokenExpiry / time.Second),
		IssuedAt:     now.UTC().Format(time.RFC3339),
		RefreshToken: refresh,
		Scope:        grantedScope(access),
	})
}

// refreshToken signs a refresh token for a user of the htpasswd file.
func (a *Auth) refreshToken(user string) (string, error) {
	u := a.users.Load()
	if u == nil {
		return "", errors.New("no htpasswd file")
	}
	hash, ok := u.hash[user]
	if !ok {
		return "", errors.New("user " + quote(user) + " is not in the htpasswd file")
	}
	now := a.o.Now()
	return a.keys.Load().sign(&tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    a.o.Service,
			Subject:   user,
			Audience:  jwt.ClaimStrings{a.o.Service + refreshAudienceSuffix},
			ExpiresAt: jwt.NewNumericDate(now.Add(a.o.RefreshTokenExpiry)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomID(),
		},
		Access:      []accessEntry{},
		Use:         useRefresh,
		PasswordTag: passwordTag(hash),
	})
}
