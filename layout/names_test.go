package layout

import (
	"strings"
	"testing"
)

func TestValidateRepository(t *testing.T) {
	good := []string{"a", "library/alpine", "a0/b-c/d__e", "a.b_c/d--e", "x/y/z/w", strings.Repeat("a", 255), "a/b.json/c"}
	bad := []string{"", "A", "a/", "/a", "a//b", "a/../b", "..", ".", "a..b", "-a", "a-", "a_", "a___b", "a b", "a\x00", "a%2fb", "a:b", "a@b", strings.Repeat("a", 256)}
	for _, n := range good {
		if err := ValidateRepository(n); err != nil {
			t.Errorf("ValidateRepository(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidateRepository(n); err == nil {
			t.Errorf("ValidateRepository(%q) = nil, want an error", n)
		}
	}
}

func TestValidateTag(t *testing.T) {
	good := []string{"latest", "v1.0.0", "_x", "A-b_c.d", strings.Repeat("t", 128)}
	bad := []string{"", ".x", "-x", "a/b", "a:b", "a@b", "..", strings.Repeat("t", 129), "a\x00"}
	for _, s := range good {
		if err := ValidateTag(s); err != nil {
			t.Errorf("ValidateTag(%q) = %v, want nil", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateTag(s); err == nil {
			t.Errorf("ValidateTag(%q) = nil, want an error", s)
		}
	}
}

func TestParseDigest(t *testing.T) {
	if _, err := ParseDigest("sha256:" + hex256); err != nil {
		t.Error(err)
	}
	if _, err := ParseDigest("sha512:" + hex512); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"sha256:" + hex256[:63], "sha384:" + hex512[:96], "sha256:" + hex256 + "/x", "sha256", ":" + hex256} {
		if _, err := ParseDigest(s); err == nil {
			t.Errorf("ParseDigest(%q) = nil, want an error", s)
		}
	}
}
