package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// maxDepth bounds the nesting of indexes.
const maxDepth = 16

// manifestNode is one manifest of the image being published.
type manifestNode struct {
	desc         ocispec.Descriptor // Digest, Size, and the resolved MediaType
	raw          []byte
	index        bool
	artifactType string
	configType   string // the config's media type, for an image manifest
	subject      *ocispec.Descriptor
	annotations  map[string]string
	children     []digest.Digest
	blobs        []digest.Digest
}

// plan is everything a publish writes, read and checked before anything is.
type plan struct {
	root      *manifestNode
	manifests []*manifestNode // children before the index that lists them
	blobs     []ocispec.Descriptor
	blobSet   map[digest.Digest]int // index into blobs
	seen      map[digest.Digest]*manifestNode
	visiting  map[digest.Digest]bool

	// present are the blobs the tree holds already: they are neither
	// checked in the source nor copied.
	present map[digest.Digest]bool
	// lazy are the blobs an on_demand publish lists without storing
	// them (moved out of blobs by applyPolicy), and upstream is where
	// they can be fetched from.
	lazy     []ocispec.Descriptor
	upstream *layout.Upstream
}

// manifestJSON holds the fields of an image manifest, an image index, and
// their Docker counterparts that publish needs.
type manifestJSON struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
	FSLayers      json.RawMessage      `json:"fsLayers"`
}

// isNonDistributable reports layers that registries need not store (Docker
// foreign layers, OCI non-distributable layers), fetched by clients from
// their URLs.
func isNonDistributable(mt string) bool {
	if !types.MediaType(mt).IsDistributable() {
		return true
	}
	//nolint:staticcheck // deprecated by the spec, still found in images
	return mt == ocispec.MediaTypeImageLayerNonDistributableZstd
}

// statJobs is how many blobs are looked up in the source at once (a HEAD
// each for a registry).
const statJobs = 8

// buildPlan reads every manifest of the image rooted at root (verifying each
// against its digest) and checks that every blob the tree does not hold
// (present says which it holds) is in the source with the size its
// descriptor states. Nothing is written.
func buildPlan(ctx context.Context, src source.Source, root ocispec.Descriptor, present func(context.Context, ocispec.Descriptor) (bool, error)) (*plan, error) {
	pl := newPlan()
	read := func(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
		return readManifest(ctx, src, desc)
	}
	n, err := pl.walk(ctx, read, root, 0)
	if err != nil {
		return nil, err
	}
	pl.root = n
	sizes := make([]int64, len(pl.blobs))
	errs := make([]error, len(pl.blobs))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statJobs)
	for i, b := range pl.blobs {
		g.Go(func() error {
			if present != nil {
				ok, err := present(gctx, b)
				if err != nil {
					return err
				}
				if ok {
					mu.Lock()
					pl.present[b.Digest] = true
					mu.Unlock()
					return nil
				}
			}
			sizes[i], errs[i] = src.Stat(gctx, b)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, b := range pl.blobs {
		if pl.present[b.Digest] {
			continue
		}
		size, err := sizes[i], errs[i]
		if errors.Is(err, ErrNotFound) && isNonDistributable(b.MediaType) {
			// Not stored, not listed: clients fetch it from its URLs.
			pl.blobs[i].Size = -1
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("blob %s (%s) is missing from the source: %w", b.Digest, b.MediaType, err)
		}
		if size != b.Size {
			return nil, fmt.Errorf("blob %s (%s) in the source is %d bytes, its descriptor states %d: %w", b.Digest, b.MediaType, size, b.Size, ErrSizeMismatch)
		}
	}
	pl.dropMissing()
	return pl, nil
}

// dropMissing removes the non-distributable blobs that the source does not
// hold (marked with Size -1) from the plan and from the manifests' lists.
func (pl *plan) dropMissing() {
	missing := map[digest.Digest]bool{}
	kept := pl.blobs[:0]
	for _, b := range pl.blobs {
		if b.Size < 0 {
			missing[b.Digest] = true
			continue
		}
		kept = append(kept, b)
	}
	pl.blobs = kept
	if len(missing) == 0 {
		return
	}
	for _, m := range pl.manifests {
		bs := m.blobs[:0]
		for _, d := range m.blobs {
			if !missing[d] {
				bs = append(bs, d)
			}
		}
		m.blobs = bs
	}
}

func validDescriptor(d ocispec.Descriptor) error {
	if _, err := layout.ParseDigest(string(d.Digest)); err != nil {
		return err
	}
	if d.Size < 0 {
		return fmt.Errorf("descriptor of %s: negative size %d", d.Digest, d.Size)
	}
	return nil
}

// readFunc reads a manifest whole and checks it against its descriptor:
// from a source for a publish (readManifest), from the request and the
// tree for a push (push.go).
type readFunc func(context.Context, ocispec.Descriptor) ([]byte, error)

// newPlan returns an empty plan.
func newPlan() *plan {
	return &plan{
		blobSet:  map[digest.Digest]int{},
		seen:     map[digest.Digest]*manifestNode{},
		visiting: map[digest.Digest]bool{},
		present:  map[digest.Digest]bool{},
	}
}

// walk reads the manifest of desc with read, and the manifests it lists
// (an index's children) recursively, adding each to pl with the blobs it
// references (not looked up: the caller checks them).
func (pl *plan) walk(ctx context.Context, read readFunc, desc ocispec.Descriptor, depth int) (*manifestNode, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validDescriptor(desc); err != nil {
		return nil, err
	}
	if n, ok := pl.seen[desc.Digest]; ok {
		return n, nil
	}
	if depth > maxDepth || pl.visiting[desc.Digest] {
		return nil, fmt.Errorf("manifest %s: indexes nested too deep", desc.Digest)
	}
	pl.visiting[desc.Digest] = true
	defer delete(pl.visiting, desc.Digest)

	raw, err := read(ctx, desc)
	if err != nil {
		return nil, err
	}
	var m manifestJSON
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	mt, err := manifestMediaType(desc, &m)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	n := &manifestNode{
		desc:         ocispec.Descriptor{MediaType: mt, Digest: desc.Digest, Size: desc.Size},
		raw:          raw,
		index:        source.IsIndexMediaType(mt),
		artifactType: m.ArtifactType,
		subject:      m.Subject,
		annotations:  m.Annotations,
	}
	if m.Subject != nil {
		if err := validDescriptor(*m.Subject); err != nil {
			return nil, fmt.Errorf("manifest %s: subject: %w", desc.Digest, err)
		}
	}
	if n.index {
		for _, c := range m.Manifests {
			child, err := pl.walk(ctx, read, c, depth+1)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
			}
			n.children = appendUnique(n.children, child.desc.Digest)
		}
	} else {
		if m.Config == nil {
			return nil, fmt.Errorf("manifest %s: no config", desc.Digest)
		}
		n.configType = m.Config.MediaType
		for _, b := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			if err := validDescriptor(b); err != nil {
				return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
			}
			if i, ok := pl.blobSet[b.Digest]; ok {
				if pl.blobs[i].Size != b.Size {
					return nil, fmt.Errorf("manifest %s: blob %s is listed with sizes %d and %d", desc.Digest, b.Digest, pl.blobs[i].Size, b.Size)
				}
			} else {
				pl.blobSet[b.Digest] = len(pl.blobs)
				pl.blobs = append(pl.blobs, ocispec.Descriptor{MediaType: b.MediaType, Digest: b.Digest, Size: b.Size})
			}
			n.blobs = appendUnique(n.blobs, b.Digest)
		}
	}
	pl.seen[desc.Digest] = n
	pl.manifests = append(pl.manifests, n)
	return n, nil
}

