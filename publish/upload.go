package publish

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// Blob uploads: the writer's half of the OCI distribution spec's upload
// sessions (POST, PATCH, PUT, GET and DELETE of /v2/<name>/blobs/uploads/).
//
// A session is files under the tree (layout.UploadDirKey), so that a push
// begun through one server can go on through another that shares the tree:
// a state file (the repository, when it was started and last written, and
// the chunks received so far, by offset and size) and one object per chunk
// (layout.UploadChunkKey). A chunk is stored first and the state file
// rewritten after it, atomically: holding the lock of the state file on a
// [LockSink], by a conditional write on a [SwapSink]. A writer that dies in
// between leaves the old state, which does not list the chunk, so the
// session goes on from what the state says: the next chunk at that offset
// overwrites the orphan, and finishing or cancelling deletes it.
//
// FinishUpload streams the chunks, in order, into the blob's key with the
// store's verification: nothing is visible under the digest unless every
// byte matches it. The one chunk of a session that has one is moved
// instead, on a store that can ([store.Mover]: renamed on a file system),
// so that its bytes are not written twice; a crash leaves it in the
// session or under the digest. AppendUpload hashes (SHA-256) the bytes it
// writes and keeps the hash's state in the state file, so that on a store
// with locks a moved chunk is not even read again: its digest is known. It does not touch any repository file: a manifest that
// lists the blob does. Sessions nobody finishes are removed by
// ExpireUploads (heron gc).
//
// Two writers appending to one session at once are serialised by the lock
// on a LockSink. On a bucket the second one's conditional write fails and
// it gets ErrUploadRange; but when both sent a chunk at the same offset,
// the loser's bytes may have replaced the winner's object (they share its
// key): the digest check at the end then fails, and no blob is written.
// OCI clients send the chunks of a session one after the other.

// ErrUploadUnknown is returned for an upload session that does not exist,
// was finished or cancelled, or belongs to another repository (the server
// answers 404 BLOB_UPLOAD_UNKNOWN).
var ErrUploadUnknown = errors.New("blob upload unknown")

// errUploadGone is ErrUploadUnknown for a session that has no state file
// (rather than one of another repository).
var errUploadGone = fmt.Errorf("%w: no such session", ErrUploadUnknown)

// ErrUploadRange is returned for a chunk whose offset is not the session's
// size (the server answers 416 Range Not Satisfiable with the size).
var ErrUploadRange = errors.New("chunk does not start at the end of the upload")

// ErrUploadTooLarge is returned for a chunk that would take the session
// past the size it is allowed, or past maxUploadChunks chunks (the server
// answers 413).
var ErrUploadTooLarge = errors.New("upload too large")

const (
	// uploadStateVersion is the schemaVersion of an upload's state file.
	uploadStateVersion = 1
	// maxUploadChunks bounds the chunks of one session, so that its state
	// file stays small (some 50 bytes a chunk).
	maxUploadChunks = 10000
	// maxUploadStateSize bounds the state file a reader accepts.
	maxUploadStateSize = 1 << 20
)

// uploadState is the content of an upload's state file.
type uploadState struct {
	SchemaVersion int           `json:"schemaVersion"`
	Repository    string        `json:"repository"`
	Created       time.Time     `json:"created"`
	Updated       time.Time     `json:"updated"`
	Chunks        []uploadChunk `json:"chunks"`
	// SHA256 is the state of a SHA-256 of the chunks' bytes, in order, as
	// they were received and written (crypto/sha256's MarshalBinary),
	// when every chunk was hashed so. Finishing the session with a
	// sha256 digest then needs no second read of a chunk that is moved
	// (see FinishUpload). A session without it (or with one that does
	// not decode) is verified by reading its chunks.
	SHA256 []byte `json:"sha256,omitempty"`
}

// sha256Sum returns the digest of the bytes the session holds, from its
// hash state, or false when it has none.
func (s *uploadState) sha256Sum() (digest.Digest, bool) {
	h, ok := s.sha256Hash()
	if !ok {
		return "", false
	}
	return digest.NewDigest(digest.SHA256, h), true
}

