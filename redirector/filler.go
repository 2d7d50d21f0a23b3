package redirector

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Filler brings into the tree, at request time, content that a repository
// lists but the tree does not hold yet: the blobs an on_demand publish
// recorded as not stored (layout.Blob.Stored false), fetched from the
// repository's upstream.
//
// It is the server's one seam to a writer: package redirector never
// imports the publisher; cmd/heron wires one built on package publish
// (verified, atomic writes, the repository file's lock or conditional
// write), with the server's own credentials for the upstream, never a
// client's. A server without a Filler answers such a blob 404, as it
// always did.
type Filler interface {
	// OpenBlob opens blob d of repository name, of the size the
	// repository lists, at the repository's upstream. The bytes are not
	// verified: the server hashes them as they stream.
	OpenBlob(ctx context.Context, name string, d digest.Digest, size int64) (io.ReadCloser, error)
	// StoreBlob writes blob d, read from content (verified again as it
	// is written), into the tree, and marks it stored in repository
	// name (MarkStored). A blob the tree holds already is not written
	// again.
	StoreBlob(ctx context.Context, name string, d digest.Digest, size int64, content io.Reader) error
	// MarkStored marks blob d, which the tree holds, stored in
	// repository name, if that lists it as not stored: the server calls
	// it when another repository's request has fetched the blob.
	MarkStored(ctx context.Context, name string, d digest.Digest) error
}

// WithFiller makes the server fetch blobs that a repository lists as not
// stored through f (see Filler). With readOnly, what is fetched is
// streamed and verified but never stored (StoreBlob is not called).
func WithFiller(f Filler, readOnly bool) Option {
	return func(o *options) { o.filler, o.fillReadOnly = f, readOnly }
}
