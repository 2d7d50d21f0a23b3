package publish

import (
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Progress receives what a publish copies, for a progress display. Library
// code never prints: `heron publish` connects it to progress bars when
// its output is a terminal.
//
// Several blobs are copied at once, so its methods and those of the
// CopyProgress it returns are called from several goroutines; they must
// be safe for that, and return quickly.
type Progress interface {
	// Start is called once, after the plan is made and before anything
	// is copied, with the number of blobs and manifests to copy and their
	// total size. Content the tree holds already (or that an on_demand
	// publish leaves out) is not counted: it is not copied.
	Start(items int, bytes int64)
	// Copy is called when the copy of desc starts.
	Copy(desc ocispec.Descriptor) CopyProgress
}

// CopyProgress follows the copy of one blob or manifest.
type CopyProgress interface {
	// Add reports n more bytes read, checked and written.
	Add(n int64)
	// Done is called once, when the copy ends: err is nil when the
	// content was written and verified (it becomes visible only when the
	// whole publish succeeds).
	Done(err error)
}

// WithProgress sets where a publish reports what it copies. The default
// reports nothing.
func WithProgress(pr Progress) Option {
	return func(p *Publisher) {
		if pr != nil {
			p.progress = pr
		}
	}
}

// WithConcurrency sets how many blobs a publish copies at once; the
// default is 4. Manifests are copied after all blobs, children first. The
// sink is written from that many goroutines (FSSink is safe for that).
func WithConcurrency(n int) Option {
	return func(p *Publisher) {
		if n > 0 {
			p.jobs = n
		}
	}
}

// defaultJobs is how many blobs are copied at once by default: enough to
// hide a registry's latency, few enough for a small machine's disk.
const defaultJobs = 4

type noProgress struct{}

func (noProgress) Start(int, int64)                     {}
func (noProgress) Copy(ocispec.Descriptor) CopyProgress { return noProgress{} }
func (noProgress) Add(int64)                            {}
func (noProgress) Done(error)                           {}

// progressReader reports the bytes read through it.
type progressReader struct {
	r   io.Reader
	add func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.add(int64(n))
	}
	return n, err
}
