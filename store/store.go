// Package store is where a tree's files live: the one interface that the
// writer (package publish) and the reader (package redirector, for a tree
// that is not on the local file system) both go through, and its
// implementations: [FS], a folder on the local file system, and package
// store/s3, an S3-compatible bucket.
//
// Keys are the slash-separated keys of package layout (blobs/sha256/…,
// repositories/<name>.json, catalog/…); layout owns what they mean, a
// store only keeps bytes under them.
//
// [Store] is what every implementation must do. Each optional capability
// is an interface of its own, a Store with a method more, found by type
// assertion (as ggcr's pkg/registry finds a BlobStatHandler on a
// BlobHandler). Without one, its user does without, or refuses the command
// that needs it:
//
//	interface        adds                used to                                without it
//	Stater           Stat                skip content the tree holds            every blob is written again
//	Stager           Stage               make an image's content visible        content is visible as it is copied
//	                                     once all of it is verified
//	Emptier          Empty               refuse a root that holds something     a root without a layout file is
//	                                     else                                   initialised whatever it holds
//	ChangeSignaller  SignalIfRecent      signal a change whose writer died      no signal
//	                                     before it signalled it
//	Locker           Lock                serialise the read-modify-writes of    Swapper, else one writer at a time
//	                                     a repository file or of the catalog
//	Swapper          ReadVersion, PutIf  the same, by compare-and-swap          one writer at a time
//	                                     (conditional writes on a bucket)
//	Lister           List                walk the tree (gc, verify)             gc and verify refuse
//	Opener           Open                hash content of any size (verify)      verify refuses
//	RangeOpener      OpenRange           serve a part of a blob (Range)         the server cannot serve blobs
//	Toucher          Touch               keep what a publish adds from gc       gc's grace period alone
//	Expirer          DeleteIfOlder       delete unused content (gc)             gc refuses
//	FolderRemover    RemoveEmptyFolders  remove the folders a removed           the folders stay
//	                                     repository leaves (rm)
//	Signer           SignURL             send a client to the store itself      the server streams blobs
//	                                     (a presigned URL)
//	Mover            Move                finish a pushed blob of one chunk by   the chunk is copied into
//	                                     renaming it, after verifying it        the blob's key
//
// [FS] (fs*.go) implements all but Swapper and Signer; store/s3 all but
// Locker, ChangeSignaller, Toucher, FolderRemover and Mover. Package storetest
// is the suite every implementation passes.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// ErrNotFound is returned for a key that does not exist. Implementations
// map their own "not found" errors (fs.ErrNotExist, a 404, NoSuchKey) to
// it, so callers test with errors.Is. publish.ErrNotFound and
// source.ErrNotFound are this value.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned by [Swapper.PutIf] when the key no longer has
// the version the write was conditional on: another writer changed it
// first. The caller reads it again and re-applies its change.
var ErrConflict = errors.New("changed by another writer")

// ErrNotModified is returned by [Swapper.ReadIfChanged] when the key still
// has the version the caller holds.
var ErrNotModified = errors.New("not modified")

// ErrDigestMismatch and ErrSizeMismatch are wrapped by a [*VerifyError].
var (
	ErrDigestMismatch = errors.New("digest mismatch")
	ErrSizeMismatch   = errors.New("size mismatch")
)

// Want is what content is checked against while it is written (and what a
// source checks what it reads against). The zero Want checks nothing (the
// repository file and the catalog, whose bytes publish has just built); a
// Want with a Digest checks both the digest and the size.
type Want struct {
	Digest digest.Digest
	Size   int64
	// MediaType is the content's media type, which a store that keeps
	// one with the content records (an object's Content-Type, so that a
	// CDN serves a manifest with it). It is not checked. Empty: the
	// store's default for the key.
	MediaType string
}

// VerifyError reports content whose bytes do not match what was expected:
// a store reports what it was given to write, a registry source a blob
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

