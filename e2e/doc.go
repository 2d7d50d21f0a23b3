// Package e2e is heron's end-to-end suite: it publishes every test fixture
// with `heron publish`, serves the tree with `heron serve`, and pulls each
// fixture with real clients (skopeo, podman, crane, oras, regctl), checking
// that what arrives has the expected digests. It runs twice: with blobs
// served by heron, and with blobs redirected (307) to a static file server
// that plays the CDN. Two of the repositories it pulls from, e2e/oci-image
// and e2e/oci-index, hold 100,000 more tags (E2E_BULK_TAGS), added with
// `heron tag`, so that they keep their tags in shard files; TestTagList
// lists those tags with each client's own tag listing and checks every
// one arrives once, in order, and that every Link header was followed.
// The TestBucket tests do the same with a tree in an S3-compatible bucket,
// each against a versitygw of its own (internal/s3test): TestBucketPull
// pulls every fixture with every client from heron serve --root s3://…,
// with blobs redirected to presigned URLs (the clients follow them to
// versitygw) and with --serve-blobs; the others publish into a bucket
// (every kind of source, a batch run twice), run heron tag, rm, gc and
// verify on it, race two publishers on one repository, check the errors
// of a missing bucket and of refused credentials, and check that two
// servers on one bucket see a moved tag within --revalidate-after.
// TestSignedRedirectsNginx runs the one-machine layout of docs/deploy.md
// (nginx in front of heron serve, blobs redirected with signatures that
// nginx's secure_link checks) with nginx's configuration as the page
// shows it, and TestSignedRedirectsEdgeFunction runs the edge function of
// docs/signed-urls.md under Node.js.
//
// Content at request time (docs/mirror.md), with the suite's own heron
// serve (direct mode) as the upstream registry: TestOnDemandPull publishes
// every fixture --policy on_demand from it and pulls them all with every
// client from a second heron serve, which fetches each blob once and
// stores it; TestPullThroughPull pulls every fixture with skopeo, crane
// and podman from a pull-through cache (--pull-through up=…) that starts
// from an empty folder, and sends a containerd ?ns= request;
// TestOnDemandKilledMidFetch SIGKILLs a server in the middle of a fetch
// from a slow upstream: nothing is stored, and a new server fetches the
// blob whole.
//
// Pushes (push_test.go, pushauth_test.go), each into a heron serve --push
// of an empty tree of its own: TestPushClients pushes with skopeo (copy
// --all --preserve-digests of indexes from the suite's server, and from
// the fixtures' OCI layout and archive), crane (push of an OCI layout and
// of a tarball, copy), oras (push of an artifact, attach of a referrer,
// copy -r) and podman (push from its own store), pulls every push back
// with crane and regctl checking every digest, then runs heron verify
// --deep and heron ls. TestPushInterrupted cuts a chunk of an upload in
// the middle (the repository is unchanged, the session resumes from its
// Range), TestPushKilledClient SIGKILLs skopeo during its upload,
// TestPushRacingTag races two crane pushes to one tag ten times,
// TestPushMaxUploadSize checks the 413s of --max-upload-size,
// TestPushDelete deletes tags, manifests and blobs (405 without
// --delete), and TestPushManifestAfterGC refuses a manifest whose layer
// heron gc deleted. TestPushAuth runs the clients' pushes with
// --htpasswd and an access file, with basic credentials and with tokens
// (--token-key), and checks refusals: bad credentials, rights a user
// lacks, protected repositories probed every way, tokens for another
// repository or action, an expired token. TestHelm does it with helm (v4):
// helm registry login, push of a chart, pull (by version and digest, the
// package's bytes back), show chart, template; anonymous pulls of a public
// chart; refused pushes.
//
// TestTLS (tls_test.go) serves heron serve --push over HTTPS with a
// certificate from a test CA, --htpasswd and --tls-client-ca: every client
// trusts the CA without its insecure switch (skopeo and podman through
// --cert-dir/ca.crt, crane through SSL_CERT_FILE, oras through --ca-file,
// regctl through registry set --cacert), pushes with a password and pulls
// back with the digests checked; skopeo, podman and oras push with a
// client certificate alone (CN=ci); a certificate of another CA, no
// credentials at all, and ci pushing where it may only pull are refused;
// the server's certificate is replaced while it serves and the clients go
// on.
//
// The tests are behind the e2e build tag, so that `go test ./...` stays
// fast; run them with `make e2e` (or `go test -tags e2e ./e2e/...`) after
// `make tools`. They print one summary line, "e2e: N passed, N failed,
// N skipped", counting one subtest per client, fixture and mode, and one
// per client for the tag listing. With CI=true a client (or nginx) that
// is not installed fails its subtests; otherwise they are skipped with a
// message. docs/clients.md says which client pulls which fixture and why.
package e2e
