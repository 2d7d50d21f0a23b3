package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrPlainHTTP is returned when a registry would have to be reached over
// plain HTTP and the source was not made with [WithInsecure].
var ErrPlainHTTP = errors.New("plain HTTP is not allowed without --insecure")

// retryStatusCodes are the answers a registry source retries: timeouts,
// rate limits (429, with the Retry-After that retryAfter honours) and
// server errors.
var retryStatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
}

// remoteSource reads an image from a registry with ggcr's remote package:
// manifests through a remote.Puller (their raw bytes, never re-encoded),
// blobs with plain GETs through the same authenticated transport, so that
// each byte is hashed once, by publish, while it is written.
type remoteSource struct {
	spec string
	ref  name.Reference
	opts options
	conn *remoteConn

	mu        sync.Mutex
	manifests map[digest.Digest][]byte // the root manifest, read by Resolve
	root      ocispec.Descriptor
	resolved  bool
}

// remoteConn is the authenticated connection to one repository of a
// registry, which the sources of a [RemoteRepository] share.
type remoteConn struct {
	repo name.Repository
	opts options

	mu     sync.Mutex
	opened bool
	puller *remote.Puller
	client *http.Client
}

var _ UpstreamSource = (*remoteSource)(nil)

// parseRemote parses the part of docker://REF after the slashes: a
// reference as docker spells it, HOST[:PORT]/NAME:TAG or
// HOST[:PORT]/NAME@DIGEST (Docker Hub when there is no host, the tag
// latest when there is neither tag nor digest).
func parseRemote(spec, ref string, opts []Option) (*remoteSource, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if ref == "" {
		return nil, fmt.Errorf("source %q: want docker://HOST/NAME:TAG or docker://HOST/NAME@DIGEST", spec)
	}
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", spec, err)
	}
	if d, ok := r.(name.Digest); ok {
		if _, err := layout.ParseDigest(d.DigestStr()); err != nil {
			return nil, fmt.Errorf("source %q: %w", spec, err)
		}
	}
	return &remoteSource{spec: spec, ref: r, opts: o, conn: &remoteConn{repo: r.Context(), opts: o}}, nil
}

func (s *remoteSource) String() string { return s.spec }

// Upstream implements UpstreamSource.
func (s *remoteSource) Upstream() layout.Upstream {
	repo := s.ref.Context()
	return layout.Upstream{Registry: repo.RegistryStr(), Repository: repo.RepositoryStr(), Insecure: s.opts.insecure}
}

// open authenticates (ping, then basic auth or a bearer token), with the
// retries around every request, including the ping. It does so once; a
// failure is not kept, so that a long-lived user (heron serve) connects
// again on its next call once the registry is back.
func (s *remoteSource) open(ctx context.Context) error {
	if err := s.conn.open(ctx); err != nil {
		return s.explain(fmt.Errorf("%s: %w", s.spec, err))
	}
	return nil
}

func (c *remoteConn) open(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.connect(ctx); err != nil {
		return err
	}
	c.opened = true
	return nil
}

func (c *remoteConn) connect(ctx context.Context) error {
	repo := c.repo
	base := c.opts.base
	if base == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		if c.opts.insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure
		}
		base = t
	}
	var rt http.RoundTripper = transport.NewRetry(&retryAfter{inner: &schemeGuard{inner: base, host: repo.RegistryStr(), insecure: c.opts.insecure}, max: maxRetryAfter},
		transport.WithRetryBackoff(c.opts.backoff),
		transport.WithRetryPredicate(retryable),
		transport.WithRetryStatusCodes(retryStatusCodes...))
	rt = transport.NewUserAgent(rt, c.opts.userAgent)
	auth, err := authn.Resolve(ctx, c.opts.keychain, repo)
	if err != nil {
		return fmt.Errorf("reading credentials for %s: %w", repo.RegistryStr(), err)
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, rt, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", repo.RegistryStr(), err)
	}
	// tr is a transport.Wrapper: the puller uses it as it is, without
	// authenticating again or wrapping it in more retries.
	c.puller, err = remote.NewPuller(remote.WithTransport(tr))
	if err != nil {
		return err
	}
	c.client = &http.Client{Transport: tr}
	return nil
}

// explain adds what the user can do to an error from the registry.
func (s *remoteSource) explain(err error) error { return s.conn.explain(err) }

// explain adds what the user can do to an error from the registry.
func (c *remoteConn) explain(err error) error {
	host := c.repo.RegistryStr()
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w (are the credentials for %s right? heron reads them like docker: docker login %s, or DOCKER_CONFIG)",
				err, host, host)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", err, ErrNotFound)
		}
		for _, code := range retryStatusCodes {
			if terr.StatusCode == code {
				return fmt.Errorf("%w (HTTP %d; gave up after %d tries)", err, code, c.opts.backoff.Steps)
			}
		}
	}
	var cerr *tls.CertificateVerificationError
	if !c.opts.insecure && errors.As(err, &cerr) {
		return fmt.Errorf("%w (the registry's certificate cannot be verified: --insecure skips the check)", err)
	}
	return err
}

