// Package s3 is the store.Store of a tree in an S3-compatible bucket,
// selected by a root of the form s3://BUCKET/PREFIX: the key k of the tree
// is the object PREFIX/k of the bucket (k itself without a prefix). It is
// built on the official SDK (aws-sdk-go-v2), whose standard configuration
// gives the credentials, the region (us-east-1 when none is configured),
// the profiles and the endpoint (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL);
// a custom endpoint, from there or from [Options.Endpoint], is addressed
// path-style (http://host/BUCKET/KEY), as S3-compatible servers expect.
//
// What the store guarantees, and how:
//
//   - Nothing half-written is ever visible. An object appears whole when
//     its PutObject or CompleteMultipartUpload succeeds, and not before.
//   - Content is verified while it is uploaded: the digest is computed
//     over the bytes sent, and on a mismatch the upload is never completed
//     (a multipart upload is aborted, once the parts in flight have
//     landed, even when the writer's context ends: a part cancelled in
//     flight may land after the abort and keep the upload), so nothing is
//     left visible.
//   - Content larger than [Options.PartSize] is uploaded in parts, several
//     at once, from at most [Options.Concurrency] buffers of PartSize for
//     the whole Store, however many uploads run: memory is bounded.
//   - Staged content (Stage) is invisible until Commit: up to 1 MiB is
//     kept in memory and PutObject'ed on Commit; more is a multipart
//     upload whose parts are sent at once and that Commit completes.
//     A process that dies between the two leaves an incomplete multipart
//     upload, invisible but billed: a bucket lifecycle rule
//     (AbortIncompleteMultipartUpload, a day) removes it.
//   - Writers on different machines that rewrite the same file (a
//     repository file, the catalog index) use conditional writes
//     ([Store.PutIf]: If-Match on the ETag, If-None-Match: * for a new
//     key): a lost race is store.ErrConflict, never a lost update.
//   - Every object carries its Content-Type (the media type publish
//     gives, else application/octet-stream for blobs and application/json
//     for JSON files) and a Cache-Control: immutable for content-addressed
//     keys (blobs, repository and catalog shards), no-cache for the files
//     rewritten in place, so that a CDN or the bucket's own website
//     endpoint can serve the tree.
//
// A bucket has no modification time that can be refreshed without
// rewriting the object (no Toucher): gc's grace period alone protects
// content that a concurrent publish found present and is about to
// reference. It has no locks either (no Locker: writers use PutIf), no
// folders to remove, and no change counter (servers validate what they
// cache with conditional GETs, [Store.ReadIfChanged]).
package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
)

// Scheme starts every root that names a bucket.
const Scheme = "s3://"

// DefaultRegion is the region when none is configured: S3-compatible
// servers accept it, and AWS redirects a client of another region's bucket.
const DefaultRegion = "us-east-1"

// Part sizes. S3 wants parts of at least 5 MiB (but the last), at most
// 5 GiB, and at most 10,000 of them. The defaults are the SDK's transfer
// manager's part size (8 MiB) and 4 parts in flight: 32 MiB of part
// buffers, the bulk of a publish's memory (docs/benchmarks.md).
const (
	DefaultPartSize    = 8 << 20
	MinPartSize        = 5 << 20
	MaxPartSize        = 5 << 30
	maxParts           = 10000
	DefaultConcurrency = 4
)

// stageMemoryMax is the most content Stage keeps in memory until Commit;
// more is a multipart upload (see the package comment).
const stageMemoryMax = 1 << 20

// Options configure Open. The zero Options use the SDK's standard
// configuration and the defaults below.
type Options struct {
	// Endpoint is the base URL of an S3-compatible server
	// (http://127.0.0.1:7070), addressed path-style. Empty: the SDK's
	// AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL (also path-style), else
	// AWS's own endpoint for the region.
	Endpoint string
	// Region overrides the configured region.
	Region string
	// Credentials overrides the configured credentials (tests; programs
	// that have their own).
	Credentials aws.CredentialsProvider
	// PartSize is the size of the parts of a multipart upload, and the
	// size above which content is uploaded in parts (DefaultPartSize when
	// zero; MinPartSize to MaxPartSize).
	PartSize int64
	// Concurrency is how many part buffers the Store holds at most, over
	// all its uploads, and so how many parts are sent at once
	// (DefaultConcurrency when zero).
	Concurrency int
	// HTTPClient sends the requests (an *http.Client, say; the SDK's
	// default when nil). With AWS_CA_BUNDLE set, the SDK can add the
	// bundle only to its own client (an awshttp.BuildableClient): Open
	// fails with another one.
	HTTPClient aws.HTTPClient
}

// Store is a tree in an S3-compatible bucket.
type Store struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	// prefix is the key prefix of the tree, "" or ending in "/".
	prefix   string
	url      string
	endpoint string
	partSize int64
	bufs     *bufferPool
	// noCondDelete is set once the server refused a conditional
	// DeleteObject, which DeleteIfOlder then stops sending.
	noCondDelete atomic.Bool
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Stater      = (*Store)(nil)
	_ store.Stager      = (*Store)(nil)
	_ store.Emptier     = (*Store)(nil)
	_ store.Swapper     = (*Store)(nil)
	_ store.Lister      = (*Store)(nil)
	_ store.Opener      = (*Store)(nil)
	_ store.RangeOpener = (*Store)(nil)
	_ store.Expirer     = (*Store)(nil)
	_ store.Signer      = (*Store)(nil)
)

