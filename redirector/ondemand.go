package redirector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// On-demand blobs: a GET of a blob that the repository lists as not stored
// (an on_demand publish) is answered with bytes fetched from the
// repository's upstream through the server's Filler, while they arrive.
//
// Each blob is fetched once, however many clients ask for it at the same
// time: the first request starts a fetch (one goroutine, in a context of
// the server's, not of any request) that copies the upstream's bytes into
// a spool file (WithSpoolDir) and hashes them; that request and every
// request for the same digest while the fetch is in flight read the spool
// file as it grows, each with a buffer of its own (spoolChunk), so that
// memory does not grow with the blob or with the number of clients.
//
// No client is sent the last byte of a blob before the whole of it has
// been checked against its digest and listed size: when the upstream sends
// other bytes, fewer, more, or fails, every client's connection is cut
// (http.ErrAbortHandler, as storeblob.go does for a bucket), so that it
// sees a failed transfer, never a whole answer of wrong bytes. Nothing is
// stored, the spool is dropped, and the next request fetches again.
//
// A fetch that verified is stored (Filler.StoreBlob, from the spool, in a
// context of the server's bounded by storeTimeout: a client that goes away
// does not abort it), unless the server is read-only; later requests find
// the blob in the tree and are answered as for any stored blob (redirected
// when a base URL is set). Requests that arrive while it is being stored
// read the spool.
//
// Decisions:
//   - HEAD is answered from the repository file, as before (200 and the
//     listed size), without fetching anything.
//   - A Range, If-Range, If-Match or If-Unmodified-Since request waits
//     for the whole fetch to be verified and is then answered by
//     http.ServeContent from the spool (206, 412, …); only the whole blob
//     is streamed while it arrives.
//   - The upstream is given idleTimeout for every read, the first byte
//     included; a fetch that stalls longer fails (504 to clients that
//     were sent nothing yet). A slow upstream that makes progress is not
//     cut, whatever the blob's size.
//   - A fetch that fails before a client was sent anything is answered
//     502 (504 for a timeout) with a reason of the server's own words; the
//     upstream's error is logged, never sent.
//   - Fetches are keyed by digest alone: a request through another
//     repository that lists the same digest (and size) joins the fetch in
//     flight, which reads from the upstream of the repository that
//     started it (the bytes are verified against the digest either way).
//     StoreBlob is called for each repository whose requests joined, the
//     first one's failure being the store's.
//   - The spool holds a whole blob on the file system of WithSpoolDir:
//     point it at a disk with room for the largest blobs in flight
//     together, not at a RAM-backed /tmp.
//   - One line is logged per fetch (repository, digest, size, duration,
//     clients, result); heron_ondemand_fetches_total{result} and
//     heron_ondemand_fetched_bytes_total count them (metrics.go).

const (
	// spoolChunk is the size of the buffers a fetch and each of its
	// clients copy through.
	spoolChunk = 256 << 10
	// hashBuffers is how many chunks a fetch reads ahead of its hashing.
	hashBuffers = 4
	// defaultIdleTimeout bounds the wait for each read from the upstream.
	defaultIdleTimeout = 30 * time.Second
	// defaultStoreTimeout bounds Filler.StoreBlob.
	defaultStoreTimeout = 30 * time.Minute
)

// WithSpoolDir sets the folder where blobs fetched on demand (see
// WithFiller) are spooled while they are fetched, verified and stored:
// one file per blob in flight, of the blob's size, removed when its last
// reader is done (on Unix it has no name at all once created, so that a
// server that is killed leaves none behind). The default is
// os.TempDir(). It must be an existing folder.
func WithSpoolDir(dir string) Option {
	return func(o *options) { o.spoolDir = dir }
}

// The kinds of a fetch's failure.
const (
	failUpstream = "upstream failed"
	failTimeout  = "upstream timed out"
	failMismatch = "upstream sent content that does not match the digest"
	failShort    = "upstream sent fewer bytes than listed"
	failLong     = "upstream sent more bytes than listed"
	failSpool    = "spool file failed"
	failClosed   = "server closed"
)

