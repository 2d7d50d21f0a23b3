package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Options configure an Auth. The zero value authenticates nobody and lets
// anonymous callers pull everything.
type Options struct {
	// HtpasswdFile is an htpasswd file of bcrypt entries (htpasswd -B).
	// "" means no basic-auth users.
	HtpasswdFile string
	// AccessFile is the YAML access file; "" means the default policy:
	// anonymous callers may pull everything, authenticated ones may pull,
	// push and delete everything.
	AccessFile string
	// TokenKeyFiles are PEM files of Ed25519 keys: the first private key
	// signs the tokens, every key verifies them (rotation: add the new
	// key's file, then later remove the old one). Empty: no token flow,
	// callers are challenged for basic credentials.
	TokenKeyFiles []string
	// TokenRealm is the absolute URL of the token endpoint given in
	// challenges. "" derives it from each request: https when the request
	// came over TLS or with X-Forwarded-Proto: https, the Host, and
	// /token. A server with only public keys must be given one.
	TokenRealm string
	// Service is the service name of the token flow, the tokens' issuer
	// and audience. Default "heron".
	Service string
	// TokenExpiry is the lifetime of access tokens. Default 5 minutes.
	TokenExpiry time.Duration
	// RefreshTokenExpiry is the lifetime of refresh tokens (the identity
	// token docker login stores). Default 30 days.
	RefreshTokenExpiry time.Duration
	// DenyAnonymous refuses anonymous callers everything, whatever the
	// access file says.
	DenyAnonymous bool
	// ClientCerts says that the TLS layer verifies client certificates
	// (tls.VerifyClientCertIfGiven): a request with a verified chain is
	// the user named by the leaf's subject common name.
	ClientCerts bool
	// Logger receives reloads and reload errors. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// ErrBadCredentials is the error of credentials that do not authenticate
// anyone: a wrong password, an unknown user, an invalid, expired or
// foreign token, a malformed Authorization header. Errors wrap it with a
// detail for the log; the caller should only be told that they were
// refused.
var ErrBadCredentials = errors.New("bad credentials")

// Methods of authentication, the values of Caller.Method.
const (
	MethodBasic = "basic"
	MethodToken = "token"
	MethodCert  = "cert"
)

// Caller is who made a request.
type Caller struct {
	// Name is the user; "" for an anonymous caller.
	Name string
	// Groups are the access file's groups that list the user.
	Groups []string
	// Method is how the caller was authenticated: "basic", "token",
	// "cert", or "" for an anonymous caller without a token.
	Method string

	// The rights a token carries (Method "token" only).
	grants  map[string]actionSet
	catalog bool
}

// Anonymous reports whether the caller gave no identity (an anonymous
// token included).
func (c *Caller) Anonymous() bool { return c == nil || c.Name == "" }

// Auth authenticates and authorizes callers. Its methods are safe for
// concurrent use.
type Auth struct {
	o       Options
	users   atomic.Pointer[users]
	policy  atomic.Pointer[policy]
	keys    atomic.Pointer[keySet]
	creds   *credCache
	tokens  *ttlCache[*verifiedToken]
	bcrypts chan struct{} // bounds concurrent bcrypt comparisons
	log     *slog.Logger
	watch   *watcher

	// bcryptCalls counts bcrypt comparisons, for tests.
	bcryptCalls atomic.Int64
}

// New loads the files of o and starts watching them. Errors name the file
// and the line at fault.
func New(o Options) (*Auth, error) {
	if o.Service == "" {
		o.Service = "heron"
	}
	if o.TokenExpiry <= 0 {
		o.TokenExpiry = 5 * time.Minute
	}
	if o.RefreshTokenExpiry <= 0 {
		o.RefreshTokenExpiry = 30 * 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TokenRealm != "" {
		u, err := url.Parse(o.TokenRealm)
		if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("token realm %q: expected an absolute http(s) URL such as https://registry.example/token", o.TokenRealm)
		}
	}
	if strings.ContainsAny(o.Service, "\"\\") {
		return nil, fmt.Errorf("service %q: no quotes or backslashes", o.Service)
	}
	a := &Auth{
		o:       o,
		creds:   newCredCache(credCacheSize, credCacheTTL),
		tokens:  newTTLCache[*verifiedToken](tokenCacheSize, tokenCacheTTL),
		bcrypts: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		log:     o.Logger,
	}
	a.policy.Store(defaultPolicy())
	var srcs []*source
	if o.HtpasswdFile != "" {
		srcs = append(srcs, &source{paths: []string{o.HtpasswdFile}, load: func(d [][]byte) error {
			u, err := parseHtpasswd(o.HtpasswdFile, d[0])
			if err == nil {
				a.users.Store(u)
			}
			return err
		}})
	}
	if o.AccessFile != "" {
		srcs = append(srcs, &source{paths: []string{o.AccessFile}, load: func(d [][]byte) error {
			p, err := parseAccess(o.AccessFile, d[0])
			if err == nil {
				a.policy.Store(p)
			}
			return err
		}})
	}
	if len(o.TokenKeyFiles) > 0 {
		srcs = append(srcs, &source{paths: o.TokenKeyFiles, load: func(d [][]byte) error {
			ks, err := parseKeys(o.TokenKeyFiles, d)
			if err != nil {
				return err
			}
			if ks.signer == nil && o.TokenRealm == "" {
				return fmt.Errorf("token keys %s: no private key, so this server cannot issue tokens: give the token realm, the URL of the token endpoint of a server that has the private key; %s", strings.Join(o.TokenKeyFiles, ", "), keyHelp)
			}
			a.keys.Store(ks)
			return nil
		}})
	}
	for _, s := range srcs {
		if err := s.reload(); err != nil {
			return nil, err
		}
	}
	if len(srcs) > 0 {
		w, err := startWatcher(srcs, a.log)
		if err != nil {
			a.log.Warn("auth: files will not be reloaded when they change", "err", err)
		}
		a.watch = w
	}
	return a, nil
}

// Close stops watching the files.
func (a *Auth) Close() error {
	if a.watch == nil {
		return nil
	}
	return a.watch.close()
}

// Reload reads the files again now (on SIGHUP, say). A file that fails to
// load keeps its previous configuration; the first error is returned.
func (a *Auth) Reload() error {
	if a.watch == nil {
		return nil
	}
	return a.watch.reloadAll()
}

// Enabled reports whether any way to authenticate is configured: users,
// token keys or client certificates.
func (a *Auth) Enabled() bool {
	return a.o.HtpasswdFile != "" || len(a.o.TokenKeyFiles) > 0 || a.o.ClientCerts
}

// Tokens reports whether the token flow is on: challenges are Bearer and
// TokenHandler issues tokens (when this server has a private key).
func (a *Auth) Tokens() bool { return len(a.o.TokenKeyFiles) > 0 }

// Service is the service name of the token flow.
func (a *Auth) Service() string { return a.o.Service }

func badCredentials(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadCredentials, fmt.Sprintf(format, args...))
}

