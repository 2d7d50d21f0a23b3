package publish

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
)

// The writer side of the pull-through cache (heron serve --pull-through
// PREFIX=URL): a repository of the tree mirrors a repository of another
// registry. When a client asks for a tag, heron serve asks the Puller to
// make the tree's tag what the upstream's is now; the Puller publishes
// what it finds on_demand, so that blobs come later, when a client asks
// for them, through the Filler. heron serve reaches it through
// redirector.Puller (package redirector never imports this one: cmd/heron
// wires them together).

// ErrUpstreamUnknown is returned by a Puller when the upstream registry
// does not know the repository, tag or manifest asked for (it answered
// 404).
var ErrUpstreamUnknown = errors.New("unknown to the upstream registry")

// maxPullerRepositories bounds the upstream repositories a Puller keeps a
// connection (an authentication) for; the least recently used go first.
const maxPullerRepositories = 256

// Puller brings images of upstream registries into the tree, through a
// Publisher, with the credentials of the process (the docker config, as
// heron publish docker:// reads them) and publish's retries (429 with
// Retry-After, 5xx, transport errors). It is safe for concurrent use; two
// calls for the same repository and tag at once do the work twice (the
// second finds nothing to do, or writes the same), so heron serve makes
// them one.
type Puller struct {
	p         *Publisher
	upstreams *upstreams
}

// upstreams are the upstream repositories a Puller or a Filler has
// opened: each opened (and authenticated) once and kept while it is among
// the maxPullerRepositories most recently used, all of a kind (TLS or
// plain HTTP) sharing one connection pool.
type upstreams struct {
	opts []source.Option

	mu         sync.Mutex
	repos      map[upstreamKey]*list.Element // of *upstreamEntry, most recent first
	lru        *list.List
	transports map[bool]http.RoundTripper // by insecure
}

// upstreamKey is one upstream repository.
type upstreamKey struct {
	host       string
	insecure   bool
	repository string
}

type upstreamEntry struct {
	key  upstreamKey
	repo *source.RemoteRepository
}

func newUpstreams(opts []source.Option) *upstreams {
	return &upstreams{opts: opts, repos: map[upstreamKey]*list.Element{}, lru: list.New(), transports: map[bool]http.RoundTripper{}}
}

// NewPuller returns a Puller publishing with p (whatever p's policy, the
// Puller publishes on_demand) and opening upstream registries with opts
// (source.WithUserAgent; source.WithInsecure is taken from each URL).
func NewPuller(p *Publisher, opts ...source.Option) *Puller {
	return &Puller{p: p, upstreams: newUpstreams(opts)}
}

// ParseRegistryURL reads the URL of an upstream registry,
// https://HOST[:PORT] or, for a registry that speaks plain HTTP,
// http://HOST[:PORT], without path, query or credentials. It returns
// HOST[:PORT] and whether the registry is plain HTTP.
func ParseRegistryURL(s string) (host string, insecure bool, err error) {
	bad := func(why string) (string, bool, error) {
		return "", false, fmt.Errorf("registry URL %q: %s; want https://HOST[:PORT], or http://HOST[:PORT] for a plain-HTTP registry", s, why)
	}
	u, err := url.Parse(s)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return bad(err.Error())
	}
	switch u.Scheme {
	case "https":
	case "http":
		insecure = true
	case "":
		return bad("no scheme")
	default:
		return bad("scheme " + u.Scheme)
	}
	switch {
	case u.Opaque != "" || u.Hostname() == "":
		return bad("no host")
	case u.User != nil:
		return bad("credentials in the URL (heron reads them from the docker config)")
	case u.Path != "" && u.Path != "/":
		return bad("a path")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("a query or fragment")
	case strings.HasSuffix(u.Host, ":"):
		return bad("an empty port")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("port " + port)
		}
	}
	return u.Host, insecure, nil
}

// PullTag makes tag of repository name what tag of repository upstream is
// now at the registry at registryURL (see ParseRegistryURL): it asks the
// upstream what the tag names with a HEAD, and then
//   - writes nothing if the tree's tag names that manifest already;
//   - points the tag at it if the repository lists it (any tag, or none),
//     without asking the upstream anything more;
//   - else publishes it on_demand into name:tag (manifests stored and
//     verified, blobs listed as not stored, the upstream recorded).
//
// A repository or tag the upstream does not know is ErrUpstreamUnknown;
// other failures (unreachable, 5xx after the retries) are other errors.
func (pl *Puller) PullTag(ctx context.Context, registryURL, upstream, name, tag string) error {
	if err := layout.ValidateRepository(name); err != nil {
		return err
	}
	if err := layout.ValidateTag(tag); err != nil {
		return err
	}
	rr, err := pl.repository(registryURL, upstream)
	if err != nil {
		return err
	}
	desc, err := rr.Head(ctx, tag)
	if err != nil {
		return upstreamError(err)
	}
	touch := &touchKeys{}
	touch.add(layout.TagKind, tag)
	touch.add(layout.ManifestKind, string(desc.Digest))
	current, listed, err := pl.inTree(ctx, name, touch, tag, desc.Digest)
	if err != nil {
		return err
	}
	switch {
	case current == desc.Digest:
		pl.p.log.DebugContext(ctx, "pull-through: unchanged", "repository", name, "tag", tag, "digest", desc.Digest)
		return nil
	case listed:
		pl.p.log.DebugContext(ctx, "pull-through: retag", "repository", name, "tag", tag, "digest", desc.Digest, "was", current)
		return pl.p.SetTag(ctx, name, tag, desc.Digest)
	}
	// By digest, what the HEAD named, even if the tag moves meanwhile.
	return pl.publish(ctx, rr, desc.Digest, Target{Repository: name, Tag: tag})
}

