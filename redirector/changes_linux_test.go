package redirector

import (
	"testing"

	"golang.org/x/sys/unix"
)

// skipUnlessCounterTrusted skips a test of the change counter when dir is
// on a file system where the server does not trust it (overlayfs, NFS: a
// test machine's temporary folder may be one), so that the test runs, and
// must pass, wherever the counter is in use.
func skipUnlessCounterTrusted(t *testing.T, dir string) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if _, ok := localFileSystems[int64(fs.Type)]; !ok {
		t.Skipf("%s is on a file system (type %#x) where the server does not trust the change counter", dir, fs.Type)
	}
}
