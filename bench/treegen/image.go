package treegen

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultLayerSize is the size of the layer every generated repository
// shares: 1 MiB, the blob the GET-blob benchmark transfers.
const DefaultLayerSize = 1 << 20

// Image is the one image every generated repository serves: a valid OCI
// image manifest, its config and one uncompressed tar layer. The bytes are
// the same on every run for the same layer size (a seeded generator fills
// the layer), so trees, caches and peers agree on the digests.
type Image struct {
	Manifest []byte
	Config   []byte
	Layer    []byte

	ManifestDigest digest.Digest
	ConfigDigest   digest.Digest
	LayerDigest    digest.Digest
}

// ManifestMediaType is the media type of Image.Manifest.
const ManifestMediaType = v1.MediaTypeImageManifest

// LayerMediaType is the media type of Image.Layer: an uncompressed tar,
// so that its size is exact and its diff ID is its digest.
const LayerMediaType = v1.MediaTypeImageLayer

// NewImage builds the image with a layer of exactly layerSize bytes
// (a multiple of 512, at least 2048: one tar header, one file, the two
// zero blocks that end a tar).
func NewImage(layerSize int) (*Image, error) {
	const block = 512
	if layerSize < 4*block || layerSize%block != 0 {
		return nil, fmt.Errorf("layer size %d: want a multiple of %d of at least %d", layerSize, block, 4*block)
	}
	content := make([]byte, layerSize-3*block) // header + content + 2 end blocks
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(content); i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			content[i+j] = byte(v >> (8 * j))
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: "data/random.bin", Mode: 0o644,
		Size: int64(len(content)), ModTime: epoch, Format: tar.FormatUSTAR,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if buf.Len() != layerSize {
		return nil, fmt.Errorf("layer is %d bytes, want %d", buf.Len(), layerSize)
	}
	img := &Image{Layer: buf.Bytes()}
	img.LayerDigest = digest.FromBytes(img.Layer)

	created := epoch
	config := v1.Image{
		Created:  &created,
		Platform: v1.Platform{Architecture: "amd64", OS: "linux"},
		Config:   v1.ImageConfig{Cmd: []string{"/bin/true"}},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{img.LayerDigest}},
	}
	var err error
	if img.Config, err = json.Marshal(config); err != nil {
		return nil, err
	}
	img.ConfigDigest = digest.FromBytes(img.Config)

	manifest := v1.Manifest{
		MediaType: ManifestMediaType,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: img.ConfigDigest, Size: int64(len(img.Config))},
		Layers:    []v1.Descriptor{{MediaType: LayerMediaType, Digest: img.LayerDigest, Size: int64(len(img.Layer))}},
	}
	manifest.SchemaVersion = 2
	if img.Manifest, err = json.Marshal(manifest); err != nil {
		return nil, err
	}
	img.ManifestDigest = digest.FromBytes(img.Manifest)
	return img, nil
}