// PullDigest brings manifest d of repository upstream at the registry at
// registryURL into repository name, untagged, unless the repository lists
// it already: it is fetched, verified and published on_demand. A manifest
// the upstream does not know is ErrUpstreamUnknown.
func (pl *Puller) PullDigest(ctx context.Context, registryURL, upstream, name string, d digest.Digest) error {
	if err := layout.ValidateRepository(name); err != nil {
		return err
	}
	if _, err := layout.ParseDigest(string(d)); err != nil {
		return err
	}
	rr, err := pl.repository(registryURL, upstream)
	if err != nil {
		return err
	}
	touch := &touchKeys{}
	touch.add(layout.ManifestKind, string(d))
	if _, listed, err := pl.inTree(ctx, name, touch, "", d); err != nil || listed {
		return err
	}
	return pl.publish(ctx, rr, d, Target{Repository: name})
}

// inTree reads what repository name holds: the manifest tag names (""
// for no tag, or no repository), and whether it lists manifest d.
func (pl *Puller) inTree(ctx context.Context, name string, touch *touchKeys, tag string, d digest.Digest) (digest.Digest, bool, error) {
	e, err := pl.p.openEdit(ctx, name, false, touch)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	_, listed := e.r.Manifests[d]
	return e.r.Tags[tag], listed, nil
}

// publish publishes manifest d of rr on_demand into t (untagged when t has
// no tag).
func (pl *Puller) publish(ctx context.Context, rr *source.RemoteRepository, d digest.Digest, t Target) error {
	src, err := rr.Source(string(d))
	if err != nil {
		return err
	}
	// Resolved here (the publish reuses it) to tell an upstream that
	// lost the manifest since the HEAD from one whose content is bad.
	if _, err := src.Resolve(ctx); err != nil {
		return upstreamError(err)
	}
	opts := publishOpts{blobBaseURL: pl.p.blobBaseURL, policy: PolicyOnDemand, updateCatalog: true, untagged: true}
	res, err := pl.p.publish(ctx, src, []Target{t}, opts)
	if err != nil {
		return err
	}
	pl.p.log.DebugContext(ctx, "pull-through: published", "source", src.String(), "repository", t.Repository, "tag", t.Tag,
		"manifests", res.Manifests, "deferred", res.BlobsDeferred)
	return nil
}

// upstreamError is err, which the upstream answered, as ErrUpstreamUnknown
// when it is a 404.
func upstreamError(err error) error {
	if errors.Is(err, source.ErrNotFound) {
		return fmt.Errorf("%w: %w", err, ErrUpstreamUnknown)
	}
	return err
}

// repository returns the upstream repository of a registry URL.
func (pl *Puller) repository(registryURL, upstream string) (*source.RemoteRepository, error) {
	host, insecure, err := ParseRegistryURL(registryURL)
	if err != nil {
		return nil, err
	}
	return pl.upstreams.get(host, insecure, upstream)
}

// get returns repository upstream of the registry at host (plain HTTP
// when insecure), opened once and kept while it is among the most
// recently used.
func (us *upstreams) get(host string, insecure bool, upstream string) (*source.RemoteRepository, error) {
	if err := layout.ValidateRepository(upstream); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	key := upstreamKey{host: host, insecure: insecure, repository: upstream}
	us.mu.Lock()
	defer us.mu.Unlock()
	if el, ok := us.repos[key]; ok {
		us.lru.MoveToFront(el)
		return el.Value.(*upstreamEntry).repo, nil
	}
	rt, ok := us.transports[insecure]
	if !ok {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		if insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a plain-HTTP registry, as configured
		}
		rt = t
		us.transports[insecure] = rt
	}
	opts := append([]source.Option{source.WithInsecure(insecure), source.WithTransport(rt)}, us.opts...)
	rr, err := source.NewRemoteRepository(host+"/"+upstream, opts...)
	if err != nil {
		return nil, err
	}
	us.repos[key] = us.lru.PushFront(&upstreamEntry{key: key, repo: rr})
	for us.lru.Len() > maxPullerRepositories {
		el := us.lru.Back()
		us.lru.Remove(el)
		delete(us.repos, el.Value.(*upstreamEntry).key)
	}
	return rr, nil
}
