package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/heron-registry/heron/layout"
)

// FS is a Store over a tree on the local file system, with every
// optional capability (see Store). Its methods are in the files fssink*.go.
//
// Every write goes to a temporary file in the destination folder (so that
// the rename never crosses devices), is synced, closed, renamed into place,
// and the folder is synced, as oras-go's content/oci storage and ggcr's
// registry disk handler do. A half-written file is never visible under its
// final name, and the temporary file is removed on any error.
type FS struct {
	root layout.Root
}

var (
	_ Store           = (*FS)(nil)
	_ Stater          = (*FS)(nil)
	_ Stager          = (*FS)(nil)
	_ Emptier         = (*FS)(nil)
	_ ChangeSignaller = (*FS)(nil)
	_ Locker          = (*FS)(nil)
	_ Lister          = (*FS)(nil)
	_ Opener          = (*FS)(nil)
	_ Toucher         = (*FS)(nil)
	_ Expirer         = (*FS)(nil)
	_ FolderRemover   = (*FS)(nil)
	_ RangeOpener     = (*FS)(nil)
	_ Mover           = (*FS)(nil)
)

// NewFS returns a sink writing the tree at root. Nothing is created
// until something is written.
func NewFS(root layout.Root) *FS { return &FS{root: root} }

// Root returns the folder the sink writes to.
func (s *FS) Root() layout.Root { return s.root }

// tempPrefix starts the name of every temporary file. It never parses as a
// digest, a shard id or a repository file, so readers never open one.
const tempPrefix = ".heron-tmp-"

// IsTempKey reports whether key names a temporary file of a writer (see
// tempPrefix): content being written, or left behind by a writer that died.
func IsTempKey(key string) bool {
	i := strings.LastIndexByte(key, '/')
	return strings.HasPrefix(key[i+1:], tempPrefix)
}

// Put implements Store.
func (s *FS) Put(ctx context.Context, key string, r io.Reader, want Want) error {
	st, err := s.Stage(ctx, key, r, want)
	if err != nil {
		return err
	}
	if err := st.Commit(ctx); err != nil {
		_ = st.Abort()
		return err
	}
	return nil
}

// Stage implements Stager: the content is written, synced and verified
// under a temporary name in the destination folder.
func (s *FS) Stage(ctx context.Context, key string, r io.Reader, want Want) (_ Staged, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	final := s.root.Path(key)
	dir := filepath.Dir(final)
	f, err := createTemp(dir)
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
	if _, err := CopyVerified(ctx, key, f, r, want); err != nil {
		return nil, err
	}
	return s.sealTemp(f, key, tmp, final)
}

// sealTemp makes a verified temporary file readable by all (CreateTemp
// makes it 0600, and a server may run as another user), syncs and closes
// it, and returns it staged for its rename to final.
func (s *FS) sealTemp(f *os.File, key, tmp, final string) (Staged, error) {
	if err := f.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("write %s: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", key, err)
	}
	return &fsStaged{sink: s, key: key, tmp: tmp, final: final}, nil
}

// createTemp creates a temporary file in dir, creating dir first. A writer
// removing the empty folders a deleted repository leaves (see
// RemoveEmptyFolders) may remove dir between the two: creating it again is
// then the answer, a few times.
func createTemp(dir string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrNotExist) && attempt < 10 {
				continue
			}
			return nil, fmt.Errorf("create folder: %w", err)
		}
		f, err := os.CreateTemp(dir, tempPrefix+"*")
		if errors.Is(err, fs.ErrNotExist) && attempt < 10 {
			continue
		}
		return f, err
	}
}

type fsStaged struct {
	sink            *FS
	key, tmp, final string
	done            bool
}