func (s *remoteSource) Resolve(ctx context.Context) (ocispec.Descriptor, error) {
	if err := s.open(ctx); err != nil {
		return ocispec.Descriptor{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resolved {
		return s.root, nil
	}
	d, err := s.conn.puller.Get(ctx, s.ref)
	if err != nil {
		return ocispec.Descriptor{}, s.explain(fmt.Errorf("%s: %w", s.spec, err))
	}
	dg, err := layout.ParseDigest(d.Digest.String())
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", s.spec, err)
	}
	mt := string(d.MediaType)
	if !IsIndexMediaType(mt) && !IsManifestMediaType(mt) {
		// Some registries answer application/json or the like: publish
		// then takes the media type from the manifest itself.
		mt = ""
	}
	s.root = ocispec.Descriptor{MediaType: mt, Digest: dg, Size: d.Size}
	s.manifests = map[digest.Digest][]byte{dg: d.Manifest}
	s.resolved = true
	return s.root, nil
}

// isManifestDescriptor tells a manifest (fetched from /manifests/) from a
// blob (fetched from /blobs/) by its media type, which a manifest's
// descriptor always has.
func isManifestDescriptor(desc ocispec.Descriptor) bool {
	return IsIndexMediaType(desc.MediaType) || IsManifestMediaType(desc.MediaType)
}

func (s *remoteSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := s.open(ctx); err != nil {
		return nil, err
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	raw, ok := s.manifests[desc.Digest]
	s.mu.Unlock()
	if ok {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}
	if isManifestDescriptor(desc) {
		d, err := s.conn.puller.Get(ctx, s.ref.Context().Digest(desc.Digest.String()))
		if err != nil {
			return nil, s.explain(err)
		}
		return io.NopCloser(bytes.NewReader(d.Manifest)), nil
	}
	resp, err := s.blobRequest(ctx, http.MethodGet, desc.Digest)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength >= 0 && desc.Size >= 0 && resp.ContentLength != desc.Size {
		_ = resp.Body.Close()
		return nil, &VerifyError{Key: "blob " + string(desc.Digest), Want: Want{Digest: desc.Digest, Size: desc.Size}, GotSize: resp.ContentLength}
	}
	return resp.Body, nil
}

func (s *remoteSource) Stat(ctx context.Context, desc ocispec.Descriptor) (int64, error) {
	if err := s.open(ctx); err != nil {
		return 0, err
	}
	if err := desc.Digest.Validate(); err != nil {
		return 0, err
	}
	if isManifestDescriptor(desc) {
		d, err := s.conn.puller.Head(ctx, s.ref.Context().Digest(desc.Digest.String()))
		if err != nil {
			return 0, s.explain(err)
		}
		return d.Size, nil
	}
	resp, err := s.blobRequest(ctx, http.MethodHead, desc.Digest)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	if resp.ContentLength < 0 {
		// The GET is checked against the descriptor anyway.
		return desc.Size, nil
	}
	return resp.ContentLength, nil
}

// blobRequest sends a GET or HEAD for /v2/<name>/blobs/<digest> and
// returns a 200 response; a 404 is ErrNotFound. Redirects (to a CDN or a
// bucket) are followed; the authenticating transport sends credentials to
// the registry's host only.
func (s *remoteSource) blobRequest(ctx context.Context, method string, d digest.Digest) (*http.Response, error) {
	repo := s.ref.Context()
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.conn.client.Do(req)
	if err != nil {
		return nil, s.explain(fmt.Errorf("%s blob %s: %w", method, d, err))
	}
	if resp.StatusCode == http.StatusNotFound {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("blob %s: the registry answered 404: %w", d, ErrNotFound)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		_ = resp.Body.Close()
		return nil, s.explain(fmt.Errorf("%s blob %s: %w", method, d, err))
	}
	return resp, nil
}

func (s *remoteSource) Close() error {
	s.conn.closeIdle()
	return nil
}

// closeIdle closes the connections to the registry that are idle.
func (c *remoteConn) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.CloseIdleConnections()
	}
}

// retryable reports the errors worth another try: what ggcr's transport
// marks temporary (including the status codes above), and connections
// that broke.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrPlainHTTP) {
		return false
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// schemeGuard refuses plain HTTP to the registry unless the source is
// insecure: ggcr falls back to HTTP after HTTPS by itself for localhost
// and private addresses, and heron wants the user to say so. Where the
// registry redirects blob downloads to (a CDN, a bucket) is the
// registry's choice; the digest protects those bytes.
type schemeGuard struct {
	inner    http.RoundTripper
	host     string
	insecure bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && req.URL.Host == g.host && !g.insecure {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("http://%s: %w", req.URL.Host, ErrPlainHTTP)
	}
	return g.inner.RoundTrip(req)
}

// maxRetryAfter bounds the wait a registry may ask for with Retry-After:
// past it, the backoff alone decides (a registry asking for an hour is
// better answered by failing and saying so).
const maxRetryAfter = time.Minute

// retryAfter honours the Retry-After of a 429 or 503 (RFC 9110, section
// 10.2.3: seconds, or an HTTP date): it waits that long, up to max and
// while the request's context lasts, before it returns the answer to the
// retrying transport above it, which then waits its own backoff and tries
// again. ggcr's retry does not read the field.
type retryAfter struct {
	inner http.RoundTripper
	max   time.Duration
}

func (t *retryAfter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(r)
	if err != nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return resp, err
	}
	d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if !ok || d <= 0 {
		return resp, nil
	}
	timer := time.NewTimer(min(d, t.max))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.Context().Done():
	}
	return resp, nil
}

// parseRetryAfter reads a Retry-After value: a number of seconds, or an
// HTTP date (then the time until it).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, int64(24*time.Hour/time.Second))) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return at.Sub(now), true
	}
	return 0, false
}
