//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/heron-registry/heron/internal/heronproc"
	"github.com/heron-registry/heron/internal/s3test"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/redirector"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The tests of a tree in an S3-compatible bucket: each starts its own
// versitygw (internal/s3test: a real S3 server on 127.0.0.1, a fresh
// bucket, stopped when the test ends) and drives the heron binary with
// --root s3://BUCKET/PREFIX and the SDK's standard environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
// AWS_ENDPOINT_URL_S3). TestBucketPull runs the real clients of TestPull
// against heron serve of the bucket, with blobs redirected to presigned
// URLs and with --serve-blobs.

// bucketTimeout bounds one heron command against the bucket.
const bucketTimeout = 2 * time.Minute

// bucket is a versitygw with one bucket, a tap in front of it (for the
// commands that are told --s3-endpoint tapURL, so that the test sees
// their requests), and the environment heron runs with.
type bucket struct {
	srv *s3test.Server
	tap *tap
	// environ is the test binary's environment without its AWS_ variables,
	// plus the server's (s3test.Server.Env).
	environ []string
}

// startBucket starts versitygw and a tap in front of it. Without
// versitygw the test is skipped (fails with CI=true), as s3test.Start
// does; it counts in the summary line either way.
func startBucket(t *testing.T) *bucket {
	t.Helper()
	srv := s3test.Start(t)
	tp, err := startTap(strings.TrimPrefix(srv.Endpoint, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.close() })
	b := &bucket{srv: srv, tap: tp}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			b.environ = append(b.environ, kv)
		}
	}
	b.environ = append(b.environ, srv.Env()...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("versitygw log, last lines:\n%s", lastLines(srv.Log(), 15))
		}
	})
	return b
}

// needBucket skips the test (fails it with CI=true) when versitygw is not
// installed, counting it in the summary line: for the tests that count
// their subtests, which would otherwise not count at all.
func needBucket(t *testing.T) {
	t.Helper()
	if _, err := s3test.Find(); err != nil {
		countResult(t)
		if suite.ci {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// url is the s3:// root of prefix in the bucket.
func (b *bucket) url(prefix string) string { return b.srv.URL(prefix) }

// tapURL is the endpoint that goes through the tap.
func (b *bucket) tapURL() string { return "http://" + b.tap.addr() }

// key is the object key of a tree key under prefix.
func key(prefix, k string) string { return prefix + "/" + k }

// command returns the heron command for args, with the bucket's
// environment; it dies with the test binary.
func (b *bucket) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, suite.heron, args...)
	cmd.Env = b.environ
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs heron with args and returns its standard output and error and
// its error (an *exec.ExitError for a non-zero exit).
func (b *bucket) run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bucketTimeout)
	defer cancel()
	cmd := b.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("$ heron %s  (%s)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return stdout.String(), stderr.String(), err
}

// heron runs heron with args, fails the test unless it exits 0, and
// returns its standard output.
func (b *bucket) heron(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := b.run(t, args...)
	if err != nil {
		t.Fatalf("heron %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// head returns the object's metadata, or nil when it does not exist.
func (b *bucket) head(t *testing.T, k string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := b.srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b.srv.Bucket), Key: aws.String(k)})
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") || strings.Contains(err.Error(), "404") {
			return nil
		}
		t.Fatalf("HEAD %s: %v", k, err)
	}
	return out
}

// get returns the object's bytes.
func (b *bucket) get(t *testing.T, k string) []byte {
	t.Helper()
	out, err := b.srv.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(b.srv.Bucket), Key: aws.String(k)})
	if err != nil {
		t.Fatalf("GET %s: %v", k, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", k, err)
	}
	return data
}

// startServe starts heron serve --root root extra... with the bucket's
// environment; it is stopped (by its PID) when the test ends.
func (b *bucket) startServe(t *testing.T, name, root string, extra ...string) *heronproc.Server {
	t.Helper()
	command := func(args ...string) *exec.Cmd {
		cmd := exec.Command(suite.heron, args...)
		cmd.Env = b.environ
		return cmd
	}
	p, err := heronproc.StartServe("heron serve ("+name+")", command, root, 30*time.Second, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	return p
}

// startMode starts heron serve of the tree at root as one of TestPull's
// modes, with a tap of its own in front; with bucket set, blobs are
// redirected to presigned URLs through the bucket's tap.
func (b *bucket) startMode(t *testing.T, name, root string, presign bool, extra ...string) *mode {
	t.Helper()
	p := b.startServe(t, name, root, extra...)
	tp, err := startTap(p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.close() })
	md := &mode{name: name, heron: p, tap: tp}
	if presign {
		u, err := url.Parse(root)
		if err != nil {
			t.Fatal(err)
		}
		md.bucket = &presigned{tap: b.tap, base: b.tapURL() + "/" + u.Host + u.Path}
	}
	return md
}

