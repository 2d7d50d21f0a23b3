package redirector

import (
	"context"
	_ "crypto/sha256" // digest algorithms heron stores
	_ "crypto/sha512"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// errNotFound is what the tree returns for a key that is not a file: absent,
// under a path component that is not a directory, or a directory itself.
// Callers turn it into the right 404.
var errNotFound = errors.New("not found")

// tree reads a published tree. Every file is opened through an *os.Root,
// which refuses any path (".." or a symbolic link) that leads outside the
// root, whatever key it is given.
//
// It implements every lookup of lookups.go by reading the files on each
// call; the caches wrap it.
type tree struct {
	dir   layout.Root // for messages: the OS path of a key
	root  *os.Root
	idDir identityDir // the same folder, for identity
	// subtrees are the folders of files named by digest, by key; see
	// subtree.
	subtrees map[string]*subtree
	// changes is the tree's change counter (see changeSignal).
	changes *changeSignal
}

// openTree opens the tree at dir and checks its layout marker.
func openTree(dir string) (*tree, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open tree: %w", err)
	}
	t := &tree{dir: layout.Root(dir), root: root, subtrees: map[string]*subtree{}}
	t.changes = newChangeSignal(t)
	for _, key := range subtreeKeys() {
		t.subtrees[key] = &subtree{key: key}
	}
	if t.idDir, err = openIdentityDir(root); err != nil {
		root.Close()
		return nil, err
	}
	key := layout.LayoutFileKey()
	data, err := t.readFile(key, layout.MaxLayoutFileSize)
	if err == nil {
		_, err = layout.DecodeLayoutFile(data)
	}
	if err != nil {
		t.idDir.close()
		root.Close()
		if errors.Is(err, errNotFound) {
			return nil, fmt.Errorf("%s is not a heron tree: %s is missing", dir, key)
		}
		var fe *fileError
		if !errors.As(err, &fe) {
			err = t.fileError(key, err)
		}
		return nil, err
	}
	return t, nil
}

func (t *tree) close() error {
	for _, st := range t.subtrees {
		if r := st.root.Swap(nil); r != nil {
			r.Close()
		}
	}
	t.idDir.close()
	return t.root.Close()
}

// path is the OS path of key, for log lines and error messages.
func (t *tree) path(key string) string { return t.dir.Path(key) }

// fileError is an error about one file of the tree. Its message starts
// with the file's OS path, and respond logs that path as an attribute of
// its own, so that an operator can find every error about a file.
type fileError struct {
	key  string // the file's key in the tree
	path string // its OS path
	err  error
}

func (e *fileError) Error() string { return e.path + ": " + e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// fileError returns err about the file at key.
func (t *tree) fileError(key string, err error) error {
	return &fileError{key: key, path: t.path(key), err: err}
}

// fileErrorf returns a new error about the file at key.
func (t *tree) fileErrorf(key string, format string, args ...any) error {
	return t.fileError(key, fmt.Errorf(format, args...))
}

// open opens the regular file at key.
func (t *tree) open(key string) (*os.File, fs.FileInfo, error) {
	f, err := inTree(t, key, openInRoot)
	if err != nil {
		return nil, nil, t.mapError(key, err)
	}
	info, err := t.checkRegular(key, f)
	if err != nil {
		return nil, nil, err
	}
	return f, info, nil
}

// checkRegular returns the file information of f, opened at key, if it is
// a regular file; otherwise it closes f.
func (t *tree) checkRegular(key string, f *os.File) (fs.FileInfo, error) {
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, t.mapError(key, err)
	}
	if info.IsDir() {
		// repositories/a.json is a folder when a repository "a.json/b"
		// exists; for repository "a" that means "not found".
		f.Close()
		return nil, t.fileError(key, errNotFound)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, t.fileErrorf(key, "not a regular file (%s)", info.Mode().Type())
	}
	return info, nil
}

// stat returns the file information of the regular file at key.
func (t *tree) stat(key string) (fs.FileInfo, error) {
	info, err := inTree(t, key, (*os.Root).Stat)
	if err != nil {
		return nil, t.mapError(key, err)
	}
	if !info.Mode().IsRegular() {
		return nil, t.fileErrorf(key, "not a regular file (%s)", info.Mode().Type())
	}
	return info, nil
}

func (t *tree) mapError(key string, err error) error {
	if cannotExist(err) {
		return t.fileError(key, errNotFound)
	}
	return t.fileError(key, err)
}

