package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

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

// OpenSink is a Sink that can stream the content of a key, however large:
// verify hashes blobs with it.
type OpenSink interface {
	Sink
	// Open returns the content of key. A missing key is ErrNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
}

var (
	_ ListSink   = (*FSSink)(nil)
	_ TouchSink  = (*FSSink)(nil)
	_ ExpireSink = (*FSSink)(nil)
	_ OpenSink   = (*FSSink)(nil)
)

// List implements ListSink with filepath.WalkDir. A symbolic link is
// reported with what it points to (a link to a folder is not followed);
// other entries that are not regular files are skipped. Folders that
// vanish during the walk (a repository removed at the same time) are
// skipped.
func (s *FSSink) List(ctx context.Context, prefix string, fn func(key string, info Info) error) error {
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

// Touch implements TouchSink with os.Chtimes.
func (s *FSSink) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	if err := os.Chtimes(s.root.Path(key), now, now); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("touch %s: %w", key, ErrNotFound)
		}
		return fmt.Errorf("touch %s: %w", key, err)
	}
	return nil
}

// DeleteIfOlder implements ExpireSink. A file system has no "delete if
// unchanged", so the file is first renamed to a temporary name in its
// folder (atomic: a Touch after it finds nothing, and its writer writes the
// content again), then its modification time is read again: if a Touch got
// there first, the file is renamed back; otherwise it is removed.
func (s *FSSink) DeleteIfOlder(ctx context.Context, key string, cutoff time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p := s.root.Path(key)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
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

// Open implements OpenSink.
func (s *FSSink) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.root.Path(key))
	if err != nil {
		return nil, mapNotExist(key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: is a folder", key)
	}
	return f, nil
}

// isTempKey reports whether key names a temporary file of a writer (see
// tempPrefix): content being written, or left behind by a writer that died.
func isTempKey(key string) bool {
	i := strings.LastIndexByte(key, '/')
	return strings.HasPrefix(key[i+1:], tempPrefix)
}
