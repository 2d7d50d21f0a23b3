package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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

// TestBars drives the progress bars from several goroutines, as publish
// does, into a buffer: they must neither race nor hang, and end with the
// total.
func TestBars(t *testing.T) {
	for _, ok := range []bool{true, false} {
		var buf bytes.Buffer
		// A buffer is no terminal: ask mpb to draw anyway.
		b := newBars(context.Background(), &buf, mpb.WithAutoRefresh())
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
		b.finish(ok)
		if ok && !strings.Contains(buf.String(), "total") {
			t.Errorf("no total drawn:\n%q", buf.String())
		}
	}
}
