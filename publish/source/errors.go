package source

import "github.com/heron-registry/heron/store"

// ErrNotFound is returned by a Source for content it does not hold, and by
// a store for a key that does not exist: it is store.ErrNotFound.
// Implementations map their own "not found" errors (such as a registry's
// 404) to it, so callers test with errors.Is.
var ErrNotFound = store.ErrNotFound

// ErrDigestMismatch and ErrSizeMismatch are wrapped by a [*VerifyError].
var (
	ErrDigestMismatch = store.ErrDigestMismatch
	ErrSizeMismatch   = store.ErrSizeMismatch
)

// Want is what content is checked against: store.Want.
type Want = store.Want

// VerifyError reports content whose bytes do not match what was expected:
// store.VerifyError.
type VerifyError = store.VerifyError
