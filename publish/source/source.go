package source

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/heron-registry/heron/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Source is where publish reads an image from. Content is addressed by
// descriptor (digest, size, media type), like oras-go's content.Fetcher.
//
// Parse builds one from the SOURCE argument of `heron publish`. Optional
// capabilities are separate interfaces found by type assertion:
// [UpstreamSource] (content can be fetched again later, for an on_demand
// publish) and [LocalSource] (blobs lie in local files, for a copy by the
// kernel).
type Source interface {
	// Resolve returns the descriptor of the manifest (or index) to
	// publish. It opens the source on first use.
	Resolve(ctx context.Context) (ocispec.Descriptor, error)
	// Fetch opens the content of desc (a blob or a manifest). Content that
	// is not in the source is ErrNotFound. The reader's bytes are not
	// verified by the source: publish verifies them while it writes them.
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	// Stat returns the size of the content of desc without reading it, or
	// ErrNotFound.
	Stat(ctx context.Context, desc ocispec.Descriptor) (int64, error)
	// Close releases what the source holds open.
	Close() error
	// String is the source as the user spelled it, for messages.
	String() string
}

// UpstreamSource is a Source that content can be fetched from again later:
// an on_demand publish records its Upstream in the repository file, and
// the blobs it did not copy are fetched from there.
type UpstreamSource interface {
	Source
	Upstream() layout.Upstream
}

// The transports of Parse, spelled as skopeo spells them.
const (
	TransportOCI           = "oci"
	TransportOCIArchive    = "oci-archive"
	TransportDockerArchive = "docker-archive"
	// TransportDocker is the transport of a registry source, docker://REF.
	TransportDocker = "docker"
)

// Parse parses the SOURCE argument of `heron publish`:
//
//	oci:DIR[:REF]                     an OCI image layout folder; REF is the
//	                                  org.opencontainers.image.ref.name annotation
//	                                  (or the digest) of one entry of index.json
//	oci-archive:FILE[:REF]            a tar of an OCI image layout
//	docker-archive:FILE[:NAME:TAG]    a `docker save` tarball (manifest.json with
//	docker-archive:FILE[:@N]          RepoTags); NAME:TAG or the index @N picks one
//	                                  image when it holds several
//	docker://HOST/NAME:TAG            an image in a registry, read with the user's
//	docker://HOST/NAME@DIGEST         docker credentials (see [WithInsecure],
//	                                  [WithKeychain], [WithRetry])
//
// As in skopeo, the path ends at the first colon after the transport. Without
// REF, an index.json with exactly one entry is published, and several are an
// error that lists them.
//
// Parse does no I/O: the files are opened, or the registry is contacted, by
// the first call to Resolve, and released by Close.
func Parse(s string) (Source, error) { return ParseWith(s) }

// ParseWith is Parse with options for the transports that take some (a
// registry source's credentials, retries, --insecure).
func ParseWith(s string, opts ...Option) (Source, error) {
	if ref, ok := strings.CutPrefix(s, TransportDocker+"://"); ok {
		return parseRemote(s, ref, opts)
	}
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("source %q: want oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG|:@N] or docker://HOST/NAME:TAG", s)
	}
	p, ref, _ := strings.Cut(rest, ":")
	if p == "" {
		return nil, fmt.Errorf("source %q: empty path", s)
	}
	switch transport {
	case TransportOCI:
		return &layoutSource{spec: s, ref: ref, opener: func(context.Context) (blobStore, error) { return openOCIDir(p) }}, nil
	case TransportOCIArchive:
		return &layoutSource{spec: s, ref: ref, opener: func(context.Context) (blobStore, error) { return openOCIArchive(p) }}, nil
	case TransportDockerArchive:
		sel, err := parseDockerSelector(ref)
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", s, err)
		}
		return &dockerArchiveSource{spec: s, path: p, sel: sel}, nil
	}
	return nil, fmt.Errorf("source %q: unknown transport %q (want %s, %s, %s or %s://)", s, transport, TransportOCI, TransportOCIArchive, TransportDockerArchive, TransportDocker)
}
