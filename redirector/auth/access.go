package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Action is something a caller does to a repository.
type Action string

// The actions of the token scopes (repository:NAME:pull,push,delete).
const (
	Pull   Action = "pull"
	Push   Action = "push"
	Delete Action = "delete"
)

// actionSet is a set of actions, one bit each.
type actionSet uint8

const (
	setPull actionSet = 1 << iota
	setPush
	setDelete

	setAll = setPull | setPush | setDelete
)

func actionBit(a Action) actionSet {
	switch a {
	case Pull:
		return setPull
	case Push:
		return setPush
	case Delete:
		return setDelete
	}
	return 0
}

// actions lists the set in the canonical order pull, push, delete.
func (s actionSet) actions() []string {
	var out []string
	for _, a := range []Action{Pull, Push, Delete} {
		if s&actionBit(a) != 0 {
			out = append(out, string(a))
		}
	}
	return out
}

// policy is a parsed access file: who may do what with which repository.
type policy struct {
	rules    []rule
	memberOf map[string][]string // user -> the groups that list them, sorted
}

// rule is one entry of the access file's rules.
type rule struct {
	patterns      []pattern
	anonymous     actionSet
	authenticated actionSet
	groups        map[string]actionSet
	users         map[string]actionSet
}

// defaultPolicy is the policy without an access file: anonymous callers
// may pull everything, authenticated callers may do everything (the server
// still refuses deletes without its --delete flag).
func defaultPolicy() *policy {
	return &policy{
		rules: []rule{{
			patterns:      []pattern{mustPattern("**")},
			anonymous:     setPull,
			authenticated: setAll,
		}},
	}
}

// rights is the union of the actions that every rule matching repo gives
// the caller: user "" is the anonymous caller. An authenticated caller has
// at least the rights of an anonymous one.
func (p *policy) rights(user string, repo string) actionSet {
	var s actionSet
	var groups []string
	if user != "" {
		groups = p.memberOf[user]
	}
	for i := range p.rules {
		r := &p.rules[i]
		if !r.matches(repo) {
			continue
		}
		s |= r.anonymous
		if user == "" {
			continue
		}
		s |= r.authenticated | r.users[user]
		for _, g := range groups {
			s |= r.groups[g]
		}
	}
	return s
}

func (r *rule) matches(repo string) bool {
	for _, p := range r.patterns {
		if p.match(repo) {
			return true
		}
	}
	return false
}

// pattern is a repository name pattern: segments separated by "/", where
// "*" in a segment matches any characters but "/" and a segment "**"
// matches any number of segments, none included.
type pattern struct {
	text     string
	segments []string
}

