// Command gen writes the image that bench/publish/run.sh publishes: an OCI
// image layout holding one image of -layers layers of random (so
// incompressible) bytes, -size bytes in all. Layers are streamed to disk
// while they are hashed: memory stays flat whatever the size.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	dir := flag.String("dir", "", "the OCI image layout to write (must not exist)")
	size := flag.Int64("size", 1<<30, "total size of the layers, in bytes")
	layers := flag.Int("layers", 4, "number of layers")
	ref := flag.String("ref", "bench", "the org.opencontainers.image.ref.name of the image")
	flag.Parse()
	if *dir == "" || *layers < 1 || *size < int64(*layers) {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*dir, *size, *layers, *ref); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(dir string, size int64, layers int, ref string) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists", dir)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	rnd := rand.New(rand.NewSource(1))
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for i := range layers {
		n := size / int64(layers)
		if i == layers-1 {
			n = size - n*int64(layers-1)
		}
		d, err := writeBlob(blobs, io.LimitReader(rnd, n))
		if err != nil {
			return err
		}
		descs = append(descs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: n})
		diffIDs = append(diffIDs, d) // uncompressed layers: the diff ID is the digest
	}
	cfg, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	if err != nil {
		return err
	}
	cfgDesc, err := writeJSON(blobs, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return err
	}
	m, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfgDesc, Layers: descs,
	})
	if err != nil {
		return err
	}
	mDesc, err := writeJSON(blobs, ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return err
	}
	mDesc.Annotations = map[string]string{ocispec.AnnotationRefName: ref}
	idx, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{mDesc}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ocispec.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

func writeBlob(dir string, r io.Reader) (digest.Digest, error) {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if err := f.Chmod(0o644); err != nil {
		_ = f.Close()
		return "", err
	}
	if _, err := io.CopyBuffer(io.MultiWriter(f, h), r, make([]byte, 1<<20)); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	hx := hex.EncodeToString(h.Sum(nil))
	return digest.NewDigestFromEncoded(digest.SHA256, hx), os.Rename(f.Name(), filepath.Join(dir, hx))
}

func writeJSON(dir, mt string, b []byte) (ocispec.Descriptor, error) {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(dir, d.Encoded()), b, 0o644); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}, nil
}
