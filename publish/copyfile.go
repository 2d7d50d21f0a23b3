package publish

import (
	"context"
	"errors"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// This file is the fast path for a blob that lies in a local file (an OCI
// layout folder, or an entry of an OCI archive) published into a tree on
// the local file system (an FSSink): the kernel copies it into the tree,
// and the copy is verified (see fssink_copyfile.go).

// fileRegion is content that lies in a local file: size bytes from offset.
type fileRegion struct {
	f      *os.File
	offset int64
	size   int64
	// close releases f (a no-op for an archive's shared file).
	close func() error
}

// localSource is a Source whose blobs are regions of local files. An
// unexported interface: only the sources of this package provide it, and a
// wrapper of a Source (which embeds the interface Source) does not, so
// that a wrapper always sees every read.
type localSource interface {
	// openRegion returns where the blob of desc lies, or errNotLocal
	// when it is not in a file the way it must be stored.
	openRegion(ctx context.Context, desc ocispec.Descriptor) (*fileRegion, error)
}

// errNotLocal says content is not in a local file as it is: it is read
// and written the ordinary way.
var errNotLocal = errors.New("content is not in a local file")

// regionStore is a blobStore that knows where its blobs lie.
type regionStore interface {
	blobRegion(d digest.Digest) (*fileRegion, error)
}

// openRegion implements localSource.
func (s *layoutSource) openRegion(ctx context.Context, desc ocispec.Descriptor) (*fileRegion, error) {
	st, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	rs, ok := st.(regionStore)
	if !ok {
		return nil, errNotLocal
	}
	return rs.blobRegion(desc.Digest)
}

// blobRegion implements regionStore: a blob of a layout folder is a whole
// file.
func (o *ociDir) blobRegion(d digest.Digest) (*fileRegion, error) {
	f, size, err := o.openBlobFile(d)
	if err != nil {
		return nil, err
	}
	return &fileRegion{f: f, size: size, close: f.Close}, nil
}

// blobRegion implements regionStore: a blob of an OCI archive is a run of
// the archive's bytes.
func (a ociArchive) blobRegion(d digest.Digest) (*fileRegion, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	e, err := a.locate("blobs/" + d.Algorithm().String() + "/" + d.Encoded())
	if err != nil {
		return nil, err
	}
	return &fileRegion{f: a.f, offset: e.offset, size: e.size, close: func() error { return nil }}, nil
}

// copyLocalFile copies a blob with the file-system fast path when the
// source has it in a local file and the sink is an FSSink itself (not a
// wrapper of one, which must see the bytes). It reports false, and no
// error, when the fast path does not apply.
func (p *Publisher) copyLocalFile(ctx context.Context, src Source, key string, desc ocispec.Descriptor, add func(int64)) (Staged, bool, error) {
	fsink, ok := p.sink.(*FSSink)
	if !ok {
		return nil, false, nil
	}
	ls, ok := src.(localSource)
	if !ok {
		return nil, false, nil
	}
	region, err := ls.openRegion(ctx, desc)
	if errors.Is(err, errNotLocal) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	defer region.close()
	st, err := fsink.stageRegion(ctx, key, region, Want{Digest: desc.Digest, Size: desc.Size}, add)
	return st, true, err
}
