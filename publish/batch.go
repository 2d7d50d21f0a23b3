package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/heron-registry/heron/layout"
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
	// OpenSource turns a source of the batch into a Source; the default
	// is ParseSource.
	OpenSource func(spec string) (Source, error)
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

// resolved is a source's manifest descriptor, or why it has none.
type resolved struct {
	desc ocispec.Descriptor
	err  error
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
		open = ParseSource
	}
	for _, r := range b.Repositories {
		for _, tag := range sortedKeys(r.Tags) {
			src, err := open(r.Tags[tag])
			if err != nil {
				return nil, fmt.Errorf("repository %s: tag %s: %w", r.Name, tag, err)
			}
			if err := src.Close(); err != nil {
				return nil, err
			}
		}
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
		if err := p.sink.Put(ctx, layout.LayoutFileKey(), bytes.NewReader(layout.EncodeLayoutFile()), Want{}); err != nil {
			return nil, fmt.Errorf("initialising the tree: %w", err)
		}
		res.LayoutCreated = true
	}

	cache := map[string]resolved{}
	var errs []error
	names := make([]string, 0, len(b.Repositories))
	for i := range b.Repositories {
		r := &b.Repositories[i]
		rr := &res.Repositories[i]
		rr.Name = r.Name
		names = append(names, r.Name)
		err := p.batchRepository(ctx, r, opts, open, cache, res, rr)
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
	changed, err := p.addToCatalog(ctx, names, true)
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("updating the catalog: %w", err))...)
	}
	res.CatalogChanged = changed
	if opts.Prune {
		listed, err := CatalogNames(ctx, p.sink)
		if err != nil {
			return res, errors.Join(append(errs, err)...)
		}
		sort.Strings(names)
		extra := subtractSorted(listed, names)
		if len(extra) > 0 {
			res.Pruned, err = p.removeRepositories(ctx, extra)
			res.CatalogChanged = res.CatalogChanged || len(res.Pruned) > 0
			if err != nil {
				return res, errors.Join(append(errs, fmt.Errorf("pruning repositories: %w", err))...)
			}
		}
	}
	return res, errors.Join(errs...)
}

// batchRepository brings one repository to what r says.
func (p *Publisher) batchRepository(ctx context.Context, r *BatchRepository, opts BatchOptions, open func(string) (Source, error),
	cache map[string]resolved, res *BatchResult, rr *BatchRepositoryResult) error {
	cur, _, err := readRepository(ctx, p.sink, r.Name)
	if err != nil {
		return err
	}
	q, err := p.forBatch(r)
	if err != nil {
		return err
	}

	// Settings first: an existing repository gets them now; a new one
	// just before its first content, unless Publish sets them with it
	// (it sets the blobBaseURL, not protection).
	base, protected := r.BlobBaseURL, r.Protected
	if base == nil && p.blobBaseURL != "" {
		base = &p.blobBaseURL
	}
	if base != nil {
		normalized, err := layout.NormalizeBlobBaseURL(*base)
		if err != nil {
			return err
		}
		base = &normalized
	}
	var needSettings bool
	if cur == nil {
		needSettings = protected != nil && *protected
	} else {
		needSettings = (base != nil && cur.BlobBaseURL != *base) || (protected != nil && cur.Protected != *protected)
	}
	applySettings := func() error {
		if !needSettings {
			return nil
		}
		needSettings = false
		written, err := q.updateRepository(ctx, r.Name, func(repo *layout.Repository) error {
			if base != nil {
				repo.BlobBaseURL = *base
			}
			if protected != nil {
				repo.Protected = *protected
			}
			return nil
		})
		rr.Written = rr.Written || written
		return err
	}
	if cur != nil {
		if err := applySettings(); err != nil {
			return err
		}
	}

	// Then the sources whose tags changed, grouped by source.
	bySource := map[string][]string{}
	for tag, spec := range r.Tags {
		bySource[spec] = append(bySource[spec], tag)
	}
	specs := make([]string, 0, len(bySource))
	for spec, tags := range bySource {
		sort.Strings(tags)
		specs = append(specs, spec)
	}
	sort.Strings(specs)
	var errs []error
	for _, spec := range specs {
		tags := bySource[spec]
		unchanged := true
		err := p.batchSource(ctx, spec, cur, tags, q.policy != PolicyOnDemand, open, cache, func(src Source) error {
			unchanged = false
			if err := applySettings(); err != nil {
				return err
			}
			targets := make([]Target, len(tags))
			for i, t := range tags {
				targets[i] = Target{Repository: r.Name, Tag: t}
			}
			pres, err := q.Publish(ctx, src, targets)
			if err != nil {
				return err
			}
			rr.Published = append(rr.Published, tags...)
			rr.Written = rr.Written || len(pres.RepositoriesWritten) > 0
			res.BlobsWritten += pres.BlobsWritten
			res.BytesWritten += pres.BytesWritten
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("source %s (tags %s): %w", spec, strings.Join(tags, ", "), err))
			continue
		}
		if unchanged {
			rr.Unchanged = append(rr.Unchanged, tags...)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	// Then, with Prune, what the batch no longer lists. The file read at
	// the start tells, unless something was published since.
	if !opts.Prune || (len(rr.Published) == 0 && (cur == nil || !needsTagPrune(cur, r.Tags))) {
		return nil
	}
	var pruned []string
	written, err := q.editRepository(ctx, r.Name, false, func(repo *layout.Repository) error {
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

// batchSource resolves spec (once per run: the digest is cached) and calls
// publish with the opened source, unless every tag of cur names the
// source's manifest already and, when needStored (the immediate policy),
// every blob that manifest reaches is stored: a repository published
// on_demand and now listed as immediate gets its blobs filled in.
func (p *Publisher) batchSource(ctx context.Context, spec string, cur *layout.Repository, tags []string, needStored bool,
	open func(string) (Source, error), cache map[string]resolved, publish func(Source) error) error {
	var src Source
	defer func() {
		if src != nil {
			_ = src.Close()
		}
	}()
	rv, ok := cache[spec]
	if !ok {
		var err error
		if src, err = open(spec); err != nil {
			return err
		}
		rv.desc, rv.err = src.Resolve(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cache[spec] = rv
	}
	if rv.err != nil {
		return rv.err
	}
	if cur != nil && allNamed(cur, tags, rv.desc.Digest) && (!needStored || allStored(cur, rv.desc.Digest)) {
		return nil
	}
	if src == nil {
		var err error
		if src, err = open(spec); err != nil {
			return err
		}
	}
	return publish(src)
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

// forBatch returns the publisher a batch repository is published with: p
// with the repository's blobBaseURL and policy, that leaves the catalog to
// RunBatch.
func (p *Publisher) forBatch(r *BatchRepository) (*Publisher, error) {
	q := *p
	q.batchCatalog = true
	if r.BlobBaseURL != nil {
		base, err := layout.NormalizeBlobBaseURL(*r.BlobBaseURL)
		if err != nil {
			return nil, err
		}
		q.blobBaseURL = base
	}
	opt, err := batchPolicy(r.Policy)
	if err != nil {
		return nil, err
	}
	if opt != nil {
		opt(&q)
	}
	return &q, nil
}

// batchPolicy returns the option that sets a batch repository's policy,
// or nil to keep the publisher's own (see WithPolicy).
func batchPolicy(policy string) (Option, error) {
	if policy == "" {
		return nil, nil
	}
	pol, err := ParsePolicy(policy)
	if err != nil {
		return nil, err
	}
	return WithPolicy(pol), nil
}
