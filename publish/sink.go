package publish

import (
	"context"
	"io"
	"time"

	"github.com/heron-registry/heron/publish/source"
)

// ErrNotFound is returned by a Sink or a Source for a key or content that
// does not exist. Implementations map their own "not found" errors (such as
// fs.ErrNotExist) to it, so callers test with errors.Is. It is
// source.ErrNotFound: the same value, whichever side reports it.
var ErrNotFound = source.ErrNotFound

// ErrDigestMismatch and ErrSizeMismatch are wrapped by a [*VerifyError]:
// they are source.ErrDigestMismatch and source.ErrSizeMismatch.
var (
	ErrDigestMismatch = source.ErrDigestMismatch
	ErrSizeMismatch   = source.ErrSizeMismatch
)

// Want is what a Sink checks content against while it writes it. The zero
// Want checks nothing (the repository file and the catalog, whose bytes
// publish has just built); a Want with a Digest checks both the digest and
// the size. It is source.Want, which a source uses too.
type Want = source.Want

// VerifyError reports content whose bytes do not match what was expected,
// whether a Sink or a Source found it: it is source.VerifyError. It matches
// ErrSizeMismatch or ErrDigestMismatch with errors.Is.
type VerifyError = source.VerifyError

// Sink is where a tree is written. Keys are the slash-separated keys of
// package layout (blobs/sha256/…, repositories/<name>.json, catalog/…), so
// that an object store can implement Sink as well as a file system.
//
// Sink is what every implementation must do. Each optional capability is
// an interface of its own, a Sink with a method more, that publish finds by
// type assertion (as ggcr's pkg/registry finds a BlobStatHandler on a
// BlobHandler). Without one, publish does without, or refuses the command
// that needs it:
//
//	interface        adds                publish uses it to                     without it
//	StatSink         Stat                skip content the tree holds            every blob is written again
//	StageSink        Stage               make an image's content visible        content is visible as it is copied
//	                                     once all of it is verified
//	EmptySink        Empty               refuse a root that holds something     a root without a layout file is
//	                                     else                                   initialised whatever it holds
//	ChangeSignaller  SignalIfRecent      signal a change whose writer died      no signal
//	                                     before it signalled it
//	LockSink         Lock                serialise the read-modify-writes of    one writer at a time
//	                                     a repository file or of the catalog
//	ListSink         List                walk the tree (gc, verify)             gc and verify refuse
//	OpenSink         Open                hash content of any size (verify)      verify refuses
//	TouchSink        Touch               keep what a publish adds from gc       gc's grace period alone
//	ExpireSink       DeleteIfOlder       delete unused content (gc)             gc refuses
//	FolderSink       RemoveEmptyFolders  remove the folders a removed           the folders stay
//	                                     repository leaves (rm)
//
// [FSSink] (fssink*.go) implements them all.
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

// Staged is content written and verified by [StageSink.Stage] but not yet
// visible under its key.
type Staged interface {
	// Commit makes the content visible under its key, atomically.
	Commit(ctx context.Context) error
	// Abort discards the content. It is safe to call after Commit, where
	// it does nothing.
	Abort() error
}

// StatSink is a Sink that can tell whether a key exists without reading it.
// Without it, publish writes every blob again (Put is idempotent, but slower).
type StatSink interface {
	Sink
	// Stat describes key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
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

// LockSink is a Sink that can make writers of the same tree, in any number
// of processes, take turns on a file: publish holds the lock of a
// repository file while it reads, changes and rewrites it, and the lock of
// catalog/index.json while it changes the catalog, so that no concurrent
// update is lost.
//
// Every read-modify-write in this package applies a change that is a pure
// function of the file it read, so that a sink without locks (an object
// store) can implement the same guarantee later with a compare-and-swap on
// the file, re-applying the change when the file changed under it.
//
// A sink that is not a LockSink gets no coordination: one writer at a time
// is then the caller's business.
type LockSink interface {
	Sink
	// Lock waits until it holds the exclusive lock of key (the key of the
	// file to protect, such as repositories/<name>.json), or until ctx
	// ends. unlock releases it; it must be called exactly once. A lock is
	// not reentrant: taking it again before unlocking waits forever. A
	// writer that dies holding a lock must not keep it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// ListSink is a Sink that can enumerate its keys: gc and verify walk the
// tree with it.
type ListSink interface {
	Sink
	// List calls fn for every key under prefix (a folder key such as
	// "blobs", or "" for the whole tree), in lexical order of the
	// folders it walks, with what Stat would report. Folders themselves
	// are not reported. A missing prefix lists nothing. Keys that appear
	// or vanish while List runs may or may not be reported. An error from
	// fn stops the walk and is returned.
	List(ctx context.Context, prefix string, fn func(key string, info Info) error) error
}

// OpenSink is a Sink that can stream the content of a key, however large:
// verify hashes blobs with it.
type OpenSink interface {
	Sink
	// Open returns the content of key. A missing key is ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// TouchSink is a Sink that can mark content as just used. Publish touches
// the content a repository file is about to reference, so that a
// concurrent gc, which only deletes content older than its grace period,
// does not delete it (see [Publisher.GC]).
type TouchSink interface {
	Sink
	// Touch sets the modification time of key to now. A missing key is
	// ErrNotFound.
	Touch(ctx context.Context, key string) error
}

// ExpireSink is a Sink that can delete a key only if it has not been
// written or touched since a given time, as one step with respect to
// Touch: a Touch that happens before DeleteIfOlder keeps the key, a Touch
// that happens after finds it missing.
type ExpireSink interface {
	Sink
	// DeleteIfOlder deletes key if its modification time is before
	// cutoff, and reports whether it did. A missing key is not an error
	// (false, nil).
	DeleteIfOlder(ctx context.Context, key string, cutoff time.Time) (bool, error)
}

// FolderSink is a Sink whose keys live in folders that exist on their own,
// as on a file system, and stay when the last key in them is deleted. An
// object store has no such folders and needs no such method.
type FolderSink interface {
	Sink
	// RemoveEmptyFolders removes the folder of key, then its parents,
	// while they are empty, up to but not including the folder stop (a
	// key prefix of key). A folder that is not empty ends it without
	// error: another writer may be creating a file in it.
	RemoveEmptyFolders(ctx context.Context, key, stop string) error
}
