package redirector

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Signing schemes of a URLSigner (heron serve --redirect-signing-scheme).
// docs/signed-urls.md specifies both, for those who verify them.
const (
	// SigningHMACSHA256 appends
	//
	//	?expires=<unix seconds>&signature=<base64url(HMAC-SHA256(key, expires + "\n" + path))>
	//
	// where path is the URL's escaped path, as the CDN receives it, and
	// base64url has no padding (RFC 4648 §5). CDN edge functions verify it
	// (CloudFront Functions, Cloudflare Workers, Fastly VCL).
	SigningHMACSHA256 = "hmac-sha256"
	// SigningNginx appends
	//
	//	?md5=<base64url(MD5(expires + path + " " + key))>&expires=<unix seconds>
	//
	// where path is the URL's decoded path: what nginx's secure_link module
	// checks with
	//
	//	secure_link $arg_md5,$arg_expires;
	//	secure_link_md5 "$secure_link_expires$uri $secret";
	//
	// nginx offers no HMAC; this keyed MD5 is its scheme, and the key is
	// written into nginx's configuration, so it must be printable ASCII
	// without quotes, backslashes or "$".
	SigningNginx = "nginx"
)

// DefaultSigningExpiry is how long a signed redirect stays valid, at least
// (heron serve --redirect-signing-expiry).
const DefaultSigningExpiry = 15 * time.Minute

// MinSigningKeyBytes is the shortest key NewURLSigner accepts: 256 bits,
// the size of HMAC-SHA256's output.
const MinSigningKeyBytes = 32

// Why Verify refuses a URL. They are returned wrapped; test with errors.Is.
var (
	ErrSignatureMissing = errors.New("the URL is not signed")
	ErrSignatureInvalid = errors.New("the URL's signature does not match")
	ErrSignatureExpired = errors.New("the URL's signature has expired")
)

// signedCacheMax bounds the signed locations a URLSigner keeps, per time
// step (see URLSigner): about 300 bytes each.
const signedCacheMax = 10000

// URLSigner signs URLs with an expiry, so that the host they point at (a
// CDN, nginx) serves them only to whom heron sent there, and only for a
// while. It is safe for concurrent use.
//
// The expiry of a URL signed at now is
//
//	expires = ceil((now + expiry) / step) * step,  step = expiry / 4
//
// in whole Unix seconds: a URL is valid for expiry to expiry + step, and
// every request within one step gets the same URL. That lets a CDN (and
// the client) cache it, and lets the signer keep the URLs of the current
// step, so that a redirect costs a map lookup rather than a hash.
type URLSigner struct {
	scheme string
	key    []byte
	expiry int64 // seconds
	step   int64 // seconds
	macs   sync.Pool
	// signed holds the signed locations of the latest step
	// (signLocation).
	signed atomic.Pointer[signedStep]
}

// signedStep is the cache of one step: location → signed location.
type signedStep struct {
	expires int64
	n       atomic.Int64
	m       sync.Map
}

// NewURLSigner returns a signer with key, for scheme (SigningHMACSHA256,
// the default when empty, or SigningNginx), whose URLs are valid for at
// least expiry (whole seconds; at least a second).
func NewURLSigner(key []byte, scheme string, expiry time.Duration) (*URLSigner, error) {
	if scheme == "" {
		scheme = SigningHMACSHA256
	}
	if scheme != SigningHMACSHA256 && scheme != SigningNginx {
		return nil, fmt.Errorf("redirect signing scheme %q: want %s or %s", scheme, SigningHMACSHA256, SigningNginx)
	}
	if len(key) < MinSigningKeyBytes {
		return nil, fmt.Errorf("redirect signing key: %d bytes, want at least %d (make one with: openssl rand -hex 32)", len(key), MinSigningKeyBytes)
	}
	if scheme == SigningNginx {
		for _, c := range key {
			if c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '\\' || c == '$' {
				return nil, fmt.Errorf("redirect signing key: the %s scheme writes the key into nginx's configuration, so it must be printable ASCII without spaces, quotes, backslashes or $ (make one with: openssl rand -hex 32)", SigningNginx)
			}
		}
	}
	secs := int64((expiry + time.Second - 1) / time.Second)
	if expiry <= 0 || secs <= 0 {
		return nil, fmt.Errorf("redirect signing expiry %s: want a second or more", expiry)
	}
	s := &URLSigner{scheme: scheme, key: bytes.Clone(key), expiry: secs, step: max(secs/4, 1)}
	s.macs.New = func() any { return hmac.New(sha256.New, s.key) }
	return s, nil
}

