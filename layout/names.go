package layout

import (
	_ "crypto/sha256" // registers sha256 for go-digest
	_ "crypto/sha512" // registers sha512 for go-digest
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The OCI distribution specification's grammar
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests):
//
//	<name>      [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//	<reference> [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}   (a tag; or a digest)
//
// Clients are told to keep a name, with the registry's host name, under 256
// characters; heron refuses names longer than [MaxNameLength].
//
// The grammar is matched by hand-written scanners (matchName, matchTag)
// rather than regular expressions: every request validates a name and a
// reference, and a scanner is an order of magnitude faster. The tests hold
// the grammar's regular expressions as the oracle the scanners must agree
// with.

// MaxNameLength is the longest repository name heron accepts.
const MaxNameLength = 255

// ErrInvalidName, ErrInvalidTag and ErrInvalidDigest are wrapped by the
// validation errors of this package; test them with errors.Is.
var (
	ErrInvalidName   = errors.New("invalid repository name")
	ErrInvalidTag    = errors.New("invalid tag")
	ErrInvalidDigest = errors.New("invalid digest")
)

// ValidateRepository reports whether name is a repository name of the OCI
// grammar, at most MaxNameLength characters long.
func ValidateRepository(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > MaxNameLength {
		return fmt.Errorf("%w: %d characters, at most %d are allowed", ErrInvalidName, len(name), MaxNameLength)
	}
	if !matchName(name) {
		return fmt.Errorf("%w: %q does not match the OCI name grammar (lowercase letters, digits, separators . _ __ -, components joined by /)", ErrInvalidName, name)
	}
	return nil
}

// ValidateTag reports whether tag is a tag of the OCI grammar.
func ValidateTag(tag string) error {
	if !matchTag(tag) {
		return fmt.Errorf("%w: %q (1 to 128 of [a-zA-Z0-9_.-], not starting with . or -)", ErrInvalidTag, tag)
	}
	return nil
}

// ParseDigest parses and validates a digest of an algorithm heron stores
// (sha256, sha512), with an encoded part of the right length and alphabet.
func ParseDigest(s string) (digest.Digest, error) {
	if isCanonicalDigest(s) {
		return digest.Digest(s), nil
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidDigest, s, err)
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
	default:
		return "", fmt.Errorf("%w: %q: algorithm %q is not supported", ErrInvalidDigest, s, d.Algorithm())
	}
	return d, nil
}

// isCanonicalDigest reports whether s is "sha256:" or "sha512:" followed by
// the algorithm's number of lowercase hex digits: the digests heron stores,
// which digest.Parse accepts too. It spares the common case go-digest's two
// regular expressions; anything else takes the full path.
func isCanonicalDigest[S string | []byte](s S) bool {
	var n int
	switch {
	case len(s) == len("sha256:")+64 && string(s[:len("sha256:")]) == "sha256:":
		n = 64
	case len(s) == len("sha512:")+128 && string(s[:len("sha512:")]) == "sha512:":
		n = 128
	default:
		return false
	}
	const prefix = len("sha256:")
	if len(s) != prefix+n {
		return false
	}
	for i := prefix; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// matchName reports whether s matches the OCI <name> grammar: components
// separated by "/", each a run of [a-z0-9] optionally followed by more runs,
// each introduced by one separator ".", "_", "__" or "-"+.
func matchName(s string) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' {
			if !matchComponent(s[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// matchComponent matches [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*.
func matchComponent(c string) bool {
	i := 0
	for {
		j := i
		for j < len(c) && isLowerAlnum(c[j]) {
			j++
		}
		if j == i {
			// Empty component, a leading separator, a separator at the
			// end or two separators in a row.
			return false
		}
		if j == len(c) {
			return true
		}
		switch c[j] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		default:
			return false
		}
		i = j
	}
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// matchTag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func matchTag(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// IsDigest reports whether a reference looks like a digest rather than a tag
// (it contains a colon, which a tag never does).
func IsDigest(ref string) bool { return strings.Contains(ref, ":") }