// Authenticate says who made r. A request without credentials is the
// anonymous caller and no error; credentials that do not authenticate
// anyone are an error wrapping ErrBadCredentials, never an anonymous
// caller. An Authorization header is preferred to a client certificate.
func (a *Auth) Authenticate(r *http.Request) (*Caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		switch strings.ToLower(scheme) {
		case "basic":
			user, pass, ok := r.BasicAuth()
			if !ok {
				return nil, badCredentials("malformed basic credentials")
			}
			return a.checkPassword(r.Context(), user, pass)
		case "bearer":
			return a.checkToken(strings.TrimSpace(rest))
		default:
			return nil, badCredentials("unsupported authorization scheme %q", scheme)
		}
	}
	if a.o.ClientCerts && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if cn == "" {
			return nil, badCredentials("client certificate without a subject common name")
		}
		return a.caller(cn, MethodCert), nil
	}
	return &Caller{}, nil
}

func (a *Auth) caller(name, method string) *Caller {
	c := &Caller{Name: name, Method: method}
	if name != "" {
		c.Groups = slices.Clone(a.policy.Load().memberOf[name])
	}
	return c
}

// checkPassword verifies a user's password against the htpasswd file,
// through the cache of verified credentials.
func (a *Auth) checkPassword(ctx context.Context, user, pass string) (*Caller, error) {
	u := a.users.Load()
	if u == nil {
		return nil, badCredentials("basic credentials, but no htpasswd file")
	}
	hash, ok := u.hash[user]
	if !ok {
		// As long as a wrong password, so as not to tell which users exist.
		_ = a.compare(ctx, dummyHash(u.cost), pass)
		return nil, badCredentials("unknown user %q", user)
	}
	k := credKey(user, pass, hash)
	now := a.o.Now()
	if !a.creds.hit(k, now) {
		if err := a.compare(ctx, hash, pass); err != nil {
			return nil, badCredentials("wrong password for user %q", user)
		}
		a.creds.add(k, now)
	}
	return a.caller(user, MethodBasic), nil
}

