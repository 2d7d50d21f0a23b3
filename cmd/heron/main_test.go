package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestRootRequired: every command that takes --root marks it required, so
// that cobra refuses a command line without it the same way for all (and
// serve's config file or environment can still set it).
func TestRootRequired(t *testing.T) {
	for _, cmd := range newRootCmd().Commands() {
		f := cmd.Flags().Lookup("root")
		if f == nil {
			continue
		}
		if !slices.Equal(f.Annotations[cobra.BashCompOneRequiredFlag], []string{"true"}) {
			t.Errorf("heron %s: --root is not marked required", cmd.Name())
		}
	}
	for _, args := range [][]string{
		{"ls"},
		{"ls", "app"},
		{"publish", "oci:missing", "--to", "app:1"},
		{"publish", "--batch", "missing.yaml"},
	} {
		if _, _, err := heron(t, args...); err == nil || !strings.Contains(err.Error(), `required flag(s) "root" not set`) {
			t.Errorf("heron %s: error %v, want the one of a missing required flag", strings.Join(args, " "), err)
		}
	}
}
