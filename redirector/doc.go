// Package redirector is heron's read-only registry: a stateless
// [http.Handler] that answers the OCI Distribution API
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md)
// straight from a tree written by publish.
//
// Nothing is loaded at start-up beyond the layout marker: a request reads
// its repository file and at most one blob (a page of the catalog reads the
// catalog index and one or a few shards). Any number of servers can
// therefore read the same tree while publish updates it.
//
// Bounded caches of parsed repository files, of manifests and of catalog
// shards (see cache.go, [WithCacheSize]) spare most of those reads and
// change nothing but speed. A cached repository file is used without a
// system call while the tree's change counter, which heron's writers
// increment before they return, is unchanged and the file was stat'ed less
// than a second ago; without a counter it can trust, the server validates
// it by one stat per use. Either way a publish is seen by the next request
// (see changes.go). Manifests and shards are content addressed.
//
// Safety rests on two layers. Names, tags and digests from the URL are
// validated with the layout package before any key is built from them; and
// every file is then opened through an [os.Root] on the tree, which refuses
// ".." and symbolic links that lead outside it. A repository only serves the
// blobs and manifests its own repository file lists, although the bytes are
// shared on disk.
//
// Blobs are redirected (307) to a base URL when one is configured (the
// repository file's blobBaseURL, else [WithRedirectBase]) and served with
// [http.ServeContent] otherwise; with [WithRedirectSigner] the redirects
// carry an expiry and a signature the host checks (signedurl.go,
// docs/signed-urls.md). Manifests are served directly, verified
// against their digest, unless [WithRedirectManifests] asks for redirects.
//
// A blob that an on_demand publish listed as not stored is fetched from
// the repository's upstream when a client asks for it, if the server has
// a [Filler] ([WithFiller]; ondemand.go): once however many clients ask,
// streamed to all of them from a spool file as it arrives ([WithSpoolDir]),
// its last byte sent only once the whole is verified, then stored through
// the Filler unless the server is read-only.
//
// [New] reads a tree in a folder of this machine (tree.go). [NewFromStore]
// reads one through a store.Store, such as an S3 bucket (storetree.go): the
// same answers, with repository files validated by the store's version of
// them (storecache.go, [WithRevalidateAfter]), blobs redirected to URLs the
// store presigns (presign.go, [WithPresignExpiry]) or streamed and
// verified (storeblob.go, [WithServeBlobs]). The handlers read either
// through the lookups of lookups.go and the reader of reader.go.
package redirector
