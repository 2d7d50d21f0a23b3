package publish

import (
	"context"
	"errors"
	"fmt"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReadRepository reads and decodes the repository file of name, and every
// shard it names: the whole repository. A repository that does not exist
// is ErrNotFound.
func ReadRepository(ctx context.Context, sink Sink, name string) (*layout.Repository, error) {
	r, err := loadRepository(ctx, sink, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("repository %s: %w", name, ErrNotFound)
	}
	return r, nil
}

// readRepository returns the decoded repository file and its bytes, or
// (nil, nil, nil) when there is none.
func readRepository(ctx context.Context, sink Sink, name string) (*layout.Repository, []byte, error) {
	r, b, _, err := readRepositoryVersion(ctx, sink, name)
	return r, b, err
}

// readRepositoryVersion is readRepository, and the version of the file
// on a sink that swaps (see readVersion).
func readRepositoryVersion(ctx context.Context, sink Sink, name string) (*layout.Repository, []byte, store.Version, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return nil, nil, "", err
	}
	b, v, err := readVersion(ctx, sink, key, layout.MaxRepositoryFileSize)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, "", nil
	}
	if err != nil {
		return nil, nil, "", err
	}
	r, err := layout.DecodeRepositoryFile(name, b)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", key, err)
	}
	return r, b, v, nil
}

// updateRepository is the one read-modify-write of a repository file: it
// reads the file (or starts an empty one) and the shards that hold the
// keys of touch (every shard for a nil touch; see touchKeys), applies
// mutate, and writes the result (the changed shards, then the file)
// unless nothing changed. It reports whether it wrote.
//
// It holds the repository's lock (see LockSink) from the read to the
// write, so that concurrent publishers never lose each other's changes.
// mutate must be a pure function of the repository it is given: a
// compare-and-swap implementation may apply it again to a newer file.
func (p *Publisher) updateRepository(ctx context.Context, name string, touch *touchKeys, mutate func(*layout.Repository) error) (bool, error) {
	return p.editRepository(ctx, name, true, touch, mutate)
}

// editRepository is updateRepository; without create, a repository that
// does not exist is ErrNotFound rather than an empty one.
func (p *Publisher) editRepository(ctx context.Context, name string, create bool, touch *touchKeys, mutate func(*layout.Repository) error) (bool, error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return false, err
	}
	unlock, err := p.lock(ctx, key)
	if err != nil {
		return false, err
	}
	defer unlock()
	written := false
	err = p.swapped(ctx, key, func() error {
		e, b, changed, err := p.prepareEdit(ctx, name, create, touch, mutate)
		if err != nil {
			return err
		}
		if !changed {
			return p.signalIfRecent(ctx, key)
		}
		written = true
		return p.commit(ctx, e, b)
	})
	return written && err == nil, err
}

// prepareRepository does everything updateRepository does but the write:
// Publish calls it for every target before writing any content, so that an
// unreadable or conflicting repository fails early.
func (p *Publisher) prepareRepository(ctx context.Context, name string, touch *touchKeys, mutate func(*layout.Repository) error) error {
	_, _, _, err := p.prepareEdit(ctx, name, true, touch, mutate)
	return err
}

// prepareEdit reads, mutates and encodes; it reports whether anything
// changed.
func (p *Publisher) prepareEdit(ctx context.Context, name string, create bool, touch *touchKeys, mutate func(*layout.Repository) error) (*repoEdit, []byte, bool, error) {
	e, err := p.openEdit(ctx, name, create, touch)
	if err != nil {
		return nil, nil, false, err
	}
	if err := mutate(e.r); err != nil {
		return nil, nil, false, fmt.Errorf("repository %s: %w", name, err)
	}
	b, changed, err := e.encode()
	if err != nil {
		return nil, nil, false, err
	}
	return e, b, changed, nil
}

