package redirector

import (
	"errors"
	"sync/atomic"

	"github.com/heron-registry/heron/layout"
	"golang.org/x/sys/unix"
)

// noOpenat2 is set once openat2(2) turned out to be missing (Linux before
// 5.6) or forbidden (a seccomp filter): readFile then opens through the
// tree's *os.Root.
var noOpenat2 atomic.Bool

// readBeneath reads the whole regular file at key, of at most limit bytes,
// with one openat2(2) relative to the tree's folder and
// RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS: the kernel refuses any path that
// leads outside the tree (".." or a symbolic link), as *os.Root does, in
// one system call where os.Root opens each folder of the key in turn
// (three opens and two closes for repositories/org/app.json). The file is
// read with raw system calls, without an *os.File (which would cost an
// fcntl and an epoll_ctl more): openat2, fstat, one read, close, for a
// file whose size does not change meanwhile. ok is false when openat2
// cannot be used.
func (t *tree) readBeneath(key string, limit int64) (data []byte, id fileIdentity, err error, ok bool) {
	if noOpenat2.Load() {
		return nil, fileIdentity{}, nil, false
	}
	fd, err := unix.Openat2(t.idDir.fd, key, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	for errors.Is(err, unix.EINTR) {
		fd, err = unix.Openat2(t.idDir.fd, key, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		})
	}
	switch {
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM) && !t.permissionDenied(key):
		noOpenat2.Store(true)
		return nil, fileIdentity{}, nil, false
	case errors.Is(err, unix.EXDEV):
		return nil, fileIdentity{}, t.fileErrorf(key, "path escapes from parent (a symbolic link leads outside the tree)"), true
	case err != nil:
		return nil, fileIdentity{}, t.mapError(key, err), true
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fileIdentity{}, t.mapError(key, err), true
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		// repositories/a.json is a folder when a repository "a.json/b"
		// exists; for repository "a" that means "not found".
		return nil, fileIdentity{}, t.fileError(key, errNotFound), true
	default:
		return nil, fileIdentity{}, t.fileErrorf(key, "not a regular file (mode %o)", st.Mode&unix.S_IFMT), true
	}
	if st.Size > limit {
		return nil, fileIdentity{}, t.fileErrorf(key, "%d bytes, more than the %d allowed", st.Size, limit), true
	}
	// One byte more than the size, to see the end in the same read.
	data = make([]byte, st.Size+1)
	n := 0
	for {
		m, err := unix.Read(fd, data[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fileIdentity{}, t.mapError(key, err), true
		}
		n += m
		switch {
		case m == 0 || (n == int(st.Size) && n < len(data)):
			// The end (a regular file reads whole up to it). The
			// identity is the file's as opened: what was read is that
			// version (a file grown meanwhile has another size or
			// time, and is not cached as this one).
			return data[:n:n], identityOf(&st), nil, true
		case int64(n) > limit:
			return nil, fileIdentity{}, t.fileErrorf(key, "more than the %d bytes allowed", limit), true
		case n == len(data):
			// The file grew since the fstat.
			data = append(data, make([]byte, len(data))...)
		}
	}
}

// readsIdentity reports whether readFileID knows the identity of what it
// reads.
func (t *tree) readsIdentity() bool { return !noOpenat2.Load() }

// permissionDenied reports whether the tree's own permissions deny key:
// an EPERM from openat2 is a seccomp filter's only if fstatat succeeds.
func (t *tree) permissionDenied(key string) bool {
	var st unix.Stat_t
	return unix.Fstatat(t.idDir.fd, layout.OSKey(key), &st, 0) != nil
}