// sha256Hash returns the session's hash state, to go on hashing, or
// false when it has none: a new hash for a session that holds nothing.
func (s *uploadState) sha256Hash() (hash.Hash, bool) {
	h := sha256.New()
	if s.size() == 0 {
		return h, true
	}
	if len(s.SHA256) == 0 {
		return nil, false
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.SHA256); err != nil {
		return nil, false
	}
	return h, true
}

// uploadChunk is one chunk of an upload: Size bytes from Offset, stored
// under layout.UploadChunkKey(id, Offset).
type uploadChunk struct {
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
}

// size is the number of bytes the session holds.
func (s *uploadState) size() int64 {
	if len(s.Chunks) == 0 {
		return 0
	}
	c := s.Chunks[len(s.Chunks)-1]
	return c.Offset + c.Size
}

// decodeUploadState parses and checks a state file: chunks are contiguous
// from offset 0 and none is empty.
func decodeUploadState(b []byte) (*uploadState, error) {
	var s uploadState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("upload state: %w", err)
	}
	if s.SchemaVersion != uploadStateVersion {
		return nil, fmt.Errorf("upload state: unsupported schemaVersion %d", s.SchemaVersion)
	}
	if err := layout.ValidateRepository(s.Repository); err != nil {
		return nil, fmt.Errorf("upload state: %w", err)
	}
	if len(s.Chunks) > maxUploadChunks {
		return nil, fmt.Errorf("upload state: %d chunks, more than %d", len(s.Chunks), maxUploadChunks)
	}
	var next int64
	for _, c := range s.Chunks {
		if c.Offset != next || c.Size <= 0 || c.Offset > 1<<62-c.Size {
			return nil, fmt.Errorf("upload state: chunk at %d of %d bytes does not follow the previous ones", c.Offset, c.Size)
		}
		next = c.Offset + c.Size
	}
	return &s, nil
}

// upload is a session as read from its state file.
type upload struct {
	id, name string
	stateKey string
	state    *uploadState
	// version is the state file's version, on a SwapSink.
	version store.Version
}

// uploadStateKey returns the state key of id; an id that cannot be one is
// unknown.
func uploadStateKey(id string) (string, error) {
	key, err := layout.UploadStateKey(id)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUploadUnknown, err)
	}
	return key, nil
}

// readUpload reads the session id of repository name.
func (p *Publisher) readUpload(ctx context.Context, name, id string) (*upload, error) {
	if err := layout.ValidateRepository(name); err != nil {
		return nil, err
	}
	key, err := uploadStateKey(id)
	if err != nil {
		return nil, err
	}
	b, v, err := readVersion(ctx, p.sink, key, maxUploadStateSize)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("upload %s: %w", id, errUploadGone)
	}
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	st, err := decodeUploadState(b)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	if st.Repository != name {
		return nil, fmt.Errorf("upload %s: %w in %s", id, ErrUploadUnknown, name)
	}
	return &upload{id: id, name: name, stateKey: key, state: st, version: v}, nil
}

