package redirector

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// sendBlob implements reader: the bytes of blob d, read from the store
// as http.ServeContent asks for them (storeBlob), with the answers of
// serveContent for a file: the same headers, Range (206, multipart, 416),
// If-None-Match (304), HEAD.
//
// What is sent is checked as it is read: the size first (a stat, when the
// store has one; a shorter object is caught while reading anyway), and a
// whole blob (200, or a range of all of it) is hashed while it streams,
// with its last bytes held back until the digest matches. When it does
// not, or the store fails or ends early, the connection is cut
// (http.ErrAbortHandler): the client sees a body shorter than its
// Content-Length, never a whole answer of wrong bytes. A part of a blob
// (206) cannot be checked against the digest; only its length is.
func (t *storeTree) sendBlob(w http.ResponseWriter, r *http.Request, d digest.Digest, size int64) error {
	ctx := r.Context()
	b, err := t.newStoreBlob(ctx, d, size)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := t.statBlob(ctx, d, size); err != nil {
		return err
	}
	if size == 0 && d.Algorithm().FromBytes(nil) != d {
		// Nothing would be read, so nothing would be checked.
		return t.fileErrorf(b.key, "0 bytes listed for a digest of other content")
	}
	setBlobHeaders(w.Header(), d)
	if _, ok := r.Header["Range"]; ok {
		r = normalizeRanges(r, size)
		b.plan = plannedRanges(r.Header.Get("Range"), size)
	}
	// Open what the answer reads first now, so that a missing or
	// unreadable object is an error answer, not a cut connection: for a
	// GET of the whole blob or of ranges that parsed (not for a 304, a
	// 416, or an If-Range that may turn ranges into the whole).
	if r.Method == http.MethodGet && size > 0 && !notModified(r, etag(d)) {
		_, ranged := r.Header["Range"]
		switch {
		case !ranged:
			if err := b.open(0); err != nil {
				return err
			}
		case len(b.plan) > 0 && r.Header.Get("If-Range") == "":
			if err := b.open(b.plan[0].first); err != nil {
				return err
			}
		}
	}
	http.ServeContent(w, r, "", time.Time{}, b)
	if err := b.failure(); err != nil {
		t.log.ErrorContext(ctx, "blob answer cut short", "method", r.Method, "path", r.URL.Path,
			"err", err, "file", b.key)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// plannedRanges returns the ranges of a (normalized) Range header, for
// content of size bytes, or nil when it does not parse (http.ServeContent
// then answers 416, or sends the whole).
func plannedRanges(header string, size int64) []byteRange {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if !ok {
		return nil
	}
	var plan []byteRange
	for ra := range strings.SplitSeq(spec, ",") {
		br, ok, empty := parseRange(ra, size)
		if empty {
			continue
		}
		if !ok {
			return nil
		}
		plan = append(plan, br)
	}
	return plan
}

// storeBlob is a blob in a store as an io.ReadSeeker of its listed size,
// for http.ServeContent. Seeking only moves the position; a read opens
// the store's content there, for exactly the planned range that starts
// there (or to the end), and keeps it open for the reads that follow.
// Reads from the first byte to the last, in order, are hashed, and the
// last of them is only returned once the digest matches.
//
// http.ServeContent reads the ranges of a multipart answer in a goroutine
// of its own, which may still be reading when it returns (the client went
// away): mu orders that goroutine's reads and the handler's Close.
type storeBlob struct {
	mu   sync.Mutex
	ctx  context.Context
	t    *storeTree
	key  string
	d    digest.Digest
	size int64
	// plan holds the ranges the answer will read; nil: the whole blob.
	plan []byteRange
	pos  int64

	rc           io.ReadCloser
	rcPos, rcEnd int64 // where rc's next byte is, and where it ends

	// h hashes bytes [0, hashed) while reads are in order from the start;
	// nil once they are not (a range).
	h      hash.Hash
	hashed int64
	// err is the first failure; every read after it returns it, and the
	// answer is cut.
	err error
}

func (t *storeTree) newStoreBlob(ctx context.Context, d digest.Digest, size int64) (*storeBlob, error) {
	key, err := layout.BlobKey(d)
	if err != nil {
		return nil, err
	}
	if !d.Algorithm().Available() {
		return nil, t.fileErrorf(key, "digest algorithm %s is not available", d.Algorithm())
	}
	return &storeBlob{ctx: ctx, t: t, key: key, d: d, size: size, h: d.Algorithm().Hash()}, nil
}

// failure returns the first failure of a read, if any.
func (b *storeBlob) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// Seek implements io.Seeker.
func (b *storeBlob) Seek(offset int64, whence int) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		offset += b.pos
	case io.SeekEnd:
		offset += b.size
	}
	if offset < 0 {
		return 0, errors.New("seek before the start")
	}
	b.pos = offset
	return offset, nil
}

// open opens the content at pos, for the planned range that starts there
// or to the end. Before http.ServeContent has it, b is the handler's
// alone; after, b.mu is held.
func (b *storeBlob) open(pos int64) error {
	if b.rc != nil {
		b.rc.Close()
		b.rc = nil
	}
	end := b.size
	for _, br := range b.plan {
		if br.first == pos {
			end = br.last + 1
			break
		}
	}
	rc, err := b.t.openRange(b.ctx, b.key, pos, end-pos)
	if err != nil {
		return err
	}
	b.rc, b.rcPos, b.rcEnd = rc, pos, end
	return nil
}

// Read implements io.Reader.
func (b *storeBlob) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.pos >= b.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.rc == nil || b.rcPos != b.pos || b.rcPos >= b.rcEnd {
		if err := b.open(b.pos); err != nil {
			b.err = err
			return 0, err
		}
	}
	p = p[:min(int64(len(p)), b.rcEnd-b.pos)]
	n, err := b.rc.Read(p)
	var failure error
	switch {
	case err == nil, errors.Is(err, io.EOF) && b.rcPos+int64(n) == b.rcEnd:
	case errors.Is(err, io.EOF):
		failure = b.t.fileErrorf(b.key, "content ends at byte %d, but the repository lists %d bytes", b.rcPos+int64(n), b.size)
	default:
		failure = b.t.fileError(b.key, fmt.Errorf("read: %w", err))
	}
	if b.h != nil {
		if b.hashed == b.pos {
			b.h.Write(p[:n])
			b.hashed += int64(n)
		} else {
			b.h = nil
		}
	}
	b.pos += int64(n)
	b.rcPos += int64(n)
	if b.h != nil && b.hashed == b.size {
		if got := digest.NewDigest(b.d.Algorithm(), b.h); got != b.d {
			// Hold back these last bytes: the answer must not complete.
			b.err = b.t.fileErrorf(b.key, "content has digest %s", got)
			return 0, b.err
		}
		// All of it, verified: what the store says after does not
		// matter.
		return n, nil
	}
	if failure != nil {
		b.err = failure
		if n == 0 {
			return 0, failure
		}
	}
	return n, nil
}

// Close implements io.Closer. A read after it fails.
func (b *storeBlob) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = errors.New("closed")
	}
	if b.rc == nil {
		return nil
	}
	err := b.rc.Close()
	b.rc = nil
	return err
}
