//go:build linux

package store

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// copyChunk is the most copy_file_range is asked for at once: the hash
// follows the copy chunk by chunk, and a cancelled publish stops within a
// fraction of a second.
const copyChunk = 16 << 20

// copyRegion copies n bytes of src from offset to the start of dst (an
// empty file): a reflink where the file system can share blocks, else
// copy_file_range, else ordinary reads and writes. It calls copied with
// the number of bytes written so far as the copy goes, and returns the
// number of bytes copied, fewer than n if src is shorter.
func copyRegion(ctx context.Context, dst, src *os.File, offset, n int64, copied func(int64)) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	dfd, sfd := int(dst.Fd()), int(src.Fd())
	// FICLONERANGE needs a block-aligned offset, and a length that is
	// block-aligned too or ends at the end of src; otherwise (or on a file
	// system without reflinks, such as ext4) it fails and the copy falls
	// back to copy_file_range.
	err := unix.IoctlFileCloneRange(dfd, &unix.FileCloneRange{
		Src_fd: int64(sfd), Src_offset: uint64(offset), Src_length: uint64(n),
	})
	if err == nil {
		var st unix.Stat_t
		if err := unix.Fstat(dfd, &st); err != nil {
			return 0, err
		}
		copied(st.Size)
		return st.Size, nil
	}
	off := offset
	var written int64
	for written < n {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		m, err := unix.CopyFileRange(sfd, &off, dfd, nil, int(min(n-written, copyChunk)), 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			if written == 0 && copyFallback(err) {
				return copyPortable(ctx, dst, src, offset, n, copied)
			}
			return written, err
		}
		if m == 0 {
			break // src ends here
		}
		// Start writing the chunk back now, so that the fsync before the
		// rename has less to wait for. Advice only: errors do not matter.
		_ = unix.SyncFileRange(dfd, written, int64(m), unix.SYNC_FILE_RANGE_WRITE)
		written += int64(m)
		copied(written)
	}
	return written, nil
}

// copyFallback reports the errors of copy_file_range that mean "not here"
// (an old kernel, two file systems it cannot copy between, a file system
// without support) rather than a failure of the copy.
func copyFallback(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBADF)
}
