// Package s3test starts a real S3-compatible server for the tests that
// need a bucket: versitygw (github.com/versity/versitygw, installed by
// scripts/install-tools.sh at a pinned version), on a free 127.0.0.1
// port, with its posix back end in a temporary folder (each object is a
// plain file at DIR/BUCKET/KEY), random credentials and a new bucket. No
// mock of the S3 API: the SDK talks to a server that implements it.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/heron-registry/heron/internal/heronproc"
)

// Region is the region the server's clients are configured with; versitygw
// accepts any, and answers for this one by default.
const Region = "us-east-1"

// Binary is the name of the versitygw executable.
const Binary = "versitygw"

// startTimeout bounds how long Start waits for the server to answer.
const startTimeout = 15 * time.Second

// Server is a running versitygw with one bucket.
type Server struct {
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKey and SecretKey are its root account's credentials.
	AccessKey, SecretKey string
	// Bucket is the bucket Start created.
	Bucket string
	// Dir is the folder of the posix back end: an object is the file
	// Dir/Bucket/KEY.
	Dir string

	cmd    *exec.Cmd
	exited chan error
	out    *heronproc.LockedBuffer
}

// Find returns the path of versitygw: on PATH, or in $HERON_CACHE/bin, or
// in the .cache/bin folder of the repository the test runs in (where
// scripts/install-tools.sh puts it when HERON_CACHE is not set).
func Find() (string, error) {
	if p, err := exec.LookPath(Binary); err == nil {
		return p, nil
	}
	var dirs []string
	if c := os.Getenv("HERON_CACHE"); c != "" {
		dirs = append(dirs, filepath.Join(c, "bin"))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dirs = append(dirs, filepath.Join(d, ".cache", "bin"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, Binary)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not on PATH nor in %s (make tools installs it)", Binary, strings.Join(dirs, ", "))
}

// Start starts versitygw and creates a bucket with a random name; the
// server is stopped when the test ends. Without versitygw the test is
// skipped, or fails when CI=true (in CI a missing tool is a failed run).
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s := &Server{
		AccessKey: "heron" + randomHex(8),
		SecretKey: randomHex(20),
		Bucket:    "heron-" + randomHex(6),
		Dir:       t.TempDir(),
	}
	// A port free a moment ago may be taken by the time versitygw binds
	// it: try a few.
	for attempt := 0; ; attempt++ {
		err = s.start(bin)
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("start %s: %v", Binary, err)
		}
	}
	t.Cleanup(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket %s on %s: %v\n%s", s.Bucket, s.Endpoint, err, s.out.Tail(20))
	}
	return s
}

// start runs versitygw on a free port and waits until it accepts
// connections.
func (s *Server) start(bin string) error {
	addr, err := heronproc.FreeAddr()
	if err != nil {
		return err
	}
	s.out = &heronproc.LockedBuffer{}
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr,
		"--quiet", "--keep-alive", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// The server must not read the developer's AWS settings, nor anything
	// else of the environment meant for the tests' clients.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.Dir}
	// It dies with the test binary, whatever kills that (a timeout's
	// panic, a signal), rather than outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited (%v) before answering:\n%s", err, s.out.Tail(20))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("did not answer on %s within %v:\n%s", addr, startTimeout, s.out.Tail(20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd = cmd
	s.Endpoint = "http://" + addr
	s.exited = exited
	return nil
}

// stop kills the server (by its PID) and waits for it.
func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
}

// Log returns what the server printed.
func (s *Server) Log() string { return s.out.String() }

// URL returns the s3:// URL of prefix in the bucket ("s3://BUCKET" for
// the empty prefix).
func (s *Server) URL(prefix string) string {
	u := "s3://" + s.Bucket
	if p := strings.Trim(prefix, "/"); p != "" {
		u += "/" + p
	}
	return u
}

// Env returns the environment variables that point a process using the
// SDK's standard configuration (heron with --root s3://…) at the server:
// credentials, region and endpoint. AWS_EC2_METADATA_DISABLED keeps the
// SDK from asking an instance metadata address for credentials, and
// AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE from reading the
// developer's profiles.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + Region,
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
	}
}

// Setenv sets Env in the test's own process (with t.Setenv, so it is
// undone when the test ends, and the test cannot be parallel), for code
// under test that loads the SDK's standard configuration itself.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// Credentials returns a provider of the server's static credentials, for
// code that is given them rather than reading the environment.
func (s *Server) Credentials() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
}

// Client returns an SDK client of the server (path-style addressing, as
// S3-compatible servers expect), for tests that look at the bucket behind
// the code under test.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     Region,
		Credentials:                s.Credentials(),
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// ObjectPath returns the file versitygw keeps the object key of the bucket
// in.
func (s *Server) ObjectPath(key string) string {
	return filepath.Join(s.Dir, s.Bucket, filepath.FromSlash(key))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("s3test: no randomness: " + err.Error()))
	}
	return hex.EncodeToString(b)
}
