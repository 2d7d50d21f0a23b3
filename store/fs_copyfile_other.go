//go:build !linux

package store

import (
	"context"
	"os"
)

// copyRegion copies n bytes of src from offset to the start of dst with
// ordinary reads and writes (reflinks and copy_file_range are Linux only
// here).
func copyRegion(ctx context.Context, dst, src *os.File, offset, n int64, copied func(int64)) (int64, error) {
	return copyPortable(ctx, dst, src, offset, n, copied)
}
