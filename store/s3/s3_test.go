package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/internal/s3test"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/heron-registry/heron/store/storetest"
	"github.com/opencontainers/go-digest"
)

func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t/" + hex.EncodeToString(b)
}

func options(srv *s3test.Server) s3store.Options {
	return s3store.Options{Endpoint: srv.Endpoint, Credentials: srv.Credentials(), Region: s3test.Region}
}

func open(t *testing.T, srv *s3test.Server, url string, o s3store.Options) *s3store.Store {
	t.Helper()
	s, err := s3store.Open(context.Background(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSuite holds the S3 store to the contract every store passes,
// against versitygw, with the smallest part size S3 allows so that
// content of a few parts stays small. Each subtest has a prefix of its
// own in one bucket. After the suite, no multipart upload may be left.
func TestSuite(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	o := options(srv)
	o.PartSize = s3store.MinPartSize
	o.Concurrency = 3
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, srv, srv.URL(randomPrefix()), o)
	})
	out, err := srv.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		t.Errorf("multipart upload of %s left behind", aws.ToString(u.Key))
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3://bucket", "bucket", "", true},
		{"s3://bucket/", "bucket", "", true},
		{"s3://bucket/tree", "bucket", "tree", true},
		{"s3://bucket/a/b/c/", "bucket", "a/b/c", true},
		{"S3://bucket/a", "bucket", "a", true},
		{"s3://my.bucket-1/a", "my.bucket-1", "a", true},
		{"s3://", "", "", false},
		{"s3://b", "", "", false}, // too short
		{"s3:///prefix", "", "", false},
		{"s3://bucket//a", "", "", false},
		{"s3://bucket/a/../b", "", "", false},
		{"s3://bucket/./b", "", "", false},
		{"s3://bucket/a?x=1", "", "", false},
		{"s3://bucket/a#f", "", "", false},
		{"s3://user@bucket/a", "", "", false},
		{"s3://bucket:9000/a", "", "", false},
		{"/srv/tree", "", "", false},
		{"http://bucket/a", "", "", false},
	} {
		b, p, err := s3store.ParseURL(tc.in)
		if (err == nil) != tc.ok || b != tc.bucket || p != tc.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v", tc.in, b, p, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseURL(%q): error of several lines: %q", tc.in, err)
		}
	}
	for s, want := range map[string]bool{"s3://b/p": true, "S3://B": true, "s3:/b": false, "/srv": false, "": false, "s3:": false} {
		if s3store.IsURL(s) != want {
			t.Errorf("IsURL(%q) = %v", s, !want)
		}
	}
}

