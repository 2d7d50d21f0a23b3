package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Move implements Mover: the file at from is read once and checked
// against want (its size only, without a digest), then renamed to to (in the same tree, so on the same file
// system), and both folders are synced. The file was written by Put or
// Stage (synced, readable by all), so its bytes are on the disk before the
// rename that makes them visible under to; a crash before the rename
// leaves it under from, after it under to.
func (s *FS) Move(ctx context.Context, from, to string, want Want) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if want.Size < 0 || (want.Digest != "" && want.Digest.Validate() != nil) {
		return fmt.Errorf("move %s to %s: a move needs a size, and a valid digest or none", from, to)
	}
	src, dst := s.root.Path(from), s.root.Path(to)
	f, err := os.Open(src)
	if err != nil {
		return mapNotExist(from, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("move %s: %w", from, err)
	}
	if want.Digest != "" {
		_, err = CopyVerified(ctx, to, io.Discard, f, want)
	} else if fi.Size() != want.Size {
		err = &VerifyError{Key: to, Want: want, GotSize: min(fi.Size(), want.Size+1)}
	}
	f.Close()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			err = os.Rename(src, dst)
		}
		// A writer removing empty folders (see createTemp) may remove
		// the destination's folder in between: create it again.
		if err == nil || !errors.Is(err, os.ErrNotExist) || attempt >= 10 {
			break
		}
		if _, serr := os.Stat(src); serr != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", from, to, err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("move %s to %s: sync folder: %w", from, to, err)
	}
	if err := syncDir(filepath.Dir(src)); err != nil {
		return fmt.Errorf("move %s to %s: sync folder: %w", from, to, err)
	}
	return s.signalChange(to)
}
