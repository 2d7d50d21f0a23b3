package redirector

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
)

// Puller makes repositories of the tree a cache of another registry (a
// pull-through cache, heron serve --pull-through PREFIX=URL): it brings
// what a client asks for into the tree, through the same writer as heron
// publish (cmd/heron wires one built on package publish, as it wires the
// Filler). Blobs then come on demand through the Filler.
type Puller interface {
	// PullTag makes tag of repository name (in the tree) what tag of
	// repository upstream is at the registry of up now: it asks the
	// upstream for the tag's digest (a HEAD), and, when the tree's tag
	// names another manifest, retags (the manifest is in the tree) or
	// publishes the upstream's manifest on_demand. It returns
	// ErrUpstreamUnknown when the upstream has no such repository or
	// tag, and another error when it cannot tell.
	PullTag(ctx context.Context, up PullThrough, upstream, name, tag string) error
	// PullDigest brings manifest d of repository upstream into
	// repository name, untagged, unless the tree holds it already.
	PullDigest(ctx context.Context, up PullThrough, upstream, name string, d digest.Digest) error
}

// ErrUpstreamUnknown is what a Puller returns when the upstream registry
// does not know what was asked for (a 404).
var ErrUpstreamUnknown = errors.New("unknown to the upstream registry")

// PullThrough is one cache of an upstream registry: the repositories
// whose names start with Prefix + "/" are those of the registry at URL,
// without the prefix.
type PullThrough struct {
	// Prefix is the first component(s) of the names of the cached
	// repositories, such as "docker.io" or "mirror/ghcr".
	Prefix string
	// URL is the registry's base URL: https://HOST[:PORT], or
	// http://HOST[:PORT] for a plain-HTTP registry.
	URL string
}
