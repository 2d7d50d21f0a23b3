//go:build reliability

package reliability

import (
	"fmt"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageSpec describes a test image to generate: an image with layers of
// the given sizes, or, when children is set, an image index of such images.
type imageSpec struct {
	ref      string
	layers   []int64
	children [][]int64
}

// content is what was generated for a spec: the root manifest and, for an
// image index, its children; for an image, its config and layers.
type content struct {
	ref       string
	digest    digest.Digest
	mediaType string
	size      int64
	children  []*content
	blobs     []ocispec.Descriptor // an image's config and layers
}

// total is the number of bytes of every manifest and blob of c.
func (c *content) total() int64 {
	n := c.size
	for _, ch := range c.children {
		n += ch.total()
	}
	for _, b := range c.blobs {
		n += b.Size
	}
	return n
}

// manifests returns c's digest and those of its children, with their
// content.
func (c *content) manifests() map[digest.Digest]*content {
	out := map[digest.Digest]*content{c.digest: c}
	for _, ch := range c.children {
		for d, m := range ch.manifests() {
			out[d] = m
		}
	}
	return out
}

// randomBytes returns n bytes of rng.
func randomBytes(rng *rand.ChaCha8, n int64) []byte {
	b := make([]byte, n)
	_, _ = rng.Read(b)
	return b
}

// generateLayout writes the images of specs into a new OCI image layout at
// dir, each one under its ref (the org.opencontainers.image.ref.name
// annotation heron publish's oci:DIR:REF picks). The layers are random
// bytes drawn from seed, published as uncompressed OCI layers, so that the
// same seed gives the same digests.
func generateLayout(dir string, seed uint64, specs []imageSpec) (map[string]*content, error) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rng := rand.NewChaCha8(key)
	p, err := ggcrlayout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	out := map[string]*content{}
	for _, s := range specs {
		anns := ggcrlayout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: s.ref})
		if s.children == nil {
			img, c, err := randomImage(rng, s.ref, "amd64", s.layers)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.ref, err)
			}
			if err := p.AppendImage(img, anns); err != nil {
				return nil, fmt.Errorf("%s: %w", s.ref, err)
			}
			c.ref = s.ref
			out[s.ref] = c
			continue
		}
		var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		root := &content{ref: s.ref, mediaType: ocispec.MediaTypeImageIndex}
		for i, layers := range s.children {
			arch := []string{"amd64", "arm64", "riscv64", "s390x"}[i%4]
			img, c, err := randomImage(rng, fmt.Sprintf("%s/%d", s.ref, i), arch, layers)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.ref, err)
			}
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
				Add:        img,
				Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
			})
			root.children = append(root.children, c)
		}
		if err := p.AppendIndex(idx, anns); err != nil {
			return nil, fmt.Errorf("%s: %w", s.ref, err)
		}
		h, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		if root.size, err = idx.Size(); err != nil {
			return nil, err
		}
		root.digest = digest.Digest(h.String())
		out[s.ref] = root
	}
	return out, nil
}

// randomImage builds an OCI image of random layers of the given sizes,
// labelled with label, and describes it.
func randomImage(rng *rand.ChaCha8, label, arch string, layers []int64) (v1.Image, *content, error) {
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Config:       v1.Config{Labels: map[string]string{"heron.reliability": label}},
	})
	if err != nil {
		return nil, nil, err
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, n := range layers {
		adds = append(adds, mutate.Addendum{Layer: static.NewLayer(randomBytes(rng, n), types.OCIUncompressedLayer)})
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		return nil, nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	h, err := img.Digest()
	if err != nil {
		return nil, nil, err
	}
	size, err := img.Size()
	if err != nil {
		return nil, nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, err
	}
	c := &content{digest: digest.Digest(h.String()), mediaType: ocispec.MediaTypeImageManifest, size: size}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		c.blobs = append(c.blobs, ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size})
	}
	return img, c, nil
}

// generateWideIndex writes an OCI image layout at dir holding one image
// index, under ref, of n small images: each has a config of its own (a
// label) and the same one layer, so that publishing it gives a repository
// n+1 manifests and n+1 blobs (with n = 1,000, one more of each than a
// repository file holds itself: they are sharded).
func generateWideIndex(dir string, seed uint64, ref string, n int) (*content, error) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rng := rand.NewChaCha8(key)
	layer := static.NewLayer(randomBytes(rng, 512), types.OCIUncompressedLayer)
	adds := make([]mutate.IndexAddendum, 0, n)
	for i := range n {
		img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
			Architecture: "amd64",
			OS:           "linux",
			Config:       v1.Config{Labels: map[string]string{"heron.reliability": fmt.Sprintf("%s/%d/%d", ref, seed, i)}},
		})
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return nil, err
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		adds = append(adds, mutate.IndexAddendum{Add: img})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	p, err := ggcrlayout.Write(dir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := p.AppendIndex(idx, ggcrlayout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: ref})); err != nil {
		return nil, err
	}
	h, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	size, err := idx.Size()
	if err != nil {
		return nil, err
	}
	return &content{ref: ref, digest: digest.Digest(h.String()), mediaType: ocispec.MediaTypeImageIndex, size: size}, nil
}
