package layout

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrInvalidBaseURL is wrapped by the errors of ValidateBlobBaseURL.
var ErrInvalidBaseURL = errors.New("invalid blob base URL")

// ValidateBlobBaseURL reports whether s can be a blob base URL: an absolute
// http or https URL without query or fragment, since the server appends
// "/" and a blob key (blobs/<alg>/<hex>) to it.
func ValidateBlobBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidBaseURL, s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w %q: want an absolute http:// or https:// URL", ErrInvalidBaseURL, s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return fmt.Errorf("%w %q: no query or fragment allowed (blobs/<alg>/<hex> is appended)", ErrInvalidBaseURL, s)
	}
	return nil
}

// NormalizeBlobBaseURL validates a blob base URL and returns it without its
// trailing slashes, the form repository files store and the server appends
// "/"+key to. The empty string (no base URL) is returned as it is.
func NormalizeBlobBaseURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if err := ValidateBlobBaseURL(s); err != nil {
		return "", err
	}
	return strings.TrimRight(s, "/"), nil
}
