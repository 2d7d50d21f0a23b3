package source

import (
	"context"
	"errors"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Region is content that lies in a local file: Size bytes of File from
// Offset. publish copies such a blob into a tree on the local file system
// with the kernel (a reflink, or copy_file_range) rather than through its
// own buffers, and verifies the copy.
type Region struct {
	File   *os.File
	Offset int64
	Size   int64
	// release closes File when the region owns it; nil for an archive's
	// file, which the source shares between its regions.
	release func() error
}

// Close releases the region's file, unless the source shares it.
func (r *Region) Close() error {
	if r.release == nil {
		return nil
	}
	return r.release()
}

// LocalSource is a Source whose blobs are regions of local files: an OCI
// layout folder, or an OCI archive. A wrapper of a Source that embeds the
// interface Source does not provide it, so that such a wrapper always sees
// every read.
type LocalSource interface {
	Source
	// OpenRegion returns where the blob of desc lies, or ErrNotLocal when
	// it is not in a file the way it must be stored. The caller closes
	// the region.
	OpenRegion(ctx context.Context, desc ocispec.Descriptor) (*Region, error)
}

var _ LocalSource = (*layoutSource)(nil)

// ErrNotLocal says content is not in a local file as it is: it is read
// and written the ordinary way.
var ErrNotLocal = errors.New("content is not in a local file")

// regionStore is a blobStore that knows where its blobs lie.
type regionStore interface {
	blobRegion(d digest.Digest) (*Region, error)
}

// OpenRegion implements LocalSource.
func (s *layoutSource) OpenRegion(ctx context.Context, desc ocispec.Descriptor) (*Region, error) {
	st, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	rs, ok := st.(regionStore)
	if !ok {
		return nil, ErrNotLocal
	}
	return rs.blobRegion(desc.Digest)
}

// blobRegion implements regionStore: a blob of a layout folder is a whole
// file.
func (o *ociDir) blobRegion(d digest.Digest) (*Region, error) {
	f, size, err := o.openBlobFile(d)
	if err != nil {
		return nil, err
	}
	return &Region{File: f, Size: size, release: f.Close}, nil
}

// blobRegion implements regionStore: a blob of an OCI archive is a run of
// the archive's bytes.
func (a ociArchive) blobRegion(d digest.Digest) (*Region, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	e, err := a.locate("blobs/" + d.Algorithm().String() + "/" + d.Encoded())
	if err != nil {
		return nil, err
	}
	return &Region{File: a.f, Offset: e.offset, Size: e.size}, nil
}
