// Package layout is the single source of truth for heron's published tree:
// every path (key) and every JSON document that publish writes and the
// redirector reads is defined here, and nowhere else.
//
// The tree, layout version 1:
//
//	<root>/
//	  heron-layout.json            {"layoutVersion": 1}
//	  blobs/<alg>/<hex>            every blob and every manifest, by digest
//	  repositories/<name>.json     one repository file per repository
//	  catalog/index.json           the catalog's shard list (first/last name of each shard)
//	  catalog/shards/<hex>.json    sorted runs of repository names, content addressed
//	  .heron/locks/<hex>.lock      writers' lock files; readers ignore them
//	  .heron/changes               the change counter (ChangesKey); servers may map it
//	  .heron/uploads/<id>/…        blob upload sessions (push); never served
//
// Keys use "/" whatever the operating system: they are also object-store keys
// and URL suffixes (a CDN serving the tree's blobs/ folder answers
// <base>/blobs/<alg>/<hex>). They are turned into file-system paths only by
// [Root.Path].
//
// One function per key kind, each of which validates its input before it
// builds anything (the templates, as in distribution's paths.go):
//
//	layoutFile:      heron-layout.json                       LayoutFileKey()
//	blob:            blobs/<alg>/<hex>                       BlobKey(digest)
//	repository:      repositories/<name>.json                RepositoryKey(name)
//	catalogIndex:    catalog/index.json                      CatalogIndexKey()
//	catalogShard:    catalog/shards/<hex>.json               CatalogShardKey(id)
//	writerState:     .heron                                  WriterStateDirKey()
//	lock:            .heron/locks/<sha256 hex of key>.lock   LockKey(key)
//	uploadState:     .heron/uploads/<id>/state.json          UploadStateKey(id)
//	uploadChunk:     .heron/uploads/<id>/<offset, 20 digits> UploadChunkKey(id, offset)
//
// Manifests are blobs: they live under blobs/ like any other content, so
// ManifestKey(d) is BlobKey(d).
package layout