// presigned is the bucket side of a mode whose blobs heron redirects to
// presigned URLs: the tap in front of versitygw (heron serve is given its
// address as --s3-endpoint, so that the URLs it signs point there) and the
// URL of the tree's folder in the bucket, path-style.
type presigned struct {
	tap  *tap
	base string // http://TAP/BUCKET/PREFIX
}

// checkRedirect checks heron's answer to a blob GET: a 307 to a presigned
// GET of blobs/<alg>/<hex> in the tree's folder. It returns the request
// URI the client should then send to the bucket, or "".
func (p *presigned) checkRedirect(t *testing.T, e exchange, alg, hex string) string {
	t.Helper()
	if e.Status != http.StatusTemporaryRedirect {
		t.Errorf("presigned mode: blob GET not redirected with 307 (heron served %d body bytes itself): %s", e.BodyBytes, e)
		return ""
	}
	want := p.base + "/blobs/" + alg + "/" + hex
	u, err := url.Parse(e.Location)
	if err != nil || u.Scheme+"://"+u.Host+u.Path != want {
		t.Errorf("redirect to %q, want a presigned URL of %s: %s", e.Location, want, e)
		return ""
	}
	q := u.Query()
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature"} {
		if q.Get(k) == "" {
			t.Errorf("redirect to %q: not presigned (no %s)", e.Location, k)
		}
	}
	if got := q.Get("X-Amz-Expires"); got != presignSeconds {
		t.Errorf("redirect to %q: X-Amz-Expires=%s, want %s (--presign-expiry %s)", e.Location, got, presignSeconds, presignExpiry)
	}
	return strings.TrimPrefix(e.Location, "http://"+u.Host)
}

