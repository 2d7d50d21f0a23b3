package redirector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// DefaultPullThroughTTL is how long a tag of a pull-through cache is
// answered from the tree before the upstream is asked again, without
// WithPullThrough's ttl.
const DefaultPullThroughTTL = 5 * time.Minute

// negativeTTL is how long an upstream's "unknown" (a name or tag it does
// not have) is remembered, so that clients asking again and again for it
// do not hammer the upstream.
const negativeTTL = 30 * time.Second

// pullTimeout bounds one call of the Puller (an upstream HEAD, a publish
// of a manifest and its children, blobs excluded): a request waits no
// longer for it.
const pullTimeout = 2 * time.Minute

// maxPullChecks bounds the memory of the checks remembered: past it, they
// are forgotten (the next request of each asks the upstream again).
const maxPullChecks = 100_000

// WithPullThrough makes the repositories under each cache's Prefix a
// pull-through cache of the registry at its URL, brought into the tree by
// puller: a tag is checked upstream at most once per ttl (0:
// DefaultPullThroughTTL) per server, a manifest asked for by digest is
// fetched once, and blobs come on demand (WithFiller).
func WithPullThrough(puller Puller, caches []PullThrough, ttl time.Duration) Option {
	return func(o *options) {
		o.puller, o.pullThrough, o.pullTTL = puller, caches, ttl
	}
}

// pullThrough is the server's side of the pull-through caches: which
// names they cover, and when each tag was last checked upstream.
type pullThrough struct {
	puller Puller
	caches []PullThrough
	ttl    time.Duration
	now    func() time.Time

	mu      sync.Mutex
	checks  map[string]pullCheck // by name + ":" + tag (or "@" + digest)
	flights map[string]*pullFlight
}

// pullCheck is the last answer of the upstream about one reference.
type pullCheck struct {
	at      time.Time
	unknown bool // the upstream did not know it
	failed  bool // the upstream could not be asked
}

type pullFlight struct {
	done chan struct{}
	err  error
}

func newPullThrough(p Puller, caches []PullThrough, ttl time.Duration) *pullThrough {
	if ttl <= 0 {
		ttl = DefaultPullThroughTTL
	}
	return &pullThrough{puller: p, caches: caches, ttl: ttl, now: time.Now,
		checks: map[string]pullCheck{}, flights: map[string]*pullFlight{}}
}

// cacheOf returns the cache name belongs to and the upstream's name for
// it, if any.
func (pt *pullThrough) cacheOf(name string) (PullThrough, string, bool) {
	for _, c := range pt.caches {
		if rest, ok := strings.CutPrefix(name, c.Prefix+"/"); ok && rest != "" {
			return c, rest, true
		}
	}
	return PullThrough{}, "", false
}

// owns returns the cache whose names include name: the cache's prefix
// itself, or a name under it.
func (pt *pullThrough) owns(name string) (PullThrough, bool) {
	for _, c := range pt.caches {
		if name == c.Prefix {
			return c, true
		}
	}
	c, _, ok := pt.cacheOf(name)
	return c, ok
}

// namespaced returns the name a containerd mirror request means: with
// ?ns=HOST, the name under the cache whose prefix is HOST.
func (pt *pullThrough) namespaced(r *http.Request, name string) string {
	if r.URL.RawQuery == "" {
		return name // most requests: no query to parse
	}
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		return name
	}
	for _, c := range pt.caches {
		if c.Prefix == ns {
			return ns + "/" + name
		}
	}
	return name
}

