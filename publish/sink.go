package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is returned by a Sink or a Source for a key or content that
// does not exist. Implementations map their own "not found" errors (such as
// fs.ErrNotExist) to it, so callers test with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrDigestMismatch and ErrSizeMismatch are wrapped by a [*VerifyError].
var (
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrSizeMismatch   = errors.New("size mismatch")
)

// Want is what a Sink checks content against while it writes it. The zero
// Want checks nothing (the repository file and the catalog, whose bytes
// publish has just built); a Want with a Digest checks both the digest and
// the size.
type Want struct {
	Digest digest.Digest
	Size   int64
}

// VerifyError reports content whose bytes do not match what was expected.
// It matches ErrSizeMismatch (the length is wrong) or ErrDigestMismatch
// (the length is right, the bytes are not) with errors.Is.
type VerifyError struct {
	// Key is where the content was to be written.
	Key string
	// Want is what was expected.
	Want Want
	// GotSize is the number of bytes read; reading stops one byte past
	// Want.Size, so a longer stream reports Want.Size+1.
	GotSize int64
	// GotDigest is the digest of what was read; it is empty when reading
	// stopped because the stream was too long.
	GotDigest digest.Digest
}

func (e *VerifyError) Error() string {
	switch {
	case e.GotSize > e.Want.Size:
		return fmt.Sprintf("%s: content of %s is longer than the %d bytes its descriptor states", e.Key, e.Want.Digest, e.Want.Size)
	case e.GotSize < e.Want.Size:
		return fmt.Sprintf("%s: content of %s is %d bytes, its descriptor states %d (truncated?)", e.Key, e.Want.Digest, e.GotSize, e.Want.Size)
	}
	return fmt.Sprintf("%s: content does not match its digest: want %s, got %s", e.Key, e.Want.Digest, e.GotDigest)
}

// Is makes errors.Is(err, ErrSizeMismatch) or errors.Is(err, ErrDigestMismatch) true.
func (e *VerifyError) Is(target error) bool {
	if e.GotSize != e.Want.Size {
		return target == ErrSizeMismatch
	}
	return target == ErrDigestMismatch
}

// Sink is where a tree is written. Keys are the slash-separated keys of
// package layout (blobs/sha256/…, repositories/<name>.json, catalog/…), so
// that an object store can implement Sink as well as a file system.
//
// Optional capabilities are separate interfaces found by type assertion:
// [StatSink], [StageSink], [EmptySink], [LockSink], [ListSink],
// [TouchSink], [ExpireSink], [OpenSink].
type Sink interface {
	// Put stores the content of r under key atomically: a reader sees the
	// old content (or nothing) or all of the new content, never a part.
	// When want.Digest is set, the content is verified against want while
	// it is written and nothing is stored on a mismatch (a *VerifyError).
	Put(ctx context.Context, key string, r io.Reader, want Want) error
	// ReadFile returns the content of a small file (the layout marker, a
	// repository file, the catalog), refusing one larger than max bytes.
	// A missing key is ErrNotFound.
	ReadFile(ctx context.Context, key string, max int64) ([]byte, error)
	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Info is what [StatSink.Stat] reports about a key.
type Info struct {
	// Size is the content's length in bytes (0 for a folder).
	Size int64
	// Dir is true when the key is a folder (a prefix of other keys) rather
	// than content.
	Dir bool
	// ModTime is when the content was last written or touched (see
	// [TouchSink]); gc never deletes content younger than its grace
	// period. Zero when the sink does not know.
	ModTime time.Time
}

// StatSink is a Sink that can tell whether a key exists without reading it.
// Without it, publish writes every blob again (Put is idempotent, but slower).
type StatSink interface {
	Sink
	// Stat describes key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
}

// Staged is content written and verified by [StageSink.Stage] but not yet
// visible under its key.
type Staged interface {
	// Commit makes the content visible under its key, atomically.
	Commit(ctx context.Context) error
	// Abort discards the content. It is safe to call after Commit, where
	// it does nothing.
	Abort() error
}

// StageSink is a Sink that can write and verify content first and make it
// visible later. Publish stages every blob and manifest of an image and
// commits them only once all of them have been verified, so that a failure
// half-way through leaves no new content in the tree.
type StageSink interface {
	Sink
	// Stage writes and verifies r like Put, without making it visible.
	Stage(ctx context.Context, key string, r io.Reader, want Want) (Staged, error)
}

// EmptySink is a Sink that can tell whether its tree holds nothing at all,
// so that publish refuses to turn a folder that holds something else into a
// heron tree.
type EmptySink interface {
	Sink
	// Empty reports whether there is no key at all (a missing root counts
	// as empty).
	Empty(ctx context.Context) (bool, error)
}

// ChangeSignaller is a Sink whose tree has a change counter
// (layout.ChangesKey) that its writes of repository files and of the
// catalog index increment. SignalIfRecent is called by a read-modify-write
// that found the file at key as it wanted it and wrote nothing: it
// increments the counter if that file changed recently, since the writer
// of that change may have died before incrementing it.
type ChangeSignaller interface {
	Sink
	SignalIfRecent(ctx context.Context, key string) error
}
