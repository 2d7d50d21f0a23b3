package redirector

import "net/http"

// The HTTP headers the server sends, by name, with the canonical keys of
// those the hot path sets by assignment (h[key] = value, without
// Header.Set's canonicalisation and allocation) and the values it shares
// between responses, which only read them.

// apiVersionHeader is sent with every response, as distribution does, so
// that clients recognise a v2 registry.
const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
)

// Headers of content responses.
const (
	contentDigestHeader = "Docker-Content-Digest"
	// blobCacheControl is distribution's: content addressed bytes never
	// change, so they may be cached for a year.
	blobCacheControl = "max-age=31536000"
	blobContentType  = "application/octet-stream"
)

// filtersHeader names the filters a referrers response applied.
const filtersHeader = "OCI-Filters-Applied"

// Canonical keys.
var (
	apiVersionKey    = http.CanonicalHeaderKey(apiVersionHeader)
	contentDigestKey = http.CanonicalHeaderKey(contentDigestHeader)
	etagKey          = http.CanonicalHeaderKey("ETag")
	contentTypeKey   = http.CanonicalHeaderKey("Content-Type")
	contentLengthKey = http.CanonicalHeaderKey("Content-Length")
	acceptRangesKey  = http.CanonicalHeaderKey("Accept-Ranges")
	cacheControlKey  = http.CanonicalHeaderKey("Cache-Control")
	locationKey      = http.CanonicalHeaderKey("Location")
)

// Shared values.
var (
	apiVersionValue       = []string{apiVersion}
	blobContentTypeValue  = []string{blobContentType}
	blobCacheControlValue = []string{blobCacheControl}
	acceptRangesValue     = []string{"bytes"}
)

// successOnlyKeys are the headers a handler may set for a success (digest,
// ETag, caching, ranges) that do not describe an error body; respond
// drops them.
var successOnlyKeys = []string{
	contentDigestKey, etagKey, cacheControlKey,
	http.CanonicalHeaderKey("Content-Range"), acceptRangesKey, http.CanonicalHeaderKey("Last-Modified"),
}