// compare runs bcrypt, at most GOMAXPROCS at a time so that a flood of
// wrong passwords queues instead of starving the server.
func (a *Auth) compare(ctx context.Context, hash []byte, pass string) error {
	select {
	case a.bcrypts <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-a.bcrypts }()
	a.bcryptCalls.Add(1)
	return bcrypt.CompareHashAndPassword(hash, []byte(pass))
}

// verifiedToken is what checkToken keeps of a verified access token.
type verifiedToken struct {
	kid     string
	sub     string
	nbf     time.Time
	grants  map[string]actionSet // read only once cached
	catalog bool
}

// Bounds of the cache of verified tokens.
const (
	tokenCacheSize = 4096
	tokenCacheTTL  = 10 * time.Minute
)

// checkToken verifies a bearer access token. A verified token is
// remembered until it expires, so that a client pulling many blobs with
// one token pays the signature check once; a hit still needs the key that
// signed it to be one of the current keys.
func (a *Auth) checkToken(raw string) (*Caller, error) {
	if raw == "" {
		return nil, badCredentials("empty bearer token")
	}
	ks := a.keys.Load()
	if ks == nil {
		return nil, badCredentials("bearer token, but no token keys")
	}
	now := a.o.Now()
	key := sha256.Sum256([]byte(raw))
	v, ok := a.tokens.get(key, now)
	if !ok || ks.verify[v.kid] == nil || now.Add(tokenLeeway).Before(v.nbf) {
		c, kid, err := ks.parse(raw, a.o.Service, a.o.Service, "", a.o.Now)
		if err != nil {
			return nil, badCredentials("token: %v", err)
		}
		v = &verifiedToken{kid: kid, sub: c.Subject, grants: map[string]actionSet{}}
		if c.NotBefore != nil {
			v.nbf = c.NotBefore.Time
		}
		for _, e := range c.Access {
			switch {
			case e.Type == "repository":
				for _, act := range e.Actions {
					if act == "*" {
						v.grants[e.Name] |= setAll
					}
					v.grants[e.Name] |= actionBit(Action(act))
				}
			case e.Type == "registry" && e.Name == "catalog":
				v.catalog = true
			}
		}
		a.tokens.put(key, v, now, c.ExpiresAt.Time.Add(tokenLeeway))
	}
	caller := a.caller(v.sub, MethodToken)
	caller.grants, caller.catalog = v.grants, v.catalog
	return caller, nil
}

// rights is what the access file lets user ("" anonymous) do with repo.
func (a *Auth) rights(user, repo string) actionSet {
	if user == "" {
		if a.o.DenyAnonymous {
			return 0
		}
		return a.policy.Load().rights("", repo) & setPull
	}
	return a.policy.Load().rights(user, repo)
}

