package layout

// The size limits of the files of a tree that are read whole. Each is one
// rule for writer and reader alike: publish refuses to write a file its
// limit would make a server refuse, and the server refuses to read more.
const (
	// MaxLayoutFileSize bounds heron-layout.json.
	MaxLayoutFileSize = 4 << 10
	// MaxRepositoryFileSize bounds a repository file.
	MaxRepositoryFileSize = 64 << 20
	// MaxCatalogFileSize bounds the catalog index and each catalog shard.
	// A shard holds at most CatalogShardSize names (a few tens of KB); the
	// index of a tree of a million repositories is about 150 KB.
	MaxCatalogFileSize = 16 << 20
	// MaxManifestSize bounds a manifest, which publish and the server
	// read whole to verify it: the 4 MiB the distribution specification
	// asks every registry to accept
	// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-manifests).
	MaxManifestSize = 4 << 20
)
