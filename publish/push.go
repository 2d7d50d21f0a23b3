package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"
	"sync"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// A push is one more way to publish: a client (docker push, crane, oras)
// uploads the blobs of an image, then PUTs its manifest
// (PUT /v2/<name>/manifests/<reference>), which PutManifest accepts only
// when everything it references is in the tree at that moment. The
// repository file is then edited as a publish edits it (one lock or
// conditional write; see updateRepository), so that a push racing a
// delete or a gc never writes a repository file that names missing
// content: the client gets an error and pushes again.

// Errors of PutManifest, for the server to map to the distribution
// spec's error codes (400s).
var (
	// ErrManifestInvalid: MANIFEST_INVALID. The body is not a manifest
	// heron accepts (not JSON, schema 1, an unknown media type, a bad
	// descriptor, too large).
	ErrManifestInvalid = errors.New("manifest invalid")
	// ErrManifestDigestMismatch: DIGEST_INVALID. The body does not hash
	// to the digest it was pushed to.
	ErrManifestDigestMismatch = errors.New("manifest does not match the digest it was pushed to")
	// ErrManifestBlobUnknown: MANIFEST_BLOB_UNKNOWN. A blob the manifest
	// references (its config, a layer) is not in the tree. Matched by a
	// *ReferenceError.
	ErrManifestBlobUnknown = errors.New("manifest references a blob unknown to the registry")
	// ErrManifestUnknown: MANIFEST_UNKNOWN. A manifest an index lists
	// is not in the tree. Matched by a *ReferenceError. (The
	// distribution project's registry answers MANIFEST_BLOB_UNKNOWN for
	// it; the spec allows either.)
	ErrManifestUnknown = errors.New("index references a manifest unknown to the registry")
)

// ReferenceError reports content a pushed manifest references that the
// tree does not hold. It matches ErrManifestUnknown (Manifest is set: a
// child of an index) or ErrManifestBlobUnknown (a blob) with errors.Is.
type ReferenceError struct {
	// Digest and Size are the referenced content's, as the manifest
	// states them.
	Digest digest.Digest
	Size   int64
	// Manifest is set for a manifest an index lists, unset for a blob.
	Manifest bool
	// GotSize is the size of the content of Digest the tree holds; -1
	// when it holds none.
	GotSize int64
	// Deleted is set when the content was found present, then deleted
	// (by a concurrent delete or gc) before the repository file was
	// written.
	Deleted bool
	// NotListed is set when the tree holds the content but the
	// repository does not list it, and the push required it to
	// (PushOptions.OnlyListed).
	NotListed bool
}

func (e *ReferenceError) Error() string {
	what := "blob"
	if e.Manifest {
		what = "manifest"
	}
	switch {
	case e.Deleted:
		return fmt.Sprintf("%s %s was deleted while the manifest was pushed; nothing was written, push again", what, e.Digest)
	case e.NotListed:
		return fmt.Sprintf("%s %s is not in this repository (push or mount it first)", what, e.Digest)
	case e.GotSize >= 0:
		return fmt.Sprintf("%s %s is %d bytes in the registry, the manifest states %d", what, e.Digest, e.GotSize, e.Size)
	}
	return fmt.Sprintf("%s %s is not in the registry (push it first)", what, e.Digest)
}

// Is makes errors.Is(err, ErrManifestUnknown) or errors.Is(err,
// ErrManifestBlobUnknown) true.
func (e *ReferenceError) Is(target error) bool {
	if e.Manifest {
		return target == ErrManifestUnknown
	}
	return target == ErrManifestBlobUnknown
}

// treeReadError is a failure to read the tree (not a fault of the pushed
// manifest) met while a push walks an index's children.
type treeReadError struct{ err error }

func (e *treeReadError) Error() string { return e.err.Error() }
func (e *treeReadError) Unwrap() error { return e.err }

