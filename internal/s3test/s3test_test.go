package s3test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// TestServer checks the harness, and that the server honours what the S3
// store relies on: conditional writes (If-Match, If-None-Match: *) and
// conditional reads.
func TestServer(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	c := s.Client()
	put := func(body string, ifMatch, ifNoneMatch *string) (string, error) {
		out, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.Bucket, Key: aws.String("k"),
			Body: strings.NewReader(body), IfMatch: ifMatch, IfNoneMatch: ifNoneMatch})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	e1, err := put("one", nil, aws.String("*"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("etag %s", e1)
	if _, err := put("two", nil, aws.String("*")); status(err) != http.StatusPreconditionFailed {
		t.Errorf("If-None-Match * on an existing key: %v", err)
	}
	e2, err := put("two", &e1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put("three", &e1, nil); status(err) != http.StatusPreconditionFailed {
		t.Errorf("If-Match stale: %v", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.Bucket, Key: aws.String("missing"),
		Body: strings.NewReader("x"), IfMatch: &e1})
	t.Logf("If-Match on a missing key: status %d: %v", status(err), err)
	if err == nil {
		t.Errorf("If-Match on a missing key succeeded")
	}
	_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: aws.String("k"), IfNoneMatch: &e2})
	if status(err) != http.StatusNotModified {
		t.Errorf("conditional GET of the current version: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: aws.String("k"), IfNoneMatch: &e1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "two" || aws.ToString(out.ETag) != e2 {
		t.Errorf("conditional GET of an old version: %q %s", b, aws.ToString(out.ETag))
	}
	// Conditional deletes (DeleteIfOlder sends If-Match on the ETag it saw).
	_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: aws.String("k"), IfMatch: &e1})
	if status(err) != http.StatusPreconditionFailed {
		t.Errorf("DeleteObject If-Match stale: %v", err)
	}
	if fb, err := readFile(s.ObjectPath("k")); err != nil || !bytes.Equal(fb, []byte("two")) {
		t.Errorf("object file: %q %v", fb, err)
	}
	if len(s.Env()) == 0 || s.URL("a/b/") != "s3://"+s.Bucket+"/a/b" || s.URL("") != "s3://"+s.Bucket {
		t.Errorf("URL %q", s.URL("a/b/"))
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
