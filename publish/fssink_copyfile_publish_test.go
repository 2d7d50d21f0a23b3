//go:build unix

package publish_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestLocalCopiesAreNotLinks publishes from a layout folder and an OCI
// archive on the same file system (the reflink / copy_file_range path),
// then overwrites the source's blobs: the tree must not change, as it would
// if its files were hard links to the source's.
func TestLocalCopiesAreNotLinks(t *testing.T) {
	for _, archive := range []bool{false, true} {
		name := "oci"
		if archive {
			name = "oci-archive"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			img := ociImage(t, 130, 3)
			idx := platformIndex(t, types.OCIImageIndex, img, ociImage(t, 131, 1))
			src := writeLayout(t, filepath.Join(dir, "src"), entry{item: idx})
			spec := "oci:" + src
			if archive {
				spec = "oci-archive:" + tarDir(t, src, filepath.Join(dir, "src.tar"))
			}
			root := filepath.Join(dir, "tree")
			mustPublish(t, root, spec, "app:v1")
			assertConsistent(t, root)
			before := snapshot(t, root, false)
			for _, d := range blobDigests(t, img) {
				p := filepath.Join(src, "blobs", "sha256", d.Encoded())
				tree := readBlob(t, root, d)
				var sst, tst syscall.Stat_t
				if err := syscall.Stat(p, &sst); err != nil {
					t.Fatal(err)
				}
				key := filepath.Join(root, "blobs", "sha256", d.Encoded())
				if err := syscall.Stat(key, &tst); err != nil {
					t.Fatal(err)
				}
				if sst.Ino == tst.Ino || tst.Nlink != 1 {
					t.Errorf("blob %s: the tree's file is the source's (inode %d, %d links)", d, tst.Ino, tst.Nlink)
				}
				// Overwrite in place, as a tool rewriting a layout would.
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(bytes.Repeat([]byte{'x'}, len(tree)), 0); err != nil {
					t.Fatal(err)
				}
				_ = f.Close()
			}
			if d := diffSnapshots(before, snapshot(t, root, false)); len(d) > 0 {
				t.Errorf("changing the source changed the tree: %v", d)
			}
		})
	}
}
