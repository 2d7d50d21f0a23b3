package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/heron-registry/heron/store"
)

// abortTimeout bounds the requests that clean up after a failure (an
// AbortMultipartUpload), which run even when the writer's context is
// done.
const abortTimeout = 30 * time.Second

// bufferPool hands out part buffers, at most max at a time for the whole
// Store: a writer waits for one when all are in use, which bounds both the
// memory of uploads and the parts in flight. Returned buffers are kept for
// the next upload (a publish writes blob after blob, and reallocating them
// would let the heap grow to twice its size between collections), and
// released once none has been used for a while.
type bufferPool struct {
	size  int
	sem   chan struct{}
	mu    sync.Mutex
	free  [][]byte
	inUse int
	idle  *time.Timer
}

// bufferIdle is how long unused buffers are kept.
const bufferIdle = 30 * time.Second

func newBufferPool(size, max int) *bufferPool {
	return &bufferPool{size: size, sem: make(chan struct{}, max)}
}

// get returns an empty buffer of capacity size.
func (p *bufferPool) get(ctx context.Context) ([]byte, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	p.inUse++
	var b []byte
	if n := len(p.free); n > 0 {
		b, p.free = p.free[n-1], p.free[:n-1]
	}
	p.mu.Unlock()
	if b == nil {
		b = make([]byte, 0, p.size)
	}
	return b, nil
}

func (p *bufferPool) put(b []byte) {
	p.mu.Lock()
	p.free = append(p.free, b[:0])
	p.inUse--
	if p.inUse == 0 {
		if p.idle == nil {
			p.idle = time.AfterFunc(bufferIdle, p.release)
		} else {
			p.idle.Reset(bufferIdle)
		}
	}
	p.mu.Unlock()
	<-p.sem
}

// release drops the unused buffers if none is in use.
func (p *bufferPool) release() {
	p.mu.Lock()
	if p.inUse == 0 {
		p.free = nil
	}
	p.mu.Unlock()
}

// Put implements store.Store: the content is verified while it is read,
// and written with one PutObject when it fits in a part (after it is
// verified, so that a mismatch sends nothing), else with a multipart
// upload that is completed only once it is verified.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, want store.Want) error {
	st, err := s.write(ctx, key, r, want, true)
	if err != nil || st == nil {
		return err
	}
	if err := st.Commit(ctx); err != nil {
		_ = st.Abort()
		return err
	}
	return nil
}

// Stage implements store.Stager: content of up to 1 MiB is verified and
// kept in memory until Commit PutObject's it; larger content is a
// multipart upload, all of whose parts are sent and verified by Stage and
// which Commit completes (Abort aborts it). Nothing is visible before
// Commit.
func (s *Store) Stage(ctx context.Context, key string, r io.Reader, want store.Want) (store.Staged, error) {
	return s.write(ctx, key, r, want, false)
}

// write reads and verifies r. With put, content that fits in a part is
// written at once (and nil is returned); otherwise the staged content is
// returned.
func (s *Store) write(ctx context.Context, key string, r io.Reader, want store.Want, put bool) (store.Staged, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	u := &upload{s: s, ctx: ctx, key: key, okey: okey, want: want}
	// The requests of a multipart upload are not cancelled with ctx at
	// once: a part cancelled in flight may still land on the server after
	// the upload is aborted, and keep it (S3 documents it). They get
	// abortTimeout to finish once ctx is done, and then the upload is
	// aborted.
	var partCancel context.CancelFunc
	u.partCtx, partCancel = context.WithCancel(context.WithoutCancel(ctx))
	defer partCancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(abortTimeout, partCancel) })
	defer stop()
	if _, err := store.CopyVerified(ctx, key, u, r, want); err != nil {
		u.abort()
		if errors.Is(err, errPartFailed) {
			err = u.failed() // a part that failed stopped the copy
		}
		return nil, err
	}
	switch {
	case u.cur == nil && put:
		_, err := s.putObject(ctx, key, okey, u.small, want, nil, nil)
		return nil, err
	case u.cur == nil:
		return &stagedObject{s: s, key: key, okey: okey, data: u.small, want: want}, nil
	case u.id == "" && put:
		_, err := s.putObject(ctx, key, okey, u.cur, want, nil, nil)
		s.bufs.put(u.cur)
		u.cur = nil
		return nil, err
	}
	err = u.send()
	u.wg.Wait()
	if err == nil {
		err = u.failed()
	}
	if err != nil {
		u.abort()
		return nil, err
	}
	return &stagedUpload{s: s, key: key, okey: okey, id: u.id, parts: u.parts}, nil
}

