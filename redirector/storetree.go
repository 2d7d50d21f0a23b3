package redirector

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// storeTree reads a published tree through a store.Store (a bucket, see
// NewFromStore): the files of the tree are the store's keys, named by
// package layout as for a folder. It implements every lookup of
// lookups.go by reading on each call, as *tree does; the caches wrap it
// (storecache.go), and the optional capabilities of the store decide how
// blobs are answered (see Server.blobRedirect and sendBlob).
//
// Unlike *tree, it cannot check where a key leads: the store is trusted
// to keep its keys within the tree (a bucket has no symbolic links; a
// store.FS follows them, so a folder on this machine is served with New).
// Keys are built by layout from validated names, as for a folder.
type storeTree struct {
	st store.Store
	// The store's optional capabilities, nil when it has not got them.
	swapper store.Swapper     // versions: conditional reads of files
	stater  store.Stater      // sizes of blobs without reading them
	ranger  store.RangeOpener // parts of blobs (Range)
	opener  store.Opener      // whole blobs, when there is no ranger
	signer  store.Signer      // presigned URLs
	log     *slog.Logger
}

var (
	_ repositories     = (*storeTree)(nil)
	_ manifests        = (*storeTree)(nil)
	_ catalogShards    = (*storeTree)(nil)
	_ catalogIndexes   = (*storeTree)(nil)
	_ repositoryShards = (*storeTree)(nil)
)

// newStoreTree returns the tree in st, without reading anything.
func newStoreTree(st store.Store, log *slog.Logger) *storeTree {
	t := &storeTree{st: st, log: log}
	t.swapper, _ = st.(store.Swapper)
	t.stater, _ = st.(store.Stater)
	t.ranger, _ = st.(store.RangeOpener)
	t.opener, _ = st.(store.Opener)
	t.signer, _ = st.(store.Signer)
	return t
}

// canStream reports whether the store can send a blob's bytes through the
// server.
func (t *storeTree) canStream() bool { return t.ranger != nil || t.opener != nil }

func (*storeTree) close() error { return nil }

// fileError returns err about the file at key. A store has no OS path:
// the key names the file in messages and logs.
func (*storeTree) fileError(key string, err error) error {
	return &fileError{key: key, path: key, err: err}
}

func (t *storeTree) fileErrorf(key string, format string, args ...any) error {
	return t.fileError(key, fmt.Errorf(format, args...))
}

// mapError returns the error of the store about key as the tree's: a key
// that is not a file, and cannot be one, is errNotFound (a missing key;
// on a store.FS a path component that is a file, a name too long, or a
// folder, as *tree answers).
func (t *storeTree) mapError(ctx context.Context, key string, err error) error {
	if errors.Is(err, store.ErrNotFound) || cannotExist(err) {
		return t.fileError(key, errNotFound)
	}
	if ctx.Err() == nil && t.stater != nil {
		// Only on this unusual path: is it a folder (repositories/a.json
		// when a repository "a.json/b" exists)?
		if info, serr := t.stater.Stat(ctx, key); serr == nil && info.Dir {
			return t.fileError(key, errNotFound)
		}
	}
	return t.fileError(key, err)
}

// readFile reads the whole file at key, refusing one of more than limit
// bytes.
func (t *storeTree) readFile(ctx context.Context, key string, limit int64) ([]byte, error) {
	data, err := t.st.ReadFile(ctx, key, limit)
	if err != nil {
		return nil, t.mapError(ctx, key, err)
	}
	return data, nil
}

// readChanged reads the file at key unless it still has version have
// (not empty), for which it returns store.ErrNotModified. It returns the
// version it read: the store's (a bucket's ETag) when it is a
// store.Swapper, else the digest of the bytes, so that a file read again
// unchanged is not parsed again (its bytes are read anyway).
func (t *storeTree) readChanged(ctx context.Context, key string, limit int64, have store.Version) ([]byte, store.Version, error) {
	if t.swapper != nil {
		var data []byte
		var v store.Version
		var err error
		if have == "" {
			data, v, err = t.swapper.ReadVersion(ctx, key, limit)
		} else {
			data, v, err = t.swapper.ReadIfChanged(ctx, key, limit, have)
		}
		switch {
		case errors.Is(err, store.ErrNotModified):
			return nil, have, store.ErrNotModified
		case err != nil:
			return nil, "", t.mapError(ctx, key, err)
		case v == "":
			// A store that could not tell the version: the bytes'.
			v = contentVersion(data)
		}
		if v == have {
			return nil, have, store.ErrNotModified
		}
		return data, v, nil
	}
	data, err := t.readFile(ctx, key, limit)
	if err != nil {
		return nil, "", err
	}
	v := contentVersion(data)
	if v == have {
		return nil, have, store.ErrNotModified
	}
	return data, v, nil
}

