package redirector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
)

// NewFromStore returns a Server for the tree in st: a bucket (package
// store/s3), or any store.Store. Like New, it checks heron-layout.json
// once and reads nothing else. A tree in a folder of this machine is
// served with New, which reads it faster and refuses symbolic links that
// lead out of it; NewFromStore trusts st to keep its keys in the tree.
//
// The answers are New's. What differs is how files are read and blobs
// sent, which the store's optional capabilities decide:
//
//   - Repository files and the catalog index are cached (WithCacheSize,
//     WithCacheBytes) and validated by the store's version of the file
//     (a store.Swapper: a conditional read), trusted for
//     WithRevalidateAfter; see storecache.go for the consistency this
//     gives servers behind a load balancer. Manifests and shards are
//     content addressed, cached without validation and verified when
//     read.
//   - A blob is redirected (307) to the repository's blobBaseURL or
//     WithRedirectBase when there is one, as by New. Otherwise, when st
//     is a store.Signer, to a URL of the store presigned for the request's
//     method (WithPresignExpiry), unless WithServeBlobs(true); otherwise
//     its bytes are streamed through the server (store.RangeOpener, or
//     store.Opener), with Range support, checked against the listed size
//     and, for a whole blob, its digest.
//
// A store that can neither sign nor stream is refused with
// WithServeBlobs(true); without it, blobs that no base URL redirects are
// answered with an error.
func NewFromStore(st store.Store, opts ...Option) (*Server, error) {
	if st == nil {
		return nil, errors.New("no store")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	t := newStoreTree(st, o.logger)
	if o.serveBlobs && !t.canStream() {
		return nil, errors.New("serve blobs: the store cannot stream content (it has no OpenRange or Open)")
	}
	if err := t.checkLayout(context.Background()); err != nil {
		return nil, err
	}
	s := &Server{
		files:      t,
		repos:      t,
		manifests:  t,
		shards:     t,
		repoShards: t,
		index:      t,
	}
	var budget *cacheBudget
	if o.cacheSize > 0 && o.cacheBytes > 0 {
		budget = newCacheBudget(o.cacheBytes)
		s.manifests = newManifestCache(t, o.cacheSize, budget)
		s.shards = newShardCache(t, o.cacheSize, budget)
		s.repoShards = newRepoShardCache(t, o.cacheSize, budget)
		s.repos = newStoreRepoCache(t, o.cacheSize, budget, o.revalidateAfter)
		s.index = newStoreIndexCache(t, o.cacheBytes, o.revalidateAfter)
	}
	if t.signer != nil && !o.serveBlobs {
		s.presign = newPresigner(t.signer, o.presignExpiry, o.cacheSize, budget)
	}
	if s.presign == nil && !t.canStream() && o.redirectBase == "" {
		o.logger.Warn("the store can neither presign URLs nor stream content: only blobs of repositories with a blobBaseURL can be answered")
	}
	return s.finish(o)
}

// checkLayout reads heron-layout.json and checks its version, as openTree
// does for a folder.
func (t *storeTree) checkLayout(ctx context.Context) error {
	key := layout.LayoutFileKey()
	err := t.ready(ctx)
	if errors.Is(err, errNotFound) {
		return fmt.Errorf("the store holds no heron tree: %s is missing", key)
	}
	return err
}

// WithServeBlobs makes a server reading a store (NewFromStore) send the
// bytes of blobs that no base URL redirects itself, instead of redirecting
// to a presigned URL of the store. A server made by New always does.
func WithServeBlobs(serve bool) Option {
	return func(o *options) { o.serveBlobs = serve }
}

// WithPresignExpiry sets how long the presigned URLs that blob requests are
// redirected to are valid (DefaultPresignExpiry without this option). A
// URL is handed out again until half of that has passed, so a client
// always gets at least half of it; clients follow a redirect at once, so
// a few minutes are plenty. It only applies to a store that signs URLs
// (NewFromStore).
func WithPresignExpiry(d time.Duration) Option {
	return func(o *options) { o.presignExpiry = d }
}

// WithRevalidateAfter sets how long a repository file or catalog index
// read from a store (NewFromStore) is used before the store is asked
// whether it changed (DefaultRevalidateAfter without this option): a
// publish is seen by every server at most d after it returned. 0 asks on
// every request. A server made by New ignores it: the tree's change
// counter tells it at once.
func WithRevalidateAfter(d time.Duration) Option {
	return func(o *options) { o.revalidateAfter = d }
}
