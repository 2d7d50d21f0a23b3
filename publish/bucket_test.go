package publish_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/internal/s3test"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/opencontainers/go-digest"
)

// These tests publish into a real S3-compatible server (versitygw, started
// by internal/s3test): a bucket has no locks, so every read-modify-write
// goes by conditional write (see swap.go), and racing writers must lose
// nothing.

// openBucket starts versitygw and opens a store of a fresh prefix of its
// bucket.
func openBucket(t *testing.T) (*s3test.Server, *s3store.Store) {
	t.Helper()
	srv := s3test.Start(t)
	st, err := s3store.Open(context.Background(), srv.URL("tree"), s3store.Options{
		Endpoint:    srv.Endpoint,
		Region:      s3test.Region,
		Credentials: srv.Credentials(),
		PartSize:    s3store.MinPartSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, st
}

// verifyBucket checks the tree in st as heron verify does.
func verifyBucket(t *testing.T, st publish.Sink) {
	t.Helper()
	rep, err := publish.VerifyTree(context.Background(), st, publish.VerifyOptions{Deep: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("verify: %s: %s", p.Key, p.Message)
	}
}

func TestBucketConcurrentPublishers(t *testing.T) {
	_, st := openBucket(t)
	dir := t.TempDir()
	const n = 8
	spec, digests := imageSet(t, filepath.Join(dir, "src"), n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// A publisher each, as if on machines of their own.
			p := publish.New(st, publish.WithCatalogShardSize(3))
			if _, err := publishWith(t, p, spec(i), nil, fmt.Sprintf("shared:t%d", i), fmt.Sprintf("own%d:latest", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ctx := context.Background()
	shared, err := publish.ReadRepository(ctx, st, "shared")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if d := shared.Tags[fmt.Sprintf("t%d", i)]; d != digests[i] {
			t.Errorf("shared:t%d = %q, want %s", i, d, digests[i])
		}
		own, err := publish.ReadRepository(ctx, st, fmt.Sprintf("own%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if d := own.Tags["latest"]; d != digests[i] {
			t.Errorf("own%d:latest = %q, want %s", i, d, digests[i])
		}
	}
	if len(shared.Tags) != n {
		t.Errorf("shared has %d tags, want %d", len(shared.Tags), n)
	}
	names, err := publish.CatalogNames(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != n+1 {
		t.Errorf("catalog %v: want %d names", names, n+1)
	}
	verifyBucket(t, st)
}

// TestBucketConcurrentTagsSharded races edits of a repository whose tags
// are in shards: the repository file and the shards it names are
// rewritten by every edit, and an edit that read a file another writer
// replaced (whose shards may then be gone) starts again.
func TestBucketConcurrentTagsSharded(t *testing.T) {
	_, st := openBucket(t)
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 1)
	p := publish.New(st)
	if _, err := publishWith(t, p, spec(0), nil, "big:t0"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bulk := make([]string, 0, 2*layout.InlineMax)
	for i := range 2 * layout.InlineMax {
		bulk = append(bulk, fmt.Sprintf("bulk-%05d", i))
	}
	if _, err := p.Tag(ctx, "big", "t0", bulk...); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 3
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			p := publish.New(st)
			for i := range each {
				tag := fmt.Sprintf("w%d-%d", w, i)
				if _, err := p.Tag(ctx, "big", "t0", tag); err != nil {
					errs <- fmt.Errorf("tag %s: %w", tag, err)
				}
			}
			// And one removal each, of a bulk tag in a shard.
			if _, _, err := p.RemoveTags(ctx, "big", fmt.Sprintf("bulk-%05d", w*400)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, err := publish.ReadRepository(ctx, st, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Shards(layout.TagKind)) == 0 {
		t.Fatal("the repository's tags are not in shards: the test does not test what it says")
	}
	want := 1 + len(bulk) + writers*each - writers
	if len(r.Tags) != want {
		t.Errorf("%d tags, want %d", len(r.Tags), want)
	}
	for w := range writers {
		for i := range each {
			if d := r.Tags[fmt.Sprintf("w%d-%d", w, i)]; d != digests[0] {
				t.Errorf("w%d-%d = %q, want %s", w, i, d, digests[0])
			}
		}
		if _, ok := r.Tags[fmt.Sprintf("bulk-%05d", w*400)]; ok {
			t.Errorf("bulk-%05d is still there", w*400)
		}
	}
	verifyBucket(t, st)
}

// TestBucketRemoveAndGC removes a repository from a bucket and collects
// what only it referenced; the other repository keeps everything.
func TestBucketRemoveAndGC(t *testing.T) {
	_, st := openBucket(t)
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 2)
	p := publish.New(st)
	if _, err := publishWith(t, p, spec(0), nil, "keep:v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := publishWith(t, p, spec(1), nil, "drop:v1"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.RemoveRepositories(ctx, "drop"); err != nil {
		t.Fatal(err)
	}
	// The clock of the server and ours may differ a little: a grace of
	// zero with a cutoff a moment in the future.
	time.Sleep(1100 * time.Millisecond)
	res, err := p.GC(ctx, publish.GCOptions{Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	deleted := map[string]bool{}
	for _, it := range res.Deleted {
		deleted[it.Key] = true
	}
	dropKey, err := layout.ManifestKey(digests[1])
	if err != nil {
		t.Fatal(err)
	}
	if !deleted[dropKey] {
		t.Errorf("gc did not delete %s (deleted %v)", dropKey, res.Deleted)
	}
	if _, err := st.Stat(ctx, dropKey); err == nil {
		t.Errorf("%s is still in the bucket", dropKey)
	}
	keepKey, _ := layout.ManifestKey(digests[0])
	if deleted[keepKey] {
		t.Errorf("gc deleted %s, which keep:v1 is", keepKey)
	}
	names, err := publish.CatalogNames(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names) != "[keep]" {
		t.Errorf("catalog %v, want [keep]", names)
	}
	verifyBucket(t, st)
}

// TestBucketObjectHeaders checks what a CDN or the bucket itself would
// serve: every object with its exact Content-Type (a manifest's media
// type, application/octet-stream for other blobs), and a long
// Cache-Control on content-addressed objects only.
func TestBucketObjectHeaders(t *testing.T) {
	srv, st := openBucket(t)
	dir := t.TempDir()
	img := ociImage(t, 7, 1)
	src := writeLayout(t, filepath.Join(dir, "src"), entry{item: img, ref: "v1"})
	p := publish.New(st)
	if _, err := publishWith(t, p, "oci:"+src+":v1", nil, "app:v1"); err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	repoKey, _ := layout.RepositoryKey("app")
	manifestKey, _ := layout.ManifestKey(mustDigest(t, img))
	layerKey, _ := layout.BlobKey(digest.Digest(m.Layers[0].Digest.String()))
	for _, tc := range []struct {
		key, contentType, cacheControl string
	}{
		{manifestKey, string(mt), s3store.CacheImmutable},
		{layerKey, "application/octet-stream", s3store.CacheImmutable},
		{repoKey, "application/json", s3store.CacheMutable},
		{layout.CatalogIndexKey(), "application/json", s3store.CacheMutable},
	} {
		out, err := srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{
			Bucket: aws.String(srv.Bucket), Key: aws.String("tree/" + tc.key),
		})
		if err != nil {
			t.Fatalf("head %s: %v", tc.key, err)
		}
		if got := aws.ToString(out.ContentType); got != tc.contentType {
			t.Errorf("%s: Content-Type %q, want %q", tc.key, got, tc.contentType)
		}
		if got := aws.ToString(out.CacheControl); got != tc.cacheControl {
			t.Errorf("%s: Cache-Control %q, want %q", tc.key, got, tc.cacheControl)
		}
	}
}

// TestBucketFiller: the blobs of an on_demand publish into a bucket are
// fetched and stored by the Filler (heron serve's writer), and marked
// stored with a conditional write.
func TestBucketFiller(t *testing.T) {
	_, st := openBucket(t)
	u := newUpstream(t, false)
	img := ociImage(t, 400, 2)
	u.push("upstream/lazy:v1", img)
	p := publish.New(st, publish.WithPolicy(publish.PolicyOnDemand))
	if _, err := publishWith(t, p, "docker://"+u.host+"/upstream/lazy:v1", fast(), "app:v1"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := publish.NewFiller(publish.New(st), fast()...)
	r, err := publish.ReadRepository(ctx, st, "app")
	if err != nil {
		t.Fatal(err)
	}
	lazy := 0
	for d, b := range r.Blobs {
		if b.IsStored() {
			continue
		}
		lazy++
		rc, err := f.OpenBlob(ctx, "app", d, b.Size)
		if err != nil {
			t.Fatal(err)
		}
		err = f.StoreBlob(ctx, "app", d, b.Size, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if lazy == 0 {
		t.Fatal("nothing was left upstream: the test tests nothing")
	}
	r, err = publish.ReadRepository(ctx, st, "app")
	if err != nil {
		t.Fatal(err)
	}
	for d, b := range r.Blobs {
		if !b.IsStored() {
			t.Errorf("blob %s still listed as not stored", d)
		}
	}
	verifyBucket(t, st)
}
