package store_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// leftovers lists the files under root whose names are not final: a write
// must never leave a temporary file behind.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

func TestFSSinkPut(t *testing.T) {
	content := "hello, heron"
	d := digest.FromString(content)
	key, _ := layout.BlobKey(d)
	for _, tc := range []struct {
		name string
		r    io.Reader
		want store.Want
		is   error // nil: success
	}{
		{"verified", strings.NewReader(content), store.Want{Digest: d, Size: int64(len(content))}, nil},
		{"unverified", strings.NewReader(content), store.Want{}, nil},
		{"other bytes", strings.NewReader("hello, HERON"), store.Want{Digest: d, Size: int64(len(content))}, store.ErrDigestMismatch},
		{"too long", strings.NewReader(content + "!"), store.Want{Digest: d, Size: int64(len(content))}, store.ErrSizeMismatch},
		{"too short", strings.NewReader(content[:5]), store.Want{Digest: d, Size: int64(len(content))}, store.ErrSizeMismatch},
		{"reader fails", io.MultiReader(strings.NewReader("hel"), failingReader{}), store.Want{Digest: d, Size: int64(len(content))}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s := store.NewFS(layout.Root(root))
			err := s.Put(context.Background(), key, tc.r, tc.want)
			failing := tc.is != nil || tc.name == "reader fails"
			if failing {
				if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) {
					t.Fatalf("error %v, want %v", err, tc.is)
				}
				var verr *store.VerifyError
				if tc.is != nil && !errors.As(err, &verr) {
					t.Errorf("error %T is not a *VerifyError", err)
				}
				if _, serr := os.Stat(layout.Root(root).Path(key)); !os.IsNotExist(serr) {
					t.Errorf("the key exists after a failed put")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(layout.Root(root).Path(key))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("mode %v", fi.Mode())
				}
				b, _ := os.ReadFile(layout.Root(root).Path(key))
				if string(b) != content {
					t.Errorf("content %q", b)
				}
			}
			if l := leftovers(t, root); len(l) > 0 {
				t.Errorf("temporary files left: %v", l)
			}
		})
	}
}

func TestFSSinkStage(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := store.NewFS(layout.Root(root))
	d := digest.FromString("x")
	key, _ := layout.BlobKey(d)
	path := layout.Root(root).Path(key)

	st, err := s.Stage(ctx, key, strings.NewReader("x"), store.Want{Digest: d, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("staged content is visible before commit")
	}
	if err := st.Abort(); err != nil {
		t.Fatal(err)
	}
	if l := leftovers(t, root); len(l) > 0 {
		t.Errorf("abort left %v", l)
	}

	st, err = s.Stage(ctx, key, strings.NewReader("x"), store.Want{Digest: d, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Abort(); err != nil {
		t.Fatal("abort after commit:", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "x" {
		t.Fatalf("after commit: %q %v", b, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(cctx, key, strings.NewReader("x"), store.Want{}); !errors.Is(err, context.Canceled) {
		t.Errorf("put with a cancelled context: %v", err)
	}
}

func TestFSSinkReadStatDeleteEmpty(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "tree")
	s := store.NewFS(layout.Root(root))

	if empty, err := s.Empty(ctx); err != nil || !empty {
		t.Errorf("missing root: empty=%v %v", empty, err)
	}
	if _, err := s.ReadFile(ctx, "catalog/index.json", 100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("read missing: %v", err)
	}
	if _, err := s.Stat(ctx, "catalog/index.json"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat missing: %v", err)
	}
	if err := s.Put(ctx, "catalog/index.json", strings.NewReader("0123456789"), store.Want{}); err != nil {
		t.Fatal(err)
	}
	if empty, err := s.Empty(ctx); err != nil || empty {
		t.Errorf("non-empty root: empty=%v %v", empty, err)
	}
	if b, err := s.ReadFile(ctx, "catalog/index.json", 10); err != nil || string(b) != "0123456789" {
		t.Errorf("read: %q %v", b, err)
	}
	if _, err := s.ReadFile(ctx, "catalog/index.json", 9); err == nil {
		t.Error("read past the limit succeeded")
	}
	if info, err := s.Stat(ctx, "catalog"); err != nil || !info.Dir {
		t.Errorf("stat folder: %+v %v", info, err)
	}
	if info, err := s.Stat(ctx, "catalog/index.json"); err != nil || info.Dir || info.Size != 10 {
		t.Errorf("stat file: %+v %v", info, err)
	}
	if err := s.Delete(ctx, "catalog/index.json"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "catalog/index.json"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	if _, err := s.Stat(ctx, "catalog/index.json"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat deleted: %v", err)
	}
}