// cannotExist reports whether err says that there is no file at the key
// asked for, and cannot be: it is absent, a path component is not a
// folder, or the key's last name is longer than the file system allows (a
// repository name of the OCI grammar may have a component of 255
// characters, to which its key adds ".json"). A request for such a key is
// answered as for any absent file (a 404), never as an internal error.
func cannotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.ENAMETOOLONG)
}

// readFile reads the whole file at key, refusing one of more than limit
// bytes.
func (t *tree) readFile(key string, limit int64) ([]byte, error) {
	data, _, err := t.readFileID(key, limit)
	return data, err
}

// readFileID is readFile, and the identity of the version it read when
// it knows it (see readBeneath; zero otherwise).
func (t *tree) readFileID(key string, limit int64) ([]byte, fileIdentity, error) {
	if data, id, err, ok := t.readBeneath(key, limit); ok {
		return data, id, err
	}
	data, err := t.readFileRoot(key, limit)
	return data, fileIdentity{}, err
}

// readFileRoot is readFile through the tree's *os.Root.
func (t *tree) readFileRoot(key string, limit int64) ([]byte, error) {
	f, info, err := t.open(key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info.Size() > limit {
		return nil, t.fileErrorf(key, "%d bytes, more than the %d allowed", info.Size(), limit)
	}
	// Read the size fstat gave, and one byte more to see the end (two
	// reads); io.ReadAll would start at 512 bytes and grow.
	data := make([]byte, info.Size()+1)
	n, err := io.ReadFull(f, data)
	switch {
	case err == nil:
		// The file grew since the fstat.
		var rest []byte
		rest, err = io.ReadAll(io.LimitReader(f, limit+1-int64(n)))
		data = append(data, rest...)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		data, err = data[:n], nil
	}
	if err != nil {
		return nil, t.fileError(key, err)
	}
	if int64(len(data)) > limit {
		return nil, t.fileErrorf(key, "more than the %d bytes allowed", limit)
	}
	return data, nil
}

// repository reads and validates the repository file of name, and checks
// that it names the repository it is the file of; it returns its view.
func (t *tree) repository(ctx context.Context, name string) (layout.RepositoryView, error) {
	v, _, err := t.repositoryID(ctx, name)
	return v, err
}

// repositoryID is repository, and the identity of the file it read when
// it knows it (zero otherwise).
// forget does nothing: the tree keeps nothing.
func (*tree) forget(string) {}

func (t *tree) repositoryID(_ context.Context, name string) (layout.RepositoryView, fileIdentity, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return layout.RepositoryView{}, fileIdentity{}, err
	}
	data, id, err := t.readFileID(key, layout.MaxRepositoryFileSize)
	if err != nil {
		return layout.RepositoryView{}, fileIdentity{}, err
	}
	repo, err := layout.DecodeRepositoryView(name, data)
	if err != nil {
		return layout.RepositoryView{}, fileIdentity{}, t.fileError(key, err)
	}
	return repo, id, nil
}

// subtree is a folder of the tree whose files are named by digest
// (blobs/<alg>, catalog/shards), opened as an *os.Root of its own the
// first time a file in it is asked for (a tree may not have it yet): a
// file is then one path component below it, one openat(2) or fstatat(2),
// where below the tree's root it is three (an openat and a close for each
// folder; opening a blob to check its size was a third of the CPU of a
// HEAD request). Being an *os.Root, it opens nothing outside itself.
type subtree struct {
	key  string // the folder's key
	mu   sync.Mutex
	root atomic.Pointer[os.Root]
}

// subtreeKeys are the folders kept open as subtrees.
func subtreeKeys() []string {
	keys := []string{layout.CatalogShardsDirKey()}
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		if key, err := layout.BlobKey(alg.FromString("")); err == nil {
			keys = append(keys, path.Dir(key))
		}
	}
	return keys
}

// subtreeRoot returns the *os.Root of st, or nil if it cannot be opened
// now.
func (t *tree) subtreeRoot(st *subtree) *os.Root {
	if r := st.root.Load(); r != nil {
		return r
	}
	return t.reopen(st, nil)
}

// reopen opens st again, unless another request did since it found stale
// (nil for "never opened").
func (t *tree) reopen(st *subtree, stale *os.Root) *os.Root {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r := st.root.Load(); r != stale {
		return r
	}
	r, err := t.root.OpenRoot(layout.OSKey(st.key))
	if err != nil {
		return nil
	}
	if old := st.root.Swap(r); old != nil {
		// Requests using it still finish: os.Root closes its folder
		// after the last of them.
		old.Close()
	}
	return r
}

