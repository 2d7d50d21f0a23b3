package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// This file is the FS side of the fast path for a blob that lies in a
// local file (an OCI layout folder, or an entry of an OCI archive)
// published into a tree on the local file system: see copyLocalFile.
//
// The blob is copied into the temporary file first, by the kernel: a
// reflink (FICLONE / FICLONERANGE: the new file shares the source's
// blocks until either is written, on btrfs, XFS, bcachefs, ZFS 2.2…), or
// else copy_file_range (the kernel copies, without the bytes passing
// through this process, and may offload the copy on NFS or SMB), or else an
// ordinary read and write. Then the temporary file, which only publish can
// write, is read once and checked against the digest and size, and is
// renamed into place with the rest of the image as usual. Verifying the
// copy rather than the source means the bytes checked are the bytes
// stored, even if the source changes meanwhile.
//
// Hard links are never used: a link shares the inode, so a later change to
// the source file (a layout is a writable folder; tools rewrite blobs in
// place) would change the tree's content under its digest, and the tree's
// file would keep the source's owner and permissions.

// StageFile is Stage for content that lies in a local file, the size
// bytes of src from offset: the kernel copies it into the temporary file
// (reflink, else copy_file_range, else read and write), and the copy is
// read once to verify it, by a goroutine that follows the copy, so that
// hashing and copying overlap. add, if not nil, is told of the bytes
// verified as they are.
func (s *FS) StageFile(ctx context.Context, key string, src *os.File, offset, size int64, want Want, add func(int64)) (_ Staged, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := want.Digest.Validate(); err != nil || want.Size < 0 {
		return nil, fmt.Errorf("%s: a copy from a file needs a digest and a size", key)
	}
	final := s.root.Path(key)
	f, err := createTemp(filepath.Dir(final))
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// One byte more than wanted, if the region has it, so that a longer
	// source is a size mismatch, as in CopyVerified.
	n := min(size, want.Size+1)
	h := followHash(ctx, f, want, add)
	copied, err := copyRegion(ctx, f, src, offset, n, h.copied)
	got, herr := h.wait(copied)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", key, err)
	}
	if herr != nil {
		return nil, fmt.Errorf("write %s: verify: %w", key, herr)
	}
	if copied != want.Size {
		return nil, &VerifyError{Key: key, Want: want, GotSize: copied}
	}
	if got != want.Digest {
		return nil, &VerifyError{Key: key, Want: want, GotSize: copied, GotDigest: got}
	}
	return s.sealTemp(f, key, tmp, final)
}

// follower hashes a file while it is being written: copied tells it how
// far the file is written, and it reads up to there.
type follower struct {
	progress chan int64
	done     chan struct{}
	digest   digest.Digest
	err      error
}

func followHash(ctx context.Context, f *os.File, want Want, add func(int64)) *follower {
	h := &follower{progress: make(chan int64, 16), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		dg := want.Digest.Algorithm().Digester()
		buf := make([]byte, 256<<10)
		var pos int64
		for upto := range h.progress {
			for pos < upto && h.err == nil {
				if h.err = ctx.Err(); h.err != nil {
					break
				}
				m, err := f.ReadAt(buf[:min(int64(len(buf)), upto-pos)], pos)
				if m > 0 {
					_, _ = dg.Hash().Write(buf[:m])
					if add != nil {
						add(int64(m))
					}
					pos += int64(m)
				}
				if err != nil {
					h.err = err
				}
			}
		}
		h.digest = dg.Digest()
	}()
	return h
}

// copied reports that the file is written up to n bytes.
func (h *follower) copied(n int64) { h.progress <- n }

// wait reports that the copy ended at n bytes, and returns the digest of
// those bytes.
func (h *follower) wait(n int64) (digest.Digest, error) {
	h.progress <- n
	close(h.progress)
	<-h.done
	return h.digest, h.err
}

// copyPortable copies n bytes of src from offset to the current offset of
// dst with ordinary reads and writes, calling copied as copyRegion does.
func copyPortable(ctx context.Context, dst, src *os.File, offset, n int64, copied func(int64)) (int64, error) {
	w := &reportingWriter{w: dst, copied: copied}
	written, err := io.CopyBuffer(w, ctxReader{ctx: ctx, r: io.NewSectionReader(src, offset, n)}, make([]byte, 1<<20))
	return written, err
}

// reportingWriter reports the bytes written through it. It hides
// *os.File's ReadFrom, so that io.CopyBuffer uses the buffer it is given.
type reportingWriter struct {
	w      io.Writer
	n      int64
	copied func(int64)
}

func (r *reportingWriter) Write(b []byte) (int, error) {
	n, err := r.w.Write(b)
	r.n += int64(n)
	if n > 0 {
		r.copied(r.n)
	}
	return n, err
}
