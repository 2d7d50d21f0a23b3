package source

import (
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Option configures a source made by [ParseWith]. Options that do not
// apply to a transport are ignored by it.
type Option func(*options)

type options struct {
	insecure  bool
	keychain  authn.Keychain
	backoff   transport.Backoff
	userAgent string
	base      http.RoundTripper
}

func defaultOptions() options {
	return options{
		keychain: authn.DefaultKeychain,
		// 1s, 2s, 4s, 8s: five tries within about 15 seconds.
		backoff: transport.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 5},
	}
}

// WithInsecure lets a registry source use plain HTTP, and HTTPS without
// verifying the server's certificate: for a registry on a local or test
// network. Without it, a registry is reached over verified HTTPS only,
// even on localhost.
func WithInsecure(insecure bool) Option {
	return func(o *options) { o.insecure = insecure }
}

// WithKeychain sets where a registry source finds credentials. The default
// is authn.DefaultKeychain: the docker config (~/.docker/config.json, or
// $DOCKER_CONFIG/config.json) with its credential helpers, then podman's
// auth.json, then anonymous.
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) {
		if k != nil {
			o.keychain = k
		}
	}
}

// WithRetry sets how a registry source retries a request that failed with
// a network error or with 408, 429, 500, 502, 503 or 504: it waits first,
// then twice as long each time, at most tries times in all (tries < 1
// means once, no retry). The default is 5 tries, from one second.
func WithRetry(first time.Duration, tries int) Option {
	return func(o *options) {
		if tries < 1 {
			tries = 1
		}
		o.backoff = transport.Backoff{Duration: first, Factor: 2, Jitter: 0.1, Steps: tries}
	}
}

// WithTransport sets the transport a registry source sends its requests
// through, below the retries and authentication it adds: sources of many
// repositories of a registry may share one pool of connections. The
// default is a transport of their own, like ggcr's remote.DefaultTransport
// (whose TLS settings WithInsecure relaxes; with WithTransport, that is
// the transport's business).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.base = rt }
}

// WithUserAgent sets the User-Agent a registry source sends (ggcr adds its
// own after it).
func WithUserAgent(ua string) Option {
	return func(o *options) { o.userAgent = ua }
}
