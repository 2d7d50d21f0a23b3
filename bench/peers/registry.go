package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/heron-registry/heron/bench/treegen"
	"github.com/opencontainers/go-digest"
)

// registryBin is Debian's build of distribution's registry (registry:2).
const registryBin = "/usr/bin/docker-registry"

// startRegistry starts distribution's registry with filesystem storage in
// dir, configured as its registry:2 image is (in-memory blob descriptor
// cache), with its access log off like nginx's and heron's.
func startRegistry(addr, dir, logDir string) (*proc, error) {
	if _, err := os.Stat(registryBin); err != nil {
		return nil, fmt.Errorf("docker-registry is not installed (run bench/install.sh): %w", err)
	}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: heron-bench
health:
  storagedriver:
    enabled: false
`, filepath.Join(dir, "storage"), addr)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return start("registry", addr, logDir, registryBin, "serve", confPath)
}

// pushImage loads the benchmark image into the registry, byte for byte
// the image of the tree, under the given tags of repo. It speaks the
// distribution API's push directly (POST an upload, PUT its bytes, PUT the
// manifest): three blobs do not need a client library, and go.mod stays
// free of what a registry client drags in.
func pushImage(ctx context.Context, addr, repo string, img *treegen.Image, tags []string) error {
	base := "http://" + addr + "/v2/" + repo
	for _, b := range [][]byte{img.Config, img.Layer} {
		if err := pushBlob(ctx, base, b); err != nil {
			return err
		}
	}
	for _, tag := range tags {
		status, _, err := do(ctx, http.MethodPut, base+"/manifests/"+tag, img.Manifest,
			http.Header{"Content-Type": {treegen.ManifestMediaType}})
		if err != nil {
			return fmt.Errorf("push %s:%s: %w", repo, tag, err)
		}
		if status != http.StatusCreated {
			return fmt.Errorf("push %s:%s: status %d", repo, tag, status)
		}
	}
	return nil
}

func pushBlob(ctx context.Context, base string, data []byte) error {
	d := digest.FromBytes(data)
	status, h, err := do(ctx, http.MethodPost, base+"/blobs/uploads/", nil, nil)
	if err != nil {
		return fmt.Errorf("push blob %s: %w", d, err)
	}
	loc := h.Get("Location")
	if status != http.StatusAccepted || loc == "" {
		return fmt.Errorf("push blob %s: start upload: status %d", d, status)
	}
	u, err := url.Parse(base)
	if err != nil {
		return err
	}
	if u, err = u.Parse(loc); err != nil {
		return fmt.Errorf("push blob %s: upload location %q: %w", d, loc, err)
	}
	q := u.Query()
	q.Set("digest", string(d))
	u.RawQuery = q.Encode()
	status, _, err = do(ctx, http.MethodPut, u.String(), data, http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return fmt.Errorf("push blob %s: %w", d, err)
	}
	if status != http.StatusCreated {
		return fmt.Errorf("push blob %s: status %d", d, status)
	}
	return nil
}

// do sends one request and returns the status and headers of the answer.
func do(ctx context.Context, method, u string, body []byte, h http.Header) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, nil
}
