package publish_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/heron-registry/heron/publish"
)

func TestParseRemovals(t *testing.T) {
	got, err := publish.ParseRemovals([]string{"a:1", "b", "c:x", "a:2", "d/e"})
	if err != nil {
		t.Fatal(err)
	}
	want := &publish.Removals{
		Tags:         []publish.RepositoryTags{{Repository: "a", Tags: []string{"1", "2"}}, {Repository: "c", Tags: []string{"x"}}},
		Repositories: []string{"b", "d/e"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseRemovals = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"A", "a:", "a:-x", "../x"} {
		if _, err := publish.ParseRemovals([]string{"a:1", bad}); err == nil {
			t.Errorf("ParseRemovals accepts %q", bad)
		}
	}
}

func TestParseTargets(t *testing.T) {
	if _, err := publish.ParseTargets(nil); !errors.Is(err, publish.ErrNoTargets) {
		t.Errorf("no targets: %v", err)
	}
	got, err := publish.ParseTargets([]string{"a:1", "b/c:latest"})
	if err != nil || len(got) != 2 || got[1] != (publish.Target{Repository: "b/c", Tag: "latest"}) {
		t.Errorf("ParseTargets = %v, %v", got, err)
	}
	if _, err := publish.ParseTargets([]string{"a:1", "nope"}); err == nil {
		t.Error("a target without a tag is accepted")
	}
}