// refresh brings ref (a tag or a digest) of repository name, in cache c
// (upstream its name there), up to date when it is due: a tag not checked
// within the ttl, a digest the tree does not hold. have says whether the
// tree has it now. It returns an error only when the client must get one:
// the upstream does not know ref and the tree does not have it
// (ErrManifestUnknown), or cannot be asked and the tree does not have it.
// Otherwise a failure is logged and the tree's copy is served.
func (s *Server) refresh(ctx context.Context, c PullThrough, upstream, name, ref string, have bool) error {
	pt := s.pull
	isDigest := layout.IsDigest(ref)
	key := name + ":" + ref
	if isDigest {
		if have {
			return nil // content addressed: nothing to check
		}
		key = name + "@" + ref
	}
	now := pt.now()
	pt.mu.Lock()
	chk, checked := pt.checks[key]
	pt.mu.Unlock()
	if checked {
		age := now.Sub(chk.at)
		switch {
		case have && age < pt.ttl:
			// Asked within the TTL, whatever the answer was: the
			// tree's copy stands until the next check.
			return nil
		case !have && chk.unknown && age < min(negativeTTL, pt.ttl):
			return ErrManifestUnknown.WithDetail(map[string]string{"name": name, "reference": ref, "upstream": c.URL})
		case !have && chk.failed && age < min(negativeTTL, pt.ttl):
			return ErrUpstreamUnavailable.WithDetail(c.URL + ": failed a moment ago; not asked again yet")
		}
	}
	err := pt.call(key, func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullTimeout)
		defer cancel()
		if isDigest {
			return pt.puller.PullDigest(cctx, c, upstream, name, digest.Digest(ref))
		}
		return pt.puller.PullTag(cctx, c, upstream, name, ref)
	})
	unknown := errors.Is(err, ErrUpstreamUnknown)
	pt.record(key, pullCheck{at: now, unknown: unknown, failed: err != nil && !unknown})
	switch {
	case err == nil:
		// What the Puller wrote is seen by the next read of the file.
		s.repos.forget(name)
		return nil
	case have:
		s.log.WarnContext(ctx, "pull-through: the upstream could not be checked; serving the cached copy",
			"repository", name, "reference", ref, "upstream", c.URL, "err", err)
		return nil
	case errors.Is(err, ErrUpstreamUnknown):
		return ErrManifestUnknown.WithDetail(map[string]string{"name": name, "reference": ref, "upstream": c.URL})
	default:
		s.log.ErrorContext(ctx, "pull-through: the upstream could not be asked", "repository", name, "reference", ref, "upstream", c.URL, "err", err)
		return ErrUpstreamUnavailable.WithDetail(fmt.Sprintf("%s: %v", c.URL, err))
	}
}

// record remembers the answer of key.
func (pt *pullThrough) record(key string, chk pullCheck) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if len(pt.checks) >= maxPullChecks {
		clear(pt.checks)
	}
	pt.checks[key] = chk
}

// call runs f once for all the concurrent requests of key.
func (pt *pullThrough) call(key string, f func() error) error {
	pt.mu.Lock()
	if fl, ok := pt.flights[key]; ok {
		pt.mu.Unlock()
		<-fl.done
		return fl.err
	}
	fl := &pullFlight{done: make(chan struct{}), err: errors.New("the pull did not finish")}
	pt.flights[key] = fl
	pt.mu.Unlock()
	defer func() {
		pt.mu.Lock()
		delete(pt.flights, key)
		pt.mu.Unlock()
		close(fl.done)
	}()
	fl.err = f()
	return fl.err
}

// ErrUpstreamUnavailable: a pull-through cache's upstream cannot be asked
// and the tree has no copy of what was asked for (502).
var ErrUpstreamUnavailable = &Error{Code: CodeUnknown, Status: http.StatusBadGateway, Message: "the upstream registry of this pull-through cache cannot be reached"}

// pullManifest brings manifest ref of repository name into the tree, when
// name is in a pull-through cache and it is due (see refresh).
func (s *Server) pullManifest(ctx context.Context, name, ref string) error {
	c, upstream, ok := s.pull.cacheOf(name)
	if !ok {
		return nil
	}
	if layout.IsDigest(ref) {
		if _, err := layout.ParseDigest(ref); err != nil {
			return nil // serveManifest answers it
		}
	} else if layout.ValidateTag(ref) != nil {
		return nil
	}
	have, err := s.hasManifest(ctx, name, ref)
	if err != nil {
		return err
	}
	return s.refresh(ctx, c, upstream, name, ref, have)
}

// hasManifest reports whether repository name resolves ref now.
func (s *Server) hasManifest(ctx context.Context, name, ref string) (bool, error) {
	// The tree's answer, not the caller's: whether the caller may read
	// the repository was decided before, and is answered after the pull.
	repo, err := s.repos.repository(ctx, name)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	kind := layout.TagKind
	if layout.IsDigest(ref) {
		kind = layout.ManifestKind
	}
	hv, ok, err := s.holder(ctx, name, repo, kind, ref)
	if err != nil || !ok {
		return false, err
	}
	_, ok = hv.Resolve(ref)
	return ok, nil
}
