package source

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is returned by a Source for content it does not hold, and by
// a sink of package publish for a key that does not exist (publish.ErrNotFound
// is this value). Implementations map their own "not found" errors (such as
// fs.ErrNotExist, or a registry's 404) to it, so callers test with
// errors.Is.
var ErrNotFound = errors.New("not found")

// ErrDigestMismatch and ErrSizeMismatch are wrapped by a [*VerifyError].
var (
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrSizeMismatch   = errors.New("size mismatch")
)

// Want is what content is checked against: a sink of package publish
// checks what it writes against a Want (see publish.Sink). The zero Want
// checks nothing (the repository file and the catalog, whose bytes publish
// has just built); a Want with a Digest checks both the digest and the
// size.
type Want struct {
	Digest digest.Digest
	Size   int64
}

// VerifyError reports content whose bytes do not match what was expected:
// a sink reports what it was given to write, a registry source a blob
// whose length is not the one its descriptor states. It matches
// ErrSizeMismatch (the length is wrong) or ErrDigestMismatch (the length
// is right, the bytes are not) with errors.Is.
type VerifyError struct {
	// Key is where the content was to be written (or, from a source,
	// what it is).
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
