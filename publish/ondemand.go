package publish

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The writer side of on-demand blobs: a repository published with
// --policy on_demand lists blobs it does not store (layout.Blob.Stored
// false) and names the registry they come from (layout.Upstream); heron
// serve fetches one when a client first asks for it and stores it through
// a Filler, which it reaches through redirector.Filler (package redirector
// never imports this one: cmd/heron wires them together).

// StoreBlob writes blob d, of size bytes, read from r (verified against d
// and size while it is written; nothing is stored on a mismatch), unless
// the tree holds it already, then marks it stored in repository name, if
// that lists it as not stored, with the usual read-modify-write of the
// repository file (its lock, or a conditional write). Other repositories
// that list the blob as not stored keep doing so; the server finds the
// blob in the tree when they are asked for it.
func (p *Publisher) StoreBlob(ctx context.Context, name string, d digest.Digest, size int64, r io.Reader) error {
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	present, err := p.present(ctx, key, size)
	if err != nil {
		return err
	}
	if !present {
		if err := p.sink.Put(ctx, key, r, Want{Digest: d, Size: size}); err != nil {
			return err
		}
		p.log.DebugContext(ctx, "write", "key", key, "size", size, "from", "upstream")
	}
	return p.MarkStored(ctx, name, d)
}

// MarkStored marks blob d stored in repository name, if that lists it as
// not stored, with the usual read-modify-write of the repository file. It
// does not check that the tree holds the blob: StoreBlob has just
// written it, or the server found it there.
func (p *Publisher) MarkStored(ctx context.Context, name string, d digest.Digest) error {
	touch := &touchKeys{}
	touch.add(layout.BlobKind, string(d))
	_, err := p.editRepository(ctx, name, false, touch, func(r *layout.Repository) error {
		if b, ok := r.Blobs[d]; ok && !b.IsStored() {
			b.Stored = nil
			r.Blobs[d] = b
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		// Removed meanwhile: the blob is in the tree for gc to weigh.
		return nil
	}
	return err
}

// Filler fetches the blobs that repositories of a tree list as not stored
// from their upstream registries, with the credentials of the process
// (the docker config, as heron publish docker:// reads it), and stores
// them with a Publisher. It has the methods of redirector.Filler.
type Filler struct {
	p         *Publisher
	upstreams *upstreams
}

// NewFiller returns a Filler storing with p and opening upstream
// registries with opts (source.WithUserAgent, and source.WithInsecure is
// taken from each repository's upstream).
func NewFiller(p *Publisher, opts ...source.Option) *Filler {
	return &Filler{p: p, upstreams: newUpstreams(opts)}
}

// OpenBlob opens blob d of repository name at the upstream its repository
// file names. Requests are retried as publish's are (429 with
// Retry-After, 5xx, transport errors).
func (f *Filler) OpenBlob(ctx context.Context, name string, d digest.Digest, size int64) (io.ReadCloser, error) {
	r, _, err := readRepository(ctx, f.p.sink, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("repository %s: %w", name, ErrNotFound)
	}
	if r.Upstream == nil {
		return nil, fmt.Errorf("repository %s lists blob %s as not stored but names no upstream to fetch it from", name, d)
	}
	u := r.Upstream
	rr, err := f.upstreams.get(u.Registry, u.Insecure, u.Repository)
	if err != nil {
		return nil, err
	}
	// A source of the repository (named by the blob's digest: only its
	// repository matters to a blob's fetch).
	src, err := rr.Source(d.String())
	if err != nil {
		return nil, err
	}
	rc, err := src.Fetch(ctx, ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: size})
	if err != nil {
		return nil, fmt.Errorf("upstream %s/%s: blob %s: %w", r.Upstream.Registry, r.Upstream.Repository, d, err)
	}
	return rc, nil
}

// StoreBlob is Publisher.StoreBlob.
func (f *Filler) StoreBlob(ctx context.Context, name string, d digest.Digest, size int64, content io.Reader) error {
	return f.p.StoreBlob(ctx, name, d, size, content)
}

// MarkStored is Publisher.MarkStored.
func (f *Filler) MarkStored(ctx context.Context, name string, d digest.Digest) error {
	return f.p.MarkStored(ctx, name, d)
}
