package publish

import (
	"context"
	"errors"

	"github.com/heron-registry/heron/publish/source"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// This file is the fast path for a blob that lies in a local file (an OCI
// layout folder, or an entry of an OCI archive) published into a tree on
// the local file system (an FSSink): the kernel copies it into the tree,
// and the copy is verified (see fssink_copyfile.go).

// copyLocalFile copies a blob with the file-system fast path when the
// source has it in a local file and the sink is an FSSink itself (not a
// wrapper of one, which must see the bytes). It reports false, and no
// error, when the fast path does not apply.
func (p *Publisher) copyLocalFile(ctx context.Context, src source.Source, key string, desc ocispec.Descriptor, add func(int64)) (Staged, bool, error) {
	fsink, ok := p.sink.(*FSSink)
	if !ok {
		return nil, false, nil
	}
	ls, ok := src.(source.LocalSource)
	if !ok {
		return nil, false, nil
	}
	region, err := ls.OpenRegion(ctx, desc)
	if errors.Is(err, source.ErrNotLocal) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	defer region.Close()
	st, err := fsink.stageRegion(ctx, key, region, Want{Digest: desc.Digest, Size: desc.Size}, add)
	return st, true, err
}