// upload is the io.Writer that CopyVerified writes verified bytes to. Up
// to stageMemoryMax bytes collect in small; past that they fill part
// buffers (cur) from the Store's pool, and a full buffer is sent as a
// part, in a goroutine of its own, when the next byte arrives (so that
// content of exactly one part is still one PutObject).
type upload struct {
	s   *Store
	ctx context.Context // the writer's
	// partCtx is that of the multipart upload's requests (see write).
	partCtx   context.Context
	key, okey string
	want      store.Want
	small     []byte
	cur       []byte
	id        string // the multipart upload, once the first part is sent
	parts     []types.CompletedPart
	wg        sync.WaitGroup
	mu        sync.Mutex
	err       error // the first failure of a part
}

// errPartFailed stops CopyVerified when a part failed; write reports the
// part's error (u.err) instead.
var errPartFailed = errors.New("a part failed")

func (u *upload) Write(p []byte) (int, error) {
	if u.failed() != nil {
		return 0, errPartFailed
	}
	if u.cur == nil {
		// Content known to be larger than what is kept in memory goes
		// into a part buffer from its first byte, rather than through
		// small (grown, then copied).
		if (u.want.Digest == "" || u.want.Size <= stageMemoryMax) && len(u.small)+len(p) <= stageMemoryMax {
			u.small = append(u.small, p...)
			return len(p), nil
		}
		buf, err := u.s.bufs.get(u.ctx)
		if err != nil {
			return 0, err
		}
		u.cur = append(buf, u.small...)
		u.small = nil
	}
	n := 0
	for len(p) > 0 {
		if len(u.cur) == cap(u.cur) {
			if err := u.send(); err != nil {
				return n, errPartFailed
			}
			buf, err := u.s.bufs.get(u.ctx)
			if err != nil {
				if u.failed() != nil {
					return n, errPartFailed
				}
				return n, err
			}
			u.cur = buf
		}
		k := copy(u.cur[len(u.cur):cap(u.cur)], p)
		u.cur = u.cur[:len(u.cur)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

func (u *upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *upload) setErr(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
}

// send uploads cur as the next part, starting the multipart upload first
// if it is the first; the buffer goes back to the pool once sent.
func (u *upload) send() error {
	buf := u.cur
	u.cur = nil
	if u.id == "" {
		if err := u.ctx.Err(); err != nil {
			u.s.bufs.put(buf)
			u.setErr(err)
			return err
		}
		out, err := u.s.client.CreateMultipartUpload(u.partCtx, &s3.CreateMultipartUploadInput{
			Bucket:       &u.s.bucket,
			Key:          &u.okey,
			ContentType:  aws.String(ContentType(u.key, u.want)),
			CacheControl: aws.String(CacheControl(u.key)),
		})
		if err != nil {
			u.s.bufs.put(buf)
			u.setErr(u.s.fail("upload", u.key, err))
			return u.failed()
		}
		u.id = aws.ToString(out.UploadId)
	}
	if len(u.parts) == maxParts {
		u.s.bufs.put(buf)
		u.setErr(fmt.Errorf("upload %s: more than %d parts of %d bytes: raise the part size (heron: --s3-part-size)", u.key, maxParts, u.s.partSize))
		return u.failed()
	}
	num := int32(len(u.parts) + 1)
	u.mu.Lock() // the parts in flight set their ETags in u.parts
	u.parts = append(u.parts, types.CompletedPart{PartNumber: aws.Int32(num)})
	u.mu.Unlock()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer u.s.bufs.put(buf)
		out, err := u.s.client.UploadPart(u.partCtx, &s3.UploadPartInput{
			Bucket:        &u.s.bucket,
			Key:           &u.okey,
			UploadId:      &u.id,
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(buf),
			ContentLength: aws.Int64(int64(len(buf))),
		})
		if err != nil {
			u.setErr(u.s.fail(fmt.Sprintf("upload part %d of", num), u.key, err))
			return
		}
		u.mu.Lock()
		u.parts[num-1].ETag = out.ETag
		u.mu.Unlock()
	}()
	return nil
}

// abort waits for the parts in flight, returns the buffers and aborts the
// multipart upload, so that a failed write leaves nothing behind.
func (u *upload) abort() {
	u.wg.Wait()
	if u.cur != nil {
		u.s.bufs.put(u.cur)
		u.cur = nil
	}
	u.small = nil
	if u.id != "" {
		_ = u.s.abortUpload(u.okey, u.id)
		u.id = ""
	}
}

// abortUpload aborts a multipart upload, with a context of its own: it
// cleans up after a writer whose context may be done.
func (s *Store) abortUpload(okey, id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &okey, UploadId: &id})
	if err != nil && status(err) != http.StatusNotFound {
		return s.fail("abort upload of", okey, err)
	}
	return nil
}

