package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
)

// ErrNotTree is returned for a root that exists, is not empty, and holds no
// heron-layout.json: publish refuses to write into a folder that holds
// something else.
var ErrNotTree = errors.New("not a heron tree")

// ErrNameConflict is returned for a repository whose file would clash with
// another repository's folder: "a/b" (repositories/a/b.json) and
// "a/b.json/c" (repositories/a/b.json/c.json) cannot both exist.
var ErrNameConflict = errors.New("repository name conflict")

// ErrNoTargets is returned by Publish when it is given nowhere to publish to.
var ErrNoTargets = errors.New("no target: give at least one NAME:TAG")

// Publisher writes images into the tree behind a Sink. It is the only
// writer of a tree. A Publisher holds no state between calls, and any
// number of them, in any number of processes, may write the same tree at
// once when the sink is a [LockSink] (FSSink is): each read-modify-write of
// a repository file or of the catalog holds that file's lock, so no update
// is lost.
type Publisher struct {
	sink        Sink
	log         *slog.Logger
	shardSize   int
	blobBaseURL string // normalized (layout.NormalizeBlobBaseURL)
	// optErr is the error of an option that was given a bad value; the
	// methods that use the option return it.
	optErr   error
	policy   Policy
	progress Progress
	jobs     int
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithLogger sets where the publisher logs (at debug level: what it writes
// and skips). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(p *Publisher) {
		if l != nil {
			p.log = l
		}
	}
}

// WithCatalogShardSize sets the most names a catalog shard holds; the
// default is layout.CatalogShardSize. Tests use small values.
func WithCatalogShardSize(n int) Option {
	return func(p *Publisher) {
		if n > 0 {
			p.shardSize = n
		}
	}
}

// WithBlobBaseURL sets the blobBaseURL of every repository published to:
// the server redirects blob requests to <url>/blobs/<alg>/<hex>. Final
// slashes are dropped. Without it, a repository keeps the one it has. A
// URL that layout.ValidateBlobBaseURL refuses makes Publish and RunBatch
// fail before they write anything.
func WithBlobBaseURL(u string) Option {
	return func(p *Publisher) {
		base, err := layout.NormalizeBlobBaseURL(u)
		if err != nil {
			p.optErr = err
			return
		}
		p.blobBaseURL = base
	}
}

