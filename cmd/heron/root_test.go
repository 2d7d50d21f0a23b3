package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/internal/s3test"
)

// TestBucketRoot runs the commands against a tree in a real S3-compatible
// server (versitygw): publish, ls, tag, rm, verify and gc with --root
// s3://…, and the one-line errors of a bucket that does not exist, of
// refused credentials and of --s3-endpoint with a folder.
func TestBucketRoot(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	root := srv.URL("tree")
	img, _ := fixtureSource(t, "oci-image")
	out, _, err := heron(t, "publish", img, "--root", root, "--to", "app:1", "-q")
	if err != nil || !strings.HasPrefix(out, "app:1@sha256:") {
		t.Fatalf("publish: %q, %v", out, err)
	}
	if _, _, err := heron(t, "tag", "--root", root, "app:1", "2"); err != nil {
		t.Fatal(err)
	}
	out, _, err = heron(t, "ls", "--root", root, "app")
	if err != nil || !strings.HasPrefix(out, "1\tsha256:") || !strings.Contains(out, "\n2\tsha256:") {
		t.Fatalf("ls app: %q, %v", out, err)
	}
	if _, _, err := heron(t, "rm", "--root", root, "app:1"); err != nil {
		t.Fatal(err)
	}
	if out, _, err := heron(t, "verify", "--root", root, "--deep"); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if _, _, err := heron(t, "gc", "--root", root, "--dry-run"); err != nil {
		t.Fatalf("gc: %v", err)
	}
	out, _, err = heron(t, "ls", "--root", root)
	if err != nil || out != "app\n" {
		t.Fatalf("ls: %q, %v", out, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no such bucket", []string{"ls", "--root", "s3://no-such-bucket/tree"}, nil, `bucket "no-such-bucket" does not exist`},
		{"bad credentials", []string{"ls", "--root", root}, map[string]string{"AWS_SECRET_ACCESS_KEY": "wrong-secret-wrong-secret"}, "access denied"},
		{"unreachable", []string{"ls", "--root", root, "--s3-endpoint", "http://127.0.0.1:1"}, nil, "cannot reach"},
		{"endpoint of a folder", []string{"ls", "--root", filepath.Join(t.TempDir(), "tree"), "--s3-endpoint", srv.Endpoint}, nil, "--s3-endpoint is for an s3:// --root"},
		{"serve, no such bucket", []string{"serve", "--root", "s3://no-such-bucket/tree", "--addr", "127.0.0.1:0"}, nil, `bucket "no-such-bucket" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, _, err := heron(t, tc.args...)
			if err == nil {
				t.Fatalf("%v: no error", tc.args)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("%v: error %q, want one line mentioning %q", tc.args, msg, tc.want)
			}
		})
	}
}
