package publish

import (
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
)

// A Sink is where publish writes a tree: a [store.Store]. The interfaces
// below are the store's, under the names this package has always used;
// package store documents each, and which capability publish uses for
// what. Publish finds the optional ones by type assertion.
type (
	Sink            = store.Store
	Info            = store.Info
	Staged          = store.Staged
	StatSink        = store.Stater
	StageSink       = store.Stager
	EmptySink       = store.Emptier
	ChangeSignaller = store.ChangeSignaller
	LockSink        = store.Locker
	SwapSink        = store.Swapper
	ListSink        = store.Lister
	OpenSink        = store.Opener
	TouchSink       = store.Toucher
	ExpireSink      = store.Expirer
	FolderSink      = store.FolderRemover
)

// ErrNotFound is returned by a Sink or a Source for a key or content that
// does not exist: store.ErrNotFound (and source.ErrNotFound), whichever
// side reports it.
var ErrNotFound = store.ErrNotFound

// ErrDigestMismatch and ErrSizeMismatch are wrapped by a [*VerifyError].
var (
	ErrDigestMismatch = store.ErrDigestMismatch
	ErrSizeMismatch   = store.ErrSizeMismatch
)

// Want is what a Sink checks content against while it writes it:
// store.Want.
type Want = store.Want

// VerifyError reports content whose bytes do not match what was expected:
// store.VerifyError.
type VerifyError = store.VerifyError

// FSSink is the Sink over a tree on the local file system: store.FS.
type FSSink = store.FS

// NewFSSink returns a sink writing the tree at root: store.NewFS.
func NewFSSink(root layout.Root) *FSSink { return store.NewFS(root) }