// TestOpenErrors: what a user gets wrong is one line that says what.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx := context.Background()
	bad := options(srv)
	bad.Credentials = (&s3test.Server{AccessKey: "nobody", SecretKey: "wrong"}).Credentials()
	wrongSecret := options(srv)
	wrongSecret.Credentials = (&s3test.Server{AccessKey: srv.AccessKey, SecretKey: "wrong"}).Credentials()
	unreachable := options(srv)
	unreachable.Endpoint = "http://127.0.0.1:1"
	for _, tc := range []struct {
		name, url string
		o         s3store.Options
		want      string
	}{
		{"missing bucket", "s3://no-such-bucket/p", options(srv), `s3://no-such-bucket/p: bucket "no-such-bucket" does not exist`},
		{"bad credentials", srv.URL("p"), bad, srv.URL("p") + ": access denied: check the credentials"},
		{"wrong secret", srv.URL("p"), wrongSecret, srv.URL("p") + ": access denied: check the credentials"},
		{"unreachable", srv.URL("p"), unreachable, srv.URL("p") + ": cannot reach http://127.0.0.1:1: connection refused"},
		{"bad endpoint", srv.URL("p"), s3store.Options{Endpoint: "127.0.0.1:1", Credentials: srv.Credentials()}, srv.URL("p") + `: endpoint "127.0.0.1:1" is not an http:// or https:// URL`},
		{"small parts", srv.URL("p"), s3store.Options{PartSize: 1 << 20}, srv.URL("p") + ": part size 1048576 is not between 5242880 and 5368709120"},
		{"bad URL", "s3://b", options(srv), `s3://b: invalid bucket name "b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := s3store.Open(ctx, tc.url, tc.o)
			if err == nil {
				t.Fatalf("opened %s", s)
			}
			if err.Error() != tc.want {
				t.Errorf("error %q\nwant  %q", err, tc.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestOpenFromEnvironment opens a bucket configured the standard way (the
// environment a subprocess gets), path-style on the endpoint it names.
func TestOpenFromEnvironment(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	s := open(t, srv, srv.URL(""), s3store.Options{})
	if s.String() != "s3://"+srv.Bucket || s.Prefix() != "" || s.PartSize() != s3store.DefaultPartSize {
		t.Errorf("%s %q %d", s, s.Prefix(), s.PartSize())
	}
	if err := s.Put(ctx, "heron-layout.json", strings.NewReader(`{"layoutVersion":1}`), store.Want{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(srv.ObjectPath("heron-layout.json")); err != nil || string(b) != `{"layoutVersion":1}` {
		t.Errorf("object file: %q %v", b, err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err := s3store.Open(ctx, srv.URL("p"), s3store.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), srv.URL("p")+": no AWS credentials found") || strings.Contains(err.Error(), "\n") {
		t.Errorf("without credentials: %v", err)
	}
}

// TestPrefix: the tree's keys are the objects PREFIX/key, and nothing of
// the bucket outside the prefix is the tree's.
func TestPrefix(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx := context.Background()
	a := open(t, srv, srv.URL("trees/a/"), options(srv))
	b := open(t, srv, srv.URL("trees/ab"), options(srv))
	if a.String() != srv.URL("trees/a") || a.Prefix() != "trees/a/" {
		t.Errorf("%s %q", a, a.Prefix())
	}
	if err := a.Put(ctx, "blobs/sha256/x", strings.NewReader("x"), store.Want{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.ObjectPath("trees/a/blobs/sha256/x")); err != nil {
		t.Error(err)
	}
	if empty, err := b.Empty(ctx); !empty || err != nil {
		t.Errorf("the tree trees/ab is empty: %v %v", empty, err)
	}
	var keys []string
	_ = a.List(ctx, "", func(k string, _ store.Info) error { keys = append(keys, k); return nil })
	if strings.Join(keys, ",") != "blobs/sha256/x" {
		t.Errorf("keys %q", keys)
	}
	for _, k := range []string{"", "/abs", "a//b", "a/../b", "a/", "..", "../x"} {
		if err := a.Put(ctx, k, strings.NewReader("x"), store.Want{}); err == nil {
			t.Errorf("put of the key %q succeeded", k)
		}
	}
}

// TestHeaders: every object carries its Content-Type and Cache-Control,
// whether written with PutObject or in parts.
func TestHeaders(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	ctx := context.Background()
	o := options(srv)
	o.PartSize = s3store.MinPartSize
	s := open(t, srv, srv.URL("tree"), o)
	manifest := []byte(`{"schemaVersion":2}`)
	md := digest.FromBytes(manifest)
	mkey, _ := layout.BlobKey(md)
	large := bytes.Repeat([]byte("layer"), s3store.MinPartSize/5+1)
	ld := digest.FromBytes(large)
	lkey, _ := layout.BlobKey(ld)
	medium := bytes.Repeat([]byte("m"), 2<<20)
	mdd := digest.FromBytes(medium)
	mekey, _ := layout.BlobKey(mdd)
	repo, _ := layout.RepositoryKey("lib/alpine")
	shard, _ := layout.RepositoryShardKey("lib/alpine", strings.Repeat("ab", 32))
	cshard, _ := layout.CatalogShardKey(strings.Repeat("cd", 32))
	const immutable, mutable = "public, max-age=31536000, immutable", "no-cache"
	for _, tc := range []struct {
		key          string
		content      []byte
		want         store.Want
		ctype, cache string
		stage        bool
	}{
		{mkey, manifest, store.Want{Digest: md, Size: int64(len(manifest)), MediaType: "application/vnd.oci.image.manifest.v1+json"}, "application/vnd.oci.image.manifest.v1+json", immutable, false},
		{lkey, large, store.Want{Digest: ld, Size: int64(len(large))}, "application/octet-stream", immutable, false},
		{mekey, medium, store.Want{Digest: mdd, Size: int64(len(medium))}, "application/octet-stream", immutable, true},
		{repo, []byte(`{}`), store.Want{}, "application/json", mutable, false},
		{shard, []byte(`{}`), store.Want{}, "application/json", immutable, false},
		{cshard, []byte(`{}`), store.Want{}, "application/json", immutable, true},
		{layout.CatalogIndexKey(), []byte(`{}`), store.Want{}, "application/json", mutable, false},
		{layout.LayoutFileKey(), []byte(`{}`), store.Want{}, "application/json", mutable, false},
	} {
		if tc.stage {
			st, err := s.Stage(ctx, tc.key, bytes.NewReader(tc.content), tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := s.Put(ctx, tc.key, bytes.NewReader(tc.content), tc.want); err != nil {
			t.Fatal(err)
		}
		h, err := s.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: aws.String("tree/" + tc.key)})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(h.ContentType) != tc.ctype || aws.ToString(h.CacheControl) != tc.cache || aws.ToInt64(h.ContentLength) != int64(len(tc.content)) {
			t.Errorf("%s: Content-Type %q, Cache-Control %q, Content-Length %d; want %q, %q, %d", tc.key,
				aws.ToString(h.ContentType), aws.ToString(h.CacheControl), aws.ToInt64(h.ContentLength), tc.ctype, tc.cache, len(tc.content))
		}
	}
}

// partCounter is an HTTP client that counts the UploadPart requests in
// flight, each held for a while so that they overlap when they can.
type partCounter struct {
	inFlight, max atomic.Int32
	total         atomic.Int32
	mu            sync.Mutex
}

func (c *partCounter) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") {
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		c.total.Add(1)
		c.mu.Lock()
		if n > c.max.Load() {
			c.max.Store(n)
		}
		c.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	return http.DefaultClient.Do(req)
}

// TestPartsBounded: parts go up in parallel, never more at once than the
// store's buffers, whatever the number of uploads.
func TestPartsBounded(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	counter := &partCounter{}
	o := options(srv)
	o.PartSize = s3store.MinPartSize
	o.Concurrency = 2
	o.HTTPClient = counter
	t.Setenv("AWS_CA_BUNDLE", "") // the SDK adds a CA bundle only to its own client
	s := open(t, srv, srv.URL("tree"), o)
	content := bytes.Repeat([]byte("0123456789abcdef"), 3*s3store.MinPartSize/16)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			key := "blobs/sha256/" + strings.Repeat(string(rune('a'+i)), 64)
			if err := s.Put(ctx, key, bytes.NewReader(content), store.Want{Digest: digest.FromBytes(content), Size: int64(len(content))}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := counter.total.Load(); got != 6 {
		t.Errorf("%d parts uploaded, want 2 uploads of 3", got)
	}
	if got := counter.max.Load(); got != 2 {
		t.Errorf("at most %d parts in flight at once, want 2 (the store's buffers)", got)
	}
}

// rewriteBeforeDelete is an HTTP client that, before it sends a
// DeleteObject, has another writer write the object again.
type rewriteBeforeDelete struct {
	rewrite func()
}

func (c rewriteBeforeDelete) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodDelete {
		c.rewrite()
	}
	return http.DefaultClient.Do(req)
}

// TestDeleteIfOlderRewritten: an object written again between the look at
// its time and the delete is kept (the delete is conditional on the ETag).
func TestDeleteIfOlderRewritten(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	o := options(srv)
	o.HTTPClient = rewriteBeforeDelete{rewrite: func() {
		_, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: aws.String("tree/blobs/sha256/x"), Body: strings.NewReader("written again")})
		if err != nil {
			t.Error(err)
		}
	}}
	t.Setenv("AWS_CA_BUNDLE", "") // the SDK adds a CA bundle only to its own client
	s := open(t, srv, srv.URL("tree"), o)
	if err := s.Put(ctx, "blobs/sha256/x", strings.NewReader("first"), store.Want{}); err != nil {
		t.Fatal(err)
	}
	deleted, err := s.DeleteIfOlder(ctx, "blobs/sha256/x", time.Now().Add(time.Hour))
	if deleted || err != nil {
		t.Fatalf("deleted %v, %v; want the object written again kept", deleted, err)
	}
	if b, err := s.ReadFile(ctx, "blobs/sha256/x", 100); err != nil || string(b) != "written again" {
		t.Errorf("%q %v", b, err)
	}
}

// cancelAfter is a reader that cancels its writer's context once n bytes
// have been read, and then fails as a network read would.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
		return 0, context.Canceled
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// TestCancel: a write whose context ends half-way, after parts were sent,
// leaves neither the object nor the multipart upload.
func TestCancel(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	o := options(srv)
	o.PartSize = s3store.MinPartSize
	s := open(t, srv, srv.URL("tree"), o)
	content := bytes.Repeat([]byte("x"), 3*s3store.MinPartSize)
	for _, stage := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		r := &cancelAfter{r: bytes.NewReader(content), n: 2*s3store.MinPartSize + 10, cancel: cancel}
		var err error
		if stage {
			_, err = s.Stage(ctx, "blobs/sha256/x", r, store.Want{Digest: digest.FromBytes(content), Size: int64(len(content))})
		} else {
			err = s.Put(ctx, "blobs/sha256/x", r, store.Want{Digest: digest.FromBytes(content), Size: int64(len(content))})
		}
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("stage %v: %v, want context.Canceled", stage, err)
		}
	}
	if _, err := s.Stat(context.Background(), "blobs/sha256/x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat: %v", err)
	}
	out, err := srv.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: &srv.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left", len(out.Uploads))
	}
}