// New returns a Publisher writing through sink.
func New(sink Sink, opts ...Option) *Publisher {
	p := &Publisher{
		sink:      sink,
		log:       slog.New(slog.DiscardHandler),
		shardSize: layout.CatalogShardSize,
		policy:    PolicyImmediate,
		progress:  noProgress{},
		jobs:      defaultJobs,
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Result tells what a Publish did.
type Result struct {
	// Source is the source as the user spelled it, and Policy the policy
	// it was published with.
	Source string
	Policy Policy
	// Digest and MediaType are those of the published manifest or index.
	Digest    digest.Digest
	MediaType string
	// Targets are the repositories and tags it was published to.
	Targets []Target
	// Manifests and Blobs count the image's manifests (the index and its
	// children) and blobs (configs and layers).
	Manifests, Blobs int
	// BlobsWritten and BytesWritten count the blobs (manifests included)
	// copied into the tree; BlobsSkipped and BytesSkipped those that were
	// already there.
	BlobsWritten, BlobsSkipped int
	BytesWritten, BytesSkipped int64
	// BlobsDeferred and BytesDeferred count the blobs an on_demand
	// publish listed without storing them (see PolicyOnDemand).
	BlobsDeferred int
	BytesDeferred int64
	// RepositoriesWritten lists the repository files that were rewritten
	// (those that did not change are not).
	RepositoriesWritten []string
	// CatalogChanged reports whether a repository name was added to the
	// catalog.
	CatalogChanged bool
	// LayoutCreated reports whether this publish initialised the tree.
	LayoutCreated bool
}

// Publish copies the image src resolves to into the tree and tags it with
// every target: blobs first, then manifests (children before indexes), then
// the repository files (the commit point), then the catalog.
//
// The whole source is read and checked, and every target repository file
// read, before anything is written, so that a bad source or target writes
// nothing at all. A failure while content is copied (a blob that does not
// match its digest, a full disk) leaves the tree as it was when the sink can
// stage content (see StageSink); the first publish into a new root has then
// written heron-layout.json only. If renaming verified content into place
// fails, that content may remain, unreferenced, for a later gc. A publish
// that would change nothing writes nothing.
func (p *Publisher) Publish(ctx context.Context, src source.Source, targets []Target) (*Result, error) {
	return p.publish(ctx, src, targets, p.publishOpts())
}

// publishOpts is what one publish is made with.
type publishOpts struct {
	// blobBaseURL (normalized), when set, is set on every target
	// repository.
	blobBaseURL string
	// policy says what the publish stores.
	policy Policy
	// updateCatalog adds the target repositories to the catalog once
	// their files are written. RunBatch publishes without, and updates
	// the catalog once, at the end.
	updateCatalog bool
	// untagged accepts targets with an empty Tag: the image is listed in
	// the repository, tagged nothing (a pull by digest of the
	// pull-through cache, Puller.PullDigest).
	untagged bool
}

// publishOpts returns what Publish publishes with: the publisher's options.
func (p *Publisher) publishOpts() publishOpts {
	return publishOpts{blobBaseURL: p.blobBaseURL, policy: p.policy, updateCatalog: true}
}

// publish is Publish with opts rather than the publisher's options.
func (p *Publisher) publish(ctx context.Context, src source.Source, targets []Target, opts publishOpts) (_ *Result, err error) {
	byRepo, names, err := groupTargets(targets, opts.untagged)
	if err != nil {
		return nil, err
	}
	if p.optErr != nil {
		return nil, p.optErr
	}
	if err := checkPolicy(opts.policy, src); err != nil {
		return nil, err
	}
	rootDesc, err := src.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	pl, err := buildPlan(ctx, src, rootDesc, p.presentBlob)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	applyPolicy(opts.policy, pl, src)
	needInit, err := p.checkTree(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := p.prepareRepository(ctx, name, touchOf(pl, byRepo[name]), applyImage(pl, byRepo[name], opts.blobBaseURL)); err != nil {
			return nil, fmt.Errorf("repository %s: %w", name, err)
		}
	}

	res := &Result{
		Digest:    pl.root.desc.Digest,
		MediaType: pl.root.desc.MediaType,
		Source:    src.String(),
		Policy:    opts.policy,
		Targets:   targets,
		Manifests: len(pl.manifests),
		Blobs:     len(pl.blobs) + len(pl.lazy),
	}
	// The marker goes first, so that a publish that fails below leaves
	// an initialised (empty) tree that the next publish accepts, rather
	// than a folder of stray files it refuses.
	if needInit {
		if err := p.initTree(ctx); err != nil {
			return nil, err
		}
		res.LayoutCreated = true
	}
	staged, err := p.stage(ctx, src, pl, res)
	defer func() {
		for _, st := range staged {
			if aerr := st.Abort(); aerr != nil && err == nil {
				err = aerr
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	for _, st := range staged {
		if err := st.Commit(ctx); err != nil {
			return nil, err
		}
	}
	if err := p.keepContent(ctx, src, pl, names); err != nil {
		return nil, err
	}
	protected := map[string]bool{} // as each repository file was written
	for _, name := range names {
		apply := p.touchAdded(ctx, applyImage(pl, byRepo[name], opts.blobBaseURL))
		changed, err := p.updateRepository(ctx, name, touchOf(pl, byRepo[name]), func(r *layout.Repository) error {
			err := apply(r)
			protected[name] = r.Protected
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", name, err)
		}
		if changed {
			res.RepositoriesWritten = append(res.RepositoriesWritten, name)
		}
	}
	if opts.updateCatalog {
		if res.CatalogChanged, err = p.addToCatalog(ctx, names, protected, true); err != nil {
			return nil, fmt.Errorf("updating the catalog (the repositories are published): %w", err)
		}
	}
	p.log.DebugContext(ctx, "published", "source", src.String(), "digest", res.Digest,
		"written", res.BlobsWritten, "skipped", res.BlobsSkipped, "bytes", res.BytesWritten)
	return res, nil
}

// groupTargets validates targets and returns their tags by repository,
// and the repositories, sorted. With untagged, a target may have no tag.
func groupTargets(targets []Target, untagged bool) (map[string][]string, []string, error) {
	if len(targets) == 0 {
		return nil, nil, ErrNoTargets
	}
	byRepo := map[string][]string{}
	var names []string
	for _, t := range targets {
		if untagged && t.Tag == "" {
			if err := layout.ValidateRepository(t.Repository); err != nil {
				return nil, nil, fmt.Errorf("target %q: %w", t.Repository, err)
			}
		} else if err := t.Validate(); err != nil {
			return nil, nil, err
		}
		if _, ok := byRepo[t.Repository]; !ok {
			names = append(names, t.Repository)
			byRepo[t.Repository] = nil
		}
		if t.Tag != "" {
			byRepo[t.Repository] = append(byRepo[t.Repository], t.Tag)
		}
	}
	sort.Strings(names)
	return byRepo, names, nil
}

// checkTree reads heron-layout.json. It reports whether the tree must be
// initialised (no layout file, and an empty or missing root), and refuses
// another layout version or a root holding something else.
func (p *Publisher) checkTree(ctx context.Context) (needInit bool, err error) {
	b, err := p.sink.ReadFile(ctx, layout.LayoutFileKey(), layout.MaxLayoutFileSize)
	if err == nil {
		if _, err := layout.DecodeLayoutFile(b); err != nil {
			return false, fmt.Errorf("refusing to write into this tree: %w", err)
		}
		return false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if es, ok := p.sink.(EmptySink); ok {
		empty, err := es.Empty(ctx)
		if err != nil {
			return false, err
		}
		if !empty {
			// Another publisher may have initialised the tree
			// since the marker was read.
			if CheckTree(ctx, p.sink) == nil {
				return false, nil
			}
			return false, fmt.Errorf("%w: the root holds files but no %s; refusing to write into it (use an empty or new folder)", ErrNotTree, layout.LayoutFileKey())
		}
	}
	return true, nil
}

// Init makes the root a heron tree, empty, unless it is one: a missing or
// empty root gets its heron-layout.json; a root holding something else,
// or a tree of another layout version, is an error. heron serve calls it
// for a pull-through cache, which may start from nothing.
func (p *Publisher) Init(ctx context.Context) error {
	needInit, err := p.checkTree(ctx)
	if err != nil || !needInit {
		return err
	}
	return p.initTree(ctx)
}

// initTree writes heron-layout.json into a tree that checkTree found
// must be initialised.
func (p *Publisher) initTree(ctx context.Context) error {
	if err := p.sink.Put(ctx, layout.LayoutFileKey(), bytes.NewReader(layout.EncodeLayoutFile()), Want{}); err != nil {
		return fmt.Errorf("initialising the tree: %w", err)
	}
	return nil
}

// CheckTree reports whether the sink holds a heron tree this package can
// read: a heron-layout.json of layout.Version. A missing layout file is
// ErrNotTree.
func CheckTree(ctx context.Context, sink Sink) error {
	b, err := sink.ReadFile(ctx, layout.LayoutFileKey(), layout.MaxLayoutFileSize)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: no %s", ErrNotTree, layout.LayoutFileKey())
	}
	if err != nil {
		return err
	}
	_, err = layout.DecodeLayoutFile(b)
	return err
}
