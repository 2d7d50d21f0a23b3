package source

import (
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The media types of the manifests publish reads, OCI's and Docker's
// (schema 2): a manifest's descriptor always has one of them, which is how
// a registry source tells a manifest (fetched from /manifests/) from a
// blob (fetched from /blobs/).

// IsIndexMediaType reports whether mt is that of an image index: an OCI
// image index or a Docker manifest list.
func IsIndexMediaType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == string(types.DockerManifestList)
}

// IsManifestMediaType reports whether mt is that of an image manifest: an
// OCI image manifest or a Docker schema 2 manifest.
func IsManifestMediaType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == string(types.DockerManifestSchema2)
}
