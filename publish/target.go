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

// ParseTargets parses each NAME:TAG of specs (ParseTarget); none at all is
// ErrNoTargets.
func ParseTargets(specs []string) ([]Target, error) {
	if len(specs) == 0 {
		return nil, ErrNoTargets
	}
	targets := make([]Target, 0, len(specs))
	for _, s := range specs {
		t, err := ParseTarget(s)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// Removals is what heron rm is asked to remove: tags, grouped by
// repository in the order the repositories were first given, and whole
// repositories.
type Removals struct {
	Tags         []RepositoryTags
	Repositories []string
}

// RepositoryTags are tags of one repository.
type RepositoryTags struct {
	Repository string
	Tags       []string
}

// ParseRemovals parses NAME:TAG (a tag) and NAME (a whole repository)
// arguments, validating each.
func ParseRemovals(args []string) (*Removals, error) {
	r := &Removals{}
	at := map[string]int{} // repository → index in r.Tags
	for _, arg := range args {
		if !strings.Contains(arg, ":") {
			if err := layout.ValidateRepository(arg); err != nil {
				return nil, err
			}
			r.Repositories = append(r.Repositories, arg)
			continue
		}
		t, err := ParseTarget(arg)
		if err != nil {
			return nil, err
		}
		i, ok := at[t.Repository]
		if !ok {
			i = len(r.Tags)
			at[t.Repository] = i
			r.Tags = append(r.Tags, RepositoryTags{Repository: t.Repository})
		}
		r.Tags[i].Tags = append(r.Tags[i].Tags, t.Tag)
	}
	return r, nil
}