// lockUpload takes the lock of the session id of name (on a LockSink) and
// reads it. An unknown session is found before the lock is taken, so that
// requests for sessions that do not exist leave no lock file behind; one
// removed while the lock was awaited has its lock file removed (see
// removeUpload).
func (p *Publisher) lockUpload(ctx context.Context, name, id string) (*upload, func(), error) {
	if _, ok := p.sink.(LockSink); !ok {
		u, err := p.readUpload(ctx, name, id)
		return u, func() {}, err
	}
	if _, err := p.readUpload(ctx, name, id); err != nil {
		return nil, nil, err
	}
	key, err := uploadStateKey(id)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := p.lock(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	u, err := p.readUpload(ctx, name, id)
	if err != nil {
		if errors.Is(err, errUploadGone) {
			_ = p.deleteUploadLock(ctx, key)
		}
		unlock()
		return nil, nil, err
	}
	return u, unlock, nil
}

// deleteUploadLock deletes the lock file of a session's state file key,
// on a LockSink.
func (p *Publisher) deleteUploadLock(ctx context.Context, stateKey string) error {
	if _, ok := p.sink.(LockSink); !ok {
		return nil
	}
	lk, err := layout.LockKey(stateKey)
	if err != nil {
		return err
	}
	return p.sink.Delete(ctx, lk)
}

// writeUploadState writes st as the state of u: conditionally on the
// version u was read with on a SwapSink (ErrConflict when it changed).
func (p *Publisher) writeUploadState(ctx context.Context, u *upload, st *uploadState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return p.putFile(ctx, u.stateKey, b, u.version)
}

// StartUpload starts an upload session for a blob of repository name and
// returns its id: random, URL-safe, 26 characters.
func (p *Publisher) StartUpload(ctx context.Context, name string) (string, error) {
	if err := layout.ValidateRepository(name); err != nil {
		return "", err
	}
	if err := CheckTree(ctx, p.sink); err != nil {
		return "", err
	}
	id := rand.Text()
	key, err := layout.UploadStateKey(id)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	u := &upload{id: id, name: name, stateKey: key}
	if err := p.writeUploadState(ctx, u, &uploadState{
		SchemaVersion: uploadStateVersion, Repository: name, Created: now, Updated: now, Chunks: []uploadChunk{},
	}); err != nil {
		return "", fmt.Errorf("start upload: %w", err)
	}
	p.log.DebugContext(ctx, "upload started", "repository", name, "id", id)
	return id, nil
}

// UploadStatus returns the number of bytes the session id of repository
// name holds.
func (p *Publisher) UploadStatus(ctx context.Context, name, id string) (int64, error) {
	u, err := p.readUpload(ctx, name, id)
	if err != nil {
		return 0, err
	}
	return u.state.size(), nil
}

// AppendUpload adds the content of r to the session id of repository name,
// as the chunk starting at offset, which must be the session's size
// (ErrUploadRange otherwise), and returns the session's new size. max, when
// positive, bounds the session's size: a chunk that would take it past max
// is not kept (ErrUploadTooLarge). An empty r changes nothing.
func (p *Publisher) AppendUpload(ctx context.Context, name, id string, offset int64, r io.Reader, max int64) (int64, error) {
	u, unlock, err := p.lockUpload(ctx, name, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	return p.appendChunk(ctx, u, offset, r, max)
}

// appendChunk is AppendUpload on a session read, holding its lock. On
// success, u holds the new state.
func (p *Publisher) appendChunk(ctx context.Context, u *upload, offset int64, r io.Reader, max int64) (int64, error) {
	size := u.state.size()
	if offset != size {
		return size, fmt.Errorf("upload %s: %w: offset %d, size %d", u.id, ErrUploadRange, offset, size)
	}
	var first [1]byte
	switch _, err := io.ReadFull(r, first[:]); {
	case err == io.EOF:
		return size, nil
	case err != nil:
		return size, fmt.Errorf("upload %s: %w", u.id, err)
	}
	if max > 0 && size >= max {
		return size, fmt.Errorf("upload %s: %w: more than %d bytes", u.id, ErrUploadTooLarge, max)
	}
	if len(u.state.Chunks) >= maxUploadChunks {
		return size, fmt.Errorf("upload %s: %w: more than %d chunks", u.id, ErrUploadTooLarge, maxUploadChunks)
	}
	chunkKey, err := layout.UploadChunkKey(u.id, offset)
	if err != nil {
		return size, err
	}
	src := io.MultiReader(bytes.NewReader(first[:]), r)
	// The hash state serves moveChunk only: on a store that moves, under
	// a lock. Elsewhere FinishUpload reads the bytes back anyway.
	h, hashed := u.state.sha256Hash()
	if _, moves := p.sink.(store.Mover); !moves {
		hashed = false
	} else if _, locks := p.sink.(LockSink); !locks {
		hashed = false
	}
	if hashed {
		src = io.TeeReader(src, h)
	}
	lr := &limitReader{r: src, left: -1}
	if max > 0 {
		lr.left = max - size
	}
	if err := p.sink.Put(ctx, chunkKey, lr, Want{}); err != nil {
		if lr.over {
			return size, fmt.Errorf("upload %s: %w: more than %d bytes", u.id, ErrUploadTooLarge, max)
		}
		return size, fmt.Errorf("upload %s: %w", u.id, err)
	}
	st := *u.state
	st.Chunks = append(append([]uploadChunk{}, u.state.Chunks...), uploadChunk{Offset: offset, Size: lr.n})
	st.SHA256 = nil
	if hashed {
		if st.SHA256, err = h.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
			return size, fmt.Errorf("upload %s: %w", u.id, err)
		}
	}
	st.Updated = time.Now().UTC()
	err = p.writeUploadState(ctx, u, &st)
	if errors.Is(err, ErrConflict) {
		// Another writer changed the session since it was read: an
		// append of its own (its chunk is at our key: leave it) or a
		// cancel (ours is an orphan: delete it).
		now, rerr := p.readUpload(ctx, u.name, u.id)
		if errors.Is(rerr, ErrUploadUnknown) {
			_ = p.sink.Delete(ctx, chunkKey)
			return size, rerr
		}
		if rerr == nil {
			return now.state.size(), fmt.Errorf("upload %s: %w: another writer appended to it at %d", u.id, ErrUploadRange, offset)
		}
	}
	if err != nil {
		return size, fmt.Errorf("upload %s: %w", u.id, err)
	}
	u.state = &st
	p.log.DebugContext(ctx, "upload chunk", "id", u.id, "offset", offset, "size", lr.n)
	return st.size(), nil
}

// limitReader counts what it reads and fails once more than left bytes
// (unless left is negative) have been read.
type limitReader struct {
	r    io.Reader
	n    int64
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.left >= 0 && l.n > l.left {
		l.over = true
		return 0, ErrUploadTooLarge
	}
	return n, err
}

// FinishUpload completes the session id of repository name as the blob d:
// it appends last (when not nil; max bounds the session as for
// AppendUpload), then streams the session's chunks, in order, into the
// blob's key (or moves its one chunk there, see [store.Mover]), verified
// against d and the session's size. On a mismatch
// nothing is written (the error wraps ErrDigestMismatch or
// ErrSizeMismatch) and the session stays, to be cancelled. When the tree
// already holds the blob, the chunks are verified and not written again.
// Then the session is deleted, and the blob
// is listed by repository name (LinkBlob: a client reads a blob it pushed
// before any manifest references it). It returns the blob's size.
func (p *Publisher) FinishUpload(ctx context.Context, name, id string, d digest.Digest, last io.Reader, max int64) (int64, error) {
	size, err := p.finishUpload(ctx, name, id, d, last, max)
	if err != nil {
		return size, err
	}
	// After the session's lock is released: the repository's is taken.
	return size, p.LinkBlob(ctx, name, d, size)
}

// finishUpload is FinishUpload but the listing, holding the session's lock.
func (p *Publisher) finishUpload(ctx context.Context, name, id string, d digest.Digest, last io.Reader, max int64) (int64, error) {
	d, err := layout.ParseDigest(string(d))
	if err != nil {
		return 0, err
	}
	blobKey, err := layout.BlobKey(d)
	if err != nil {
		return 0, err
	}
	opener, ok := p.sink.(OpenSink)
	if !ok {
		return 0, errors.New("finish upload: the store cannot stream its content")
	}
	u, unlock, err := p.lockUpload(ctx, name, id)
	if err != nil {
		return 0, err
	}
	defer unlock()
	if last != nil {
		if _, err := p.appendChunk(ctx, u, u.state.size(), last, max); err != nil {
			return 0, err
		}
	}
	size := u.state.size()
	want := Want{Digest: d, Size: size}
	chunks := &chunkReader{ctx: ctx, o: opener, id: id, chunks: u.state.Chunks}
	defer chunks.close()
	present, err := p.present(ctx, blobKey, size)
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", id, err)
	}
	mover, moves := p.sink.(store.Mover)
	switch {
	case present:
		// Verified, not written again; LinkBlob touches it (gc's
		// contract) as it lists it.
		_, err = store.CopyVerified(ctx, blobKey, io.Discard, chunks, want)
	case moves && len(u.state.Chunks) == 1:
		// One chunk (a client that PATCHes the whole blob, as most
		// do): verified and renamed, not written a second time.
		err = p.moveChunk(ctx, mover, u, blobKey, want)
	default:
		err = p.sink.Put(ctx, blobKey, chunks, want)
	}
	if err != nil {
		return 0, fmt.Errorf("upload %s: %w", id, err)
	}
	chunks.close()
	if err := p.removeUpload(ctx, id, u.state); err != nil {
		return size, err
	}
	p.log.DebugContext(ctx, "upload finished", "repository", name, "id", id, "digest", d, "size", size)
	return size, nil
}

