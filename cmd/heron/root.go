package main

import (
	"context"
	"errors"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/store"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/spf13/pflag"
)

// treeRoot is where a command finds the tree: --root, a folder or an
// s3://BUCKET/PREFIX URL, and --s3-endpoint for the latter.
type treeRoot struct {
	root     string
	endpoint string
	partSize int64
}

// addFlags adds --root (required, described by usage) and --s3-endpoint.
func (t *treeRoot) addFlags(fs *pflag.FlagSet, usage string) {
	fs.StringVar(&t.root, "root", "", usage+"; a folder, or s3://BUCKET/PREFIX for a bucket")
	fs.Int64Var(&t.partSize, "s3-part-size", s3store.DefaultPartSize, "with an s3:// root: the size of the parts of multipart uploads, in bytes (an object has at most 10,000 parts; 4 are in flight)")
	fs.StringVar(&t.endpoint, "s3-endpoint", "", "with an s3:// root: the S3 endpoint URL, addressed path-style (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else the SDK's own for the region)")
}

// bucket reports whether the root is a bucket.
func (t *treeRoot) bucket() bool { return s3store.IsURL(t.root) }

// open returns the store of the root: the file system's, or the bucket's
// (which must exist: a missing bucket or refused credentials is an
// error here).
func (t *treeRoot) open(ctx context.Context) (store.Store, error) {
	if t.bucket() {
		return s3store.Open(ctx, t.root, s3store.Options{Endpoint: t.endpoint, PartSize: t.partSize})
	}
	if t.endpoint != "" {
		return nil, errors.New("--s3-endpoint is for an s3:// --root")
	}
	return store.NewFS(layout.Root(t.root)), nil
}

// publisher opens the root and returns a publisher writing it.
func (t *treeRoot) publisher(ctx context.Context, opts ...publish.Option) (*publish.Publisher, error) {
	st, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	return publish.New(st, opts...), nil
}

// path is where key is, for messages: an OS path, or an s3:// URL.
func (t *treeRoot) path(key string) string {
	if t.bucket() {
		return strings.TrimSuffix(t.root, "/") + "/" + key
	}
	return layout.Root(t.root).Path(key)
}