// PutManifest stores data, a manifest pushed to repository name at
// reference (a tag, or the digest it must hash to: sha256 or sha512),
// and returns its digest (in the reference's algorithm; sha256 for a
// tag). mediaType is the request's Content-Type; when it is not that of
// an image manifest or index (empty, application/json), the manifest's
// own mediaType field, else its fields, say which it is. tags are more
// tags to point at it in the same edit (the ?tag= of a push by digest).
//
// It accepts an OCI image manifest or index, or a Docker schema 2
// manifest or manifest list; anything else is ErrManifestInvalid. Every
// blob it references must be in the tree with the size it states, else
// ErrManifestBlobUnknown (a *ReferenceError naming it; a missing
// non-distributable layer is allowed, and not listed, as by publish);
// every manifest an index lists must be in the tree, else
// ErrManifestUnknown, and is read (its own blobs must be there too) and
// listed in the repository with the index. Blobs are looked up, never
// read.
//
// It then stores the manifest (unless the tree holds it), and edits the
// repository file as Publish does: the manifest and the children listed,
// its blobs listed with their media types, the tag set, the manifest added
// to the referrers of its subject; then the repository is added to the
// catalog. Just before the repository file is written (holding its lock,
// or before the conditional write), every manifest and blob the file did
// not list before is touched (on a TouchSink, so that gc keeps it: see
// Publisher.GC) or looked up again; one that is gone fails the push with a
// *ReferenceError (Deleted set), and nothing is written.
func (p *Publisher) PutManifest(ctx context.Context, name, reference, mediaType string, data []byte, tags ...string) (digest.Digest, error) {
	return p.PutManifestWith(ctx, name, reference, mediaType, data, PushOptions{Tags: tags})
}

// PushOptions are the options of PutManifestWith.
type PushOptions struct {
	// Tags are more tags to point at the manifest in the same edit (the
	// ?tag= of a push by digest).
	Tags []string
	// OnlyListed requires every blob and child manifest the manifest
	// references to be listed by the repository already (uploaded or
	// mounted into it, or pushed to it), not merely held by the tree:
	// what a server that keeps some repositories from some callers
	// needs, so that knowing a digest is not a way to read content.
	// Content missing from the listing is a *ReferenceError
	// (NotListed) matching ErrManifestBlobUnknown or ErrManifestUnknown.
	OnlyListed bool
}

// PutManifestWith is PutManifest with options.
func (p *Publisher) PutManifestWith(ctx context.Context, name, reference, mediaType string, data []byte, o PushOptions) (digest.Digest, error) {
	tags := o.Tags
	if p.optErr != nil {
		return "", p.optErr
	}
	if err := layout.ValidateRepository(name); err != nil {
		return "", err
	}
	alg := digest.SHA256
	var want digest.Digest
	if strings.Contains(reference, ":") {
		d, err := layout.ParseDigest(reference)
		if err != nil {
			return "", err
		}
		want, alg = d, d.Algorithm()
	} else {
		tags = append([]string{reference}, tags...)
	}
	for _, t := range tags {
		if err := layout.ValidateTag(t); err != nil {
			return "", err
		}
	}
	if len(data) > layout.MaxManifestSize {
		return "", fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrManifestInvalid, len(data), layout.MaxManifestSize)
	}
	d := alg.FromBytes(data)
	if want != "" && d != want {
		return "", fmt.Errorf("%w: pushed to %s, its content is %s", ErrManifestDigestMismatch, want, d)
	}
	pl, err := p.planPush(ctx, d, mediaType, data)
	if err != nil {
		return "", err
	}
	if err := p.Init(ctx); err != nil {
		return "", err
	}
	if err := p.storeManifest(ctx, pl.root); err != nil {
		return "", err
	}
	protected := false
	apply := p.keepReferenced(ctx, pl.root, o.OnlyListed, applyImage(pl, tags, p.blobBaseURL))
	_, err = p.updateRepository(ctx, name, touchOf(pl, tags), func(r *layout.Repository) error {
		err := apply(r)
		protected = r.Protected
		return err
	})
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", name, err)
	}
	if _, err := p.addToCatalog(ctx, []string{name}, map[string]bool{name: protected}, true); err != nil {
		return "", fmt.Errorf("updating the catalog (the manifest is pushed): %w", err)
	}
	p.log.DebugContext(ctx, "pushed", "repository", name, "reference", reference, "digest", d)
	return d, nil
}

// pushMediaType is the media type a push's Content-Type gives its
// manifest: that of an image manifest or index, else none (the manifest
// says).
func pushMediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || (!source.IsIndexMediaType(mt) && !source.IsManifestMediaType(mt)) {
		return ""
	}
	return mt
}

