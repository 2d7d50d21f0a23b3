// Package reliability holds heron's crash and concurrency tests, which run
// the real binary as separate processes:
//
//   - TestCrash runs `heron publish` again and again into one tree and kills
//     it with SIGKILL at a random moment (before it writes, while it copies
//     blobs, while it renames them into place, while it writes the
//     repository file or the catalog, or after it is done). After every
//     kill the tree must be consistent (`heron verify --deep`, when the
//     binary has it, and the test's own check of every file) and a
//     `heron serve` started once over the tree must answer every tag,
//     manifest and blob with whole content that matches its digest. Some
//     kills hit a publish that runs alongside another one, which must not
//     be blocked nor lose its update; `heron gc` must then delete what the
//     kills left, and nothing else. Two publishes in five go into
//     repositories that keep their tags (crash/tags: thousands of tags),
//     or their manifests, blobs and tags (crash/wide), in shard files:
//     some split a full shard, some move a tag; after each, every shard
//     file the repository file names must verify and no tag may be lost.
//   - TestCrashBucket does the same with the tree in an S3-compatible
//     bucket (versitygw, started on 127.0.0.1 by internal/s3test): it
//     kills `heron publish` of an image, `heron publish --batch` and
//     `heron tag`, some racing another publish into the same repository.
//     After every kill, publish.VerifyTree over store/s3 and the test's
//     own listing of the bucket (every blob object hashes to its key) find
//     nothing wrong, no tag is lost, and the killed command run again
//     gives its tags; heron gc --grace 0s then leaves a tree heron verify
//     --deep passes. It counts the incomplete multipart uploads the kills
//     left (a bucket lifecycle rule aborts them).
//   - TestCrashPush kills `heron serve --push --delete` with SIGKILL while
//     go-containerregistry clients push images and indexes (and delete
//     tags) into it and a hand-made client drives chunked upload sessions,
//     and starts it again on the same tree each time. After every kill the
//     tree verifies, every tag names what the last answer said (or what a
//     request the kill cut meant) and pulls whole, and each session the
//     kill cut mid-way resumes from the offset a GET gives (or is unknown
//     only if the kill cut its PUT or DELETE); heron gc --grace 0s then
//     leaves no session, temporary file or unlisted blob.
//     TestCrashPushBucket does the same with the tree in a bucket.
//   - TestCrashFirstPublish kills the first publish into an empty folder
//     around the moment it writes heron-layout.json; publishing into the
//     folder again must work.
//   - TestSoak has a publisher move tags between two versions of an image
//     and of an index, in a loop, while clients pull those tags through
//     `heron serve` (with and without caches, and with blobs redirected to
//     a static file server): no 5xx, no digest mismatch, and every pull
//     gets one version whole.
//
// The tests are behind the reliability build tag, so that `go test ./...`
// stays fast; run them with `make reliability` (or
// `go test -tags reliability -v ./reliability/`). HERON_CRASH_KILLS,
// HERON_CRASH_S3_KILLS, HERON_CRASH_PUSH_KILLS, HERON_CRASH_PUSH_S3_KILLS,
// HERON_CRASH_SEED and HERON_SOAK_DURATION tune them; docs/reliability.md
// has the commands and the figures of a run.
package reliability
