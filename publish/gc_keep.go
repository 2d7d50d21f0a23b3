package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
)

// This file is publish's side of the contract with a concurrent gc (see
// Publisher.GC): content a repository file is about to reference is
// touched first, so that gc, which deletes only content untouched since
// its cutoff, leaves it alone.

// ErrContentDeleted is returned by a publish that found, just before it
// wrote a repository file, that content the file would reference had been
// deleted since it was written or found present: by a concurrent gc that
// struck in the milliseconds between publish's two checks (see
// [Publisher.GC]). Nothing was written; publishing again is the answer.
var ErrContentDeleted = errors.New("content deleted by a concurrent gc")

// keepContent runs after the content of pl is in the tree and before the
// repository files are written. It touches every manifest and blob of pl
// that some target repository does not list yet, and writes again, from
// src, any that a concurrent gc deleted since publish found it present (or
// since it wrote it, for an image that took longer than gc's grace period
// to copy). Content every target already lists is left alone, so that a
// publish that changes nothing changes no modification time either.
//
// It narrows the window in which touchAdded fails to milliseconds; it is
// not what makes gc safe (touchAdded is).
func (p *Publisher) keepContent(ctx context.Context, src source.Source, pl *plan, names []string) error {
	ts, ok := p.sink.(TouchSink)
	if !ok {
		return nil
	}
	// listed counts the target repositories that list each digest.
	listed := map[digest.Digest]int{}
	for _, name := range names {
		r, _, err := readRepository(ctx, p.sink, name)
		if err != nil {
			return fmt.Errorf("repository %s: %w", name, err)
		}
		if r == nil {
			continue
		}
		for d := range r.Manifests {
			listed[d]++
		}
		for d, b := range r.Blobs {
			if b.IsStored() {
				listed[d]++
			}
		}
	}
	keep := func(d digest.Digest, size int64, open func() (io.ReadCloser, error)) error {
		if listed[d] == len(names) {
			return nil
		}
		key, err := layout.BlobKey(d)
		if err != nil {
			return err
		}
		err = ts.Touch(ctx, key)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, fs.ErrPermission) {
			return err
		}
		// Deleted by gc since it was found present, or owned by
		// another user (writing it again gives a file of ours, with a
		// fresh time).
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := p.sink.Put(ctx, key, rc, Want{Digest: d, Size: size}); err != nil {
			return err
		}
		p.log.DebugContext(ctx, "write again", "key", key, "size", size)
		return nil
	}
	for _, b := range pl.blobs {
		err := keep(b.Digest, b.Size, func() (io.ReadCloser, error) { return src.Fetch(ctx, b) })
		if err != nil {
			return fmt.Errorf("%s: blob %s: %w", src, b.Digest, err)
		}
	}
	for _, m := range pl.manifests {
		err := keep(m.desc.Digest, m.desc.Size, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(m.raw)), nil })
		if err != nil {
			return fmt.Errorf("manifest %s: %w", m.desc.Digest, err)
		}
	}
	return nil
}

// touchAdded wraps the mutation of a repository file so that, once
// mutate has run, every manifest and stored blob the file lists and did
// not list before is touched, and a missing one fails the write. It runs
// where the repository file's lock is held and just before the file is
// written: a gc that deletes content only when it is untouched since its
// cutoff can then never delete what the new file references (see
// Publisher.GC). Touching is idempotent, so mutate stays safe to apply
// again.
func (p *Publisher) touchAdded(ctx context.Context, mutate func(*layout.Repository) error) func(*layout.Repository) error {
	ts, ok := p.sink.(TouchSink)
	if !ok {
		return mutate
	}
	return func(r *layout.Repository) error {
		had := listedContent(r)
		if err := mutate(r); err != nil {
			return err
		}
		touch := func(d digest.Digest) error {
			key, err := layout.BlobKey(d)
			if err != nil {
				return err
			}
			err = ts.Touch(ctx, key)
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: %s is no longer in the tree; nothing was written, publish again: %w", ErrContentDeleted, key, err)
			}
			return err
		}
		for d := range r.Manifests {
			if !had[d] {
				if err := touch(d); err != nil {
					return err
				}
			}
		}
		for d, b := range r.Blobs {
			if b.IsStored() && !had[d] {
				if err := touch(d); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// listedContent returns the digests of the manifests and stored blobs r
// lists: what gc keeps for it.
func listedContent(r *layout.Repository) map[digest.Digest]bool {
	had := make(map[digest.Digest]bool, len(r.Manifests)+len(r.Blobs))
	for d := range r.Manifests {
		had[d] = true
	}
	for d, b := range r.Blobs {
		if b.IsStored() {
			had[d] = true
		}
	}
	return had
}
