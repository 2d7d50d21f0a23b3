package source

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/heron-registry/heron/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RemoteRepository is one repository of a registry, for a caller that
// asks it many things over time (heron serve's pull-through cache): what
// a tag names now ([RemoteRepository.Head]), and the images of its tags
// and digests as sources ([RemoteRepository.Source]). All of them share
// one authenticated connection, opened on first use (and again after a
// failure), with the credentials, retries and 429/Retry-After handling of
// a docker:// source. It is safe for concurrent use.
type RemoteRepository struct {
	spec string // docker://HOST/NAME, for messages
	conn *remoteConn
}

// NewRemoteRepository returns the repository ref (HOST[:PORT]/NAME, as
// docker spells it) of a registry, with the options of [ParseWith]
// ([WithInsecure] for a plain-HTTP registry). It does no I/O.
func NewRemoteRepository(ref string, opts ...Option) (*RemoteRepository, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	spec := TransportDocker + "://" + ref
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return &RemoteRepository{spec: spec, conn: &remoteConn{repo: repo, opts: o}}, nil
}

// String returns docker://HOST/NAME.
func (r *RemoteRepository) String() string { return r.spec }

// reference parses a tag or a digest of r.
func (r *RemoteRepository) reference(ref string) (name.Reference, string, error) {
	if strings.Contains(ref, ":") {
		d, err := layout.ParseDigest(ref)
		if err != nil {
			return nil, "", fmt.Errorf("%s@%s: %w", r.spec, ref, err)
		}
		return r.conn.repo.Digest(d.String()), r.spec + "@" + ref, nil
	}
	if err := layout.ValidateTag(ref); err != nil {
		return nil, "", fmt.Errorf("%s:%s: %w", r.spec, ref, err)
	}
	return r.conn.repo.Tag(ref), r.spec + ":" + ref, nil
}

// manifestAccept is the Accept header of a manifest HEAD: the manifests
// publish reads.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ",")

// Head returns the descriptor of the manifest that ref (a tag, or a
// digest) names in the registry now, with a HEAD request; a registry that
// does not send Docker-Content-Digest on HEAD is asked with a GET. A tag
// or repository the registry does not know (404) is ErrNotFound.
func (r *RemoteRepository) Head(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	nref, spec, err := r.reference(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	c := r.conn
	if err := c.open(ctx); err != nil {
		return ocispec.Descriptor{}, c.explain(fmt.Errorf("%s: %w", spec, err))
	}
	u := fmt.Sprintf("%s://%s/v2/%s/manifests/%s", c.repo.Scheme(), c.repo.RegistryStr(), c.repo.RepositoryStr(), nref.Identifier())
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := c.client.Do(req)
	if err != nil {
		return ocispec.Descriptor{}, c.explain(fmt.Errorf("%s: HEAD: %w", spec, err))
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ocispec.Descriptor{}, fmt.Errorf("%s: the registry answered 404: %w", spec, ErrNotFound)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return ocispec.Descriptor{}, c.explain(fmt.Errorf("%s: HEAD: %w", spec, err))
	}
	d, derr := layout.ParseDigest(resp.Header.Get("Docker-Content-Digest"))
	if derr != nil || resp.ContentLength < 0 {
		// The registry does not tell on HEAD: the manifest's bytes do.
		got, err := c.puller.Get(ctx, nref)
		if err != nil {
			return ocispec.Descriptor{}, c.explain(fmt.Errorf("%s: %w", spec, err))
		}
		if d, derr = layout.ParseDigest(got.Digest.String()); derr != nil {
			return ocispec.Descriptor{}, fmt.Errorf("%s: %w", spec, derr)
		}
		return ocispec.Descriptor{MediaType: knownManifestType(string(got.MediaType)), Digest: d, Size: got.Size}, nil
	}
	if dg, ok := nref.(name.Digest); ok && dg.DigestStr() != d.String() {
		return ocispec.Descriptor{}, fmt.Errorf("%s: the registry answered for digest %s", spec, d)
	}
	return ocispec.Descriptor{MediaType: knownManifestType(resp.Header.Get("Content-Type")), Digest: d, Size: resp.ContentLength}, nil
}

// knownManifestType returns the media type of a Content-Type if it is that
// of a manifest publish reads, else "" (publish then reads it from the
// manifest).
func knownManifestType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (!IsIndexMediaType(mt) && !IsManifestMediaType(mt)) {
		return ""
	}
	return mt
}

// Source returns the image ref (a tag, or a digest) names, as a source
// for publish sharing r's connection: docker://HOST/NAME:TAG or
// docker://HOST/NAME@DIGEST.
func (r *RemoteRepository) Source(ref string) (UpstreamSource, error) {
	nref, spec, err := r.reference(ref)
	if err != nil {
		return nil, err
	}
	return &remoteSource{spec: spec, ref: nref, opts: r.conn.opts, conn: r.conn}, nil
}

// Close closes the idle connections to the registry. r may still be used.
func (r *RemoteRepository) Close() error {
	r.conn.closeIdle()
	return nil
}