// putObject writes data under key with one PutObject, conditional on
// ifMatch or ifNoneMatch when set, and returns the new ETag.
func (s *Store) putObject(ctx context.Context, key, okey string, data []byte, want store.Want, ifMatch, ifNoneMatch *string) (string, error) {
	out, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           &okey,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String(ContentType(key, want)),
		CacheControl:  aws.String(CacheControl(key)),
		IfMatch:       ifMatch,
		IfNoneMatch:   ifNoneMatch,
	})
	if err != nil {
		if ifMatch != nil || ifNoneMatch != nil {
			switch status(err) {
			case http.StatusPreconditionFailed, http.StatusConflict:
				return "", fmt.Errorf("%s: %w", key, store.ErrConflict)
			case http.StatusNotFound: // If-Match on a key that no longer exists
				if apiCode(err) != "NoSuchBucket" {
					return "", fmt.Errorf("%s: %w", key, store.ErrConflict)
				}
			}
		}
		return "", s.fail("write", key, err)
	}
	return aws.ToString(out.ETag), nil
}

// stagedObject is verified content kept in memory until Commit.
type stagedObject struct {
	s         *Store
	key, okey string
	data      []byte
	want      store.Want
	done      bool
}

func (st *stagedObject) Commit(ctx context.Context) error {
	if st.done {
		return nil
	}
	if _, err := st.s.putObject(ctx, st.key, st.okey, st.data, st.want, nil, nil); err != nil {
		return err
	}
	st.done, st.data = true, nil
	return nil
}

func (st *stagedObject) Abort() error {
	st.done, st.data = true, nil
	return nil
}

// stagedUpload is a multipart upload whose parts are all sent.
type stagedUpload struct {
	s             *Store
	key, okey, id string
	parts         []types.CompletedPart
	done          bool
}

func (st *stagedUpload) Commit(ctx context.Context) error {
	if st.done {
		return nil
	}
	_, err := st.s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &st.s.bucket,
		Key:             &st.okey,
		UploadId:        &st.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: st.parts},
	})
	if err != nil {
		return st.s.fail("complete upload of", st.key, err)
	}
	st.done = true
	return nil
}

func (st *stagedUpload) Abort() error {
	if st.done {
		return nil
	}
	st.done = true
	return st.s.abortUpload(st.okey, st.id)
}

// PutIf implements store.Swapper with a conditional PutObject: If-Match
// on the ETag match, or If-None-Match: * for the empty Version. A server
// that answers 412 Precondition Failed, 409 ConditionalRequestConflict
// (another conditional write in flight) or 404 (If-Match on a key that
// was deleted) has written nothing: store.ErrConflict.
func (s *Store) PutIf(ctx context.Context, key string, data []byte, want store.Want, match store.Version) (store.Version, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return "", err
	}
	if _, err := store.CopyVerified(ctx, key, io.Discard, bytes.NewReader(data), want); err != nil {
		return "", err
	}
	var ifMatch, ifNoneMatch *string
	if match == "" {
		ifNoneMatch = aws.String("*")
	} else {
		ifMatch = aws.String(string(match))
	}
	etag, err := s.putObject(ctx, key, okey, data, want, ifMatch, ifNoneMatch)
	return store.Version(etag), err
}

// Delete implements store.Store. Deleting a missing key succeeds (S3
// answers 204 either way).
func (s *Store) Delete(ctx context.Context, key string) error {
	okey, err := s.objectKey(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &okey}); err != nil && !isNotFound(err) {
		return s.fail("delete", key, err)
	}
	return nil
}

// DeleteIfOlder implements store.Expirer: HeadObject, then, if the object
// was last written before cutoff, DeleteObject conditional on the ETag it
// saw (If-Match), so that an object written again in between is kept. A
// server that does not support conditional deletes (501) gets plain ones.
// S3 cannot refresh an object's time without rewriting it (there is no
// Toucher): the grace period before cutoff alone protects content that a
// concurrent publish found present and is about to reference.
func (s *Store) DeleteIfOlder(ctx context.Context, key string, cutoff time.Time) (bool, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return false, err
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &okey})
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, s.fail("delete", key, err)
	}
	if head.LastModified == nil || !head.LastModified.Before(cutoff) {
		return false, nil
	}
	in := &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &okey}
	if !s.noCondDelete.Load() && head.ETag != nil {
		in.IfMatch = head.ETag
	}
	_, err = s.client.DeleteObject(ctx, in)
	if err != nil && in.IfMatch != nil && status(err) == http.StatusNotImplemented {
		s.noCondDelete.Store(true)
		in.IfMatch = nil
		_, err = s.client.DeleteObject(ctx, in)
	}
	switch {
	case err == nil:
		return true, nil
	case status(err) == http.StatusPreconditionFailed, isNotFound(err):
		return false, nil
	}
	return false, s.fail("delete", key, err)
}
