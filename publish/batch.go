package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BatchOptions configures RunBatch.
type BatchOptions struct {
	// Prune removes what the batch does not list: the tags of a listed
	// repository that it does not list (then the manifests and blobs no
	// remaining tag reaches, from the repository file), and the
	// repositories of the catalog that it does not list.
	Prune bool
	// OpenSource turns a source of the batch into a source.Source; the
	// default is source.Parse.
	OpenSource func(spec string) (source.Source, error)
}

// BatchResult tells what RunBatch did.
type BatchResult struct {
	// Repositories has one entry per repository of the batch, in its
	// order.
	Repositories []BatchRepositoryResult
	// Pruned lists the repositories removed because the batch does not
	// list them (with BatchOptions.Prune).
	Pruned []string
	// CatalogChanged reports whether the catalog was rewritten.
	CatalogChanged bool
	// LayoutCreated reports whether the run initialised the tree.
	LayoutCreated bool
	// BlobsWritten and BytesWritten count the blobs (manifests included)
	// copied into the tree.
	BlobsWritten int
	BytesWritten int64
}

// BatchRepositoryResult tells what RunBatch did to one repository.
type BatchRepositoryResult struct {
	Name string
	// Published lists the tags that were published (their source's
	// manifest was not the one they named); Unchanged those that already
	// named it, whose sources were not read beyond their manifest
	// digest; PrunedTags those removed with BatchOptions.Prune.
	Published, Unchanged, PrunedTags []string
	// Written reports whether the repository file was rewritten.
	Written bool
	// Err is why the repository could not be brought to what the batch
	// says; the other repositories are processed all the same.
	Err error
}

// RunBatch brings the tree to what the batch says, incrementally: a tag
// whose source's manifest digest is the one it names already is skipped
// without reading the source any further (for an OCI layout, reading its
// index.json is all it costs), a setting that does not change is not
// written, and a run that changes nothing writes no file at all.
//
// Each repository is processed in turn: settings first (so that a
// repository that becomes protected is never served unprotected with new
// content), then each source whose tags changed is published like
// Publish does, then, with Prune, the tags the batch does not list are
// removed. The catalog is updated once, at the end, then the repositories
// the batch does not list are removed with Prune.
//
// Every source of the batch is parsed before anything is written. A
// repository that fails (an unreadable source, say) does not stop the
// others: its error is in its BatchRepositoryResult, its tags are not
// pruned, and the errors of all are returned, joined, with the result.
func (p *Publisher) RunBatch(ctx context.Context, b *Batch, opts BatchOptions) (*BatchResult, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	open := opts.OpenSource
	if open == nil {
		open = source.Parse
	}
	if err := parseSources(b, open); err != nil {
		return nil, err
	}
	res := &BatchResult{Repositories: make([]BatchRepositoryResult, len(b.Repositories))}
	if len(b.Repositories) == 0 && !opts.Prune {
		return res, nil
	}
	if p.optErr != nil {
		return nil, p.optErr
	}
	needInit, err := p.checkTree(ctx)
	if err != nil {
		return nil, err
	}
	if needInit {
		if len(b.Repositories) == 0 {
			return res, nil // nothing to publish, nothing to prune
		}
		if err := p.initTree(ctx); err != nil {
			return nil, err
		}
		res.LayoutCreated = true
	}

	run := &batchRun{p: p, prune: opts.Prune, open: open, resolved: map[string]resolved{}, protected: map[string]bool{}, res: res}
	var errs []error
	names := make([]string, 0, len(b.Repositories))
	for i := range b.Repositories {
		r := &b.Repositories[i]
		rr := &res.Repositories[i]
		rr.Name = r.Name
		names = append(names, r.Name)
		err := run.repository(ctx, r, rr)
		sort.Strings(rr.Published)
		sort.Strings(rr.Unchanged)
		if err != nil {
			if ctx.Err() != nil {
				return res, err
			}
			rr.Err = fmt.Errorf("repository %s: %w", r.Name, err)
			errs = append(errs, rr.Err)
		}
	}
	changed, err := p.addToCatalog(ctx, names, run.protected, true)
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("updating the catalog: %w", err))...)
	}
	res.CatalogChanged = res.CatalogChanged || changed
	if opts.Prune {
		if err := run.pruneRepositories(ctx, names); err != nil {
			return res, errors.Join(append(errs, err)...)
		}
	}
	return res, errors.Join(errs...)
}