func appendUnique(ds []digest.Digest, d digest.Digest) []digest.Digest {
	for _, x := range ds {
		if x == d {
			return ds
		}
	}
	return append(ds, d)
}

// readManifest reads a manifest whole (at most layout.MaxManifestSize bytes) and
// checks it against its descriptor.
func readManifest(ctx context.Context, src source.Source, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > layout.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s is %d bytes, more than the %d allowed", desc.Digest, desc.Size, layout.MaxManifestSize)
	}
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("manifest %s is missing from the source: %w", desc.Digest, err)
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if int64(len(raw)) != desc.Size {
		return nil, &VerifyError{Key: "manifest " + string(desc.Digest), Want: Want{Digest: desc.Digest, Size: desc.Size}, GotSize: int64(len(raw))}
	}
	if got := desc.Digest.Algorithm().FromBytes(raw); got != desc.Digest {
		return nil, &VerifyError{Key: "manifest " + string(desc.Digest), Want: Want{Digest: desc.Digest, Size: desc.Size}, GotSize: desc.Size, GotDigest: got}
	}
	return raw, nil
}

// manifestMediaType is the media type a manifest is served with: the one
// it declares, else the one its descriptor gives, else what its fields say.
func manifestMediaType(desc ocispec.Descriptor, m *manifestJSON) (string, error) {
	if m.SchemaVersion == 1 || m.FSLayers != nil {
		return "", errors.New("schema 1 (Docker) manifests are not supported")
	}
	if m.SchemaVersion != 2 {
		return "", fmt.Errorf("schemaVersion %d is not supported", m.SchemaVersion)
	}
	mt := m.MediaType
	if mt != "" && desc.MediaType != "" && mt != desc.MediaType {
		return "", fmt.Errorf("its descriptor says media type %s, the manifest says %s", desc.MediaType, mt)
	}
	if mt == "" {
		mt = desc.MediaType
	}
	if mt == "" {
		switch {
		case m.Manifests != nil && m.Config == nil:
			mt = ocispec.MediaTypeImageIndex
		case m.Config != nil && m.Manifests == nil:
			mt = ocispec.MediaTypeImageManifest
		default:
			return "", errors.New("no media type, and its fields do not say whether it is an index or a manifest")
		}
	}
	if !source.IsIndexMediaType(mt) && !source.IsManifestMediaType(mt) {
		return "", fmt.Errorf("media type %s is not an image manifest or index", mt)
	}
	return mt, nil
}