// planPush parses the pushed manifest (digest d) and the manifests it
// lists, read from the tree, and checks that the tree holds every blob
// they reference: the plan of a publish whose source is the request and
// the tree.
func (p *Publisher) planPush(ctx context.Context, d digest.Digest, contentType string, data []byte) (*plan, error) {
	read := func(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
		if desc.Digest == d {
			return data, nil
		}
		return p.readChild(ctx, desc)
	}
	pl := newPlan()
	root := ocispec.Descriptor{MediaType: pushMediaType(contentType), Digest: d, Size: int64(len(data))}
	n, err := pl.walk(ctx, read, root, 0)
	if err != nil {
		var re *ReferenceError
		var te *treeReadError
		switch {
		case errors.As(err, &re), errors.As(err, &te):
			return nil, err
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %w", ErrManifestInvalid, err)
	}
	pl.root = n
	if err := p.checkBlobs(ctx, pl); err != nil {
		return nil, err
	}
	pl.dropMissing()
	return pl, nil
}

// readChild reads a manifest an index lists from the tree.
func (p *Publisher) readChild(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > layout.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s is %d bytes, more than the %d allowed", desc.Digest, desc.Size, layout.MaxManifestSize)
	}
	key, err := layout.BlobKey(desc.Digest)
	if err != nil {
		return nil, err
	}
	b, err := p.sink.ReadFile(ctx, key, layout.MaxManifestSize)
	if errors.Is(err, ErrNotFound) {
		return nil, &ReferenceError{Digest: desc.Digest, Size: desc.Size, Manifest: true, GotSize: -1}
	}
	if err != nil {
		return nil, &treeReadError{err}
	}
	if int64(len(b)) != desc.Size {
		return nil, &ReferenceError{Digest: desc.Digest, Size: desc.Size, Manifest: true, GotSize: int64(len(b))}
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, &treeReadError{&VerifyError{Key: key, Want: Want{Digest: desc.Digest, Size: desc.Size}, GotSize: desc.Size, GotDigest: got}}
	}
	return b, nil
}

