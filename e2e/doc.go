// Package e2e is heron's end-to-end suite: it publishes every test fixture
// with `heron publish`, serves the tree with `heron serve`, and pulls each
// fixture with real clients (skopeo, podman, crane, oras, regctl), checking
// that what arrives has the expected digests. It runs twice: with blobs
// served by heron, and with blobs redirected (307) to a static file server
// that plays the CDN.
//
// The tests are behind the e2e build tag, so that `go test ./...` stays
// fast; run them with `make e2e` (or `go test -tags e2e ./e2e/...`) after
// `make tools`. They print one summary line, "e2e: N passed, N failed,
// N skipped", counting one subtest per client, fixture and mode. With
// CI=true a client that is not installed fails its subtests; otherwise they
// are skipped with a message. docs/clients.md says which client pulls which
// fixture and why.
package e2e