// Store is where a tree is written and read.
type Store interface {
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

// Info is what [Stater.Stat] reports about a key.
type Info struct {
	// Size is the content's length in bytes (0 for a folder).
	Size int64
	// Dir is true when the key is a folder (a prefix of other keys) rather
	// than content.
	Dir bool
	// ModTime is when the content was last written or touched (see
	// [Toucher]); gc never deletes content younger than its grace
	// period. Zero when the store does not know.
	ModTime time.Time
}

// Version names one version of a key's content, as the store tells them
// apart: an object's ETag on a bucket. It is opaque; the empty Version
// names no content (a key that does not exist).
type Version string

// Staged is content written and verified by [Stager.Stage] but not yet
// visible under its key.
type Staged interface {
	// Commit makes the content visible under its key, atomically.
	Commit(ctx context.Context) error
	// Abort discards the content. It is safe to call after Commit, where
	// it does nothing.
	Abort() error
}

// Stater is a Store that can tell whether a key exists without reading it.
type Stater interface {
	Store
	// Stat describes key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
}

// Stager is a Store that can write and verify content first and make it
// visible later. Publish stages every blob and manifest of an image and
// commits them only once all of them have been verified, so that a failure
// half-way through leaves no new content in the tree.
type Stager interface {
	Store
	// Stage writes and verifies r like Put, without making it visible.
	Stage(ctx context.Context, key string, r io.Reader, want Want) (Staged, error)
}

// Emptier is a Store that can tell whether its tree holds nothing at all,
// so that publish refuses to turn a folder that holds something else into
// a heron tree.
type Emptier interface {
	Store
	// Empty reports whether there is no key at all (a missing root counts
	// as empty).
	Empty(ctx context.Context) (bool, error)
}

// ChangeSignaller is a Store whose tree has a change counter
// (layout.ChangesKey) that its writes of repository files and of the
// catalog index increment. SignalIfRecent is called by a read-modify-write
// that found the file at key as it wanted it and wrote nothing: it
// increments the counter if that file changed recently, since the writer
// of that change may have died before incrementing it.
type ChangeSignaller interface {
	Store
	SignalIfRecent(ctx context.Context, key string) error
}

// Locker is a Store that can make writers of the same tree, in any number
// of processes, take turns on a file: publish holds the lock of a
// repository file while it reads, changes and rewrites it, and the lock of
// catalog/index.json while it changes the catalog, so that no concurrent
// update is lost.
type Locker interface {
	Store
	// Lock waits until it holds the exclusive lock of key (the key of the
	// file to protect, such as repositories/<name>.json), or until ctx
	// ends. unlock releases it; it must be called exactly once. A lock is
	// not reentrant: taking it again before unlocking waits forever. A
	// writer that dies holding a lock must not keep it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// Swapper is a Store whose writes can be conditional on the version they
// replace (a compare-and-swap): writers on different machines, with no
// lock they share, each read a file with its version, change it, and
// write it back only if nobody wrote it in between, else read it again.
// A bucket does it with If-Match and If-None-Match.
type Swapper interface {
	Store
	// ReadVersion is ReadFile, and the version of what it read.
	ReadVersion(ctx context.Context, key string, max int64) ([]byte, Version, error)
	// ReadIfChanged is ReadVersion unless key still has version v, for
	// which it returns ErrNotModified without the content (a conditional
	// GET).
	ReadIfChanged(ctx context.Context, key string, max int64, v Version) ([]byte, Version, error)
	// PutIf writes data under key, atomically, only if the key has
	// version match now (the empty Version: only if there is no such
	// key), and returns the version written. Otherwise it writes nothing
	// and returns ErrConflict.
	PutIf(ctx context.Context, key string, data []byte, want Want, match Version) (Version, error)
}

// Lister is a Store that can enumerate its keys: gc and verify walk the
// tree with it.
type Lister interface {
	Store
	// List calls fn for every key under prefix (a folder key such as
	// "blobs", or "" for the whole tree), in lexical order of the
	// folders it walks, with what Stat would report. Folders themselves
	// are not reported. A missing prefix lists nothing. Keys that appear
	// or vanish while List runs may or may not be reported. An error from
	// fn stops the walk and is returned.
	List(ctx context.Context, prefix string, fn func(key string, info Info) error) error
}

// Opener is a Store that can stream the content of a key, however large.
type Opener interface {
	Store
	// Open returns the content of key. A missing key is ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

// RangeOpener is a Store that can stream a part of the content of a key
// (an HTTP Range on a bucket).
type RangeOpener interface {
	Store
	// OpenRange returns length bytes of key from offset (to the end for a
	// negative length). A missing key is ErrNotFound; a range past the
	// end returns what there is.
	OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
}

// Toucher is a Store that can mark content as just used. Publish touches
// the content a repository file is about to reference, so that a
// concurrent gc, which only deletes content older than its grace period,
// does not delete it.
type Toucher interface {
	Store
	// Touch sets the modification time of key to now. A missing key is
	// ErrNotFound.
	Touch(ctx context.Context, key string) error
}

// Expirer is a Store that can delete a key only if it has not been
// written or touched since a given time, as one step with respect to
// Touch: a Touch that happens before DeleteIfOlder keeps the key, a Touch
// that happens after finds it missing. A store without Touch checks the
// time and deletes.
type Expirer interface {
	Store
	// DeleteIfOlder deletes key if its modification time is before
	// cutoff, and reports whether it did. A missing key is not an error
	// (false, nil).
	DeleteIfOlder(ctx context.Context, key string, cutoff time.Time) (bool, error)
}

// FolderRemover is a Store whose keys live in folders that exist on their
// own, as on a file system, and stay when the last key in them is
// deleted. An object store has no such folders and needs no such method.
type FolderRemover interface {
	Store
	// RemoveEmptyFolders removes the folder of key, then its parents,
	// while they are empty, up to but not including the folder stop (a
	// key prefix of key). A folder that is not empty ends it without
	// error: another writer may be creating a file in it.
	RemoveEmptyFolders(ctx context.Context, key, stop string) error
}

// Signer is a Store that can let a client read a key from the store
// itself, without credentials, for a while: a presigned URL.
type Signer interface {
	Store
	// SignURL returns a URL at which a client may send method (GET or
	// HEAD; each is signed on its own) for key until expiry from now.
	SignURL(ctx context.Context, method, key string, expiry time.Duration) (string, error)
}

// Mover is a Store that can turn content it holds under one key into the
// content of another key without copying it: a rename on a file system.
// Publish moves the one chunk of a finished upload into the blob's key,
// instead of writing its bytes a second time.
type Mover interface {
	Store
	// Move verifies the content of from against want and, if it
	// matches, makes it the content of to, atomically, and removes from:
	// a reader of to sees its old content (or nothing) or all of from's,
	// never a part, and a crash leaves the content under from or under
	// to. On a mismatch (a *VerifyError) or any
	// other error nothing changes under to. A want without a Digest
	// checks the size only: the caller vouches for the bytes (publish
	// hashed them as it wrote them). A missing from is ErrNotFound. The
	// content of from must not change while Move runs (its writer holds
	// it, as publish holds an upload's lock).
	Move(ctx context.Context, from, to string, want Want) error
}