// checkBlobs looks up every blob of pl in the tree: each must be there
// with the size its descriptor states, but a missing non-distributable
// layer, which is marked with Size -1 for dropMissing.
func (p *Publisher) checkBlobs(ctx context.Context, pl *plan) error {
	ss, ok := p.sink.(StatSink)
	if !ok {
		return errors.New("push: the store cannot look content up")
	}
	errs := make([]error, len(pl.blobs))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statJobs)
	for i, b := range pl.blobs {
		g.Go(func() error {
			key, err := layout.BlobKey(b.Digest)
			if err != nil {
				return err
			}
			info, err := ss.Stat(gctx, key)
			switch {
			case errors.Is(err, ErrNotFound) && isNonDistributable(b.MediaType):
				mu.Lock()
				pl.blobs[i].Size = -1
				mu.Unlock()
			case errors.Is(err, ErrNotFound):
				errs[i] = &ReferenceError{Digest: b.Digest, Size: b.Size, GotSize: -1}
			case err != nil:
				return err
			case info.Dir || info.Size != b.Size:
				errs[i] = &ReferenceError{Digest: b.Digest, Size: b.Size, GotSize: info.Size}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// storeManifest writes the pushed manifest under its blob key, verified,
// unless the tree holds it. (Found present, unreferenced and old, a gc may
// delete it before the repository file names it: keepReferenced writes it
// again.)
func (p *Publisher) storeManifest(ctx context.Context, m *manifestNode) error {
	key, err := layout.BlobKey(m.desc.Digest)
	if err != nil {
		return err
	}
	ok, err := p.present(ctx, key, m.desc.Size)
	if err != nil || ok {
		return err
	}
	want := Want{Digest: m.desc.Digest, Size: m.desc.Size, MediaType: m.desc.MediaType}
	if err := p.sink.Put(ctx, key, bytes.NewReader(m.raw), want); err != nil {
		return fmt.Errorf("storing manifest %s: %w", m.desc.Digest, err)
	}
	p.log.DebugContext(ctx, "write", "key", key, "size", m.desc.Size)
	return nil
}

// keepReferenced wraps the mutation of a repository file so that, once
// mutate has run, every manifest and stored blob the file lists and did
// not list before is still in the tree: touched on a TouchSink (the
// contract with gc, as touchAdded), else looked up. A missing one fails
// the mutation with a *ReferenceError (Deleted), so nothing is written,
// but the pushed manifest, root, which is written again.
// It runs holding the file's lock, or just before the conditional write,
// and is idempotent, so mutate stays safe to apply again.
//
// With onlyListed, content other than root that the file did not list
// before fails the mutation with a *ReferenceError (NotListed).
func (p *Publisher) keepReferenced(ctx context.Context, root *manifestNode, onlyListed bool, mutate func(*layout.Repository) error) func(*layout.Repository) error {
	ts, touches := p.sink.(TouchSink)
	return func(r *layout.Repository) error {
		had := listedContent(r)
		if err := mutate(r); err != nil {
			return err
		}
		check := func(d digest.Digest, size int64, manifest bool) error {
			if had[d] {
				return nil
			}
			if onlyListed && d != root.desc.Digest {
				return &ReferenceError{Digest: d, Size: size, Manifest: manifest, GotSize: -1, NotListed: true}
			}
			key, err := layout.BlobKey(d)
			if err != nil {
				return err
			}
			ok := true
			if touches {
				err = ts.Touch(ctx, key)
				if errors.Is(err, ErrNotFound) {
					ok, err = false, nil
				}
			} else {
				ok, err = p.present(ctx, key, size)
			}
			if err != nil {
				return err
			}
			if !ok && d == root.desc.Digest {
				return p.storeManifest(ctx, root)
			}
			if !ok {
				return &ReferenceError{Digest: d, Size: size, Manifest: manifest, GotSize: -1, Deleted: true}
			}
			return nil
		}
		for d, m := range r.Manifests {
			if err := check(d, m.Size, true); err != nil {
				return err
			}
		}
		for d, b := range r.Blobs {
			if b.IsStored() {
				if err := check(d, b.Size, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// ErrManifestInUse is returned by DeleteManifest for a manifest a listed
// index lists, and ErrBlobInUse by UnlinkBlob for a blob a listed manifest
// references: the repository file may not name content it does not list.
var (
	ErrManifestInUse = errors.New("manifest is listed by an index of the repository")
	ErrBlobInUse     = errors.New("blob is referenced by a manifest of the repository")
)

// DeleteManifest deletes reference from repository name (the DELETE of
// /v2/<name>/manifests/<reference>): a tag is removed (the manifest stays,
// pullable by digest); a digest removes the manifest, every tag naming
// it, and its entry among the referrers of its subject. Its blobs stay
// listed (pullable from the repository, as in a registry) until UnlinkBlob
// drops them (a client deletes them); the bytes stay in blobs/ for gc. A manifest an index of the repository lists is ErrManifestInUse;
// a missing repository, tag or manifest is ErrNotFound. It edits the
// repository file as Publish does (its lock, or a conditional write).
func (p *Publisher) DeleteManifest(ctx context.Context, name, reference string) error {
	if err := CheckTree(ctx, p.sink); err != nil {
		return err
	}
	if !strings.Contains(reference, ":") {
		if err := layout.ValidateTag(reference); err != nil {
			return err
		}
		touch := &touchKeys{}
		touch.add(layout.TagKind, reference)
		_, err := p.editRepository(ctx, name, false, touch, func(r *layout.Repository) error {
			if _, ok := r.Tags[reference]; !ok {
				return fmt.Errorf("tag %q: %w", reference, ErrNotFound)
			}
			delete(r.Tags, reference)
			return nil
		})
		return err
	}
	d, err := layout.ParseDigest(reference)
	if err != nil {
		return err
	}
	_, err = p.editRepository(ctx, name, false, nil, func(r *layout.Repository) error {
		return deleteManifest(r, d)
	})
	return err
}

// deleteManifest removes manifest d from r, as DeleteManifest describes.
// It is a pure function of r (read whole).
func deleteManifest(r *layout.Repository, d digest.Digest) error {
	m, ok := r.Manifests[d]
	if !ok {
		return fmt.Errorf("manifest %s: %w", d, ErrNotFound)
	}
	for od, om := range r.Manifests {
		if od != d && slices.Contains(om.Children, d) {
			return fmt.Errorf("%w: %s lists %s; delete the index first", ErrManifestInUse, od, d)
		}
	}
	delete(r.Manifests, d)
	for t, td := range r.Tags {
		if td == d {
			delete(r.Tags, t)
		}
	}
	if m.Subject != "" {
		refs := r.Referrers[m.Subject]
		kept := make([]ocispec.Descriptor, 0, len(refs))
		for _, ref := range refs {
			if ref.Digest != d {
				kept = append(kept, ref)
			}
		}
		if len(kept) == 0 {
			delete(r.Referrers, m.Subject)
		} else {
			r.Referrers[m.Subject] = kept
		}
		if len(r.Referrers) == 0 {
			r.Referrers = nil
		}
	}
	return nil
}

// UnlinkBlob drops blob d from the listing of repository name (the DELETE
// of /v2/<name>/blobs/<digest>), so that gc may delete its bytes once no
// repository lists it. A blob a listed manifest references is
// ErrBlobInUse; a missing repository or blob is ErrNotFound.
func (p *Publisher) UnlinkBlob(ctx context.Context, name string, d digest.Digest) error {
	if err := CheckTree(ctx, p.sink); err != nil {
		return err
	}
	d, err := layout.ParseDigest(string(d))
	if err != nil {
		return err
	}
	_, err = p.editRepository(ctx, name, false, nil, func(r *layout.Repository) error {
		if _, ok := r.Blobs[d]; !ok {
			return fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		for md, m := range r.Manifests {
			if slices.Contains(m.Blobs, d) {
				return fmt.Errorf("%w: manifest %s references %s; delete it first", ErrBlobInUse, md, d)
			}
		}
		delete(r.Blobs, d)
		return nil
	})
	return err
}
