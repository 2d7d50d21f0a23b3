package publish

import (
	"errors"
	"fmt"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
)

// Policy says what a publish stores of the content an image references.
type Policy string

const (
	// PolicyImmediate stores every blob and manifest: the tree holds the
	// whole image. It is the default.
	PolicyImmediate Policy = "immediate"
	// PolicyOnDemand (lazy sync) stores the tags and every manifest
	// (indexes and their children), but no blob the tree does not hold
	// already: the repository file lists each missing blob with
	// "stored": false, and records the registry repository it can be
	// fetched from ("upstream"). The server answers HEAD for such a blob
	// from the repository file. A later immediate publish of the same
	// content stores the blobs and marks them stored. Only a registry
	// source (docker://) can be published on_demand: a local source
	// leaves nothing to fetch from later.
	PolicyOnDemand Policy = "on_demand"
)

// ErrNoUpstream is returned for an on_demand publish of a source that is
// not a registry: the blobs it would leave out could never be fetched.
var ErrNoUpstream = errors.New("on_demand needs a registry source (docker://…) to fetch the blobs it does not store from; publish a local source with --policy immediate")

// ErrUpstreamConflict is returned for an on_demand publish from another
// upstream than the one a repository already fetches missing blobs from.
var ErrUpstreamConflict = errors.New("upstream conflict")

// ParsePolicy parses "immediate" or "on_demand" (the spelling of the
// issue and of Pulp; "on-demand" is accepted too). The empty string is
// PolicyImmediate.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", string(PolicyImmediate):
		return PolicyImmediate, nil
	case string(PolicyOnDemand), "on-demand":
		return PolicyOnDemand, nil
	}
	return "", fmt.Errorf("policy %q: want %s or %s", s, PolicyImmediate, PolicyOnDemand)
}

// WithPolicy sets what a publish stores; the default is PolicyImmediate.
func WithPolicy(pol Policy) Option {
	return func(p *Publisher) { p.policy = pol }
}

// checkPolicy refuses an unknown policy, and on_demand of a source that
// has no upstream, before anything is read.
func checkPolicy(pol Policy, src source.Source) error {
	switch pol {
	case "", PolicyImmediate:
		return nil
	case PolicyOnDemand:
		if _, ok := src.(source.UpstreamSource); !ok {
			return fmt.Errorf("%s: %w", src, ErrNoUpstream)
		}
		return nil
	}
	_, err := ParsePolicy(string(pol))
	return err
}

// applyPolicy moves, for an on_demand publish, the blobs the tree does not
// hold from pl.blobs (what the publish stores) to pl.lazy (what it lists
// only), and sets where they can be fetched from.
func applyPolicy(pol Policy, pl *plan, src source.Source) {
	if pol != PolicyOnDemand {
		return
	}
	us, ok := src.(source.UpstreamSource)
	if !ok {
		return
	}
	kept := pl.blobs[:0:0]
	for _, b := range pl.blobs {
		if pl.present[b.Digest] {
			kept = append(kept, b)
		} else {
			pl.lazy = append(pl.lazy, b)
		}
	}
	pl.blobs = kept
	if len(pl.lazy) > 0 {
		u := us.Upstream()
		pl.upstream = &u
	}
}

// recordLazy lists the blobs an on_demand publish left out as not stored,
// and sets the repository's upstream. A repository fetches every missing
// blob from one upstream: moving it elsewhere while it lists missing blobs
// this publish does not cover would leave those unfetchable, so that is
// refused.
func recordLazy(r *layout.Repository, pl *plan) error {
	if len(pl.lazy) == 0 {
		return nil
	}
	notStored := false
	for _, b := range pl.lazy {
		nb := layout.Blob{Size: b.Size, MediaType: b.MediaType, Stored: &notStored}
		if old, ok := r.Blobs[b.Digest]; ok && old.MediaType != "" {
			// As for stored blobs: the first media type recorded stays.
			nb.MediaType = old.MediaType
		}
		r.Blobs[b.Digest] = nb
	}
	if r.Upstream != nil && *r.Upstream != *pl.upstream {
		inPlan := make(map[digest.Digest]bool, len(pl.blobs)+len(pl.lazy))
		for _, b := range pl.blobs {
			inPlan[b.Digest] = true
		}
		for _, b := range pl.lazy {
			inPlan[b.Digest] = true
		}
		for d, b := range r.Blobs {
			if !b.IsStored() && !inPlan[d] {
				return fmt.Errorf("%w: the repository fetches the blobs it does not store (%s among them) from %s/%s; an on_demand publish from %s/%s would lose them: publish with --policy immediate, or from the same upstream",
					ErrUpstreamConflict, d, r.Upstream.Registry, r.Upstream.Repository, pl.upstream.Registry, pl.upstream.Repository)
			}
		}
	}
	u := *pl.upstream
	r.Upstream = &u
	return nil
}
