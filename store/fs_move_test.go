package store_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

func TestFSMove(t *testing.T) {
	content := "a pushed blob"
	d := digest.FromString(content)
	to, _ := layout.BlobKey(d)
	const from = ".heron/uploads/ab/abcdefghijklmnopqrstuvwxyz/0"
	for _, tc := range []struct {
		name     string
		src      *string // nil: no file at from
		existing string  // what to holds before, if anything
		want     store.Want
		is       error // nil: success
	}{
		{"moved", &content, "", store.Want{Digest: d, Size: int64(len(content))}, nil},
		{"over the same blob", &content, content, store.Want{Digest: d, Size: int64(len(content))}, nil},
		{"other bytes", ptr("a pushed BLOB"), "", store.Want{Digest: d, Size: int64(len(content))}, store.ErrDigestMismatch},
		{"longer", ptr(content + "!"), "", store.Want{Digest: d, Size: int64(len(content))}, store.ErrSizeMismatch},
		{"shorter", ptr(content[:4]), "", store.Want{Digest: d, Size: int64(len(content))}, store.ErrSizeMismatch},
		{"size only", &content, "", store.Want{Size: int64(len(content))}, nil},
		{"size only, longer", ptr(content + "!"), "", store.Want{Size: int64(len(content))}, store.ErrSizeMismatch},
		{"size only, shorter", ptr(content[:4]), "", store.Want{Size: int64(len(content))}, store.ErrSizeMismatch},
		{"negative size", &content, "", store.Want{Size: -1}, errAny},
		{"invalid digest", &content, "", store.Want{Digest: "sha256:nope", Size: int64(len(content))}, errAny},
		{"missing", nil, "", store.Want{Digest: d, Size: int64(len(content))}, store.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root := layout.Root(t.TempDir())
			s := store.NewFS(root)
			if tc.src != nil {
				if err := s.Put(ctx, from, strings.NewReader(*tc.src), store.Want{}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.existing != "" {
				if err := s.Put(ctx, to, strings.NewReader(tc.existing), store.Want{}); err != nil {
					t.Fatal(err)
				}
			}
			err := s.Move(ctx, from, to, tc.want)
			if tc.is != nil {
				if err == nil || (tc.is != errAny && !errors.Is(err, tc.is)) {
					t.Fatalf("Move: %v, want %v", err, tc.is)
				}
				// Nothing changed under to, and the source stays.
				got, rerr := os.ReadFile(root.Path(to))
				if tc.existing == "" && rerr == nil {
					t.Fatalf("%s holds %q after a failed move", to, got)
				}
				if tc.src != nil {
					if b, err := os.ReadFile(root.Path(from)); err != nil || string(b) != *tc.src {
						t.Fatalf("the source after a failed move: %q, %v", b, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Move: %v", err)
			}
			if b, err := os.ReadFile(root.Path(to)); err != nil || string(b) != content {
				t.Fatalf("%s: %q, %v", to, b, err)
			}
			if _, err := os.Stat(root.Path(from)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the source is still there: %v", err)
			}
			fi, err := os.Stat(root.Path(to))
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Fatalf("%s: mode %v, %v; want readable by all", to, fi.Mode(), err)
			}
			if l := leftovers(t, string(root)); len(l) > 0 {
				t.Fatalf("leftovers: %v", l)
			}
		})
	}
}

var errAny = errors.New("any error")

func ptr(s string) *string { return &s }