// Allowed reports whether the caller may do act to repo: what the access
// file allows the caller now and, for a token, what the token grants too.
// A nil caller is anonymous.
func (a *Auth) Allowed(c *Caller, repo string, act Action) bool {
	bit := actionBit(act)
	if bit == 0 {
		return false
	}
	name := ""
	if c != nil {
		name = c.Name
	}
	s := a.rights(name, repo)
	if c != nil && c.Method == MethodToken {
		s &= c.grants[repo]
	}
	return s&bit != 0
}

// Listable reports whether the caller's identity may pull repo, whatever
// the scopes of its token: the filter of the catalog, whose token carries
// registry:catalog:* and no repository scopes.
func (a *Auth) Listable(c *Caller, repo string) bool {
	name := ""
	if c != nil {
		name = c.Name
	}
	return a.rights(name, repo)&setPull != 0
}

// CatalogAllowed reports whether the caller may list the catalog (which
// the server filters with Listable): a token must carry
// registry:catalog:*; anonymous callers may unless DenyAnonymous.
func (a *Auth) CatalogAllowed(c *Caller) bool {
	if c != nil && c.Method == MethodToken {
		return c.catalog && (c.Name != "" || !a.o.DenyAnonymous)
	}
	return !c.Anonymous() || !a.o.DenyAnonymous
}

// Public reports whether anonymous callers may pull repo.
func (a *Auth) Public(repo string) bool {
	return a.rights("", repo)&setPull != 0
}

// Realm is the token realm for a request: the configured one, or derived
// from the request.
func (a *Auth) Realm(r *http.Request) string {
	if a.o.TokenRealm != "" {
		return a.o.TokenRealm
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/token"
}

// Challenge sets the WWW-Authenticate header that asks for credentials to
// do acts to repo: Bearer with realm, service and the scope
// repository:REPO:ACTS when tokens are on ("" repo: no scope), else Basic.
// The scopes distribution asks for are pull for reads, pull,push for
// writes and delete for deletes.
func (a *Auth) Challenge(h http.Header, r *http.Request, repo string, acts ...Action) {
	var scopes []Scope
	if repo != "" {
		scopes = append(scopes, RepositoryScope(repo, acts...))
	}
	a.ChallengeFor(h, r, nil, nil, scopes...)
}

// ChallengeCatalog sets the challenge of GET /v2/_catalog.
func (a *Auth) ChallengeCatalog(h http.Header, r *http.Request) {
	a.ChallengeFor(h, r, nil, nil, CatalogScope)
}

// ChallengeFor sets the challenge for a caller that Authenticate returned
// (c, err) and who lacks the scopes: error="invalid_token" when err is
// bad credentials, error="insufficient_scope" when c is authenticated.
// Basic challenges carry no error.
func (a *Auth) ChallengeFor(h http.Header, r *http.Request, c *Caller, err error, scopes ...Scope) {
	if !a.Tokens() {
		h.Set("WWW-Authenticate", `Basic realm="heron"`)
		return
	}
	var b strings.Builder
	b.WriteString(`Bearer realm=`)
	b.WriteString(quote(a.Realm(r)))
	b.WriteString(`,service=`)
	b.WriteString(quote(a.o.Service))
	if len(scopes) > 0 {
		parts := make([]string, len(scopes))
		for i, s := range scopes {
			parts[i] = s.String()
		}
		b.WriteString(`,scope=`)
		b.WriteString(quote(strings.Join(parts, " ")))
	}
	switch {
	case errors.Is(err, ErrBadCredentials):
		b.WriteString(`,error="invalid_token"`)
	case err == nil && c != nil && !c.Anonymous():
		b.WriteString(`,error="insufficient_scope"`)
	}
	h.Set("WWW-Authenticate", b.String())
}

// quote writes s as an RFC 7230 quoted-string.
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// Restricted reports whether some callers may not read some repositories
// beyond what a repository file's protected flag says: an access file, or
// DenyAnonymous. Without it every authenticated caller may read
// everything.
func (a *Auth) Restricted() bool { return a.o.AccessFile != "" || a.o.DenyAnonymous }