// moveChunk moves the one chunk of session u into blobKey, verified
// against want. The chunk is not read again when the session hashed its
// bytes as it wrote them (uploadState.SHA256) and the store is a
// LockSink, under whose lock nobody but the session's writer writes the
// chunk's key: the digest of what was received is then compared with
// want's, and the store checks the size only. On a store without locks
// two writers may each write a chunk at the same key (see above), so the
// chunk is read and verified.
func (p *Publisher) moveChunk(ctx context.Context, m store.Mover, u *upload, blobKey string, want Want) error {
	chunkKey, err := layout.UploadChunkKey(u.id, u.state.Chunks[0].Offset)
	if err != nil {
		return err
	}
	_, locks := p.sink.(LockSink)
	if sum, ok := u.state.sha256Sum(); ok && locks && want.Digest.Algorithm() == digest.SHA256 {
		if sum != want.Digest {
			return &VerifyError{Key: blobKey, Want: want, GotSize: want.Size, GotDigest: sum}
		}
		return m.Move(ctx, chunkKey, blobKey, Want{Size: want.Size, MediaType: want.MediaType})
	}
	return m.Move(ctx, chunkKey, blobKey, want)
}

// chunkReader reads the chunks of a session one after the other, each of
// exactly the size the state gives it.
type chunkReader struct {
	ctx    context.Context
	o      OpenSink
	id     string
	chunks []uploadChunk
	cur    io.ReadCloser
	left   int64
	err    error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.err == nil {
		if c.cur == nil {
			if len(c.chunks) == 0 {
				return 0, io.EOF
			}
			key, err := layout.UploadChunkKey(c.id, c.chunks[0].Offset)
			if err != nil {
				c.err = err
				break
			}
			rc, err := c.o.Open(c.ctx, key)
			if err != nil {
				c.err = fmt.Errorf("upload %s: chunk at %d: %w", c.id, c.chunks[0].Offset, err)
				break
			}
			c.cur, c.left = rc, c.chunks[0].Size
			c.chunks = c.chunks[1:]
		}
		if c.left == 0 {
			// The chunk must end here: one more byte means the object
			// is not the chunk the state lists.
			var b [1]byte
			n, err := io.ReadFull(c.cur, b[:])
			c.cur.Close()
			c.cur = nil
			if n != 0 || err != io.EOF {
				c.err = fmt.Errorf("upload %s: a chunk is longer than its state says", c.id)
			}
			continue
		}
		if int64(len(p)) > c.left {
			p = p[:c.left]
		}
		n, err := c.cur.Read(p)
		c.left -= int64(n)
		if err == io.EOF && c.left > 0 {
			c.err = fmt.Errorf("upload %s: a chunk is shorter than its state says", c.id)
			return n, c.err
		}
		if err != nil && err != io.EOF {
			c.err = err
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, c.err
}

func (c *chunkReader) close() {
	if c.cur != nil {
		c.cur.Close()
		c.cur = nil
	}
}

// CancelUpload deletes the session id of repository name and its chunks.
func (p *Publisher) CancelUpload(ctx context.Context, name, id string) error {
	u, unlock, err := p.lockUpload(ctx, name, id)
	if err != nil {
		return err
	}
	defer unlock()
	if err := p.removeUpload(ctx, id, u.state); err != nil {
		return err
	}
	p.log.DebugContext(ctx, "upload cancelled", "repository", name, "id", id)
	return nil
}

// removeUpload deletes the session id, holding its lock: its state file
// first (the session is then unknown to every writer), then, on a
// LockSink, its lock file, then the chunks st lists and whatever else its
// folder holds (an orphan chunk, a temporary file).
//
// Lock files are otherwise never removed, since a writer waiting on the
// one being removed and a writer creating it anew would not exclude each
// other. Here that is harmless: both then find no state, and nothing ever
// writes the state of this id again (ids are random and never reused).
// The lock file goes before the chunks so that a writer killed part-way
// leaves files under the session's folder for ExpireUploads to find
// (which takes the lock again and removes it with them), never a lock
// file that nothing names any more.
func (p *Publisher) removeUpload(ctx context.Context, id string, st *uploadState) error {
	stateKey, err := layout.UploadStateKey(id)
	if err != nil {
		return err
	}
	if err := p.sink.Delete(ctx, stateKey); err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	if err := p.deleteUploadLock(ctx, stateKey); err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	keys := map[string]bool{}
	if st != nil {
		for _, c := range st.Chunks {
			k, err := layout.UploadChunkKey(id, c.Offset)
			if err != nil {
				return err
			}
			keys[k] = true
		}
	}
	dir, err := layout.UploadDirKey(id)
	if err != nil {
		return err
	}
	if ls, ok := p.sink.(ListSink); ok {
		if err := ls.List(ctx, dir, func(key string, _ Info) error {
			keys[key] = true
			return nil
		}); err != nil {
			return fmt.Errorf("upload %s: %w", id, err)
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if err := p.sink.Delete(ctx, k); err != nil {
			return fmt.Errorf("upload %s: %w", id, err)
		}
	}
	if fs, ok := p.sink.(FolderSink); ok {
		if err := fs.RemoveEmptyFolders(ctx, stateKey, layout.UploadsDirKey()); err != nil {
			return fmt.Errorf("upload %s: %w", id, err)
		}
	}
	return nil
}

// ExpireUploads deletes the upload sessions nothing was written to since
// olderThan (their state file, their chunks, and the folders of sessions
// whose state file is gone), and returns how many it deleted. The store
// must be a [ListSink]. A session written to while it runs is kept: its
// state file is deleted only if it is still older than olderThan (by
// [ExpireSink.DeleteIfOlder] when the store has it), and the rest of a
// session only once its state file is gone.
func (p *Publisher) ExpireUploads(ctx context.Context, olderThan time.Time) (int, error) {
	ids, err := p.staleUploads(ctx, olderThan)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		ok, err := p.expireUpload(ctx, id, olderThan)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	if n > 0 {
		p.log.DebugContext(ctx, "uploads expired", "count", n)
	}
	return n, nil
}

// staleUploads lists the sessions none of whose files was written since
// olderThan, in order of id.
func (p *Publisher) staleUploads(ctx context.Context, olderThan time.Time) ([]string, error) {
	ls, ok := p.sink.(ListSink)
	if !ok {
		return nil, errors.New("expire uploads: the store cannot list its keys")
	}
	latest := map[string]time.Time{}
	err := ls.List(ctx, layout.UploadsDirKey(), func(key string, info Info) error {
		id, _, _, ok := layout.UploadFromKey(key)
		if !ok {
			return nil
		}
		if t, seen := latest[id]; !seen || info.ModTime.After(t) {
			latest[id] = info.ModTime
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire uploads: %w", err)
	}
	var ids []string
	for id, t := range latest {
		if t.Before(olderThan) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// expireUpload deletes the session id if its state file (when it has one)
// is still older than olderThan, holding its lock, and reports whether it
// did.
func (p *Publisher) expireUpload(ctx context.Context, id string, olderThan time.Time) (bool, error) {
	key, err := layout.UploadStateKey(id)
	if err != nil {
		return false, err
	}
	unlock, err := p.lock(ctx, key)
	if err != nil {
		return false, err
	}
	defer unlock()
	b, err := p.sink.ReadFile(ctx, key, maxUploadStateSize)
	var st *uploadState
	switch {
	case errors.Is(err, ErrNotFound):
		// An orphan: a session whose removal was cut short.
	case err != nil:
		return false, fmt.Errorf("expire upload %s: %w", id, err)
	default:
		st, _ = decodeUploadState(b) // a corrupt state is removed all the same
		if es, ok := p.sink.(ExpireSink); ok {
			deleted, err := es.DeleteIfOlder(ctx, key, olderThan)
			if err != nil {
				return false, fmt.Errorf("expire upload %s: %w", id, err)
			}
			if !deleted {
				return false, nil
			}
		}
	}
	if err := p.removeUpload(ctx, id, st); err != nil {
		return false, err
	}
	return true, nil
}