func (st *fsStaged) Commit(ctx context.Context) error {
	if st.done {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(st.tmp, st.final); err != nil {
		return fmt.Errorf("write %s: %w", st.key, err)
	}
	st.done = true
	if err := syncDir(filepath.Dir(st.final)); err != nil {
		return fmt.Errorf("write %s: sync folder: %w", st.key, err)
	}
	return st.sink.signalChange(st.key)
}

func (st *fsStaged) Abort() error {
	if st.done {
		return nil
	}
	st.done = true
	if err := os.Remove(st.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ReadFile implements Store.
func (s *FS) ReadFile(ctx context.Context, key string, max int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.root.Path(key))
	if err != nil {
		return nil, mapNotExist(key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("read %s: is a folder", key)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("read %s: %d bytes, more than the %d allowed", key, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("read %s: more than the %d bytes allowed", key, max)
	}
	return b, nil
}

// Delete implements Store.
func (s *FS) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := s.root.Path(key)
	if err := os.Remove(p); err != nil {
		if cannotExist(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: sync folder: %w", key, err)
	}
	return s.signalChange(key)
}

// Stat implements Stater.
func (s *FS) Stat(ctx context.Context, key string) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(s.root.Path(key))
	if err != nil {
		return Info{}, mapNotExist(key, err)
	}
	if fi.IsDir() {
		return Info{Dir: true}, nil
	}
	return Info{Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Empty implements Emptier: the root is missing, or a folder that holds
// nothing but what a writer starting at the same moment may have put there
// (its temporary files and its .heron/ state), so that concurrent first
// publishes into a new root all succeed.
func (s *FS) Empty(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	f, err := os.Open(string(s.root))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%s is not a folder", s.root)
	}
	for {
		names, err := f.Readdirnames(16)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		for _, n := range names {
			if !strings.HasPrefix(n, tempPrefix) && n != layout.WriterStateDirKey() {
				return false, nil
			}
		}
	}
}

// Open implements Opener.
func (s *FS) Open(ctx context.Context, key string) (io.ReadCloser, error) {
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

// recentChange is how recently a file must have changed for a writer that
// finds it as it wants it, and so writes nothing, to signal it anyway (see
// SignalIfRecent). Servers trust the counter for a second at most.
const recentChange = 10 * time.Second

// SignalIfRecent implements ChangeSignaller: it increments the change
// counter if the signalled file at key changed less than recentChange
// ago. A writer killed between a change and its increment leaves a file
// the servers were not told of, and the writer run again finds that file
// as it wants it and writes nothing: this tells them.
func (s *FS) SignalIfRecent(ctx context.Context, key string) error {
	if !layout.IsSignalled(key) {
		return nil
	}
	fi, err := os.Stat(s.root.Path(key))
	if err != nil || time.Since(fi.ModTime()) >= recentChange {
		return nil
	}
	return s.signalChange(key)
}

// signalChange increments the tree's change counter (layout.ChangesKey)
// after the file at key was replaced or removed, if it is one whose
// changes are signalled, creating the counter when the tree has none. A
// server that trusts the counter sees the change from its next request.
// The change is made when this fails: the error says the servers may not
// see it for up to a second (they validate what they cached at least
// that often).
func (s *FS) signalChange(key string) error {
	if !layout.IsSignalled(key) {
		return nil
	}
	ck := layout.ChangesKey()
	fail := func(err error) error {
		return fmt.Errorf("wrote %s, but could not signal the change in %s (servers may answer from their caches for up to a second): %w", key, ck, err)
	}
	p := s.root.Path(ck)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if fi.Size() < layout.ChangesFileSize {
		// A new file (or one cut short): extending it keeps what it holds,
		// so writers creating it at once lose nothing.
		if err := f.Truncate(layout.ChangesFileSize); err != nil {
			return fail(err)
		}
	}
	c, err := layout.MapChangeCounter(f, true)
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return fail(err)
	}
	c.Increment()
	return c.Unmap()
}

// mapNotExist maps a missing file at key to ErrNotFound. A key below a
// file (a/b.json/x where a/b.json is a file) is not mapped:
// reading it is an error, not "not found", so that publish, which reads a
// repository file before it writes anything, refuses a tree where the
// file could not be written before it writes anything (Delete, Touch and
// DeleteIfOlder treat it as missing).
func mapNotExist(key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return err
}

// syncDir makes a rename or removal in dir durable. File systems that cannot
// sync a folder (EINVAL) are tolerated.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	cerr := d.Close()
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return cerr
}

// OpenRange implements RangeOpener: length bytes of key from offset (to
// the end for a negative length).
func (s *FS) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("open %s: negative offset %d", key, offset)
	}
	rc, err := s.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(*os.File)
	if length < 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("open %s: %w", key, err)
		}
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, length), f}, nil
}

// cannotExist reports whether err says that there is no file at a key: it
// is absent, or below a file (a/b.json/x where a/b.json is a file).
func cannotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