// IsURL reports whether root names a bucket (s3://…) rather than a folder.
func IsURL(root string) bool {
	return len(root) >= len(Scheme) && strings.EqualFold(root[:len(Scheme)], Scheme)
}

// ParseURL splits an s3://BUCKET/PREFIX root into its bucket and its
// prefix (without slashes at either end; "" for the whole bucket).
func ParseURL(root string) (bucket, prefix string, err error) {
	if !IsURL(root) {
		return "", "", fmt.Errorf("%s: not an %sBUCKET/PREFIX URL", root, Scheme)
	}
	rest := root[len(Scheme):]
	if strings.ContainsAny(rest, "?#\\\x00") {
		return "", "", fmt.Errorf("%s: a bucket URL has no query, fragment or backslash", root)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if !validBucket(bucket) {
		return "", "", fmt.Errorf("%s: invalid bucket name %q", root, bucket)
	}
	prefix = strings.TrimRight(prefix, "/")
	if prefix != "" {
		for _, seg := range strings.Split(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("%s: invalid prefix %q (empty, . or .. component)", root, prefix)
			}
		}
	}
	return bucket, prefix, nil
}

// validBucket accepts the names S3 and the S3-compatible servers allow:
// letters, digits, dots, hyphens and underscores (the last two, and
// uppercase letters, only some servers), 3 to 255 of them.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 255 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Open returns the store of the tree at rawURL (s3://BUCKET/PREFIX), after
// checking that the bucket exists and that the credentials may use it: a
// missing bucket, refused credentials or an endpoint that cannot be
// reached is a one-line error naming the URL.
func Open(ctx context.Context, rawURL string, o Options) (*Store, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	s := &Store{bucket: bucket, url: Scheme + bucket}
	if prefix != "" {
		s.prefix = prefix + "/"
		s.url += "/" + prefix
	}
	s.partSize = o.PartSize
	if s.partSize == 0 {
		s.partSize = DefaultPartSize
	}
	if s.partSize < MinPartSize || s.partSize > MaxPartSize {
		return nil, fmt.Errorf("%s: part size %d is not between %d and %d", s.url, s.partSize, MinPartSize, int64(MaxPartSize))
	}
	conc := o.Concurrency
	if conc == 0 {
		conc = DefaultConcurrency
	}
	if conc < 1 {
		return nil, fmt.Errorf("%s: concurrency %d is less than 1", s.url, conc)
	}
	s.bufs = newBufferPool(int(s.partSize), conc)

	load := []func(*config.LoadOptions) error{config.WithDefaultRegion(DefaultRegion)}
	if o.Region != "" {
		load = append(load, config.WithRegion(o.Region))
	}
	if o.Credentials != nil {
		load = append(load, config.WithCredentialsProvider(o.Credentials))
	}
	if o.HTTPClient != nil {
		load = append(load, config.WithHTTPClient(o.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("%s: AWS configuration: %s", s.url, oneLine(err.Error()))
	}
	s.endpoint = o.Endpoint
	if s.endpoint == "" {
		s.endpoint = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if s.endpoint == "" {
		s.endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	if s.endpoint != "" {
		u, err := url.Parse(s.endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s: endpoint %q is not an http:// or https:// URL", s.url, s.endpoint)
		}
	}
	s.client = s3.NewFromConfig(cfg, func(so *s3.Options) {
		if s.endpoint != "" {
			so.BaseEndpoint = aws.String(s.endpoint)
			so.UsePathStyle = true
		}
		// Checksums only where the API requires them: the content is
		// verified against its digest anyway, the payload is signed (or
		// sent over TLS), and trailing checksums are what S3-compatible
		// servers most often get wrong.
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s.presign = s3.NewPresignClient(s.client)
	if err := s.checkBucket(ctx, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// checkBucket asks for the bucket once (HeadBucket, without retries: a
// command that cannot reach its bucket should say so at once).
func (s *Store) checkBucket(ctx context.Context, cfg aws.Config) error {
	if cfg.Credentials == nil {
		return fmt.Errorf("%s: no AWS credentials are configured", s.url)
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", s.url, ctx.Err())
		}
		return fmt.Errorf("%s: no AWS credentials found (environment, profile, SSO, web identity, container or instance role): %s",
			s.url, describe(err))
	}
	once := func(o *s3.Options) { o.RetryMaxAttempts = 1 }
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}, once)
	if err == nil {
		return nil
	}
	if status(err) == http.StatusNotFound {
		// The answer to a HEAD has no body to tell a missing bucket from
		// credentials that some servers answer with a 404 too (versitygw:
		// an unknown access key): a GET tells.
		_, err = s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, MaxKeys: aws.Int32(1)}, once)
		if err == nil {
			return nil
		}
		if apiCode(err) == "NoSuchBucket" {
			return fmt.Errorf("%s: bucket %q does not exist", s.url, s.bucket)
		}
	}
	if status(err) == http.StatusMovedPermanently {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.Response != nil {
			if r := re.Response.Header.Get("X-Amz-Bucket-Region"); r != "" {
				return fmt.Errorf("%s: bucket %q is in region %s: set AWS_REGION=%s", s.url, s.bucket, r, r)
			}
		}
	}
	return fmt.Errorf("%s: %s", s.url, describe(err))
}

// String returns the store's s3:// URL.
func (s *Store) String() string { return s.url }

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the key prefix of the tree in the bucket: "" or a
// prefix ending in "/".
func (s *Store) Prefix() string { return s.prefix }

// PartSize returns the size of the parts of a multipart upload: content
// larger than this is uploaded in parts.
func (s *Store) PartSize() int64 { return s.partSize }

// Client returns the SDK client the store uses.
func (s *Store) Client() *s3.Client { return s.client }

// objectKey is the object key of the tree's key, after checking that key
// is a clean, relative, slash-separated key as layout builds them.
func (s *Store) objectKey(key string) (string, error) {
	if key == "" || key[0] == '/' || key[len(key)-1] == '/' || path.Clean(key) != key ||
		key == ".." || strings.HasPrefix(key, "../") || strings.ContainsAny(key, "\\\x00") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	return s.prefix + key, nil
}

// ContentType is the Content-Type an object is written with: the media
// type the writer gives, else application/octet-stream for blobs (and
// anything else) and application/json for JSON files.
func ContentType(key string, want store.Want) string {
	switch {
	case want.MediaType != "":
		return want.MediaType
	case strings.HasPrefix(key, layout.BlobsDirKey()+"/"):
		return "application/octet-stream"
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	}
	return "application/octet-stream"
}

// CacheImmutable and CacheMutable are the Cache-Control values of what
// never changes under its key and of what does.
const (
	CacheImmutable = "public, max-age=31536000, immutable"
	CacheMutable   = "no-cache"
)

// CacheControl is the Cache-Control an object is written with:
// CacheImmutable for content-addressed keys (blobs and manifests, the
// shards of repositories and of the catalog), CacheMutable for the rest
// (repository files, the catalog index, the layout file), which are
// rewritten in place.
func CacheControl(key string) string {
	if _, ok := layout.DigestFromBlobKey(key); ok {
		return CacheImmutable
	}
	if _, ok := layout.CatalogShardIDFromKey(key); ok {
		return CacheImmutable
	}
	if _, _, ok := layout.RepositoryShardFromKey(key); ok {
		return CacheImmutable
	}
	return CacheMutable
}

// status is the HTTP status of a failed request, or 0.
func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// apiCode is the S3 error code of a failed request (NoSuchKey,
// NoSuchBucket, …), or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isNotFound reports whether err says the key does not exist (and not that
// the bucket does not).
func isNotFound(err error) bool {
	return status(err) == http.StatusNotFound && apiCode(err) != "NoSuchBucket"
}

// fail turns a failed request on key into a one-line error naming it: a
// missing key is store.ErrNotFound, the rest says what happened without
// the SDK's request ids.
func (s *Store) fail(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return &opError{op: op, key: key, msg: describe(err), err: err}
}

// opError is a failed request, in one line; it unwraps to the SDK's
// error (and so to context.Canceled and the like).
type opError struct {
	op, key, msg string
	err          error
}

func (e *opError) Error() string { return e.op + " " + e.key + ": " + e.msg }
func (e *opError) Unwrap() error { return e.err }

// describe says in one line why a request failed.
func describe(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded.Error()
	}
	var ue *url.Error
	var ne *net.OpError
	if errors.As(err, &ne) || errors.As(err, &ue) {
		where := "the endpoint"
		if errors.As(err, &ue) {
			if u, perr := url.Parse(ue.URL); perr == nil {
				where = u.Scheme + "://" + u.Host
			}
		}
		var errno syscall.Errno
		var de *net.DNSError
		switch {
		case errors.As(err, &de):
			return fmt.Sprintf("cannot reach %s: %s", where, de.Err)
		case errors.As(err, &errno):
			return fmt.Sprintf("cannot reach %s: %s", where, errno.Error())
		case ne != nil:
			return fmt.Sprintf("cannot reach %s: %s", where, oneLine(ne.Err.Error()))
		}
		return fmt.Sprintf("cannot reach %s: %s", where, oneLine(ue.Err.Error()))
	}
	code := status(err)
	switch apiCode(err) {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "XAdminUserNotFound":
		return "access denied: check the credentials"
	}
	if code == http.StatusForbidden {
		return "access denied: check the credentials"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		msg := ae.ErrorCode()
		if m := ae.ErrorMessage(); m != "" {
			msg += ": " + m
		}
		if code != 0 {
			msg = fmt.Sprintf("%s (HTTP %d)", msg, code)
		}
		return oneLine(msg)
	}
	if code != 0 {
		return fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	}
	return oneLine(err.Error())
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
