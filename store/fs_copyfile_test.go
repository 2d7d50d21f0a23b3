//go:build unix

package store

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

func TestStageRegion(t *testing.T) {
	data := make([]byte, 3<<20+123)
	rand.New(rand.NewSource(1)).Read(data)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	part := data[4097 : 4097+1<<20]
	for _, tc := range []struct {
		name         string
		offset, size int64 // the region
		want         Want
		content      []byte // what must be stored
		is           error
	}{
		{"whole file", 0, int64(len(data)), Want{Digest: digest.FromBytes(data), Size: int64(len(data))}, data, nil},
		{"region at an odd offset", 4097, 1 << 20, Want{Digest: digest.FromBytes(part), Size: 1 << 20}, part, nil},
		{"empty", 10, 0, Want{Digest: digest.FromBytes(nil), Size: 0}, []byte{}, nil},
		{"region longer than wanted", 0, int64(len(data)), Want{Digest: digest.FromBytes(data[:100]), Size: 100}, nil, ErrSizeMismatch},
		{"region shorter than wanted", 0, 100, Want{Digest: digest.FromBytes(data[:200]), Size: 200}, nil, ErrSizeMismatch},
		{"file shorter than the region", int64(len(data)) - 10, 100, Want{Digest: digest.FromBytes(data[len(data)-10:]), Size: 100}, nil, ErrSizeMismatch},
		{"other bytes", 1, 100, Want{Digest: digest.FromBytes(data[:100]), Size: 100}, nil, ErrDigestMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			root := layout.Root(t.TempDir())
			sink := NewFS(root)
			key, _ := layout.BlobKey(tc.want.Digest)
			var added int64
			st, err := sink.StageFile(context.Background(), key, f, tc.offset, tc.size, tc.want, func(n int64) { added += n })
			if tc.is != nil {
				if !errors.Is(err, tc.is) {
					t.Fatalf("error %v is not %v", err, tc.is)
				}
				if ents, _ := os.ReadDir(filepath.Dir(root.Path(key))); len(ents) != 0 {
					t.Errorf("left behind: %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(root.Path(key)); !os.IsNotExist(err) {
				t.Errorf("visible before Commit: %v", err)
			}
			if err := st.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(root.Path(key))
			if err != nil || !bytes.Equal(got, tc.content) {
				t.Fatalf("stored %d bytes (%v), want %d", len(got), err, len(tc.content))
			}
			if added != tc.want.Size {
				t.Errorf("progress reported %d bytes of %d", added, tc.want.Size)
			}
			fi, _ := os.Stat(root.Path(key))
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v", fi.Mode())
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink != 1 {
				t.Errorf("%d links", st.Nlink)
			}
		})
	}
}

// TestCopyPortable checks the fallback of copyRegion where the kernel
// cannot copy: the bytes, the count, and the progress it reports.
func TestCopyPortable(t *testing.T) {
	data := make([]byte, 3<<20+5)
	rand.New(rand.NewSource(2)).Read(data)
	dir := t.TempDir()
	src, err := os.Create(filepath.Join(dir, "src"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Write(data); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		offset, n int64
		want      []byte
	}{
		{"whole", 0, int64(len(data)), data},
		{"middle", 1000, 2 << 20, data[1000 : 1000+2<<20]},
		{"past the end", int64(len(data)) - 7, 100, data[len(data)-7:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, err := os.Create(filepath.Join(t.TempDir(), "dst"))
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			var last int64
			n, err := copyPortable(context.Background(), dst, src, tc.offset, tc.n, func(c int64) {
				if c < last {
					t.Errorf("progress went back from %d to %d", last, c)
				}
				last = c
			})
			if err != nil || n != int64(len(tc.want)) || last != n {
				t.Fatalf("copied %d (last reported %d), %v; want %d", n, last, err, len(tc.want))
			}
			got, _ := os.ReadFile(dst.Name())
			if !bytes.Equal(got, tc.want) {
				t.Error("other bytes")
			}
		})
	}
}