// checkFetched checks that the client fetched every URI heron redirected
// it to from the bucket, and got bytes. The tap records an exchange once
// it has read the response whole, which may be a moment after the client
// has: it waits for them, at most 10 s. (It cannot wait for the tap to be
// quiet, as runPull does for heron's: heron serve keeps connections of its
// own to the bucket open through it.)
func (p *presigned) checkFetched(t *testing.T, redirected []string, mark int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		served := map[string]bool{}
		for _, e := range p.tap.since(mark) {
			if e.Method == "GET" && (e.Status == 200 || e.Status == 206) && e.BodyBytes > 0 {
				served[e.URI] = true
			}
		}
		var missing []string
		for _, uri := range redirected {
			if !served[uri] {
				missing = append(missing, uri)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, uri := range missing {
				t.Errorf("heron redirected to %s but the client never fetched it from the bucket", uri)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// presignExpiry is the --presign-expiry of TestBucketPull's presigned
// mode (not the default, to see the flag reach the URLs).
const (
	presignExpiry  = 5 * time.Minute
	presignSeconds = "300"
)

// TestBucketPull publishes every fixture into a bucket and pulls each with
// every client (TestPull's table) from heron serve --root s3://…, twice:
// with blobs redirected (307) to URLs the bucket signs, which the clients
// follow to versitygw, and with --serve-blobs, heron streaming them.
func TestBucketPull(t *testing.T) {
	needBucket(t)
	b := startBucket(t)
	root := b.url("tree")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := suite.publishTo(ctx, root, b.environ); err != nil {
		t.Fatal(err)
	}
	t.Logf("published %d fixtures into %s in %s", len(suite.fixtures.Fixtures), root, time.Since(start).Round(time.Millisecond))
	modes := []*mode{
		b.startMode(t, "presigned", root, true, "--s3-endpoint", b.tapURL(), "--presign-expiry", presignExpiry.String()),
		b.startMode(t, "serve-blobs", root, false, "--serve-blobs"),
	}
	pullAll(t, modes)
}

// TestBucketPublish publishes into a bucket from every kind of source and
// from a batch file, and checks the objects, heron ls and heron verify;
// the batch runs twice, the second time writing nothing.
func TestBucketPublish(t *testing.T) {
	needBucket(t)
	b := startBucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("sources", func(t *testing.T) {
		countResult(t)
		root := b.url("tree")
		if err := suite.publishTo(ctx, root, b.environ); err != nil {
			t.Fatal(err)
		}
		checkListing(t, b, root)
		checkObjects(t, b, "tree")
		b.heron(t, "verify", "--root", root, "--deep")
	})

	t.Run("batch", func(t *testing.T) {
		countResult(t)
		root := b.url("batch")
		file := writeBatchFile(t)
		tags := len(suite.fixtures.Fixtures) // one tag each
		first := runBatch(t, b, root, file, "")
		if first.TagsPublished != tags || first.RepositoriesFailed != 0 || first.BlobsWritten == 0 || !first.CatalogChanged {
			t.Errorf("first run: %+v, want %d tags published, blobs written, the catalog changed", first, tags)
		}
		checkListing(t, b, root)
		checkObjects(t, b, "batch")
		b.heron(t, "verify", "--root", root, "--deep")

		// The second run, through the tap: nothing to write, and it writes
		// nothing (no PUT, POST or DELETE reaches the bucket).
		b.tap.quiet()
		mark := b.tap.mark()
		second := runBatch(t, b, root, file, b.tapURL())
		if second.TagsPublished != 0 || second.TagsUnchanged != tags || second.BlobsWritten != 0 || second.BytesWritten != 0 || second.CatalogChanged {
			t.Errorf("second run: %+v, want %d tags unchanged and nothing written", second, tags)
		}
		b.tap.quiet()
		exs := b.tap.since(mark)
		reads := 0
		for _, e := range exs {
			switch e.Method {
			case "GET", "HEAD":
				reads++
			default:
				t.Errorf("second run wrote to the bucket: %s", e)
			}
		}
		if len(exs) == 0 {
			t.Errorf("second run: no request went through the tap (--s3-endpoint %s ignored?)", b.tapURL())
		}
		t.Logf("second run: %d requests to the bucket, all reads", reads)
	})
}

// checkListing checks heron ls of the tree at root: every fixture's
// repository in the catalog, and its tag naming the fixture's digest.
func checkListing(t *testing.T, b *bucket, root string) {
	t.Helper()
	var repos []string
	for i := range suite.fixtures.Fixtures {
		repos = append(repos, targetFor(&suite.fixtures.Fixtures[i]).repo)
	}
	slices.Sort(repos)
	repos = slices.Compact(repos)
	if got := lines([]byte(b.heron(t, "ls", "--root", root))); !slices.Equal(got, repos) {
		t.Errorf("heron ls --root %s: %q, want %q", root, got, repos)
	}
	for i := range suite.fixtures.Fixtures {
		f := &suite.fixtures.Fixtures[i]
		tg := targetFor(f)
		got := lines([]byte(b.heron(t, "ls", "--root", root, tg.repo)))
		if want := tg.tag + "\t" + f.Digest.String(); !slices.Contains(got, want) {
			t.Errorf("heron ls --root %s %s: %q, want a line %q", root, tg.repo, got, want)
		}
	}
}

// checkObjects checks the objects of the fixtures in the tree under
// prefix: each manifest with its media type as Content-Type, each blob as
// application/octet-stream, both with their size and an immutable
// Cache-Control; repository files no-cache.
func checkObjects(t *testing.T, b *bucket, prefix string) {
	t.Helper()
	check := func(d digest.Digest, size int64, ctype, cache string) {
		k, err := layout.BlobKey(d)
		if err != nil {
			t.Fatal(err)
		}
		h := b.head(t, key(prefix, k))
		switch {
		case h == nil:
			t.Errorf("%s: no such object", key(prefix, k))
		case aws.ToString(h.ContentType) != ctype || aws.ToString(h.CacheControl) != cache || (size >= 0 && aws.ToInt64(h.ContentLength) != size):
			t.Errorf("%s: Content-Type %q, Cache-Control %q, %d bytes; want %q, %q, %d bytes", key(prefix, k),
				aws.ToString(h.ContentType), aws.ToString(h.CacheControl), aws.ToInt64(h.ContentLength), ctype, cache, size)
		}
	}
	for i := range suite.fixtures.Fixtures {
		f := &suite.fixtures.Fixtures[i]
		sizes := sizesOf(f.Content, map[digest.Digest]int64{})
		check(f.Digest, f.Size, f.MediaType, s3store.CacheImmutable)
		for _, ch := range f.Children {
			check(ch.Digest, ch.Size, ch.MediaType, s3store.CacheImmutable)
		}
		for _, d := range f.Blobs {
			check(d, sizeOr(sizes, d), "application/octet-stream", s3store.CacheImmutable)
		}
		rk, err := layout.RepositoryKey(targetFor(f).repo)
		if err != nil {
			t.Fatal(err)
		}
		if h := b.head(t, key(prefix, rk)); h == nil || aws.ToString(h.CacheControl) != s3store.CacheMutable {
			t.Errorf("%s: missing, or Cache-Control not %q", key(prefix, rk), s3store.CacheMutable)
		}
	}
}

// writeBatchFile writes a batch file (JSON, which is YAML) publishing
// every fixture where publishAll does, and returns its path.
func writeBatchFile(t *testing.T) string {
	t.Helper()
	type repo struct {
		Name string            `json:"name"`
		Tags map[string]string `json:"tags"`
	}
	byName := map[string]*repo{}
	var file struct {
		Repositories []*repo `json:"repositories"`
	}
	// Subjects before the referrers that point at them, as publishAll.
	var fs []*fixtures.Fixture
	for i := range suite.fixtures.Fixtures {
		fs = append(fs, &suite.fixtures.Fixtures[i])
	}
	slices.SortStableFunc(fs, func(a, b *fixtures.Fixture) int {
		switch {
		case a.Subject == nil && b.Subject != nil:
			return -1
		case a.Subject != nil && b.Subject == nil:
			return 1
		}
		return 0
	})
	for _, f := range fs {
		tg := targetFor(f)
		r := byName[tg.repo]
		if r == nil {
			r = &repo{Name: tg.repo, Tags: map[string]string{}}
			byName[tg.repo] = r
			file.Repositories = append(file.Repositories, r)
		}
		r.Tags[tg.tag] = f.SourceIn(suite.fixDir)
	}
	data, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "batch.yaml")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// batchSummary is what heron publish --batch -o json prints (the fields
// the test reads).
type batchSummary struct {
	TagsPublished      int   `json:"tagsPublished"`
	TagsUnchanged      int   `json:"tagsUnchanged"`
	RepositoriesFailed int   `json:"repositoriesFailed"`
	BlobsWritten       int   `json:"blobsWritten"`
	BytesWritten       int64 `json:"bytesWritten"`
	CatalogChanged     bool  `json:"catalogChanged"`
}

// runBatch runs heron publish --batch file into root (through endpoint,
// when not "") and returns its summary.
func runBatch(t *testing.T, b *bucket, root, file, endpoint string) batchSummary {
	t.Helper()
	args := []string{"publish", "--root", root, "--batch", file, "-o", "json", "-q"}
	if endpoint != "" {
		args = append(args, "--s3-endpoint", endpoint)
	}
	out := b.heron(t, args...)
	var s batchSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("heron publish --batch -o json: %v\n%s", err, out)
	}
	return s
}

// TestBucketMaintain runs heron tag, rm, gc and verify against a bucket:
// tags are added and removed, a removed repository's content is deleted by
// gc once older than the grace period and what is referenced is kept, a
// clean tree verifies, and a corrupted blob and a corrupted manifest are
// found.
func TestBucketMaintain(t *testing.T) {
	countResult(t)
	b := startBucket(t)
	const prefix = "maint"
	root := b.url(prefix)
	keep := mustFixture(t, fixtures.NameOCIImage)
	drop := mustFixture(t, fixtures.NameOCIIndex)
	b.heron(t, "publish", keep.SourceIn(suite.fixDir), "--root", root, "--to", "m/keep:latest", "-q")
	b.heron(t, "publish", drop.SourceIn(suite.fixDir), "--root", root, "--to", "m/drop:latest", "-q")

	// tag and rm of a tag.
	b.heron(t, "tag", "--root", root, "m/keep:latest", "v1", "v2")
	wantTags := func(want ...string) {
		t.Helper()
		var w []string
		for _, tag := range want {
			w = append(w, tag+"\t"+keep.Digest.String())
		}
		if got := lines([]byte(b.heron(t, "ls", "--root", root, "m/keep"))); !slices.Equal(got, w) {
			t.Errorf("heron ls m/keep: %q, want %q", got, w)
		}
	}
	wantTags("latest", "v1", "v2")
	b.heron(t, "rm", "--root", root, "m/keep:v2")
	wantTags("latest", "v1")

	// rm of a repository, then gc: first with the default grace (the
	// content is young, nothing goes), then with none.
	b.heron(t, "rm", "--root", root, "m/drop")
	if got := lines([]byte(b.heron(t, "ls", "--root", root))); !slices.Equal(got, []string{"m/keep"}) {
		t.Errorf("heron ls after rm m/drop: %q, want [m/keep]", got)
	}
	keepKeys := contentKeys(t, keep)
	var gone []string
	for _, k := range contentKeys(t, drop) {
		if !slices.Contains(keepKeys, k) {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		t.Fatalf("%s and %s share all their content: nothing for gc to delete", keep.Name, drop.Name)
	}
	res := runGC(t, b, root)
	if res.Files != 0 || res.Young < len(gone) {
		t.Errorf("gc with the default grace: deleted %d file(s), kept %d young; want none deleted, at least %d kept", res.Files, res.Young, len(gone))
	}
	res = runGC(t, b, root, "--grace", "0s")
	var deleted []string
	for _, it := range res.Deleted {
		deleted = append(deleted, it.Key)
		if slices.Contains(keepKeys, it.Key) {
			t.Errorf("gc deleted %s, which m/keep references", it.Key)
		}
	}
	for _, k := range gone {
		if !slices.Contains(deleted, k) {
			t.Errorf("gc --grace 0s did not delete %s (only m/drop referenced it); deleted %q", k, deleted)
		}
		if b.head(t, key(prefix, k)) != nil {
			t.Errorf("%s is still in the bucket after gc", key(prefix, k))
		}
	}
	for _, k := range keepKeys {
		if b.head(t, key(prefix, k)) == nil {
			t.Errorf("%s, referenced by m/keep, is gone after gc", key(prefix, k))
		}
	}
	if res = runGC(t, b, root, "--grace", "0s"); res.Files != 0 {
		t.Errorf("a second gc deleted %d file(s)", res.Files)
	}

	// verify: clean, then a layer, then the manifest corrupted in the
	// bucket's own files (the same size, so that only hashing tells).
	b.heron(t, "verify", "--root", root, "--deep")
	layer := keep.Layers[0].Digest
	layerKey, _ := layout.BlobKey(layer)
	srv := b.startServe(t, "serve-blobs", root, "--serve-blobs", "--log-level", "warn")
	blobURL := srv.Base() + "/v2/m/keep/blobs/" + layer.String()
	if n, err := getBlob(blobURL, layer); err != nil {
		t.Errorf("GET %s with --serve-blobs: %v (%d bytes)", blobURL, err, n)
	}
	restore := corrupt(t, b, key(prefix, layerKey))
	b.heron(t, "verify", "--root", root) // sizes only: passes
	expectVerifyProblem(t, b, root, layerKey, "--deep")
	// heron serve --serve-blobs verifies what it streams: the client must
	// not receive the corrupted layer whole and without an error.
	if n, err := getBlob(blobURL, layer); err == nil {
		t.Errorf("GET %s with --serve-blobs, the object corrupted: %d bytes and no error", blobURL, n)
	} else {
		t.Logf("GET %s with --serve-blobs, the object corrupted: %v after %d bytes", blobURL, err, n)
	}
	restore()
	b.heron(t, "verify", "--root", root, "--deep")
	manifestKey, _ := layout.BlobKey(keep.Digest)
	restore = corrupt(t, b, key(prefix, manifestKey))
	expectVerifyProblem(t, b, root, manifestKey)
	restore()
	b.heron(t, "verify", "--root", root, "--deep")
}

// getBlob GETs a blob and returns how many bytes arrived, and an error
// unless it arrived whole with a 200 and the bytes of d.
func getBlob(u string, d digest.Digest) (int64, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	v := d.Verifier()
	n, err := io.Copy(v, resp.Body)
	switch {
	case err != nil:
		return n, fmt.Errorf("%s, then %w", resp.Status, err)
	case resp.StatusCode != http.StatusOK:
		return n, fmt.Errorf("%s", resp.Status)
	case !v.Verified():
		return n, fmt.Errorf("%s, bytes that do not match %s", resp.Status, d)
	}
	return n, nil
}

// mustFixture returns the named fixture.
func mustFixture(t *testing.T, name string) *fixtures.Fixture {
	t.Helper()
	f, ok := suite.fixtures.Fixture(name)
	if !ok {
		t.Fatalf("no fixture %s", name)
	}
	return f
}

// contentKeys returns the keys of a fixture's manifests and blobs, but for
// the well-known ones, which heron always serves.
func contentKeys(t *testing.T, f *fixtures.Fixture) []string {
	t.Helper()
	var keys []string
	for _, d := range append(slices.Clone(f.Manifests), f.Blobs...) {
		if wellKnownBlobs[d.String()] {
			continue
		}
		k, err := layout.BlobKey(d)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// gcResult is what heron gc -o json prints (the fields the test reads).
type gcResult struct {
	Deleted []struct {
		Key  string `json:"key"`
		Kind string `json:"kind"`
	} `json:"deleted"`
	Files int `json:"files"`
	Young int `json:"young"`
}

func runGC(t *testing.T, b *bucket, root string, extra ...string) gcResult {
	t.Helper()
	out := b.heron(t, append([]string{"gc", "--root", root, "-o", "json"}, extra...)...)
	var r gcResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("heron gc -o json: %v\n%s", err, out)
	}
	return r
}

// corrupt flips one byte of the object in versitygw's file of it, and
// returns a function that puts it back.
func corrupt(t *testing.T, b *bucket, objectKey string) func() {
	t.Helper()
	p := b.srv.ObjectPath(objectKey)
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	bad := slices.Clone(orig)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// expectVerifyProblem runs heron verify and checks it fails, naming the
// object of k as not matching its digest.
func expectVerifyProblem(t *testing.T, b *bucket, root, k string, extra ...string) {
	t.Helper()
	args := append([]string{"verify", "--root", root}, extra...)
	out, errOut, err := b.run(t, args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Errorf("heron %s: %v, want a non-zero exit\n%s%s", strings.Join(args, " "), err, out, errOut)
		return
	}
	want := root + "/" + k + ": "
	if !strings.Contains(out, want) || !strings.Contains(out, "does not match") {
		t.Errorf("heron %s: output lacks %q ... does not match:\n%s%s", strings.Join(args, " "), want, out, errOut)
	}
}

// raceRounds is how many times TestBucketRace starts its two writers
// together.
const raceRounds = 5

// TestBucketRace starts two heron publish processes at the same moment
// into one repository of a bucket, with different tags (and images),
// raceRounds times, then two heron tag processes as many times; every
// command must succeed and, afterwards, every tag be there, heron verify
// pass and the repository file parse. Their requests go through the tap,
// which counts the conditional writes versitygw refused (412): how often
// a writer lost and tried again.
func TestBucketRace(t *testing.T) {
	countResult(t)
	b := startBucket(t)
	const repo = "race/app"
	root := b.url("race")
	a, c := mustFixture(t, fixtures.NameOCIImage), mustFixture(t, fixtures.NameDockerImage)
	want := map[string]digest.Digest{}
	mark := b.tap.mark()
	together := func(args1, args2 []string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), bucketTimeout)
		defer cancel()
		cmds := []*exec.Cmd{b.command(ctx, args1...), b.command(ctx, args2...)}
		outs := make([]bytes.Buffer, 2)
		for i, cmd := range cmds {
			cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		}
		start := time.Now()
		for _, cmd := range cmds {
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("heron %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, outs[i].String())
			}
		}
		t.Logf("$ heron %s & heron %s  (%s)", strings.Join(cmds[0].Args[1:], " "), strings.Join(cmds[1].Args[1:], " "), time.Since(start).Round(time.Millisecond))
	}
	ep := []string{"--root", root, "--s3-endpoint", b.tapURL()}
	for i := range raceRounds {
		ta, tc := fmt.Sprintf("a-%d", i), fmt.Sprintf("c-%d", i)
		together(
			append([]string{"publish", a.SourceIn(suite.fixDir), "-q", "--to", repo + ":" + ta}, ep...),
			append([]string{"publish", c.SourceIn(suite.fixDir), "-q", "--to", repo + ":" + tc}, ep...))
		want[ta], want[tc] = a.Digest, c.Digest
	}
	for i := range raceRounds {
		ta, tc := fmt.Sprintf("ta-%d", i), fmt.Sprintf("tc-%d", i)
		together(
			append([]string{"tag", repo + ":a-0", ta}, ep...),
			append([]string{"tag", repo + ":c-0", tc}, ep...))
		want[ta], want[tc] = a.Digest, c.Digest
	}
	b.tap.quiet()
	lost := 0
	for _, e := range b.tap.since(mark) {
		if e.Status == http.StatusPreconditionFailed {
			lost++
		}
	}
	t.Logf("%d rounds of two publishes and %d of two tags: versitygw refused %d conditional write(s) (412), each tried again", raceRounds, raceRounds, lost)

	var wantLines []string
	for tag, d := range want {
		wantLines = append(wantLines, tag+"\t"+d.String())
	}
	slices.Sort(wantLines)
	if got := lines([]byte(b.heron(t, "ls", "--root", root, repo))); !slices.Equal(got, wantLines) {
		t.Errorf("heron ls %s: %q, want %q", repo, got, wantLines)
	}
	b.heron(t, "verify", "--root", root, "--deep")
	rk, err := layout.RepositoryKey(repo)
	if err != nil {
		t.Fatal(err)
	}
	r, err := layout.DecodeRepositoryFile(repo, b.get(t, key("race", rk)))
	if err != nil {
		t.Fatalf("the repository file does not parse: %v", err)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("the repository file is not valid: %v", err)
	}
	if len(r.Tags) != len(want) {
		t.Errorf("the repository file has %d tags, want %d", len(r.Tags), len(want))
	}
	for tag, d := range want {
		if r.Tags[tag] != d {
			t.Errorf("the repository file has %s → %s, want %s", tag, r.Tags[tag], d)
		}
	}
	if got := lines([]byte(b.heron(t, "ls", "--root", root))); !slices.Equal(got, []string{repo}) {
		t.Errorf("heron ls: %q, want [%s]", got, repo)
	}
}

// TestBucketErrors checks that a missing bucket, refused credentials and
// an endpoint that does not answer make heron publish and heron serve exit
// non-zero with one line on standard error that says so, and no SDK text.
func TestBucketErrors(t *testing.T) {
	needBucket(t)
	b := startBucket(t)
	src := mustFixture(t, fixtures.NameOCIImage).SourceIn(suite.fixDir)
	down, err := heronproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		root string
		env  []string // added to the bucket's
		args []string // added to the command's
		want string
	}{
		{name: "missing bucket", root: "s3://heron-missing-" + b.srv.Bucket + "/tree", want: "does not exist"},
		{name: "wrong secret", root: b.url("tree"), env: []string{"AWS_SECRET_ACCESS_KEY=not-" + b.srv.SecretKey}, want: "access denied: check the credentials"},
		{name: "unknown key", root: b.url("tree"), env: []string{"AWS_ACCESS_KEY_ID=nobody" + b.srv.AccessKey}, want: "access denied: check the credentials"},
		{name: "endpoint down", root: b.url("tree"), args: []string{"--s3-endpoint", "http://" + down}, want: "cannot reach http://" + down},
	}
	commands := []struct {
		name string
		args func(root string) []string
	}{
		{"publish", func(root string) []string { return []string{"publish", src, "--root", root, "--to", "x/y:z"} }},
		{"serve", func(root string) []string {
			return []string{"serve", "--root", root, "--addr", "127.0.0.1:0", "--log-level", "warn"}
		}},
	}
	for _, cm := range commands {
		for _, tc := range cases {
			t.Run(cm.name+"/"+tc.name, func(t *testing.T) {
				countResult(t)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				args := append(cm.args(tc.root), tc.args...)
				cmd := b.command(ctx, args...)
				cmd.Env = append(slices.Clone(b.environ), tc.env...)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				start := time.Now()
				err := cmd.Run()
				t.Logf("$ heron %s  (%s): %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond), err)
				var ee *exec.ExitError
				switch {
				case ctx.Err() != nil:
					t.Fatalf("still running after 30s\nstderr:\n%s", stderr.String())
				case !errors.As(err, &ee) || ee.ExitCode() <= 0:
					t.Fatalf("exit: %v, want a non-zero exit\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
				}
				msg := strings.TrimSuffix(stderr.String(), "\n")
				switch {
				case strings.Contains(msg, "\n") || msg == "":
					t.Errorf("want one line on standard error, got:\n%s", stderr.String())
				case !strings.HasPrefix(msg, "heron: ") || !strings.Contains(msg, tc.want):
					t.Errorf("standard error %q, want a line starting heron: and saying %q", msg, tc.want)
				}
				for _, sdk := range []string{"operation error", "api error", "RequestID", "StatusCode", "https response error"} {
					if strings.Contains(msg, sdk) {
						t.Errorf("standard error %q holds the SDK's own text (%q)", msg, sdk)
					}
				}
				if stdout.Len() != 0 {
					t.Errorf("standard output: %q, want nothing", stdout.String())
				}
			})
		}
	}
}

// TestBucketServers runs two heron serve on one bucket, moves a tag with
// heron publish and checks that both answer the tag's new digest within
// --revalidate-after (the default) of the publish, by polling both.
func TestBucketServers(t *testing.T) {
	countResult(t)
	b := startBucket(t)
	root := b.url("two")
	const repo = "two/app"
	first, second := mustFixture(t, fixtures.NameOCIImage), mustFixture(t, fixtures.NameDockerImage)
	b.heron(t, "publish", first.SourceIn(suite.fixDir), "--root", root, "--to", repo+":latest", "-q")
	servers := []*heronproc.Server{b.startServe(t, "one", root), b.startServe(t, "two", root)}
	hc := &http.Client{Timeout: 5 * time.Second}
	digestOf := func(s *heronproc.Server) (digest.Digest, error) {
		req, err := http.NewRequest(http.MethodHead, s.Base()+"/v2/"+repo+"/manifests/latest", nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("Accept", strings.Join([]string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
			"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("HEAD %s: %s", req.URL, resp.Status)
		}
		return digest.Digest(resp.Header.Get("Docker-Content-Digest")), nil
	}
	// Warm both caches.
	for _, s := range servers {
		for range 3 {
			d, err := digestOf(s)
			if err != nil {
				t.Fatal(err)
			}
			if d != first.Digest {
				t.Fatalf("%s: %s:latest is %s, want %s", s.Name, repo, d, first.Digest)
			}
		}
	}
	b.heron(t, "publish", second.SourceIn(suite.fixDir), "--root", root, "--to", repo+":latest", "-q")
	moved := time.Now()
	window := redirector.DefaultRevalidateAfter
	// A server answers from a read of the bucket that began at most
	// window before the request arrived, and a request arrives after it
	// is sent: one sent more than window after the publish returned must
	// get the new digest, however slow the machine.
	limit := moved.Add(window + 10*time.Second)
	for _, s := range servers {
		var took time.Duration
		for {
			sent := time.Now()
			d, err := digestOf(s)
			if err != nil {
				t.Fatal(err)
			}
			if d == second.Digest {
				took = time.Since(moved)
				break
			}
			if d != first.Digest {
				t.Fatalf("%s: %s:latest is %s, want %s or %s", s.Name, repo, d, first.Digest, second.Digest)
			}
			if late := sent.Sub(moved); late > window {
				t.Fatalf("%s answered the old digest to a request sent %s after the publish, more than --revalidate-after %s", s.Name, late.Round(time.Millisecond), window)
			}
			if time.Now().After(limit) {
				t.Fatalf("%s still answers %s %s after the publish", s.Name, first.Digest, window+10*time.Second)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s answered the new digest %s after the publish (--revalidate-after %s)", s.Name, took.Round(time.Millisecond), window)
		// Never the old one again.
		for range 5 {
			if d, err := digestOf(s); err != nil || d != second.Digest {
				t.Errorf("%s: then %s, %v; want %s", s.Name, d, err, second.Digest)
			}
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