// contentVersion is the version of a file read from a store without
// versions: the digest of its bytes.
func contentVersion(data []byte) store.Version {
	sum := sha256.Sum256(data)
	return store.Version("content:" + digest.NewDigestFromBytes(digest.SHA256, sum[:]).Encoded())
}

// forget does nothing: the tree keeps nothing.
func (*storeTree) forget(string) {}

// repository reads and validates the repository file of name.
func (t *storeTree) repository(ctx context.Context, name string) (layout.RepositoryView, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return layout.RepositoryView{}, err
	}
	data, err := t.readFile(ctx, key, layout.MaxRepositoryFileSize)
	if err != nil {
		return layout.RepositoryView{}, err
	}
	return t.decodeRepository(key, name, data)
}

func (t *storeTree) decodeRepository(key, name string, data []byte) (layout.RepositoryView, error) {
	repo, err := layout.DecodeRepositoryView(name, data)
	if err != nil {
		return layout.RepositoryView{}, t.fileError(key, err)
	}
	return repo, nil
}

// hotManifest has no manifest at hand: the tree reads them.
func (*storeTree) hotManifest(layout.ManifestInfo) (*manifestEntry, bool) { return nil, false }

// manifest reads manifest m whole and verifies its size and digest.
func (t *storeTree) manifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error) {
	d := m.Digest()
	key, err := layout.ManifestKey(d)
	if err != nil {
		return nil, err
	}
	if m.Size > layout.MaxManifestSize {
		return nil, t.fileErrorf(key, "manifest of %d bytes, more than the %d served", m.Size, layout.MaxManifestSize)
	}
	data, err := t.readFile(ctx, key, layout.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != m.Size {
		return nil, t.fileErrorf(key, "%d bytes, but the repository lists %d", len(data), m.Size)
	}
	if !d.Algorithm().Available() {
		return nil, t.fileErrorf(key, "digest algorithm %s is not available", d.Algorithm())
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return nil, t.fileErrorf(key, "content has digest %s", got)
	}
	return newManifestEntry(d, m.Size, data), nil
}

// checkManifest checks that manifest m is there with the listed size.
func (t *storeTree) checkManifest(ctx context.Context, m layout.ManifestInfo) (*manifestEntry, error) {
	if t.stater == nil {
		// Nothing tells the size without reading: read it.
		return t.manifest(ctx, m)
	}
	return nil, t.statBlob(ctx, m.Digest(), m.Size)
}

// statBlob checks that blob d has the listed size: by a stat, or, for a
// store that has none, by reading the last listed byte and the one after
// it (there must be the one and not the other). A store that can do
// neither is trusted (the repository file, written after its content,
// lists it); what is sent is checked as it is read anyway (storeBlob).
func (t *storeTree) statBlob(ctx context.Context, d digest.Digest, size int64) error {
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	if t.stater == nil {
		if !t.canStream() || size == 0 {
			// Nothing to probe for an empty blob: its answer is no
			// bytes, right if d is the digest of none (sendBlob).
			return nil
		}
		return t.probeSize(ctx, key, size)
	}
	info, err := t.stater.Stat(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound) || err != nil && cannotExist(err):
		return t.fileError(key, errNotFound)
	case err != nil:
		return t.fileError(key, err)
	case info.Dir:
		return t.fileErrorf(key, "not a regular file (a folder)")
	case info.Size != size:
		return t.fileErrorf(key, "%d bytes, but the repository lists %d", info.Size, size)
	}
	return nil
}