// LoadSigningKey reads a signing key from the file at path: its content,
// without the whitespace around it (a key written by `openssl rand -hex 32
// > FILE` ends with a newline). A missing, unreadable, empty or too short
// file is an error that names it.
func LoadSigningKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("redirect signing key %s: no such file", path)
	case err != nil:
		return nil, fmt.Errorf("redirect signing key: %w", err)
	}
	key := bytes.TrimSpace(b)
	if len(key) < MinSigningKeyBytes {
		return nil, fmt.Errorf("redirect signing key %s: %d bytes, want at least %d (make one with: openssl rand -hex 32 > %s)", path, len(key), MinSigningKeyBytes, path)
	}
	return key, nil
}

// Scheme returns the signer's scheme.
func (s *URLSigner) Scheme() string { return s.scheme }

// Expires returns the expiry, in Unix seconds, of a URL signed at now.
func (s *URLSigner) Expires(now time.Time) int64 {
	t := now.Unix() + s.expiry
	return (t + s.step - 1) / s.step * s.step // t > 0: no rounding of negatives
}

// Sign returns a copy of u signed at now: u's query parameters, but for
// the scheme's own (which are replaced), then the scheme's.
func (s *URLSigner) Sign(u *url.URL, now time.Time) *url.URL {
	out := *u
	out.ForceQuery = false
	q := s.query(s.signedPath(u), s.Expires(now))
	if rest := s.withoutParams(u.RawQuery); rest != "" {
		q = rest + "&" + q
	}
	out.RawQuery = q
	return &out
}

