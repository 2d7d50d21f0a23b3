package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Stage: the content of an image is copied into the tree, each blob and
// manifest verified against its digest and size while it is written
// (copyVerified), and, with a StageSink, kept out of sight until all of it
// is (see Publish). A blob that lies in a local file is copied by the
// kernel when the sink is an FSSink (copyLocalFile, fssink_copyfile.go).

// stage writes every blob the tree does not hold (several at once), then
// every manifest it does not hold (children first). With a StageSink,
// nothing is visible until the returned Staged are committed, in the order
// they are returned; with a plain Sink, content is put in place at once and
// no Staged is returned. Blobs the tree holds were found by buildPlan, and
// are not read from the source.
func (p *Publisher) stage(ctx context.Context, src source.Source, pl *plan, res *Result) ([]Staged, error) {
	var blobs, manifests []ocispec.Descriptor
	var total int64
	for _, b := range pl.blobs {
		if pl.present[b.Digest] {
			res.BlobsSkipped++
			res.BytesSkipped += b.Size
			continue
		}
		blobs = append(blobs, b)
		total += b.Size
	}
	for _, b := range pl.lazy {
		res.BlobsDeferred++
		res.BytesDeferred += b.Size
	}
	raw := map[digest.Digest][]byte{}
	for _, m := range pl.manifests {
		present, err := p.presentBlob(ctx, m.desc)
		if err != nil {
			return nil, err
		}
		if present {
			res.BlobsSkipped++
			res.BytesSkipped += m.desc.Size
			continue
		}
		manifests = append(manifests, m.desc)
		raw[m.desc.Digest] = m.raw
		total += m.desc.Size
	}
	p.progress.Start(len(blobs)+len(manifests), total)

	staged := make([]Staged, len(blobs)+len(manifests))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.jobs)
	for i, b := range blobs {
		g.Go(func() error {
			st, err := p.copyContent(gctx, src, b, nil)
			if err != nil {
				return fmt.Errorf("%s: blob %s: %w", src, b.Digest, err)
			}
			staged[i] = st
			return nil
		})
	}
	err := g.Wait()
	for i, m := range manifests {
		if err != nil {
			break
		}
		staged[len(blobs)+i], err = p.copyContent(ctx, src, m, raw[m.Digest])
		if err != nil {
			err = fmt.Errorf("manifest %s: %w", m.Digest, err)
		}
	}
	out := staged[:0]
	for _, st := range staged {
		if st != nil {
			out = append(out, st)
		}
	}
	if err != nil {
		return out, err
	}
	res.BlobsWritten += len(blobs) + len(manifests)
	res.BytesWritten += total
	return out, nil
}

// copyContent copies one blob (from src) or manifest (raw) into the tree,
// verified, and reports its progress.
func (p *Publisher) copyContent(ctx context.Context, src source.Source, desc ocispec.Descriptor, raw []byte) (_ Staged, err error) {
	key, err := layout.BlobKey(desc.Digest)
	if err != nil {
		return nil, err
	}
	cp := p.progress.Copy(desc)
	defer func() { cp.Done(err) }()
	want := Want{Digest: desc.Digest, Size: desc.Size}
	if raw != nil {
		// A manifest is kept with its media type (a bucket's
		// Content-Type, so that a CDN or the bucket serves it right);
		// every other blob with the store's default,
		// application/octet-stream.
		want.MediaType = desc.MediaType
	}
	if raw == nil {
		if st, ok, err := p.copyLocalFile(ctx, src, key, desc, cp.Add); ok || err != nil {
			if err == nil {
				p.log.DebugContext(ctx, "write", "key", key, "size", desc.Size, "from", "file")
			}
			return st, err
		}
	}
	var rc io.ReadCloser
	if raw != nil {
		rc = io.NopCloser(bytes.NewReader(raw))
	} else if rc, err = src.Fetch(ctx, desc); err != nil {
		return nil, err
	}
	defer rc.Close()
	r := &progressReader{r: rc, add: cp.Add}
	var st Staged
	if ss, ok := p.sink.(StageSink); ok {
		if st, err = ss.Stage(ctx, key, r, want); err != nil {
			return nil, err
		}
	} else if err := p.sink.Put(ctx, key, r, want); err != nil {
		return nil, err
	}
	p.log.DebugContext(ctx, "write", "key", key, "size", desc.Size)
	return st, nil
}

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
	st, err := fsink.StageFile(ctx, key, region.File, region.Offset, region.Size, Want{Digest: desc.Digest, Size: desc.Size}, add)
	return st, true, err
}

// presentBlob reports whether the tree holds the content of desc.
func (p *Publisher) presentBlob(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	key, err := layout.BlobKey(desc.Digest)
	if err != nil {
		return false, err
	}
	ok, err := p.present(ctx, key, desc.Size)
	if ok {
		p.log.DebugContext(ctx, "present", "key", key)
	}
	return ok, err
}

// present reports whether key holds content of the given size. Without
// StatSink it reports false, and the content is written again.
func (p *Publisher) present(ctx context.Context, key string, size int64) (bool, error) {
	ss, ok := p.sink.(StatSink)
	if !ok {
		return false, nil
	}
	info, err := ss.Stat(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if info.Dir {
		return false, fmt.Errorf("%s is a folder", key)
	}
	return info.Size == size, nil
}
