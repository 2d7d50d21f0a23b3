// Package source reads the images that package publish writes into a heron
// tree.
//
// A [Source] is one image (a manifest, or an index and its children, with
// their blobs), its content addressed by descriptor. [Parse] makes one from
// the SOURCE argument of `heron publish`, with one of four transports, each
// in files of its own, as go-containerregistry keeps pkg/v1/layout, tarball
// and remote apart:
//
//	oci:DIR[:REF]                 ocilayout.go       an OCI image layout folder
//	oci-archive:FILE[:REF]        ocilayout.go,      a tar of an OCI image layout
//	                              tar.go
//	docker-archive:FILE[:SEL]     dockerarchive.go,  a `docker save` tarball
//	                              tar.go
//	docker://REF                  remote.go,         an image in a registry, with the
//	                              options.go         options of [ParseWith]
//
// A source reads; it never writes, and knows nothing of the tree. What it
// reads is hostile input: no link leads out of a layout folder or an
// archive, files are checked to be regular files before they are opened,
// and what is read whole (index.json, manifest.json, a config) is bounded.
// A source does not verify the bytes of the content it returns against
// their digest: publish does, while it writes them. Content a source does
// not hold is [ErrNotFound], and content that does not match its
// descriptor a [*VerifyError], the errors publish reports for its sinks
// too (publish.ErrNotFound and publish.VerifyError are the same).
//
// Optional capabilities are interfaces found by type assertion:
// [UpstreamSource] (a registry, that blobs can be fetched from later: an
// on_demand publish records it) and [LocalSource] (blobs that lie in local
// files, that publish copies with the kernel).
//
// Imports point downward: publish imports this package, never the other
// way round.
package source
