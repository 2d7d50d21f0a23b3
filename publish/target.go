package publish

import (
	"fmt"
	"strings"

	"github.com/heron-registry/heron/layout"
)

// Target is one place an image is published to: a repository and a tag.
type Target struct {
	Repository string
	Tag        string
}

// String returns NAME:TAG.
func (t Target) String() string { return t.Repository + ":" + t.Tag }

// ParseTarget parses NAME:TAG (the tag follows the last colon) and validates
// both parts with the OCI grammar.
func ParseTarget(s string) (Target, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return Target{}, fmt.Errorf("target %q: want NAME:TAG", s)
	}
	t := Target{Repository: s[:i], Tag: s[i+1:]}
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	return t, nil
}

// Validate checks the repository name and tag.
func (t Target) Validate() error {
	if err := layout.ValidateRepository(t.Repository); err != nil {
		return fmt.Errorf("target %q: %w", t.String(), err)
	}
	if err := layout.ValidateTag(t.Tag); err != nil {
		return fmt.Errorf("target %q: %w", t.String(), err)
	}
	return nil
}
