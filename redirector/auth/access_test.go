package auth

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"**", "a", true},
		{"**", "a/b/c", true},
		{"*", "a", true},
		{"*", "a/b", false},
		{"samples/*", "samples/x", true},
		{"samples/*", "samples/x/y", false},
		{"samples/*", "samples", false},
		{"samples/**", "samples", true},
		{"samples/**", "samples/x/y/z", true},
		{"samples/**", "samplesx/y", false},
		{"samples/**", "other/samples/x", false},
		{"team-*/app", "team-a/app", true},
		{"team-*/app", "team-/app", true},
		{"team-*/app", "team/app", false},
		{"**/cache", "a/b/cache", true},
		{"**/cache", "cache", true},
		{"**/cache", "a/cache/x", false},
		{"a/**/z", "a/z", true},
		{"a/**/z", "a/b/c/z", true},
		{"a/**/z", "a/b/c/y", false},
		{"a/**/**/z", "a/b/z", true},
		{"exact/name", "exact/name", true},
		{"exact/name", "exact/names", false},
		{"exact/name", "exact", false},
	} {
		p, err := parsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		if got := p.match(tc.name); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, s := range []string{"", "/a", "a/", "a//b", "a**", "**b/c", "Upper/x", "a/-x", "a/x-", "a/x?", "a/[x]", `a\x`, "a/.x"} {
		if _, err := parsePattern(s); err == nil {
			t.Errorf("pattern %q accepted", s)
		}
	}
}

const exampleAccess = `# heron access file
groups:
  devs: [alice, bob]
  ops: [carol]
rules:
  - repositories: ["samples/**", "public/*"]
    anonymous: [pull]
  - repositories: ["team/**"]
    groups: {devs: [pull, push, delete]}
    users: {ci: [pull, push]}
  - repositories: ["team/secret/**"]
    users: {dave: [pull]}
  - repositories: ["**"]
    authenticated: [pull]
    groups:
      ops: [delete]
`

func TestAccessRights(t *testing.T) {
	p, err := parseAccess("access.yaml", []byte(exampleAccess))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, repo string
		want       []string
	}{
		{"", "samples/a/b", []string{"pull"}},
		{"", "public/x", []string{"pull"}},
		{"", "public/x/y", nil},
		{"", "team/app", nil},
		{"", "other", nil},
		{"alice", "team/app", []string{"pull", "push", "delete"}},
		{"alice", "samples/x", []string{"pull"}},
		{"alice", "other", []string{"pull"}},
		{"ci", "team/app", []string{"pull", "push"}},
		{"ci", "team", []string{"pull", "push"}},
		{"ci", "teams/x", []string{"pull"}},
		{"carol", "team/app", []string{"pull", "delete"}},
		{"dave", "team/secret/x", []string{"pull"}},
		{"eve", "team/app", []string{"pull"}},
	} {
		got := p.rights(tc.user, tc.repo).actions()
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("rights(%q, %q) = %v, want %v", tc.user, tc.repo, got, tc.want)
		}
	}
	if g := p.memberOf["alice"]; len(g) != 1 || g[0] != "devs" {
		t.Errorf("alice's groups = %v", g)
	}
}

func TestAccessErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"empty", "", "empty"},
		{"comments only", "# nothing\n", "empty"},
		{"not yaml", "rules: [", "not YAML"},
		{"list at top", "- a\n", "line 1: expected a mapping"},
		{"unknown top field", "rules: []\nusers: {}\n", `line 2: unknown field "users"`},
		{"no rules", "groups: {}\n", "no rules"},
		{"unknown rule field", "rules:\n  - repositories: [a]\n    anonymus: [pull]\n", `line 3: unknown field "anonymus"`},
		{"unknown action", "rules:\n  - repositories: [a]\n    authenticated: [pull, write]\n", `line 3: unknown action "write"`},
		{"anonymous push", "rules:\n  - repositories: [a]\n    anonymous: [pull, push]\n", "line 3: anonymous callers may only pull"},
		{"undefined group", "groups: {devs: [a]}\nrules:\n  - repositories: [a]\n    groups: {dev: [pull]}\n", `line 4: group "dev" is not defined`},
		{"bad pattern", "rules:\n  - repositories:\n      - ok/**\n      - Team/*\n    authenticated: [pull]\n", `line 4: repository pattern "Team/*"`},
		{"double slash", "rules:\n  - repositories: [a//b]\n    authenticated: [pull]\n", "line 2: repository pattern"},
		{"no repositories", "rules:\n  - authenticated: [pull]\n", "line 2: rule without repositories"},
		{"duplicate group", "groups:\n  a: [x]\n  a: [y]\nrules: []\n", "line"},
		{"user with colon", "rules:\n  - repositories: [a]\n    users: {\"a:b\": [pull]}\n", "line 3: user name"},
		{"actions not a list", "rules:\n  - repositories: [a]\n    authenticated: {pull: true}\n", "line 3: actions: expected a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAccess("/etc/heron/access.yaml", []byte(tc.file))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "access file /etc/heron/access.yaml: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line naming the file and containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultPolicyAndDenyAnonymous(t *testing.T) {
	a := newAuth(t, Options{})
	anon := &Caller{}
	user := &Caller{Name: "u", Method: MethodBasic}
	for _, tc := range []struct {
		c    *Caller
		act  Action
		want bool
	}{
		{anon, Pull, true}, {anon, Push, false}, {anon, Delete, false}, {nil, Pull, true},
		{user, Pull, true}, {user, Push, true}, {user, Delete, true}, {user, "write", false},
	} {
		if got := a.Allowed(tc.c, "any/repo", tc.act); got != tc.want {
			t.Errorf("default: Allowed(%+v, %s) = %v", tc.c, tc.act, got)
		}
	}
	if !a.Public("x") || !a.CatalogAllowed(anon) {
		t.Error("default: not public")
	}
	if a.Enabled() {
		t.Error("Enabled without any way to authenticate")
	}

	d := newAuth(t, Options{DenyAnonymous: true})
	if d.Allowed(anon, "x", Pull) || d.Public("x") || d.CatalogAllowed(anon) || d.Listable(anon, "x") {
		t.Error("DenyAnonymous: anonymous may pull")
	}
	if !d.Allowed(user, "x", Push) || !d.CatalogAllowed(user) {
		t.Error("DenyAnonymous: user may not push")
	}

	// DenyAnonymous wins over the access file.
	dir := t.TempDir()
	f := writeFile(t, filepath.Join(dir, "access.yaml"), exampleAccess)
	d2 := newAuth(t, Options{AccessFile: f, DenyAnonymous: true})
	if d2.Public("samples/x") {
		t.Error("DenyAnonymous: samples/x is public")
	}
	a2 := newAuth(t, Options{AccessFile: f})
	if !a2.Public("samples/x") || a2.Public("team/x") {
		t.Error("access file: wrong public repositories")
	}
}
