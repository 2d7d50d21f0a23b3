package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbauerster/mpb/v8"
)

// TestPublishOutput checks what heron publish prints: NAME:TAG@DIGEST
// lines and a summary on standard error by default, nothing on standard
// error with --quiet, and a JSON summary with --output json, whose counts
// tell a first publish from a repeated one.
func TestPublishOutput(t *testing.T) {
	img, imgDigest := fixtureSource(t, "oci-image")
	root := filepath.Join(t.TempDir(), "tree")

	stdout, stderr, err := heron(t, "publish", img, "--root", root, "--to", "app:1", "--to", "team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if stdout != "app:1@"+imgDigest+"\nteam/app:1@"+imgDigest+"\n" || !strings.Contains(stderr, "wrote") || strings.Contains(stderr, "\x1b[") {
		t.Errorf("text output:\n%s---\n%s", stdout, stderr)
	}
	stdout, stderr, err = heron(t, "publish", img, "--root", root, "--to", "app:1", "--quiet")
	if err != nil || stdout != "app:1@"+imgDigest+"\n" || stderr != "" {
		t.Errorf("--quiet: %v\n%s---\n%s", err, stdout, stderr)
	}

	var first publish.Summary
	stdout, stderr, err = heron(t, "publish", img, "--root", filepath.Join(t.TempDir(), "other"), "--to", "b/app:1", "--to", "a:2", "--output", "json")
	if err != nil || stderr != "" {
		t.Fatalf("--output json: %v %s", err, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &first); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	if first.Digest != digest.Digest(imgDigest) || strings.Join(first.Repositories, ",") != "a,b/app" ||
		strings.Join(first.Tags, ",") != "b/app:1,a:2" || first.Policy != publish.PolicyImmediate ||
		first.BytesWritten == 0 || first.BlobsWritten != first.Blobs+first.Manifests || first.BytesSkipped != 0 || !first.LayoutCreated {
		t.Errorf("first summary %+v", first)
	}
	var again map[string]any
	stdout, _, err = heron(t, "publish", img, "--root", root, "--to", "app:1", "-o", "json")
	if err != nil || json.Unmarshal([]byte(stdout), &again) != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	// The JSON names are the interface: check them as a CI script would.
	if again["bytesWritten"] != 0.0 || again["bytesSkipped"] != float64(first.BytesWritten) || again["repositoriesWritten"] == nil {
		t.Errorf("second summary %s", stdout)
	}
}

func TestPublishFlagErrors(t *testing.T) {
	img, _ := fixtureSource(t, "oci-image")
	root := filepath.Join(t.TempDir(), "tree")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--output", "yaml"}, "--output"},
		{[]string{"--policy", "later"}, "--policy"},
		{[]string{"--policy", "on_demand"}, "registry source"},
	} {
		_, _, err := heron(t, append([]string{"publish", img, "--root", root, "--to", "app:1"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to mention %q", tc.args, err, tc.want)
		}
	}
}

// TestPublishFromRegistry publishes from a registry on 127.0.0.1: refused
// without --insecure, then immediate and on_demand with it.
func TestPublishFromRegistry(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("HOME", dir)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/up/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	src := "docker://" + host + "/up/app:v1"

	if _, _, err := heron(t, "publish", src, "--root", filepath.Join(dir, "t0"), "--to", "app:v1"); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("without --insecure: %v", err)
	}
	stdout, _, err := heron(t, "publish", src, "--insecure", "--root", filepath.Join(dir, "t1"), "--to", "app:v1")
	if err != nil || stdout != "app:v1@"+d.String()+"\n" {
		t.Errorf("immediate: %v %s", err, stdout)
	}
	stdout, stderr, err := heron(t, "publish", src, "--insecure", "--policy", "on_demand", "--root", filepath.Join(dir, "t2"), "--to", "app:v1", "-o", "json")
	var s publish.Summary
	if err != nil || json.Unmarshal([]byte(stdout), &s) != nil {
		t.Fatalf("on_demand: %v\n%s%s", err, stdout, stderr)
	}
	// The config and 3 layers stay upstream; the manifest is written.
	if s.Policy != publish.PolicyOnDemand || s.BlobsDeferred != 4 || s.BlobsWritten != 1 || s.Digest.String() != d.String() {
		t.Errorf("on_demand summary %+v", s)
	}
}

// driveBars drives b from several goroutines, as publish does: a total of
// 8 blobs of 1000 bytes copied in parallel, then an empty blob and one
// whose copy fails.
func driveBars(b *bars) {
	b.Start(8, 8*1000)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := b.Copy(ocispec.Descriptor{Digest: digest.FromString(string(rune(i))), Size: 1000})
			for range 10 {
				c.Add(100)
			}
			c.Done(nil)
		}()
	}
	wg.Wait()
	b.Start(0, 0)
	e := b.Copy(ocispec.Descriptor{Digest: digest.FromString("empty")})
	e.Done(nil)
	f := b.Copy(ocispec.Descriptor{Digest: digest.FromString("failed"), Size: 10})
	f.Done(io.ErrUnexpectedEOF)
}

// finishWithin runs b.finish(ok) and fails the test if it has not
// returned after d.
func finishWithin(t *testing.T, b *bars, ok bool, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		b.finish(ok)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("finish(%v) still draws after %s", ok, d)
	}
}

// TestBars: the progress bars, driven from several goroutines into a
// buffer, neither race nor hang. After a publish, the last line drawn is
// the whole total; after a failure, finish stops drawing at once although
// the total is not complete. Either way nothing can be drawn after finish.
func TestBars(t *testing.T) {
	t.Run("done", func(t *testing.T) {
		var buf bytes.Buffer
		// A buffer is no terminal: ask mpb to draw anyway.
		b := newBars(context.Background(), &buf, mpb.WithAutoRefresh())
		driveBars(b)
		finishWithin(t, b, true, 10*time.Second)
		lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
		if last := lines[len(lines)-1]; !strings.Contains(last, "total") || !strings.Contains(last, "7.8 KiB / 7.8 KiB") {
			t.Errorf("last line drawn %q, want the total of 8000 bytes, complete; all:\n%q", last, buf.String())
		}
		if _, err := b.p.Add(0, nil); !errors.Is(err, mpb.ErrDone) {
			t.Errorf("a bar added after finish: %v, want %v", err, mpb.ErrDone)
		}
	})
	t.Run("failed", func(t *testing.T) {
		var buf bytes.Buffer
		b := newBars(context.Background(), &buf, mpb.WithAutoRefresh())
		driveBars(b)
		// A failed image never completes the total: finish must not wait
		// for it.
		b.Start(1, 1000)
		finishWithin(t, b, false, 2*time.Second)
		if _, err := b.p.Add(0, nil); !errors.Is(err, mpb.ErrDone) {
			t.Errorf("a bar added after finish: %v, want %v", err, mpb.ErrDone)
		}
		drawn := buf.String()
		time.Sleep(300 * time.Millisecond) // two of mpb's refresh periods
		if buf.String() != drawn {
			t.Errorf("bars drawn after finish(false):\n%q", strings.TrimPrefix(buf.String(), drawn))
		}
	})
}

// TestIsTerminal: progress bars are drawn only on a terminal, never into a
// buffer, a file or a pipe (a CI log).
func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, out := range map[string]io.Writer{"buffer": &bytes.Buffer{}, "file": f, "pipe": w} {
		if isTerminal(out) {
			t.Errorf("isTerminal(%s) = true", name)
		}
	}
}
