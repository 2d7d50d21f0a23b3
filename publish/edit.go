package publish

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// RemoveTags removes tags from repository name, then drops from the
// repository file every manifest no longer reachable from a tag (through
// index children, and referrers of reachable manifests) and every blob no
// longer referenced by a manifest it keeps. The bytes stay in blobs/ for
// gc. A missing repository or tag is ErrNotFound, and nothing is changed.
// It reports how many manifests and blobs were dropped.
func (p *Publisher) RemoveTags(ctx context.Context, name string, tags ...string) (manifests, blobs int, err error) {
	if err := CheckTree(ctx, p.sink); err != nil {
		return 0, 0, err
	}
	for _, t := range tags {
		if err := layout.ValidateTag(t); err != nil {
			return 0, 0, err
		}
	}
	_, err = p.editRepository(ctx, name, false, nil, func(r *layout.Repository) error {
		for _, t := range tags {
			if _, ok := r.Tags[t]; !ok {
				return fmt.Errorf("tag %q: %w", t, ErrNotFound)
			}
		}
		for _, t := range tags {
			delete(r.Tags, t)
		}
		manifests, blobs = dropUnreachable(r)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return manifests, blobs, nil
}

// Tag points each of newTags of repository name at the manifest tag
// names, in one edit of the repository (all of them, or none), and returns
// its digest. A manifest a new tag named before stays listed, untagged, as
// after a publish that moves a tag. A missing repository or tag is
// ErrNotFound.
func (p *Publisher) Tag(ctx context.Context, name, tag string, newTags ...string) (digest.Digest, error) {
	if err := CheckTree(ctx, p.sink); err != nil {
		return "", err
	}
	if len(newTags) == 0 {
		return "", errors.New("tag: no new tag")
	}
	for _, t := range append([]string{tag}, newTags...) {
		if err := layout.ValidateTag(t); err != nil {
			return "", err
		}
	}
	var d digest.Digest
	touch := &touchKeys{}
	touch.add(layout.TagKind, tag)
	touch.add(layout.TagKind, newTags...)
	_, err := p.editRepository(ctx, name, false, touch, func(r *layout.Repository) error {
		var ok bool
		if d, ok = r.Tags[tag]; !ok {
			return fmt.Errorf("tag %q: %w", tag, ErrNotFound)
		}
		for _, t := range newTags {
			r.Tags[t] = d
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return d, nil
}

// SetTag points tag of repository name at manifest d, which the repository
// must list already (tagged or not), in one edit of the repository. It
// writes nothing when the tag names d already. A manifest the tag named
// before stays listed, untagged. A missing repository or manifest is
// ErrNotFound.
func (p *Publisher) SetTag(ctx context.Context, name, tag string, d digest.Digest) error {
	if err := CheckTree(ctx, p.sink); err != nil {
		return err
	}
	if err := layout.ValidateTag(tag); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d, err)
	}
	touch := &touchKeys{}
	touch.add(layout.TagKind, tag)
	touch.add(layout.ManifestKind, string(d))
	_, err := p.editRepository(ctx, name, false, touch, func(r *layout.Repository) error {
		if _, ok := r.Manifests[d]; !ok {
			return fmt.Errorf("manifest %s: %w", d, ErrNotFound)
		}
		r.Tags[tag] = d
		return nil
	})
	return err
}

// removeChunk bounds how many repository locks RemoveRepositories holds at
// once (each is an open file).
const removeChunk = 64

// RemoveRepositories removes repositories from the tree: each name is
// removed from the catalog first, then its repository file is deleted, then
// the folders left empty, so that a listed name is always servable. It
// holds the catalog's lock, and the lock of each repository it removes, so
// that a concurrent publish into one of them happens wholly before or
// wholly after the removal. Content stays in blobs/ for gc.
//
// It returns the names it removed (listed in the catalog, or with a
// repository file). When none of names exists, the error is ErrNotFound.
func (p *Publisher) RemoveRepositories(ctx context.Context, names ...string) ([]string, error) {
	if err := CheckTree(ctx, p.sink); err != nil {
		return nil, err
	}
	names, err := sortedUnique(names)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	removed, err := p.removeRepositories(ctx, names)
	if err != nil {
		return removed, err
	}
	if len(removed) == 0 {
		return nil, fmt.Errorf("repository %s: %w", strings.Join(names, ", "), ErrNotFound)
	}
	return removed, nil
}

// removeRepositories removes the sorted, unique, valid names.
func (p *Publisher) removeRepositories(ctx context.Context, names []string) (removed []string, err error) {
	unlockCatalog, err := p.lockCatalog(ctx)
	if err != nil {
		return nil, err
	}
	defer unlockCatalog()
	listed, err := CatalogNames(ctx, p.sink)
	if err != nil {
		return nil, err
	}
	for len(names) > 0 {
		n := min(len(names), removeChunk)
		done, err := p.removeChunk(ctx, names[:n], listed)
		removed = append(removed, done...)
		if err != nil {
			return removed, err
		}
		names = names[n:]
	}
	return removed, nil
}

// removeChunk removes names while holding the catalog's lock; listed is
// the catalog as it was when the lock was taken.
func (p *Publisher) removeChunk(ctx context.Context, names, listed []string) ([]string, error) {
	type repo struct {
		name, key string
		file      bool
		shards    []string // keys of the shard files the file names
	}
	var repos []repo
	for _, n := range names {
		unlock, err := p.lockRepository(ctx, n)
		if err != nil {
			return nil, err
		}
		defer unlock()
		key, err := layout.RepositoryKey(n)
		if err != nil {
			return nil, err
		}
		file, dir, err := p.exists(ctx, key)
		if err != nil {
			return nil, err
		}
		file = file && !dir
		var shards []string
		if file {
			r, _, err := readRepository(ctx, p.sink, n)
			if err != nil {
				return nil, err
			}
			for _, kind := range layout.ShardKinds {
				for _, ref := range r.Shards(kind) {
					sk, err := layout.RepositoryShardKey(n, ref.ID)
					if err != nil {
						return nil, err
					}
					shards = append(shards, sk)
				}
			}
		}
		if _, inCatalog := slices.BinarySearch(listed, n); file || inCatalog {
			repos = append(repos, repo{name: n, key: key, file: file, shards: shards})
		}
	}
	var gone []string
	for _, r := range repos {
		gone = append(gone, r.name)
	}
	if _, err := p.removeFromCatalogLocked(ctx, gone); err != nil {
		return nil, fmt.Errorf("removing from the catalog: %w", err)
	}
	fsink, folders := p.sink.(FolderSink)
	for i, r := range repos {
		if !r.file {
			continue
		}
		if err := p.sink.Delete(ctx, r.key); err != nil {
			return gone[:i], err
		}
		p.log.DebugContext(ctx, "delete", "key", r.key)
		// Then its shards (a shard left by a failure here is gc's).
		for _, sk := range r.shards {
			if err := p.sink.Delete(ctx, sk); err != nil {
				return gone[:i+1], err
			}
		}
		if folders {
			for _, k := range append([]string{r.key}, r.shards...) {
				if err := fsink.RemoveEmptyFolders(ctx, k, layout.RepositoriesDirKey()); err != nil {
					return gone[:i+1], err
				}
			}
		}
	}
	return gone, nil
}

// reachable returns the manifests of r reachable from its tags, through
// the children of indexes and the referrers of reachable manifests, and
// the blobs those manifests reference.
func reachable(r *layout.Repository) (map[digest.Digest]bool, map[digest.Digest]bool) {
	bySubject := map[digest.Digest][]digest.Digest{}
	for d, m := range r.Manifests {
		if m.Subject != "" {
			bySubject[m.Subject] = append(bySubject[m.Subject], d)
		}
	}
	for s, refs := range r.Referrers {
		for _, ref := range refs {
			bySubject[s] = append(bySubject[s], ref.Digest)
		}
	}
	manifests := map[digest.Digest]bool{}
	blobs := map[digest.Digest]bool{}
	work := make([]digest.Digest, 0, len(r.Tags))
	for _, d := range r.Tags {
		work = append(work, d)
	}
	for len(work) > 0 {
		d := work[len(work)-1]
		work = work[:len(work)-1]
		m, ok := r.Manifests[d]
		if !ok || manifests[d] {
			continue
		}
		manifests[d] = true
		for _, b := range m.Blobs {
			blobs[b] = true
		}
		work = append(work, m.Children...)
		work = append(work, bySubject[d]...)
	}
	return manifests, blobs
}

// hasUnreachable reports whether dropUnreachable would change r.
func hasUnreachable(r *layout.Repository) bool {
	m, b := reachable(r)
	return len(m) != len(r.Manifests) || len(b) != len(r.Blobs)
}

// dropUnreachable removes from r the manifests and blobs reachable from no
// tag (see reachable), and the referrers entries that named them. It
// returns how many manifests and blobs it removed. It is a pure function
// of r.
func dropUnreachable(r *layout.Repository) (manifests, blobs int) {
	keepM, keepB := reachable(r)
	for d := range r.Manifests {
		if !keepM[d] {
			delete(r.Manifests, d)
			manifests++
		}
	}
	for d := range r.Blobs {
		if !keepB[d] {
			delete(r.Blobs, d)
			blobs++
		}
	}
	for s, refs := range r.Referrers {
		kept := refs[:0]
		for _, ref := range refs {
			if keepM[ref.Digest] {
				kept = append(kept, ref)
			}
		}
		if len(kept) == 0 {
			delete(r.Referrers, s)
		} else {
			r.Referrers[s] = kept
		}
	}
	if len(r.Referrers) == 0 {
		r.Referrers = nil
	}
	return manifests, blobs
}
