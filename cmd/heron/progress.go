package main

import (
	"context"
	"io"
	"math"
	"os"
	"sync"

	"github.com/heron-registry/heron/publish"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/cwriter"
	"github.com/vbauerster/mpb/v8/decor"
)

// isTerminal reports whether w is a terminal: progress bars are drawn only
// there, never into a file, a pipe or a CI log.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && cwriter.IsTerminal(int(f.Fd()))
}

// bars draws a publish.Progress with mpb: one bar per blob in flight
// (removed when it is done) and a total below them.
type bars struct {
	p *mpb.Progress

	mu    sync.Mutex
	total *mpb.Bar
	bytes int64
}

var _ publish.Progress = (*bars)(nil)

func newBars(ctx context.Context, w io.Writer, opts ...mpb.ContainerOption) *bars {
	return &bars{p: mpb.NewWithContext(ctx, append([]mpb.ContainerOption{mpb.WithOutput(w), mpb.WithWidth(40)}, opts...)...)}
}

// Start implements publish.Progress. A batch publishes several images: the
// total grows with each.
func (b *bars) Start(items int, bytes int64) {
	if items == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bytes += bytes
	if b.total == nil {
		// Made with 0 and given its total with SetTotal, the bar does not
		// complete by itself when a first image is done: finish does.
		b.total = b.p.AddBar(0,
			mpb.BarPriority(math.MaxInt),
			mpb.PrependDecorators(decor.Name("total", decor.WCSyncSpaceR)),
			mpb.AppendDecorators(
				decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
				decor.AverageSpeed(decor.SizeB1024(0), " % .1f", decor.WCSyncSpace),
			))
	}
	b.total.SetTotal(b.bytes, false)
}

// Copy implements publish.Progress.
func (b *bars) Copy(desc ocispec.Descriptor) publish.CopyProgress {
	name := desc.Digest.Encoded()
	if len(name) > 12 {
		name = name[:12]
	}
	bar := b.p.AddBar(desc.Size,
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.Percentage(decor.WCSyncSpace),
		))
	b.mu.Lock()
	total := b.total
	b.mu.Unlock()
	return &blobBar{bar: bar, total: total}
}

// finish completes the total and waits until the bars are drawn for the
// last time; after a failure it stops drawing at once. Nil bars (none
// drawn) have nothing to finish.
func (b *bars) finish(ok bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	total := b.total
	b.mu.Unlock()
	if !ok {
		b.p.Shutdown()
		return
	}
	if total != nil {
		total.SetTotal(-1, true)
	}
	b.p.Wait()
}

type blobBar struct {
	bar, total *mpb.Bar
}

func (c *blobBar) Add(n int64) {
	c.bar.IncrInt64(n)
	if c.total != nil {
		c.total.IncrInt64(n)
	}
}

func (c *blobBar) Done(err error) {
	if err != nil {
		c.bar.Abort(true)
		return
	}
	// Completes an empty blob's bar (the others complete when they are
	// full).
	c.bar.SetTotal(-1, true)
}
