// Package publish is the only code that writes a heron tree.
//
// A [Publisher] copies an image (a single-platform manifest, a multi-platform
// index with all its children, or an OCI 1.1 artifact) from a
// [source.Source] (an OCI image layout, an OCI archive, a `docker save`
// tarball or a registry: see package source) into the tree behind a
// [Sink], and tags it in one or more repositories.
// With [PolicyOnDemand], it stores the manifests only and records where the
// blobs it leaves out can be fetched.
//
// The order of writes is the tree's contract with its readers (see
// /docs/layout.md and package layout):
//
//  1. every blob (configs and layers), then every manifest, children before
//     the index that lists them, each one verified against its digest and size
//     while it is streamed, and written atomically (temporary name, sync,
//     rename);
//  2. the repository file, repositories/<name>.json, rewritten atomically:
//     this is the commit point, so a reader never sees a repository that names
//     content that is missing;
//  3. the catalog (catalog/index.json and its content-addressed shards).
//
// Publishing is idempotent: content already present with the right size is
// neither read from the source nor written again, and a repository file or a
// catalog that would not change is not rewritten.
//
// Before anything is written, the whole source is validated: every manifest
// is read and checked against its digest, and every referenced blob the
// tree does not hold must be present in the source with the size its
// descriptor states (a blob the tree holds is never read from the source).
// Blobs and manifests are then staged under temporary names and only renamed
// into place once all of them have been verified, so that the common
// failures (a corrupt or truncated source, a missing blob, a full disk)
// leave the tree as it was.
//
// Any number of publishers, in any number of processes, may write the same
// tree at once: every read-modify-write of a repository file or of the
// catalog holds that file's lock (see [LockSink]; on a file system, flock(2)
// on a file under .heron/locks/), and applies a change that is a pure
// function of the file it read, so no update is lost. [Publisher.RunBatch]
// (heron publish --batch), [Publisher.RemoveTags], [Publisher.Tag] and
// [Publisher.RemoveRepositories] (heron rm, heron tag) edit the tree under
// the same locks. A repository is removed from the catalog before its file
// is deleted, so that a listed repository can always be served.
//
// The files read in that order. Plan: plan.go reads and checks the source,
// policy.go applies --policy. Stage: stage.go copies content, verified
// (copyverified.go). Commit: repository.go rewrites repository files,
// catalog.go the catalog. publisher.go runs the three (Publish). Maintain: gc.go and
// gc_keep.go (gc), verify.go (heron verify), edit.go (heron rm, heron tag),
// batch.go and batch_file.go (heron publish --batch). Sinks: sink.go holds
// the interfaces, fssink*.go the file-system sink.
package publish