// parseSources opens and closes every source of the batch, so that a
// source that does not parse fails the run before anything is written.
func parseSources(b *Batch, open func(spec string) (source.Source, error)) error {
	for _, r := range b.Repositories {
		for _, tag := range sortedKeys(r.Tags) {
			src, err := open(r.Tags[tag])
			if err != nil {
				return fmt.Errorf("repository %s: tag %s: %w", r.Name, tag, err)
			}
			if err := src.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

// batchRun is one run of RunBatch: what it was given, the sources it has
// resolved so far, and what it did.
type batchRun struct {
	p     *Publisher
	prune bool
	open  func(spec string) (source.Source, error)
	// resolved holds the manifest descriptor of every source resolved so
	// far: a source is resolved once per run, whatever the number of
	// repositories that list it.
	resolved map[string]resolved
	// protected holds whether each repository is protected, as its file
	// was read or written last: the catalog's marks are checked against
	// it at the end (see addToCatalog).
	protected map[string]bool
	res       *BatchResult
}

// resolved is a source's manifest descriptor, or why it has none.
type resolved struct {
	desc ocispec.Descriptor
	err  error
}

// repository brings one repository to what r says, in three steps: its
// settings, then the sources whose tags changed, then, with Prune, the
// tags r does not list.
func (b *batchRun) repository(ctx context.Context, r *BatchRepository, rr *BatchRepositoryResult) error {
	cur, err := loadRepository(ctx, b.p.sink, r.Name)
	if err != nil {
		return err
	}
	if cur != nil {
		b.protected[r.Name] = cur.Protected
	}
	opts, err := b.p.batchPublishOpts(r)
	if err != nil {
		return err
	}
	settings, err := b.p.batchSettings(r)
	if err != nil {
		return err
	}

	// Settings first: an existing repository gets them now; a new one
	// just before its first content (see publishChanged), unless Publish
	// sets them with it (it sets the blobBaseURL, not protection).
	settingsDue := settings.needed(cur)
	if settingsDue && cur != nil {
		if err := b.applySettings(ctx, r.Name, settings, rr); err != nil {
			return err
		}
		settingsDue = false
	}
	if err := b.publishChanged(ctx, r, cur, opts, settings, settingsDue, rr); err != nil {
		return err
	}
	if !b.prune {
		return nil
	}
	return b.pruneTags(ctx, r, cur, rr)
}

// batchSettings are the settings a batch gives a repository besides its
// tags; a nil field leaves the repository's as it is.
type batchSettings struct {
	blobBaseURL *string // normalized
	protected   *bool
}

// batchSettings returns the settings of r: its blobBaseURL, else the
// publisher's (WithBlobBaseURL), and its protection.
func (p *Publisher) batchSettings(r *BatchRepository) (batchSettings, error) {
	base := r.BlobBaseURL
	if base == nil && p.blobBaseURL != "" {
		base = &p.blobBaseURL
	}
	if base != nil {
		normalized, err := layout.NormalizeBlobBaseURL(*base)
		if err != nil {
			return batchSettings{}, err
		}
		base = &normalized
	}
	return batchSettings{blobBaseURL: base, protected: r.Protected}, nil
}

// needed reports whether the settings must be written to the repository
// file cur: when one differs from cur's, or, for a new repository (cur is
// nil), when it is to be protected (publishing its content sets its
// blobBaseURL, not its protection).
func (s batchSettings) needed(cur *layout.Repository) bool {
	if cur == nil {
		return s.protected != nil && *s.protected
	}
	return (s.blobBaseURL != nil && cur.BlobBaseURL != *s.blobBaseURL) || (s.protected != nil && cur.Protected != *s.protected)
}

// apply sets the settings on repo: the mutation of a repository file that
// writes them.
func (s batchSettings) apply(repo *layout.Repository) error {
	if s.blobBaseURL != nil {
		repo.BlobBaseURL = *s.blobBaseURL
	}
	if s.protected != nil {
		repo.Protected = *s.protected
	}
	return nil
}

// applySettings writes the settings to the file of repository name. A
// repository that becomes protected is marked so in the catalog first
// (see protectRepository); one that is no longer protected is unmarked
// after its file is written.
func (b *batchRun) applySettings(ctx context.Context, name string, s batchSettings, rr *BatchRepositoryResult) error {
	var written, listed bool
	var err error
	if s.protected != nil && *s.protected {
		written, listed, err = b.p.protectRepository(ctx, name, s.apply)
	} else {
		written, err = b.p.updateRepository(ctx, name, &touchKeys{}, s.apply)
		if err == nil && s.protected != nil && written {
			listed, err = b.p.addToCatalog(ctx, []string{name}, map[string]bool{name: false}, true)
		}
	}
	rr.Written = rr.Written || written
	b.res.CatalogChanged = b.res.CatalogChanged || listed
	if err == nil && s.protected != nil {
		b.protected[name] = *s.protected
	}
	return err
}

// publishChanged publishes, one source after the other, each source of r
// whose tags do not all name its manifest in cur already (see
// changedSource), with opts. With settingsDue (a new repository that is to
// be protected), the settings are written just before the first of them
// is published, once: a failure there fails that source. A source that
// fails does not stop the others; the errors of all are returned, joined.
func (b *batchRun) publishChanged(ctx context.Context, r *BatchRepository, cur *layout.Repository, opts publishOpts,
	settings batchSettings, settingsDue bool, rr *BatchRepositoryResult) error {
	var errs []error
	for _, st := range tagsBySource(r.Tags) {
		src, err := b.changedSource(ctx, st.spec, cur, st.tags, opts.policy != PolicyOnDemand)
		if err == nil && src == nil {
			rr.Unchanged = append(rr.Unchanged, st.tags...)
			continue
		}
		if err == nil {
			if settingsDue {
				// Due until written: a source published without
				// them would serve a protected repository to anyone.
				if err = b.applySettings(ctx, r.Name, settings, rr); err == nil {
					settingsDue = false
				}
			}
			if err == nil {
				err = b.publishTags(ctx, src, r.Name, st.tags, opts, rr)
			}
			_ = src.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("source %s (tags %s): %w", st.spec, strings.Join(st.tags, ", "), err))
		}
	}
	return errors.Join(errs...)
}

// sourceTags is a source of a batch repository and the tags it is
// published to.
type sourceTags struct {
	spec string
	tags []string // sorted
}

// tagsBySource groups tags (tag → source) by source, sorted by source.
func tagsBySource(tags map[string]string) []sourceTags {
	bySource := map[string][]string{}
	for tag, spec := range tags {
		bySource[spec] = append(bySource[spec], tag)
	}
	out := make([]sourceTags, 0, len(bySource))
	for spec, tags := range bySource {
		sort.Strings(tags)
		out = append(out, sourceTags{spec: spec, tags: tags})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec < out[j].spec })
	return out
}

// changedSource resolves spec (once per run) and returns it open, for the
// caller to publish and close, unless every tag of cur names the source's
// manifest already and, when needStored (the immediate policy), every blob
// that manifest reaches is stored: then it returns nil, nil. (A repository
// published on_demand and now listed as immediate gets its blobs filled
// in.)
func (b *batchRun) changedSource(ctx context.Context, spec string, cur *layout.Repository, tags []string, needStored bool) (source.Source, error) {
	var src source.Source
	rv, ok := b.resolved[spec]
	if !ok {
		var err error
		if src, err = b.open(spec); err != nil {
			closeSource(src)
			return nil, err
		}
		rv.desc, rv.err = src.Resolve(ctx)
		if ctx.Err() != nil {
			closeSource(src)
			return nil, ctx.Err()
		}
		b.resolved[spec] = rv
	}
	if rv.err != nil {
		closeSource(src)
		return nil, rv.err
	}
	if cur != nil && allNamed(cur, tags, rv.desc.Digest) && (!needStored || allStored(cur, rv.desc.Digest)) {
		closeSource(src)
		return nil, nil
	}
	if src != nil {
		return src, nil
	}
	src, err := b.open(spec)
	if err != nil {
		closeSource(src)
		return nil, err
	}
	return src, nil
}

// closeSource closes src, if there is one.
func closeSource(src source.Source) {
	if src != nil {
		_ = src.Close()
	}
}

// publishTags publishes src to the tags of repository name with opts, and
// counts what it did.
func (b *batchRun) publishTags(ctx context.Context, src source.Source, name string, tags []string, opts publishOpts, rr *BatchRepositoryResult) error {
	targets := make([]Target, len(tags))
	for i, t := range tags {
		targets[i] = Target{Repository: name, Tag: t}
	}
	pres, err := b.p.publish(ctx, src, targets, opts)
	if err != nil {
		return err
	}
	rr.Published = append(rr.Published, tags...)
	rr.Written = rr.Written || len(pres.RepositoriesWritten) > 0
	b.res.BlobsWritten += pres.BlobsWritten
	b.res.BytesWritten += pres.BytesWritten
	return nil
}

// pruneTags removes the tags of the repository that r does not list, then
// the manifests and blobs no remaining tag reaches. The file read at the
// start (cur) tells whether there is anything to remove, unless something
// was published since.
func (b *batchRun) pruneTags(ctx context.Context, r *BatchRepository, cur *layout.Repository, rr *BatchRepositoryResult) error {
	if len(rr.Published) == 0 && (cur == nil || !needsTagPrune(cur, r.Tags)) {
		return nil
	}
	var pruned []string
	written, err := b.p.editRepository(ctx, r.Name, false, nil, func(repo *layout.Repository) error {
		pruned = pruned[:0]
		for tag := range repo.Tags {
			if _, ok := r.Tags[tag]; !ok {
				pruned = append(pruned, tag)
				delete(repo.Tags, tag)
			}
		}
		dropUnreachable(repo)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil // removed meanwhile
	}
	if err != nil {
		return err
	}
	sort.Strings(pruned)
	rr.PrunedTags = pruned
	rr.Written = rr.Written || written
	return nil
}

// needsTagPrune reports whether repo has a tag tags does not list, or a
// manifest or blob no tag reaches.
func needsTagPrune(repo *layout.Repository, tags map[string]string) bool {
	for tag := range repo.Tags {
		if _, ok := tags[tag]; !ok {
			return true
		}
	}
	return hasUnreachable(repo)
}

// pruneRepositories removes the repositories of the catalog that are not
// among names (the batch's).
func (b *batchRun) pruneRepositories(ctx context.Context, names []string) error {
	listed, err := CatalogNames(ctx, b.p.sink)
	if err != nil {
		return err
	}
	names = slices.Sorted(slices.Values(names))
	extra := subtractSorted(listed, names)
	if len(extra) == 0 {
		return nil
	}
	b.res.Pruned, err = b.p.removeRepositories(ctx, extra)
	b.res.CatalogChanged = b.res.CatalogChanged || len(b.res.Pruned) > 0
	if err != nil {
		return fmt.Errorf("pruning repositories: %w", err)
	}
	return nil
}

// allStored reports whether every blob manifest d reaches in repo (through
// index children) is stored in the tree.
func allStored(repo *layout.Repository, d digest.Digest) bool {
	seen := map[digest.Digest]bool{}
	var walk func(digest.Digest) bool
	walk = func(d digest.Digest) bool {
		if seen[d] {
			return true
		}
		seen[d] = true
		m := repo.Manifests[d]
		for _, b := range m.Blobs {
			if !repo.Blobs[b].IsStored() {
				return false
			}
		}
		for _, c := range m.Children {
			if !walk(c) {
				return false
			}
		}
		return true
	}
	return walk(d)
}

// allNamed reports whether every tag of repo names d.
func allNamed(repo *layout.Repository, tags []string, d digest.Digest) bool {
	for _, t := range tags {
		if repo.Tags[t] != d {
			return false
		}
	}
	return true
}

// batchPublishOpts returns what the sources of batch repository r are
// published with: its blobBaseURL and policy, else the publisher's, and
// no catalog update (RunBatch updates the catalog once, at the end).
func (p *Publisher) batchPublishOpts(r *BatchRepository) (publishOpts, error) {
	opts := p.publishOpts()
	opts.updateCatalog = false
	if r.BlobBaseURL != nil {
		base, err := layout.NormalizeBlobBaseURL(*r.BlobBaseURL)
		if err != nil {
			return publishOpts{}, err
		}
		opts.blobBaseURL = base
	}
	if r.Policy != "" {
		pol, err := ParsePolicy(r.Policy)
		if err != nil {
			return publishOpts{}, err
		}
		opts.policy = pol
	}
	return opts, nil
}