func mustPattern(s string) pattern {
	p, err := parsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// component is one component of a repository name, from the OCI
// distribution spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
var component = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// parsePattern checks that s is a pattern that some valid repository name
// matches.
func parsePattern(s string) (pattern, error) {
	if s == "" {
		return pattern{}, errors.New("empty repository pattern")
	}
	segs := strings.Split(s, "/")
	for _, seg := range segs {
		switch {
		case seg == "":
			return pattern{}, fmt.Errorf("repository pattern %q has an empty segment (leading, trailing or double /)", s)
		case seg == "**":
			continue
		case strings.Contains(seg, "**"):
			return pattern{}, fmt.Errorf("repository pattern %q: ** must be a whole segment (as in team/**)", s)
		}
		// Replacing each * by a letter gives a name the pattern matches:
		// if it is a valid component, some repository can match.
		if !component.MatchString(strings.ReplaceAll(seg, "*", "a")) {
			return pattern{}, fmt.Errorf("repository pattern %q: segment %q can match no repository name (lowercase letters, digits, separators . _ __ -; * for any characters but /, ** for any segments)", s, seg)
		}
	}
	return pattern{text: s, segments: segs}, nil
}

// match reports whether the pattern matches the repository name.
func (p pattern) match(name string) bool {
	return matchSegments(p.segments, strings.Split(name, "/"))
}

func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			for len(rest) > 0 && rest[0] == "**" {
				rest = rest[1:]
			}
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(name); i++ {
				if matchSegments(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		// Patterns hold no [, ? or \ (parsePattern), so path.Match only
		// sees literal characters and *, which stops at /.
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// groupName is the grammar of group names in the access file.
var groupName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// parseAccess parses an access file. Errors name the file and the line.
//
//	groups:
//	  devs: [alice, bob]
//	rules:
//	  - repositories: ["samples/**", "public/*"]
//	    anonymous: [pull]
//	  - repositories: ["team/**"]
//	    groups: {devs: [pull, push, delete]}
//	    users: {ci: [pull, push]}
//	  - repositories: ["**"]
//	    authenticated: [pull]
func parseAccess(file string, data []byte) (*policy, error) {
	p, err := parseAccessNode(data)
	if err != nil {
		return nil, fmt.Errorf("access file %s: %w", file, err)
	}
	return p, nil
}

func lineErr(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...))
}

func parseAccessNode(data []byte) (*policy, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: give at least one rule (see docs/access.md)")
		}
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, lineErr(root, "expected a mapping with groups and rules")
	}
	p := &policy{memberOf: map[string][]string{}}
	groups := map[string]bool{}
	var rulesNode *yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if seen[k.Value] {
			return nil, lineErr(k, "field %s given twice", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "groups":
			if v.Kind != yaml.MappingNode {
				return nil, lineErr(v, "groups: expected a mapping of group names to lists of users")
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				gk, gv := v.Content[j], v.Content[j+1]
				if !groupName.MatchString(gk.Value) {
					return nil, lineErr(gk, "group name %q: letters, digits, . _ - only", gk.Value)
				}
				if groups[gk.Value] {
					return nil, lineErr(gk, "group %s defined twice", gk.Value)
				}
				groups[gk.Value] = true
				users, err := stringList(gv, "users of group "+gk.Value)
				if err != nil {
					return nil, err
				}
				for _, u := range users {
					if err := checkUser(u); err != nil {
						return nil, err
					}
					if !slices.Contains(p.memberOf[u.Value], gk.Value) {
						p.memberOf[u.Value] = append(p.memberOf[u.Value], gk.Value)
					}
				}
			}
		case "rules":
			rulesNode = v
		default:
			return nil, lineErr(k, "unknown field %q (known: groups, rules)", k.Value)
		}
	}
	for u := range p.memberOf {
		sort.Strings(p.memberOf[u])
	}
	if rulesNode == nil {
		return nil, lineErr(root, "no rules: give at least one (see docs/access.md)")
	}
	if rulesNode.Kind != yaml.SequenceNode {
		return nil, lineErr(rulesNode, "rules: expected a list of rules")
	}
	for _, rn := range rulesNode.Content {
		r, err := parseRule(rn, groups)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

func checkUser(u *yaml.Node) error {
	if u.Value == "" || strings.ContainsAny(u.Value, ":\n") {
		return lineErr(u, "user name %q: not empty, no colon", u.Value)
	}
	return nil
}

func parseRule(n *yaml.Node, groups map[string]bool) (rule, error) {
	r := rule{groups: map[string]actionSet{}, users: map[string]actionSet{}}
	if n.Kind != yaml.MappingNode {
		return r, lineErr(n, "a rule is a mapping with repositories and at least one of anonymous, authenticated, groups, users")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return r, lineErr(k, "field %s given twice", k.Value)
		}
		seen[k.Value] = true
		switch k.Value {
		case "repositories":
			pats, err := stringList(v, "repositories")
			if err != nil {
				return r, err
			}
			for _, s := range pats {
				p, err := parsePattern(s.Value)
				if err != nil {
					return r, lineErr(s, "%v", err)
				}
				r.patterns = append(r.patterns, p)
			}
		case "anonymous":
			s, err := actionList(v)
			if err != nil {
				return r, err
			}
			if s&^setPull != 0 {
				return r, lineErr(v, "anonymous callers may only pull: writes always need credentials")
			}
			r.anonymous = s
		case "authenticated":
			s, err := actionList(v)
			if err != nil {
				return r, err
			}
			r.authenticated = s
		case "groups", "users":
			if v.Kind != yaml.MappingNode {
				return r, lineErr(v, "%s: expected a mapping of names to lists of actions, as {devs: [pull, push]}", k.Value)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				nk, nv := v.Content[j], v.Content[j+1]
				if k.Value == "groups" && !groups[nk.Value] {
					return r, lineErr(nk, "group %q is not defined under groups", nk.Value)
				}
				if k.Value == "users" {
					if err := checkUser(nk); err != nil {
						return r, err
					}
				}
				s, err := actionList(nv)
				if err != nil {
					return r, err
				}
				if k.Value == "groups" {
					r.groups[nk.Value] |= s
				} else {
					r.users[nk.Value] |= s
				}
			}
		default:
			return r, lineErr(k, "unknown field %q in a rule (known: repositories, anonymous, authenticated, groups, users)", k.Value)
		}
	}
	if len(r.patterns) == 0 {
		return r, lineErr(n, "rule without repositories")
	}
	return r, nil
}

func stringList(n *yaml.Node, what string) ([]*yaml.Node, error) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []*yaml.Node{n}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, lineErr(n, "%s: expected a list of strings", what)
	}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return nil, lineErr(c, "%s: expected a string", what)
		}
	}
	return n.Content, nil
}

func actionList(n *yaml.Node) (actionSet, error) {
	items, err := stringList(n, "actions")
	if err != nil {
		return 0, err
	}
	var s actionSet
	for _, it := range items {
		b := actionBit(Action(it.Value))
		if b == 0 {
			return 0, lineErr(it, "unknown action %q (known: pull, push, delete)", it.Value)
		}
		s |= b
	}
	return s, nil
}