// probeSize checks that the content of key has size (> 0) bytes by
// reading its last byte and the one after it.
func (t *storeTree) probeSize(ctx context.Context, key string, size int64) error {
	rc, err := t.openRange(ctx, key, size-1, 2)
	if err != nil {
		return err
	}
	defer rc.Close()
	var buf [3]byte
	n, err := io.ReadFull(rc, buf[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return t.fileError(key, err)
	}
	if n != 1 {
		if n < 1 {
			return t.fileErrorf(key, "fewer bytes, but the repository lists %d", size)
		}
		return t.fileErrorf(key, "more bytes, but the repository lists %d", size)
	}
	return nil
}

// catalogIndex reads catalog/index.json; errNotFound when there is none.
func (t *storeTree) catalogIndex(ctx context.Context) (*layout.CatalogIndex, error) {
	key := layout.CatalogIndexKey()
	data, err := t.readFile(ctx, key, layout.MaxCatalogFileSize)
	if err != nil {
		return nil, err
	}
	return t.decodeCatalogIndex(key, data)
}

func (t *storeTree) decodeCatalogIndex(key string, data []byte) (*layout.CatalogIndex, error) {
	idx, err := layout.DecodeCatalogIndex(data)
	if err != nil {
		return nil, t.fileError(key, err)
	}
	return idx, nil
}

// catalogShard reads and verifies the shard with the given id.
func (t *storeTree) catalogShard(ctx context.Context, id string) (*layout.CatalogNames, error) {
	key, err := layout.CatalogShardKey(id)
	if err != nil {
		return nil, err
	}
	data, err := t.readFile(ctx, key, layout.MaxCatalogFileSize)
	if err != nil {
		return nil, err
	}
	names, err := layout.DecodeCatalogNames(data, id)
	if err != nil {
		return nil, t.fileError(key, err)
	}
	return names, nil
}

// repositoryShard reads shard sh of repository name and verifies it.
func (t *storeTree) repositoryShard(ctx context.Context, name string, kind layout.ShardKind, sh layout.ViewShard) (layout.RepositoryView, error) {
	id := sh.HexID()
	key, err := layout.RepositoryShardKey(name, id)
	if err != nil {
		return layout.RepositoryView{}, err
	}
	data, err := t.readFile(ctx, key, layout.MaxRepositoryFileSize)
	if err != nil {
		return layout.RepositoryView{}, err
	}
	ref := layout.ShardRef{ID: id, First: sh.First, Last: sh.Last, Count: sh.Count}
	if kind != layout.TagKind {
		ref.First, ref.Last = string(layout.DigestOfKey(sh.First)), string(layout.DigestOfKey(sh.Last))
	}
	v, err := layout.DecodeShardView(data, kind, ref)
	if err != nil {
		return layout.RepositoryView{}, t.fileError(key, err)
	}
	return v, nil
}

// ready implements reader: it reads heron-layout.json.
func (t *storeTree) ready(ctx context.Context) error {
	key := layout.LayoutFileKey()
	data, err := t.readFile(ctx, key, layout.MaxLayoutFileSize)
	if err != nil {
		return err
	}
	if _, err := layout.DecodeLayoutFile(data); err != nil {
		return t.fileError(key, err)
	}
	return nil
}

// openRange returns length bytes of key from offset: through OpenRange,
// or else Open, seeking (a file) or skipping to offset.
func (t *storeTree) openRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if t.ranger != nil {
		rc, err := t.ranger.OpenRange(ctx, key, offset, length)
		if err != nil {
			return nil, t.mapError(ctx, key, err)
		}
		return rc, nil
	}
	if t.opener == nil {
		return nil, t.fileErrorf(key, "the store cannot stream content")
	}
	rc, err := t.opener.Open(ctx, key)
	if err != nil {
		return nil, t.mapError(ctx, key, err)
	}
	if offset > 0 {
		if sk, ok := rc.(io.Seeker); ok {
			_, err = sk.Seek(offset, io.SeekStart)
		} else {
			_, err = io.CopyN(io.Discard, rc, offset)
		}
		if err != nil {
			rc.Close()
			return nil, t.fileError(key, err)
		}
	}
	return rc, nil
}