// checkNameConflict refuses a repository whose file would be a folder of
// another repository, or whose file's key is a folder already.
func (p *Publisher) checkNameConflict(ctx context.Context, name string) error {
	for _, other := range layout.ConflictingRepositoryFolders(name) {
		key, err := layout.RepositoryKey(other)
		if err != nil {
			return err
		}
		exists, _, err := p.exists(ctx, key)
		if err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("%w: repository %q cannot be created because repository %q exists (its file %s would have to be a folder)", ErrNameConflict, name, other, key)
		}
	}
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return err
	}
	if _, dir, err := p.exists(ctx, key); err != nil {
		return err
	} else if dir {
		return fmt.Errorf("%w: repository %q cannot be created because %s is the folder of repositories named %s/…", ErrNameConflict, name, key, name+".json")
	}
	return nil
}

// exists reports whether key exists, and whether it is a folder (known only
// with a StatSink).
func (p *Publisher) exists(ctx context.Context, key string) (exists, dir bool, err error) {
	if ss, ok := p.sink.(StatSink); ok {
		info, err := ss.Stat(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return false, false, nil
		}
		if err != nil {
			return false, false, err
		}
		return true, info.Dir, nil
	}
	_, err = p.sink.ReadFile(ctx, key, layout.MaxRepositoryFileSize)
	if errors.Is(err, ErrNotFound) {
		return false, false, nil
	}
	return true, false, nil
}

// applyImage returns the mutation that records the image of pl in a
// repository, points tags at it, and sets blobBaseURL unless it is empty.
// Manifests a moved tag pointed at stay listed (untagged, pullable by
// digest), as in a registry.
func applyImage(pl *plan, tags []string, blobBaseURL string) func(*layout.Repository) error {
	return func(r *layout.Repository) error {
		if blobBaseURL != "" {
			r.BlobBaseURL = blobBaseURL
		}
		for _, b := range pl.blobs {
			nb := layout.Blob{Size: b.Size, MediaType: b.MediaType}
			if old, ok := r.Blobs[b.Digest]; ok && old.MediaType != "" {
				// The same bytes can be a config here and a layer
				// there; the first media type recorded stays, so
				// that publishing again changes nothing.
				nb.MediaType = old.MediaType
			}
			r.Blobs[b.Digest] = nb
		}
		if err := recordLazy(r, pl); err != nil {
			return err
		}
		for _, m := range pl.manifests {
			lm := layout.Manifest{
				MediaType:    m.desc.MediaType,
				Size:         m.desc.Size,
				ArtifactType: m.artifactType,
				Children:     m.children,
				Blobs:        m.blobs,
			}
			if m.subject != nil {
				lm.Subject = m.subject.Digest
			}
			r.Manifests[m.desc.Digest] = lm
			if m.subject != nil {
				addReferrer(r, m.subject.Digest, referrerDescriptor(m))
			}
		}
		for _, t := range tags {
			r.Tags[t] = pl.root.desc.Digest
		}
		return nil
	}
}

// referrerDescriptor is the descriptor of m in the referrers list of its
// subject. Per the distribution spec, an image manifest without an
// artifactType is listed with its config's media type.
func referrerDescriptor(m *manifestNode) ocispec.Descriptor {
	at := m.artifactType
	if at == "" && !m.index {
		at = m.configType
	}
	return ocispec.Descriptor{
		MediaType:    m.desc.MediaType,
		Digest:       m.desc.Digest,
		Size:         m.desc.Size,
		ArtifactType: at,
		Annotations:  m.annotations,
	}
}

func addReferrer(r *layout.Repository, subject digest.Digest, d ocispec.Descriptor) {
	if r.Referrers == nil {
		r.Referrers = map[digest.Digest][]ocispec.Descriptor{}
	}
	refs := r.Referrers[subject]
	for i := range refs {
		if refs[i].Digest == d.Digest {
			refs[i] = d
			return
		}
	}
	r.Referrers[subject] = append(refs, d)
}