// inTree runs op on the file at key: in the *os.Root of its folder if
// that is a subtree, and else, or if that fails, below the tree's root.
// op fails in a subtree if its folder does not exist yet, if the file is
// a symbolic link to elsewhere in the tree, or if the folder was replaced
// since it was opened, in which case it is opened again. What the tree's
// root answers is the answer.
func inTree[T any](t *tree, key string, op func(r *os.Root, name string) (T, error)) (T, error) {
	var st *subtree
	var r *os.Root
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		if st = t.subtrees[key[:i]]; st != nil {
			if r = t.subtreeRoot(st); r != nil {
				if v, err := op(r, key[i+1:]); err == nil {
					return v, nil
				}
			}
		}
	}
	v, err := op(t.root, layout.OSKey(key))
	if err == nil && r != nil {
		t.reopen(st, r)
	}
	return v, err
}

// openInRoot opens the file at name below r, as tree.open does.
func openInRoot(r *os.Root, name string) (*os.File, error) { return r.OpenFile(name, openFlags, 0) }

// openBlob opens the blob d and checks that it has the size the repository
// lists: a file of another size is never served as if it were whole.
func (t *tree) openBlob(d digest.Digest, size int64) (*os.File, error) {
	key, err := layout.BlobKey(d)
	if err != nil {
		return nil, err
	}
	f, info, err := t.open(key)
	if err != nil {
		return nil, err
	}
	if info.Size() != size {
		f.Close()
		return nil, t.fileErrorf(key, "%d bytes, but the repository lists %d", info.Size(), size)
	}
	return f, nil
}

// statBlob checks that blob d is a file of the listed size without opening
// it.
func (t *tree) statBlob(_ context.Context, d digest.Digest, size int64) error {
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	info, err := t.stat(key)
	if err != nil {
		return err
	}
	if info.Size() != size {
		return t.fileErrorf(key, "%d bytes, but the repository lists %d", info.Size(), size)
	}
	return nil
}

// readManifest reads manifest d whole and verifies its size and digest:
// the bytes are only returned if they are the ones the digest names.
func (t *tree) readManifest(d digest.Digest, size int64) ([]byte, error) {
	key, err := layout.ManifestKey(d)
	if err != nil {
		return nil, err
	}
	if size > layout.MaxManifestSize {
		return nil, t.fileErrorf(key, "manifest of %d bytes, more than the %d served", size, layout.MaxManifestSize)
	}
	f, err := t.openBlob(d, size)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, t.fileError(key, err)
	}
	if !d.Algorithm().Available() {
		return nil, t.fileErrorf(key, "digest algorithm %s is not available", d.Algorithm())
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return nil, t.fileErrorf(key, "content has digest %s", got)
	}
	return data, nil
}

// hotManifest has no manifest at hand: the tree reads them.
func (t *tree) hotManifest(layout.ManifestInfo) (*manifestEntry, bool) { return nil, false }

// manifest reads manifest m (see readManifest).
func (t *tree) manifest(_ context.Context, m layout.ManifestInfo) (*manifestEntry, error) {
	d := m.Digest()
	data, err := t.readManifest(d, m.Size)
	if err != nil {
		return nil, err
	}
	return newManifestEntry(d, m.Size, data), nil
}

// checkManifest checks that manifest m is a file of the listed size,
// without reading it.
func (t *tree) checkManifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error) {
	return nil, t.statBlob(ctx, m.Digest(), m.Size)
}

// catalogIndex reads catalog/index.json; errNotFound when there is none.
func (t *tree) catalogIndex(ctx context.Context) (*layout.CatalogIndex, error) {
	idx, _, err := t.catalogIndexID(ctx)
	return idx, err
}

// catalogIndexID is catalogIndex, and the identity of the file it read
// when it knows it (zero otherwise).
func (t *tree) catalogIndexID(context.Context) (*layout.CatalogIndex, fileIdentity, error) {
	key := layout.CatalogIndexKey()
	data, id, err := t.readFileID(key, layout.MaxCatalogFileSize)
	if err != nil {
		return nil, fileIdentity{}, err
	}
	idx, err := layout.DecodeCatalogIndex(data)
	if err != nil {
		return nil, fileIdentity{}, t.fileError(key, err)
	}
	return idx, id, nil
}

// catalogShard reads and verifies the shard with the given id; errNotFound
// when it is gone.
func (t *tree) catalogShard(_ context.Context, id string) (*layout.CatalogNames, error) {
	key, err := layout.CatalogShardKey(id)
	if err != nil {
		return nil, err
	}
	data, err := t.readFile(key, layout.MaxCatalogFileSize)
	if err != nil {
		return nil, err
	}
	names, err := layout.DecodeCatalogNames(data, id)
	if err != nil {
		return nil, t.fileError(key, err)
	}
	return names, nil
}
