package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// The capabilities of FS that upkeep uses: gc walks and expires
// content, verify walks it, rm removes the folders a repository leaves.

// List implements Lister with filepath.WalkDir. A symbolic link is
// reported with what it points to (a link to a folder is not followed);
// other entries that are not regular files are skipped. Folders that
// vanish during the walk (a repository removed at the same time) are
// skipped.
func (s *FS) List(ctx context.Context, prefix string, fn func(key string, info Info) error) error {
	base := string(s.root)
	dir := base
	if prefix != "" {
		dir = s.root.Path(prefix)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		var fi fs.FileInfo
		switch {
		case d.Type().IsRegular():
			fi, err = d.Info()
		case d.Type()&fs.ModeSymlink != 0:
			fi, err = os.Stat(p)
		default:
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), Info{Size: fi.Size(), ModTime: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

// Touch implements Toucher with os.Chtimes.
func (s *FS) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	if err := os.Chtimes(s.root.Path(key), now, now); err != nil {
		if cannotExist(err) {
			return fmt.Errorf("touch %s: %w", key, ErrNotFound)
		}
		return fmt.Errorf("touch %s: %w", key, err)
	}
	return nil
}

// DeleteIfOlder implements Expirer. A file system has no "delete if
// unchanged", so the file is first renamed to a temporary name in its
// folder (atomic: a Touch after it finds nothing, and its writer writes the
// content again), then its modification time is read again: if a Touch got
// there first, the file is renamed back; otherwise it is removed.
func (s *FS) DeleteIfOlder(ctx context.Context, key string, cutoff time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p := s.root.Path(key)
	fi, err := os.Lstat(p)
	if cannotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return false, fmt.Errorf("delete %s: is a folder", key)
	}
	if !fi.ModTime().Before(cutoff) {
		return false, nil
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tomb := filepath.Join(filepath.Dir(p), tempPrefix+"gc-"+hex.EncodeToString(rnd[:]))
	if err := os.Rename(p, tomb); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	fi, err = os.Lstat(tomb)
	if err != nil || !fi.ModTime().Before(cutoff) {
		// Touched since it was looked at (or unreadable): put it back.
		// A writer that found it missing meanwhile wrote the same
		// content again, which this replaces.
		if rerr := os.Rename(tomb, p); rerr != nil {
			return false, fmt.Errorf("delete %s: restoring it after a concurrent touch: %w", key, rerr)
		}
		if err != nil {
			return false, fmt.Errorf("delete %s: %w", key, err)
		}
		return false, nil
	}
	if err := os.Remove(tomb); err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return true, fmt.Errorf("delete %s: sync folder: %w", key, err)
	}
	return true, nil
}

// RemoveEmptyFolders implements FolderRemover. A writer that creates a file
// in a folder this removes at the same moment creates the folder again
// (see Stage).
func (s *FS) RemoveEmptyFolders(ctx context.Context, key, stop string) error {
	if !strings.HasPrefix(key, stop+"/") {
		return fmt.Errorf("remove folders of %s: not under %s", key, stop)
	}
	for dir := path.Dir(key); dir != stop && strings.HasPrefix(dir, stop+"/"); dir = path.Dir(dir) {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := s.root.Path(dir)
		err := os.Remove(p)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if notEmpty(p) {
			return nil
		}
		return fmt.Errorf("remove folder %s: %w", dir, err)
	}
	return nil
}

// notEmpty reports whether the folder p holds an entry. A failed removal of
// a folder that holds one is ENOTEMPTY, EEXIST or ERROR_DIR_NOT_EMPTY
// depending on the system; asking the folder works everywhere.
func notEmpty(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return err == nil || !errors.Is(err, io.EOF)
}
