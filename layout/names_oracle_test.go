package layout

import (
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The grammar of the distribution specification as regular expressions:
// the oracle the hand-written scanners of names.go must agree with.
var (
	oracleName = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	oracleTag  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// oracleParseDigest is ParseDigest without its fast path.
func oracleParseDigest(s string) bool {
	d, err := digest.Parse(s)
	return err == nil && (d.Algorithm() == digest.SHA256 || d.Algorithm() == digest.SHA512)
}

// grammarCorpus is every string of up to four characters over an alphabet
// of each character class the grammar distinguishes, plus hand-picked
// longer ones.
func grammarCorpus() []string {
	alphabet := []string{"a", "Z", "0", ".", "_", "-", "/", ":", "@", "é", "\x00"}
	out := []string{""}
	level := []string{""}
	for range 4 {
		var next []string
		for _, p := range level {
			for _, c := range alphabet {
				next = append(next, p+c)
			}
		}
		out = append(out, next...)
		level = next
	}
	return append(out,
		"library/alpine", "a0/b-c/d__e", "a.b_c/d--e", "x/y/z/w", "a/b.json/c", "a___b", "a__b", "a_.b", "a._b",
		"a-_b", "a--.b", "team/app/api", "a//b", "/a", "a/", "a/../b", "UPPER/case", "v1.0.0", "_x", ".x", "-x",
		strings.Repeat("a", 255), strings.Repeat("t", 128), strings.Repeat("t", 129), "A"+strings.Repeat("-", 127),
		"a"+strings.Repeat("b-", 60)+"c", strings.Repeat("ab/", 40)+"c",
	)
}

func TestScannersAgreeWithGrammar(t *testing.T) {
	for _, s := range grammarCorpus() {
		if got, want := matchName(s), oracleName.MatchString(s); got != want {
			t.Errorf("matchName(%q) = %v, the grammar says %v", s, got, want)
		}
		if got, want := matchTag(s), oracleTag.MatchString(s); got != want {
			t.Errorf("matchTag(%q) = %v, the grammar says %v", s, got, want)
		}
	}
}

func TestParseDigestFastPath(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 8)
	for _, s := range []string{
		"sha256:" + hex[:64], "sha512:" + hex, "sha256:" + hex[:63], "sha256:" + hex[:65], "sha256:" + strings.ToUpper(hex[:64]),
		"sha256:" + hex[:63] + "g", "sha512:" + hex[:64], "sha384:" + hex[:96], "SHA256:" + hex[:64], "sha256" + hex[:65],
		"sha256:", ":" + hex[:64], "sha256:" + hex[:62] + "==", "sha256+x:" + hex[:64], "md5:d41d8cd98f00b204e9800998ecf8427e",
	} {
		_, err := ParseDigest(s)
		if got, want := err == nil, oracleParseDigest(s); got != want {
			t.Errorf("ParseDigest(%q) accepted = %v, go-digest says %v (%v)", s, got, want, err)
		}
		if got := isCanonicalDigest(s); got && !oracleParseDigest(s) {
			t.Errorf("fast path accepts %q, which go-digest refuses", s)
		}
	}
}

func FuzzScanners(f *testing.F) {
	for _, s := range grammarCorpus()[len(grammarCorpus())-30:] {
		f.Add(s)
	}
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := matchName(s), oracleName.MatchString(s); got != want {
			t.Errorf("matchName(%q) = %v, the grammar says %v", s, got, want)
		}
		if got, want := matchTag(s), oracleTag.MatchString(s); got != want {
			t.Errorf("matchTag(%q) = %v, the grammar says %v", s, got, want)
		}
		_, err := ParseDigest(s)
		if got, want := err == nil, oracleParseDigest(s); got != want {
			t.Errorf("ParseDigest(%q) accepted = %v, go-digest says %v", s, got, want)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	b.Run("name", func(b *testing.B) {
		for b.Loop() {
			_ = ValidateRepository("team/app/api-server")
		}
	})
	b.Run("name/regexp", func(b *testing.B) {
		for b.Loop() {
			_ = oracleName.MatchString("team/app/api-server")
		}
	})
	b.Run("tag", func(b *testing.B) {
		for b.Loop() {
			_ = ValidateTag("v1.2.3-alpine")
		}
	})
	b.Run("tag/regexp", func(b *testing.B) {
		for b.Loop() {
			_ = oracleTag.MatchString("v1.2.3-alpine")
		}
	})
	d := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	b.Run("digest", func(b *testing.B) {
		for b.Loop() {
			_, _ = ParseDigest(d)
		}
	})
	b.Run("digest/go-digest", func(b *testing.B) {
		for b.Loop() {
			_, _ = digest.Parse(d)
		}
	})
}