// Verify checks u's signature and expiry at now, as the host u points at
// does: ErrSignatureMissing, ErrSignatureInvalid (a malformed or wrong
// signature or expiry, checked first) or ErrSignatureExpired. Signatures
// are compared in constant time.
func (s *URLSigner) Verify(u *url.URL, now time.Time) error {
	q := u.Query()
	sigName := "signature"
	if s.scheme == SigningNginx {
		sigName = "md5"
	}
	es, sigs := q["expires"], q[sigName]
	if len(es) == 0 && len(sigs) == 0 {
		return fmt.Errorf("%w (no %s and expires parameters)", ErrSignatureMissing, sigName)
	}
	if len(es) != 1 || len(sigs) != 1 {
		return fmt.Errorf("%w: want one %s and one expires parameter", ErrSignatureInvalid, sigName)
	}
	expires, err := strconv.ParseInt(es[0], 10, 64)
	if err != nil || expires <= 0 {
		return fmt.Errorf("%w: expires %q is not a Unix time", ErrSignatureInvalid, es[0])
	}
	got, err := base64.RawURLEncoding.DecodeString(sigs[0])
	if err != nil {
		return fmt.Errorf("%w: %s is not unpadded base64url", ErrSignatureInvalid, sigName)
	}
	// The expiry as it is written is what was signed (as nginx does).
	want := s.signature(nil, s.signedPath(u), es[0])
	if !hmac.Equal(got, want) {
		return ErrSignatureInvalid
	}
	if now.Unix() > expires {
		return fmt.Errorf("%w at %s", ErrSignatureExpired, time.Unix(expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// signLocation returns loc, an absolute URL without a query (a blob base
// URL and a key), signed at now. The locations of the current step are
// kept, up to signedCacheMax of them, so that most redirects cost one map
// lookup.
func (s *URLSigner) signLocation(loc string, now time.Time) (string, error) {
	expires := s.Expires(now)
	c := s.signed.Load()
	if c == nil || c.expires < expires {
		// A new step: the URLs of the last one are not handed out again.
		n := &signedStep{expires: expires}
		if s.signed.CompareAndSwap(c, n) {
			c = n
		} else {
			c = s.signed.Load()
		}
	}
	if c.expires == expires {
		if v, ok := c.m.Load(loc); ok {
			return v.(string), nil
		}
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("sign redirect: %w", err)
	}
	signed := s.Sign(u, now).String()
	if c.expires == expires && c.n.Add(1) <= signedCacheMax {
		c.m.Store(loc, signed)
	}
	return signed, nil
}

// signedPath is the path of u that the scheme signs: the escaped path the
// CDN receives, or for nginx the decoded path ($uri).
func (s *URLSigner) signedPath(u *url.URL) string {
	p := u.EscapedPath()
	if s.scheme == SigningNginx {
		p = u.Path
	}
	if p == "" {
		p = "/"
	}
	return p
}

// query returns the scheme's query parameters for path and expires.
func (s *URLSigner) query(path string, expires int64) string {
	var buf [24]byte
	es := strconv.AppendInt(buf[:0], expires, 10)
	var sum [sha256.Size]byte
	sig := s.signature(sum[:0], path, string(es))
	var b strings.Builder
	b.Grow(len("signature=&expires=") + len(es) + base64.RawURLEncoding.EncodedLen(len(sig)))
	if s.scheme == SigningNginx {
		b.WriteString("md5=")
		writeBase64(&b, sig)
		b.WriteString("&expires=")
		b.Write(es)
	} else {
		b.WriteString("expires=")
		b.Write(es)
		b.WriteString("&signature=")
		writeBase64(&b, sig)
	}
	return b.String()
}

// signature appends the raw signature of path and expires to dst.
func (s *URLSigner) signature(dst []byte, path, expires string) []byte {
	if s.scheme == SigningNginx {
		h := md5.New()
		h.Write([]byte(expires))
		h.Write([]byte(path))
		h.Write([]byte{' '})
		h.Write(s.key)
		return h.Sum(dst)
	}
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(expires))
	m.Write([]byte{'\n'})
	m.Write([]byte(path))
	dst = m.Sum(dst)
	s.macs.Put(m)
	return dst
}

func writeBase64(b *strings.Builder, sig []byte) {
	var buf [44]byte
	n := base64.RawURLEncoding.EncodedLen(len(sig))
	base64.RawURLEncoding.Encode(buf[:n], sig)
	b.Write(buf[:n])
}

// withoutParams returns the raw query q without the scheme's parameters,
// the others as they are written.
func (s *URLSigner) withoutParams(q string) string {
	if q == "" {
		return ""
	}
	sigName := "signature"
	if s.scheme == SigningNginx {
		sigName = "md5"
	}
	var kept []string
	for _, p := range strings.Split(q, "&") {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil && (n == "expires" || n == sigName) {
			continue
		}
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "&")
}

// WithRedirectSigner signs every redirect to a blob base URL (the
// server's or a repository's) with s, so that the CDN or static host
// behind it serves only the URLs heron hands out (docs/signed-urls.md).
func WithRedirectSigner(s *URLSigner) Option {
	return func(o *options) { o.signer = s }
}

// signRedirect returns loc, a blob base URL and a key, signed when the
// server has a signer. A location that cannot be signed (never: base URLs
// are validated) is logged and returned unsigned, which the host refuses.
func (s *Server) signRedirect(loc string) string {
	if s.signer == nil {
		return loc
	}
	signed, err := s.signer.signLocation(loc, time.Now())
	if err != nil {
		s.log.Error("redirect not signed", "location", loc, "err", err)
		return loc
	}
	return signed
}