// fetchError is why a fetch failed: its kind, for clients and metrics, and
// the cause, for the log.
type fetchError struct {
	kind string
	err  error
}

func (e *fetchError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// answer is the error a client that was sent nothing yet is answered with.
func (e *fetchError) answer(name string, d digest.Digest) error {
	detail := map[string]string{"name": name, "digest": d.String(), "reason": e.kind}
	switch e.kind {
	case failTimeout:
		return ErrUpstreamTimeout.WithDetail(detail)
	case failSpool:
		return e.err // an internal error, logged by respond
	case failClosed:
		return ErrShuttingDown.WithDetail(detail)
	}
	return ErrUpstream.WithDetail(detail)
}

// errUpstreamIdle is the cause of a fetch's cancellation when the upstream
// sent nothing for idleTimeout.
var errUpstreamIdle = errors.New("no bytes from the upstream")

// filling holds a server's fetches in flight, by digest.
type filling struct {
	filler   Filler
	readOnly bool
	dir      string // spool folder
	log      *slog.Logger
	// ctx is the fetches' context; close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the fetches' goroutines

	idleTimeout, storeTimeout time.Duration

	mu       sync.Mutex
	inflight map[digest.Digest]*blobFetch
	// marking are the repositories and blobs being marked stored (see
	// markStored), by repository name and digest.
	marking map[string]bool
	// spools counts the spool files open.
	spools atomic.Int64

	// Counts for the metrics, by result (see fillResults).
	results [len(fillResults)]atomic.Int64
	bytes   atomic.Int64
}

// The results of a fetch, as logged and counted.
const (
	resultStored      = iota // verified and stored
	resultVerified           // verified; not stored (read-only server)
	resultStoreFailed        // verified; storing it failed
	resultFailed             // not verified: nothing was stored
)

var fillResults = [...]string{
	resultStored:      "stored",
	resultVerified:    "verified",
	resultStoreFailed: "store_failed",
	resultFailed:      "failed",
}

func newFilling(o options) (*filling, error) {
	dir := o.spoolDir
	if dir == "" {
		dir = os.TempDir()
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("spool folder: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("spool folder %s is not a folder", dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &filling{
		filler: o.filler, readOnly: o.fillReadOnly, dir: dir, log: o.logger,
		ctx: ctx, cancel: cancel,
		idleTimeout: defaultIdleTimeout, storeTimeout: defaultStoreTimeout,
		inflight: map[digest.Digest]*blobFetch{},
		marking:  map[string]bool{},
	}, nil
}

// markStored has the filler mark blob d stored in repository name, which
// lists it as not stored although the tree holds it (another repository's
// request fetched it), in the background and once at a time per
// repository and blob, so that the next request of that repository is
// answered as for any stored blob.
func (fl *filling) markStored(name string, d digest.Digest) {
	if fl.readOnly {
		return
	}
	key := name + "@" + string(d)
	fl.mu.Lock()
	if fl.marking[key] || fl.ctx.Err() != nil {
		fl.mu.Unlock()
		return
	}
	fl.marking[key] = true
	fl.wg.Add(1)
	fl.mu.Unlock()
	go func() {
		defer fl.wg.Done()
		defer func() {
			fl.mu.Lock()
			delete(fl.marking, key)
			fl.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(fl.ctx, fl.storeTimeout)
		defer cancel()
		if err := fl.filler.MarkStored(ctx, name, d); err != nil {
			fl.log.WarnContext(ctx, "marking a blob the tree holds as stored failed; it is served all the same",
				"repository", name, "digest", d.String(), "err", err)
		}
	}()
}

// close cancels the fetches in flight and waits for their goroutines.
func (fl *filling) close() {
	fl.cancel()
	fl.wg.Wait()
}

// blobFetch is one blob being fetched, and the spool file its clients read.
type blobFetch struct {
	fl    *filling
	name  string // the repository whose request started it
	d     digest.Digest
	size  int64
	file  *os.File
	named bool // the spool file still has its name: remove it when closing
	began time.Time

	mu sync.Mutex
	// written bytes are in the spool file.
	written int64
	done    bool
	// err is why the fetch failed; nil while it runs and once verified.
	err error
	// progress is closed, and replaced, whenever written, done or err
	// change: the broadcast its readers wait on.
	progress chan struct{}
	// refs counts the users of the spool file: the fetch's goroutine
	// and each request reading it. The last one closes it.
	refs int
	// names are the repositories whose requests read it, to mark the
	// blob stored in each.
	names   []string
	clients int
}

// joinRunning returns the fetch of d in flight, with a reference for the
// caller, or nil.
func (fl *filling) joinRunning(name string, d digest.Digest) *blobFetch {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	f := fl.inflight[d]
	if f != nil {
		f.addReader(name)
	}
	return f
}

// join returns the fetch of d in flight, or starts one, with a reference
// for the caller.
func (fl *filling) join(name string, d digest.Digest, size int64) (*blobFetch, error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if f := fl.inflight[d]; f != nil {
		f.addReader(name)
		return f, nil
	}
	if err := fl.ctx.Err(); err != nil {
		return nil, (&fetchError{kind: failClosed, err: err}).answer(name, d)
	}
	if !d.Algorithm().Available() {
		return nil, fmt.Errorf("fetch %s: digest algorithm %s is not available", d, d.Algorithm())
	}
	file, err := os.CreateTemp(fl.dir, "heron-fetch-*")
	if err != nil {
		return nil, fmt.Errorf("fetch %s: spool file: %w", d, err)
	}
	// Unlinked at once where the system allows it (not on Windows):
	// nothing is left behind by a server that dies mid-fetch.
	named := os.Remove(file.Name()) != nil
	fl.spools.Add(1)
	f := &blobFetch{
		fl: fl, name: name, d: d, size: size, file: file, named: named, began: time.Now(),
		progress: make(chan struct{}), refs: 2, names: []string{name}, clients: 1,
	}
	fl.inflight[d] = f
	fl.wg.Add(1)
	go f.run()
	return f, nil
}

// addReader counts one more request reading f (fl.mu is held).
func (f *blobFetch) addReader(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs++
	f.clients++
	if !slices.Contains(f.names, name) {
		f.names = append(f.names, name)
	}
}

// release drops a reference; the last one closes the spool file.
func (f *blobFetch) release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last {
		f.file.Close()
		if f.named {
			os.Remove(f.file.Name())
		}
		f.fl.spools.Add(-1)
	}
}

// forget removes f from the fetches in flight: the next request for its
// digest starts another.
func (fl *filling) forget(f *blobFetch) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.inflight[f.d] == f {
		delete(fl.inflight, f.d)
	}
}

// broadcast wakes f's readers (f.mu is held).
func (f *blobFetch) broadcast() {
	close(f.progress)
	f.progress = make(chan struct{})
}

// readable is how much of the spool may be sent (f.mu is held): all of
// it once verified, all but the last byte before.
func (f *blobFetch) readable() int64 {
	if f.done && f.err == nil {
		return f.written
	}
	return min(f.written, f.size-1)
}

// wait returns once more than pos bytes may be sent (or, for pos at the
// size, once the whole is verified), with how many; or the fetch's
// failure (a *fetchError), or ctx's error.
func (f *blobFetch) wait(ctx context.Context, pos int64) (int64, error) {
	for {
		f.mu.Lock()
		n, done, err, progress := f.readable(), f.done, f.err, f.progress
		f.mu.Unlock()
		switch {
		case err != nil:
			return 0, err
		case n > pos, done:
			return n, nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// run fetches, then stores, then lets go of the spool.
func (f *blobFetch) run() {
	fl := f.fl
	defer fl.wg.Done()
	err := f.copyUpstream()
	if err != nil {
		// Forgotten first, so that a request arriving now starts
		// afresh rather than join a failure.
		fl.forget(f)
	}
	f.mu.Lock()
	f.done, f.err = true, err
	f.broadcast()
	f.mu.Unlock()
	fetched := time.Since(f.began)

	result := resultFailed
	var storeErr error
	switch {
	case err != nil:
	case fl.readOnly:
		result = resultVerified
	default:
		if storeErr = f.store(); storeErr != nil {
			result = resultStoreFailed
		} else {
			result = resultStored
		}
	}
	fl.forget(f)
	f.mu.Lock()
	clients := f.clients
	f.mu.Unlock()
	f.release()

	attrs := []any{"repository", f.name, "digest", f.d.String(), "size", f.size,
		"duration", fetched, "clients", clients, "result", fillResults[result]}
	switch {
	case err != nil:
		fl.log.Error("on-demand fetch failed: nothing stored; the next request fetches again", append(attrs, "err", err)...)
	case storeErr != nil:
		fl.log.Error("on-demand fetch verified, but storing it failed; the next request fetches again", append(attrs, "err", storeErr)...)
	default:
		fl.log.Info("on-demand fetch", attrs...)
	}
	// Counted last: tests wait for the count, then read the log.
	fl.results[result].Add(1)
}

// copyUpstream copies the blob from the upstream into the spool file,
// hashing it, and checks its size and digest.
func (f *blobFetch) copyUpstream() error {
	fl := f.fl
	ctx, cancel := context.WithCancelCause(fl.ctx)
	defer cancel(nil)
	idle := time.AfterFunc(fl.idleTimeout, func() { cancel(errUpstreamIdle) })
	defer idle.Stop()
	fail := func(err error) error {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errUpstreamIdle):
			return &fetchError{kind: failTimeout, err: fmt.Errorf("nothing for %s: %w", fl.idleTimeout, err)}
		case fl.ctx.Err() != nil:
			return &fetchError{kind: failClosed, err: err}
		}
		return &fetchError{kind: failUpstream, err: err}
	}
	rc, err := fl.filler.OpenBlob(ctx, f.name, f.d, f.size)
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	// The bytes are hashed by a goroutine of their own, on the other
	// core, while the next ones are read and the clients are sent what
	// is written (they never get the last byte before the digest is
	// checked): a few buffers go round between the two.
	h := f.d.Algorithm().Hash()
	free := make(chan []byte, hashBuffers)
	for range hashBuffers {
		free <- make([]byte, spoolChunk)
	}
	toHash := make(chan []byte, hashBuffers)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range toHash {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	hashing := true
	stopHashing := func() {
		if hashing {
			hashing = false
			close(toHash)
			<-hashed
		}
	}
	defer stopHashing()
	var n int64
	for {
		buf := <-free
		// One byte more than listed is enough to tell an overrun.
		m, rerr := rc.Read(buf[:min(int64(len(buf)), f.size+1-n)])
		if m > 0 {
			idle.Reset(fl.idleTimeout)
			if n+int64(m) > f.size {
				return &fetchError{kind: failLong, err: fmt.Errorf("more than the %d bytes listed", f.size)}
			}
			if _, werr := f.file.WriteAt(buf[:m], n); werr != nil {
				return &fetchError{kind: failSpool, err: werr}
			}
			toHash <- buf[:m]
			n += int64(m)
			fl.bytes.Add(int64(m))
			f.mu.Lock()
			f.written = n
			f.broadcast()
			f.mu.Unlock()
		} else {
			free <- buf
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return fail(fmt.Errorf("read at byte %d: %w", n, rerr))
		}
	}
	if n < f.size {
		return &fetchError{kind: failShort, err: fmt.Errorf("%d bytes, the repository lists %d", n, f.size)}
	}
	stopHashing()
	if got := digest.NewDigest(f.d.Algorithm(), h); got != f.d {
		return &fetchError{kind: failMismatch, err: fmt.Errorf("content has digest %s", got)}
	}
	return nil
}

// store stores the verified spool in the tree, and marks it stored in
// each repository that asked for it (the one that started the fetch
// first: when that fails, so does the store).
func (f *blobFetch) store() error {
	fl := f.fl
	ctx, cancel := context.WithTimeout(fl.ctx, fl.storeTimeout)
	defer cancel()
	f.mu.Lock()
	names := slices.Clone(f.names)
	f.mu.Unlock()
	for i, name := range names {
		err := fl.filler.StoreBlob(ctx, name, f.d, f.size, io.NewSectionReader(f.file, 0, f.size))
		switch {
		case err != nil && i == 0:
			return err
		case err != nil:
			fl.log.Warn("on-demand fetch stored, but not marked stored in another repository that asked for it",
				"repository", name, "digest", f.d.String(), "err", err)
		}
	}
	return nil
}

// serveOnDemand answers a GET of blob d, which repository name (repo)
// lists with size but not as stored.
func (s *Server) serveOnDemand(w http.ResponseWriter, r *http.Request, name string, repo layout.RepositoryView, d digest.Digest, size int64) error {
	ctx := r.Context()
	h := w.Header()
	if notModified(r, etag(d)) {
		setBlobHeaders(h, d)
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	f := s.fill.joinRunning(name, d)
	if f == nil {
		// Another repository's request, or this one's before its
		// repository file was read, may have stored it.
		err := s.files.statBlob(ctx, d, size)
		switch {
		case err == nil:
			s.fill.markStored(name, d)
			if err := s.blobRedirect(ctx, r.Method, name, repo, d); err != nil {
				return err
			}
			return s.files.sendBlob(w, r, d, size)
		case !errors.Is(err, errNotFound):
			return err
		}
		if f, err = s.fill.join(name, d, size); err != nil {
			return err
		}
	}
	defer f.release()
	if f.size != size {
		// Two repositories list the digest with other sizes: one of
		// them is wrong, and the fetch checks the size it started with.
		return fmt.Errorf("blob %s: repository %s lists %d bytes, a fetch of it in flight %d", d, name, size, f.size)
	}

	if wantsWhole(r) {
		// A part, or a precondition: answered from the whole, once
		// verified, by http.ServeContent.
		if _, err := f.wait(ctx, size); err != nil {
			return s.fetchFailed(r, name, d, err)
		}
		serveContent(w, r, d, io.NewSectionReader(f.file, 0, size))
		return nil
	}
	avail, err := f.wait(ctx, 0)
	if err != nil {
		return s.fetchFailed(r, name, d, err)
	}
	setBlobHeaders(h, d)
	h[acceptRangesKey] = acceptRangesValue
	h[contentLengthKey] = []string{strconv.FormatInt(size, 10)}
	w.WriteHeader(http.StatusOK)
	if size == 0 {
		return nil
	}
	rc := http.NewResponseController(w)
	buf := spoolBuffers.Get().(*[]byte)
	defer spoolBuffers.Put(buf)
	var pos int64
	for pos < size {
		if pos >= avail {
			// Send what is written before waiting for more.
			_ = rc.Flush()
			if avail, err = f.wait(ctx, pos); err != nil {
				break
			}
			if avail <= pos {
				// Done, and shorter than listed: cannot be, as the
				// fetch checks the size; never loop on it.
				err = fmt.Errorf("blob %s: fetch ended at byte %d of %d", d, avail, size)
				break
			}
		}
		n, rerr := f.file.ReadAt((*buf)[:min(int64(len(*buf)), avail-pos)], pos)
		if rerr != nil && n == 0 {
			err = &fetchError{kind: failSpool, err: rerr}
			break
		}
		if _, werr := w.Write((*buf)[:n]); werr != nil {
			err = werr
			break
		}
		pos += int64(n)
	}
	if err != nil {
		// The fetch failed (logged once, by run), or the client went
		// away: either way the answer must not look complete.
		panic(http.ErrAbortHandler)
	}
	return nil
}

// fetchFailed returns the answer to a request that waited for a fetch
// that failed before anything was sent to it.
func (s *Server) fetchFailed(r *http.Request, name string, d digest.Digest, err error) error {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe.answer(name, d)
	}
	if r.Context().Err() != nil {
		// The client went away: no answer to write.
		panic(http.ErrAbortHandler)
	}
	return err
}

// wantsWhole reports whether r asks for what only the whole, verified
// blob can answer: a range, or a precondition that may fail.
func wantsWhole(r *http.Request) bool {
	for _, k := range [...]string{"Range", "If-Range", "If-Match", "If-Unmodified-Since"} {
		if _, ok := r.Header[k]; ok {
			return true
		}
	}
	return false
}

var spoolBuffers = sync.Pool{New: func() any { b := make([]byte, spoolChunk); return &b }}
