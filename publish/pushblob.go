package publish

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// The blobs of a push. A blob a client uploads (FinishUpload, PutBlob) or
// mounts (MountBlob) is listed by the repository at once, as a registry
// does: the client may read it back (GET /v2/<name>/blobs/<digest>)
// before any manifest references it, and a server that keeps repositories
// from some callers can require a pushed manifest to reference only what
// its repository lists (PushOptions.OnlyListed). A listed blob that no
// manifest references stays until a client deletes it (UnlinkBlob) or
// the repository is removed; gc keeps it meanwhile.

// LinkBlob lists blob d, which the tree holds with the given size, in
// repository name (creating the repository, and listing it in the
// catalog, if it does not exist). The blob is touched (on a TouchSink) or
// looked up just before the repository file is written, so that a gc
// that deleted it in between fails the link (ErrNotFound) rather than
// leaving a listing without bytes.
func (p *Publisher) LinkBlob(ctx context.Context, name string, d digest.Digest, size int64) error {
	if err := layout.ValidateRepository(name); err != nil {
		return err
	}
	d, err := layout.ParseDigest(string(d))
	if err != nil {
		return err
	}
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	touch := &touchKeys{}
	touch.add(layout.BlobKind, string(d))
	protected := false
	_, err = p.updateRepository(ctx, name, touch, func(r *layout.Repository) error {
		protected = r.Protected
		if b, ok := r.Blobs[d]; ok && b.IsStored() {
			return nil
		}
		if err := p.stillThere(ctx, key, size); err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
		b := r.Blobs[d]
		b.Size, b.Stored = size, nil
		r.Blobs[d] = b
		return nil
	})
	if err != nil {
		return fmt.Errorf("repository %s: %w", name, err)
	}
	// Every link, not only the one that created the repository: a link
	// killed between the two writes leaves the name out of the catalog,
	// and the next link of the repository puts it in before its 201.
	if _, err := p.addToCatalog(ctx, []string{name}, map[string]bool{name: protected}, true); err != nil {
		return fmt.Errorf("updating the catalog (the blob is linked): %w", err)
	}
	return nil
}

// stillThere touches key on a TouchSink (the contract with gc), or looks
// it up; ErrNotFound when it is gone.
func (p *Publisher) stillThere(ctx context.Context, key string, size int64) error {
	if ts, ok := p.sink.(TouchSink); ok {
		return ts.Touch(ctx, key)
	}
	ok, err := p.present(ctx, key, size)
	if err == nil && !ok {
		if _, stats := p.sink.(StatSink); stats {
			err = ErrNotFound
		}
	}
	return err
}

// PutBlob stores blob d of repository name, read from r, which must hold
// exactly size bytes (a monolithic upload: POST ?digest=), verified as it
// is written, and lists it in the repository (LinkBlob). A blob the tree
// holds already is read and verified but not written again. max, when
// positive, bounds size (ErrUploadTooLarge). A mismatch writes nothing
// and wraps ErrDigestMismatch or ErrSizeMismatch.
func (p *Publisher) PutBlob(ctx context.Context, name string, d digest.Digest, size int64, r io.Reader, max int64) error {
	if err := layout.ValidateRepository(name); err != nil {
		return err
	}
	d, err := layout.ParseDigest(string(d))
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("blob %s: the size must be known", d)
	}
	if max > 0 && size > max {
		return fmt.Errorf("blob %s: %w: %d bytes, more than %d", d, ErrUploadTooLarge, size, max)
	}
	if err := CheckTree(ctx, p.sink); err != nil {
		return err
	}
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	want := Want{Digest: d, Size: size}
	present, err := p.present(ctx, key, size)
	if err != nil {
		return err
	}
	if present {
		_, err = store.CopyVerified(ctx, key, io.Discard, r, want)
	} else {
		err = p.sink.Put(ctx, key, r, want)
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return p.LinkBlob(ctx, name, d, size)
}

// MountBlob lists blob d in repository name when repository from lists it
// as stored (a cross-repository mount), or, with from empty, when the tree
// holds it. It returns the blob's size, and false (and no error) when
// there is nothing to mount: the client then uploads the blob.
func (p *Publisher) MountBlob(ctx context.Context, name, from string, d digest.Digest) (int64, bool, error) {
	if err := layout.ValidateRepository(name); err != nil {
		return 0, false, err
	}
	d, err := layout.ParseDigest(string(d))
	if err != nil {
		return 0, false, err
	}
	var size int64 = -1
	if from != "" {
		if err := layout.ValidateRepository(from); err != nil {
			return 0, false, err
		}
		r, err := p.readRepositoryBlob(ctx, from, d)
		if errors.Is(err, ErrNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		if !r.IsStored() {
			return 0, false, nil
		}
		size = r.Size
	} else {
		key, err := layout.BlobKey(d)
		if err != nil {
			return 0, false, err
		}
		ss, ok := p.sink.(StatSink)
		if !ok {
			return 0, false, nil
		}
		info, err := ss.Stat(ctx, key)
		if errors.Is(err, ErrNotFound) || (err == nil && info.Dir) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, err
		}
		size = info.Size
	}
	err = p.LinkBlob(ctx, name, d, size)
	if errors.Is(err, ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return size, true, nil
}

// readRepositoryBlob returns the listing of blob d in repository name:
// ErrNotFound when the repository does not exist or does not list it.
func (p *Publisher) readRepositoryBlob(ctx context.Context, name string, d digest.Digest) (layout.Blob, error) {
	var b layout.Blob
	touch := &touchKeys{}
	touch.add(layout.BlobKind, string(d))
	e, err := p.openEdit(ctx, name, false, touch)
	if err != nil {
		return b, err
	}
	b, ok := e.r.Blobs[d]
	if !ok {
		return b, fmt.Errorf("blob %s in %s: %w", d, name, ErrNotFound)
	}
	return b, nil
}
