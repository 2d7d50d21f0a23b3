package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
)

// MaxSignExpiry is the longest a presigned URL can be valid (SigV4).
const MaxSignExpiry = 7 * 24 * time.Hour

// ReadFile implements store.Store with GetObject.
func (s *Store) ReadFile(ctx context.Context, key string, max int64) ([]byte, error) {
	b, _, err := s.read(ctx, key, max, "")
	return b, err
}

// ReadVersion implements store.Swapper: the version is the object's ETag.
func (s *Store) ReadVersion(ctx context.Context, key string, max int64) ([]byte, store.Version, error) {
	return s.read(ctx, key, max, "")
}

// ReadIfChanged implements store.Swapper with a conditional GET
// (If-None-Match: v): a 304 Not Modified is store.ErrNotModified.
func (s *Store) ReadIfChanged(ctx context.Context, key string, max int64, v store.Version) ([]byte, store.Version, error) {
	return s.read(ctx, key, max, v)
}

func (s *Store) read(ctx context.Context, key string, max int64, ifNoneMatch store.Version) ([]byte, store.Version, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return nil, "", err
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &okey}
	if ifNoneMatch != "" {
		in.IfNoneMatch = aws.String(string(ifNoneMatch))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if ifNoneMatch != "" && status(err) == http.StatusNotModified {
			return nil, "", fmt.Errorf("%s: %w", key, store.ErrNotModified)
		}
		return nil, "", s.fail("read", key, err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > max {
		return nil, "", fmt.Errorf("read %s: %d bytes, more than the %d allowed", key, n, max)
	}
	var buf bytes.Buffer
	if n := aws.ToInt64(out.ContentLength); n > 0 {
		buf.Grow(int(n))
	}
	if _, err := buf.ReadFrom(io.LimitReader(out.Body, max+1)); err != nil {
		return nil, "", s.fail("read", key, err)
	}
	if int64(buf.Len()) > max {
		return nil, "", fmt.Errorf("read %s: more than the %d bytes allowed", key, max)
	}
	return buf.Bytes(), store.Version(aws.ToString(out.ETag)), nil
}

// Stat implements store.Stater with HeadObject. A key that is no object
// but the prefix of others (keys below key+"/") is a folder, as on a file
// system: publish relies on it to refuse a repository whose file would
// clash with another one's folder.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return store.Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &okey})
	if err == nil {
		return store.Info{Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
	}
	if !isNotFound(err) {
		return store.Info{}, s.fail("stat", key, err)
	}
	list, lerr := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(okey + "/"), MaxKeys: aws.Int32(1)})
	if lerr != nil {
		return store.Info{}, s.fail("stat", key, lerr)
	}
	if len(list.Contents) > 0 {
		return store.Info{Dir: true}, nil
	}
	return store.Info{}, fmt.Errorf("%s: %w", key, store.ErrNotFound)
}

// Empty implements store.Emptier: nothing under the prefix but what the
// file system's Empty ignores too (the writers' state, .heron/).
func (s *Store) Empty(ctx context.Context) (bool, error) {
	state := s.prefix + layout.WriterStateDirKey() + "/"
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.bucket, Prefix: aws.String(s.prefix), Delimiter: aws.String("/"), MaxKeys: aws.Int32(10),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return false, s.fail("list", s.url, err)
		}
		if len(page.Contents) > 0 {
			return false, nil
		}
		for _, cp := range page.CommonPrefixes {
			if aws.ToString(cp.Prefix) != state {
				return false, nil
			}
		}
	}
	return true, nil
}

// List implements store.Lister with ListObjectsV2, page by page: keys come
// in the bucket's order, which is lexical (byte-wise) over whole keys.
// Objects whose key ends in "/" (the folder markers some tools create) are
// skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, info store.Info) error) error {
	full := s.prefix
	if prefix != "" {
		okey, err := s.objectKey(prefix)
		if err != nil {
			return err
		}
		full = okey + "/"
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(full)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.fail("list", prefix, err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if k == "" || strings.HasSuffix(k, "/") {
				continue
			}
			if err := fn(k, store.Info{Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)}); err != nil {
				return fmt.Errorf("list %s: %w", prefix, err)
			}
		}
	}
	return nil
}

// Open implements store.Opener with GetObject.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.OpenRange(ctx, key, 0, -1)
}

// OpenRange implements store.RangeOpener with a ranged GetObject. A range
// that starts at or past the end (416 Range Not Satisfiable) is empty.
func (s *Store) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("open %s: negative offset %d", key, offset)
	}
	if length == 0 {
		// No HTTP range is empty: say whether the key exists, and
		// return nothing.
		if _, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &okey}); err != nil {
			return nil, s.fail("open", key, err)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &okey}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if status(err) == http.StatusRequestedRangeNotSatisfiable {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.fail("open", key, err)
	}
	return out.Body, nil
}

// SignURL implements store.Signer with the SDK's presigning: a URL for
// GET or HEAD (each signed on its own) of key, valid for expiry (at most
// MaxSignExpiry). Signing is local: no request is sent.
func (s *Store) SignURL(ctx context.Context, method, key string, expiry time.Duration) (string, error) {
	okey, err := s.objectKey(key)
	if err != nil {
		return "", err
	}
	if expiry <= 0 || expiry > MaxSignExpiry {
		return "", fmt.Errorf("sign %s: expiry %v is not between 0 and %v", key, expiry, MaxSignExpiry)
	}
	opt := s3.WithPresignExpires(expiry)
	switch method {
	case http.MethodGet:
		r, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &okey}, opt)
		if err != nil {
			return "", s.fail("sign", key, err)
		}
		return r.URL, nil
	case http.MethodHead:
		r, err := s.presign.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &okey}, opt)
		if err != nil {
			return "", s.fail("sign", key, err)
		}
		return r.URL, nil
	}
	return "", fmt.Errorf("sign %s: method %s: only GET and HEAD are signed", key, method)
}
