package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/bench/treegen"
	"github.com/heron-registry/heron/internal/s3test"
)

func TestCPUTime(t *testing.T) {
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the process's CPU time has grown by 50 ms: on a machine
	// that other work shares, that takes longer than 50 ms of wall time,
	// so the bound is generous; a cpuTime that does not count stays at
	// its first value and the loop ends at the bound.
	var after time.Duration
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && after-before < 50*time.Millisecond; {
		for spin := time.Now().Add(10 * time.Millisecond); time.Now().Before(spin); {
		}
		if after, err = cpuTime(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if after-before < 50*time.Millisecond {
		t.Fatalf("10 s of spinning counted as %s of CPU", after-before)
	}
	if _, err := cpuTime(-1); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

func TestCheckBlobLocation(t *testing.T) {
	img, err := treegen.NewImage(2048)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{img: img, repo: "library/app"}
	hex := img.LayerDigest.Encoded()
	for _, tc := range []struct {
		location, digest string
		ok               bool
	}{
		{"http://127.0.0.1:1/b/tree/blobs/sha256/" + hex, string(img.LayerDigest), true},
		{"http://127.0.0.1:1/b/tree/blobs/sha256/" + hex + "?X-Amz-Signature=ab&X-Amz-Expires=900", string(img.LayerDigest), true},
		{"http://127.0.0.1:1/b/tree/blobs/sha256/" + hex + "x", string(img.LayerDigest), false},
		{"http://127.0.0.1:1/b/tree/blobs/sha256/" + hex, "sha256:" + strings.Repeat("0", 64), false},
	} {
		resp := &http.Response{Header: http.Header{"Location": {tc.location}, "Docker-Content-Digest": {tc.digest}}}
		if err := checkBlobLocation(fx, resp, nil); (err == nil) != tc.ok {
			t.Errorf("%s, %s: error %v, want ok %v", tc.location, tc.digest, err, tc.ok)
		}
	}
}

func TestPublishRatios(t *testing.T) {
	p := &s3PublishResult{}
	p.runs[cmdHeron] = []s3Run{{wall: 2 * time.Second}, {wall: 4 * time.Second}, {wall: 5 * time.Second}}
	p.runs[cmdSDK] = []s3Run{{wall: 2 * time.Second}, {wall: 2 * time.Second}, {wall: 4 * time.Second}}
	byRound, rs := p.ratios(cmdSDK)
	if !slices.Equal(byRound, []float64{1, 0.5, 0.8}) || !slices.Equal(rs, []float64{0.5, 0.8, 1}) || medianFloat(rs) != 0.8 {
		t.Fatalf("ratios %v, sorted %v", byRound, rs)
	}
}

// TestBucket starts versitygw as the driver does and checks that a
// prefix is deleted whole, and nothing else. It needs versitygw (make
// tools or bench/install.sh).
func TestBucket(t *testing.T) {
	bin, err := s3test.Find()
	if err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	b, err := startBucket(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.proc.stop()
	c := b.Client()
	keys := []string{"publish/1-heron/blobs/sha256/a", "publish/1-heron/heron-layout.json", "publish/1-heronx/a", "publish/2-sdk/a"}
	for _, k := range keys {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(k), Body: bytes.NewReader([]byte(k))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.deletePrefix(ctx, "publish/1-heron"); err != nil {
		t.Fatal(err)
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, o := range out.Contents {
		left = append(left, aws.ToString(o.Key))
	}
	if strings.Join(left, " ") != "publish/1-heronx/a publish/2-sdk/a" {
		t.Fatalf("left %v", left)
	}
	if u, err := url.Parse(b.Endpoint); err != nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("endpoint %q", b.Endpoint)
	}
	if env := strings.Join(b.env(), "\n"); !strings.Contains(env, "AWS_ACCESS_KEY_ID="+b.AccessKey) {
		t.Fatal("env has no credentials")
	}
}
