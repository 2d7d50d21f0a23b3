// Command s3upload is the baseline of the benchmark of heron publish to a
// bucket (make bench, bench/peers): it uploads files to an S3-compatible
// bucket with the AWS SDK for Go v2 alone, through its transfer manager
// (feature/s3/transfermanager, the SDK's standard uploader), with the part
// size, concurrency and checksum setting heron's store/s3 uses. No digest
// is computed, nothing is verified or staged: it is what the bytes cost
// to send.
//
//	s3upload -to s3://BUCKET/PREFIX [-endpoint URL] FILE...
//
// uploads each FILE, one after another (-jobs at once), to
// PREFIX/<its base name>, in parts of -part-size (-concurrency at once for
// each file) when it is larger than a part, with Content-Type application/octet-stream and the Cache-Control
// heron gives content-addressed objects. Credentials and region come from
// the SDK's standard configuration (AWS_ACCESS_KEY_ID, …); a custom
// endpoint (-endpoint, else AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) is
// addressed path-style, as heron does.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3store "github.com/heron-registry/heron/store/s3"
	"golang.org/x/sync/errgroup"
)

func main() {
	to := flag.String("to", "", "s3://BUCKET/PREFIX to upload into (required)")
	endpoint := flag.String("endpoint", "", "S3 endpoint URL, addressed path-style (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else the SDK's own)")
	partSize := flag.Int64("part-size", s3store.DefaultPartSize, "part size in bytes; files larger than a part are uploaded in parts")
	concurrency := flag.Int("concurrency", s3store.DefaultConcurrency, "parts of one file uploaded at once")
	jobs := flag.Int("jobs", 1, "files uploaded at once")
	checksum := flag.String("checksum", "when-required", "when-required (as heron: no checksum the API does not require) or when-supported (the SDK's default, CRC32 on every request)")
	flag.Parse()
	bucket, prefix, ok := parseURL(*to)
	if !ok || flag.NArg() == 0 || *jobs < 1 || *concurrency < 1 || (*checksum != "when-required" && *checksum != "when-supported") {
		fmt.Fprintln(os.Stderr, "usage: s3upload -to s3://BUCKET/PREFIX [-endpoint URL] [-part-size N] [-concurrency N] [-jobs N] [-checksum when-required|when-supported] FILE...")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	calc := aws.RequestChecksumCalculationWhenRequired
	if *checksum == "when-supported" {
		calc = aws.RequestChecksumCalculationWhenSupported
	}
	if err := run(ctx, *endpoint, bucket, prefix, *partSize, *concurrency, *jobs, calc, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "s3upload:", err)
		os.Exit(1)
	}
}

// parseURL splits s3://BUCKET/PREFIX.
func parseURL(u string) (bucket, prefix string, ok bool) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", false
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	return bucket, strings.Trim(prefix, "/"), bucket != ""
}

func run(ctx context.Context, endpoint, bucket, prefix string, partSize int64, concurrency, jobs int, calc aws.RequestChecksumCalculation, files []string) error {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL_S3")
	}
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		o.RequestChecksumCalculation = calc
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = partSize
		// As heron: content of one part or less is one PutObject.
		o.MultipartUploadThreshold = partSize + 1
		o.Concurrency = concurrency
		o.RequestChecksumCalculation = calc
	})
	t0 := time.Now()
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, name := range files {
		g.Go(func() error {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			key := path.Join(prefix, filepath.Base(name))
			_, err = tm.UploadObject(gctx, &transfermanager.UploadObjectInput{
				Bucket:        aws.String(bucket),
				Key:           aws.String(key),
				Body:          f,
				ContentLength: aws.Int64(fi.Size()),
				ContentType:   aws.String("application/octet-stream"),
				CacheControl:  aws.String(s3store.CacheImmutable),
			})
			if err != nil {
				return fmt.Errorf("upload %s to s3://%s/%s: %w", name, bucket, key, err)
			}
			total.Add(fi.Size())
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	d := time.Since(t0)
	fmt.Printf("%d files, %d bytes in %s (%.0f MiB/s)\n", len(files), total.Load(), d.Round(time.Millisecond), float64(total.Load())/(1<<20)/d.Seconds())
	return nil
}
