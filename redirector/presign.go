package redirector

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// DefaultPresignExpiry is how long a presigned blob URL is valid without
// WithPresignExpiry.
const DefaultPresignExpiry = 15 * time.Minute

// presignedOverhead is the memory of a cached presigned URL beside the
// URL and its key: the entry, the lru's item and map slot.
const presignedOverhead = 160

// presigner answers blob requests with a 307 to a URL of the store itself,
// signed for the request's method (GET and HEAD are signed separately: a
// presigned URL is valid for one method) and valid for expiry.
//
// Signing is cheap next to a request to the store, but not next to a 307
// (an HMAC chain and a canonical request per URL): a signed URL is kept,
// per method and digest, and handed out again until half of its validity
// has passed, so that every client gets a URL valid for at least expiry/2,
// and a hot blob costs one signature per expiry/2 per server. The cache is
// an lru in the caches' budget; with the caches off every redirect is
// signed.
type presigner struct {
	signer store.Signer
	expiry time.Duration
	cache  *lru[presignKey, *presigned] // nil: no cache
	now    func() time.Time
	// hits counts the redirects answered from the cache, signs the
	// signatures made (tests read them).
	hits, signs atomic.Uint64
}

// presignKey names a presigned URL: the method it is signed for and the
// blob's digest.
type presignKey struct {
	head bool
	d    digest.Digest
}

// presigned is a signed URL, as the redirect every request for it gets,
// and the time (unix nanoseconds) until which it is handed out.
type presigned struct {
	redirect   *redirect
	reuseUntil int64
}

// newPresigner returns a presigner of URLs of signer valid for expiry,
// caching at most entries of them in budget (nil: no cache).
func newPresigner(signer store.Signer, expiry time.Duration, entries int, budget *cacheBudget) *presigner {
	p := &presigner{signer: signer, expiry: expiry, now: time.Now}
	if budget != nil && entries > 0 {
		p.cache = newLRUIn[presignKey, *presigned](entries, budget)
	}
	return p
}

// redirect returns the redirect to a presigned URL of blob d for method
// (HEAD, else GET).
func (p *presigner) redirect(ctx context.Context, method string, d digest.Digest) error {
	k := presignKey{head: method == http.MethodHead, d: d}
	now := p.now().UnixNano()
	if p.cache != nil {
		if e, ok := p.cache.get(k); ok && now < e.reuseUntil {
			p.hits.Add(1)
			return e.redirect
		}
	}
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	m := http.MethodGet
	if k.head {
		m = http.MethodHead
	}
	p.signs.Add(1)
	u, err := p.signer.SignURL(ctx, m, key, p.expiry)
	if err != nil {
		return &fileError{key: key, path: key, err: fmt.Errorf("presign %s: %w", m, err)}
	}
	e := &presigned{redirect: &redirect{location: u}, reuseUntil: now + int64(p.expiry/2)}
	if p.cache != nil {
		// The digest is a part of the request: the entry keeps a copy.
		k.d = digest.Digest(strings.Clone(string(d)))
		p.cache.add(k, e, int64(len(u)+len(k.d))+presignedOverhead)
	}
	return e.redirect
}

// cacheCounts reports the cache of presigned URLs (not in the metrics'
// cache families, which name the tree's files).
func (p *presigner) cacheCounts() cacheCounts {
	if p.cache == nil {
		return cacheCounts{hits: p.hits.Load(), misses: p.signs.Load()}
	}
	n, w := p.cache.size()
	return cacheCounts{hits: p.hits.Load(), misses: p.signs.Load(), entries: n, weight: w}
}
