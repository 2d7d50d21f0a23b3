//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/heron-registry/heron/internal/fixtures"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// checkFile reports an error unless the file at path has digest d (and,
// when size >= 0, that size).
func checkFile(path string, d digest.Digest, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	v := d.Verifier()
	n, err := io.Copy(v, f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !v.Verified() {
		return fmt.Errorf("%s: content does not match %s", path, d)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%s: %d bytes, want %d", path, n, size)
	}
	return nil
}

// checkOCILayout checks an OCI image layout a client wrote: index.json
// names the fixture's manifest (digest, media type and size), and every
// manifest (the fixture's and all its children's) and every config and
// layer blob is in blobs/ with the right digest.
func checkOCILayout(dir string, f *fixtures.Fixture) error {
	b, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("index.json: %w", err)
	}
	found := false
	for _, d := range idx.Manifests {
		if d.Digest == f.Digest {
			found = true
			if d.MediaType != f.MediaType || d.Size != f.Size {
				return fmt.Errorf("index.json lists %s as %s, %d bytes; want %s, %d bytes", d.Digest, d.MediaType, d.Size, f.MediaType, f.Size)
			}
		}
	}
	if !found {
		return fmt.Errorf("index.json does not list %s:\n%s", f.Digest, b)
	}
	blob := func(d digest.Digest) string {
		return filepath.Join(dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
	}
	if err := checkFile(blob(f.Digest), f.Digest, f.Size); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return checkAll(f, func(d digest.Digest, manifest bool) string { return blob(d) })
}

// checkDirLayout checks what `skopeo copy --all dir:DIR` wrote: the
// fixture's manifest as manifest.json, each child manifest as
// <hex>.manifest.json and each blob as <hex>.
func checkDirLayout(dir string, f *fixtures.Fixture) error {
	if err := checkFile(filepath.Join(dir, "manifest.json"), f.Digest, f.Size); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return checkAll(f, func(d digest.Digest, manifest bool) string {
		if manifest {
			return filepath.Join(dir, d.Encoded()+".manifest.json")
		}
		return filepath.Join(dir, d.Encoded())
	})
}

// checkAll checks the fixture's child manifests and all its blobs, found
// with path.
func checkAll(f *fixtures.Fixture, path func(d digest.Digest, manifest bool) string) error {
	sizes := sizesOf(f.Content, map[digest.Digest]int64{})
	for i, d := range f.Manifests {
		if i == 0 && d == f.Digest {
			continue // the fixture's own manifest, checked by the caller
		}
		if err := checkFile(path(d, true), d, sizeOr(sizes, d)); err != nil {
			return fmt.Errorf("child manifest: %w", err)
		}
	}
	for _, d := range f.Blobs {
		if err := checkFile(path(d, false), d, sizeOr(sizes, d)); err != nil {
			return fmt.Errorf("blob: %w", err)
		}
	}
	return nil
}

// sizesOf collects the size of every manifest, config and layer of c.
func sizesOf(c fixtures.Content, m map[digest.Digest]int64) map[digest.Digest]int64 {
	m[c.Digest] = c.Size
	if c.Config != nil {
		m[c.Config.Digest] = c.Config.Size
	}
	for _, l := range c.Layers {
		m[l.Digest] = l.Size
	}
	for _, ch := range c.Children {
		sizesOf(ch, m)
	}
	return m
}

func sizeOr(m map[digest.Digest]int64, d digest.Digest) int64 {
	if s, ok := m[d]; ok {
		return s
	}
	return -1
}

// isImage reports whether a fixture is a container image or an index of
// images, as opposed to an OCI artifact (an artifact type, a non-image
// config).
func isImage(f *fixtures.Fixture) bool { return f.ArtifactType == "" }

// platformImage returns the manifest a client on this machine pulls from
// the fixture: the fixture itself, or the linux/amd64 child of an index.
func platformImage(f *fixtures.Fixture, arch string) (*fixtures.Content, error) {
	if len(f.Children) == 0 {
		return &f.Content, nil
	}
	for i := range f.Children {
		p := f.Children[i].Platform
		if p != nil && p.OS == "linux" && p.Architecture == arch {
			return &f.Children[i], nil
		}
	}
	return nil, fmt.Errorf("%s has no linux/%s child", f.Name, arch)
}
