//go:build !linux

package redirector

import "testing"

func skipUnlessCounterTrusted(t *testing.T, dir string) {
	t.Skip("the change counter is used on Linux only")
}
