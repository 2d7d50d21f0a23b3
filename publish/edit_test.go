package publish_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// rawImage adds an image manifest with its own config and layer to l.
func rawImage(l *rawLayout, seed string, subject *ocispec.Descriptor) (manifest, config, layer ocispec.Descriptor) {
	config = l.blob(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":"`+seed+`"}`))
	layer = l.blob(ocispec.MediaTypeImageLayer, []byte("layer of "+seed))
	manifest = l.json(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config, Layers: []ocispec.Descriptor{layer}, Subject: subject,
	})
	return manifest, config, layer
}

func withRef(d ocispec.Descriptor, ref string) ocispec.Descriptor {
	d.Annotations = map[string]string{ocispec.AnnotationRefName: ref}
	return d
}

func TestRemoveTags(t *testing.T) {
	l := newRawLayout(t)
	a, _, aLayer := rawImage(l, "a", nil)
	b, _, _ := rawImage(l, "b", nil)
	idx := l.json(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{a, b},
	})
	c, cConfig, cLayer := rawImage(l, "c", nil)
	subjectC := ocispec.Descriptor{MediaType: c.MediaType, Digest: c.Digest, Size: c.Size}
	sbom, _, _ := rawImage(l, "sbom of c", &subjectC)
	subjectSBOM := ocispec.Descriptor{MediaType: sbom.MediaType, Digest: sbom.Digest, Size: sbom.Size}
	sig, _, _ := rawImage(l, "signature of the sbom", &subjectSBOM)
	dir := l.index(withRef(idx, "idx"), withRef(c, "c"), withRef(sbom, "sbom"), withRef(sig, "sig"))

	root := filepath.Join(t.TempDir(), "tree")
	mustPublish(t, root, "oci:"+dir+":idx", "app:multi", "app:also")
	mustPublish(t, root, "oci:"+dir+":c", "app:c")
	mustPublish(t, root, "oci:"+dir+":sbom", "app:sbom")
	mustPublish(t, root, "oci:"+dir+":sig", "app:sig")
	ctx := context.Background()
	p := publish.New(publish.NewFSSink(layout.Root(root)))

	// The untagged sbom and signature are referrers of a tagged image:
	// they stay, as does everything else.
	m, bl, err := p.RemoveTags(ctx, "app", "sbom", "sig")
	if err != nil || m != 0 || bl != 0 {
		t.Fatalf("RemoveTags(sbom, sig) dropped %d manifests, %d blobs: %v", m, bl, err)
	}
	r := readRepo(t, root, "app")
	if len(r.Manifests) != 6 || len(r.Referrers[c.Digest]) != 1 || len(r.Referrers[sbom.Digest]) != 1 {
		t.Fatalf("after removing the referrers' tags: %d manifests, referrers %v", len(r.Manifests), r.Referrers)
	}

	// Without c's tag, c, its sbom and the sbom's signature are
	// unreachable: 3 manifests and their 6 blobs go.
	if m, bl, err = p.RemoveTags(ctx, "app", "c"); err != nil || m != 3 || bl != 6 {
		t.Fatalf("RemoveTags(c) dropped %d manifests, %d blobs: %v", m, bl, err)
	}
	r = readRepo(t, root, "app")
	if len(r.Tags) != 2 || len(r.Manifests) != 3 || r.Referrers != nil {
		t.Errorf("after removing c: tags %v, %d manifests, referrers %v", r.Tags, len(r.Manifests), r.Referrers)
	}
	for _, d := range []digest.Digest{c.Digest, sbom.Digest, sig.Digest, cConfig.Digest, cLayer.Digest} {
		if _, ok := r.Manifests[d]; ok {
			t.Errorf("manifest %s still listed", d)
		}
		if _, ok := r.Blobs[d]; ok {
			t.Errorf("blob %s still listed", d)
		}
		// The bytes stay for gc.
		readBlob(t, root, d)
	}
	if _, ok := r.Blobs[aLayer.Digest]; !ok {
		t.Error("a child's layer of the tagged index was dropped")
	}
	assertConsistent(t, root)

	// One of two tags of the index: nothing else goes.
	if m, bl, err = p.RemoveTags(ctx, "app", "also"); err != nil || m != 0 || bl != 0 {
		t.Fatalf("RemoveTags(also) dropped %d manifests, %d blobs: %v", m, bl, err)
	}
	// The last tag: the repository stays, empty.
	if m, bl, err = p.RemoveTags(ctx, "app", "multi"); err != nil || m != 3 || bl != 4 {
		t.Fatalf("RemoveTags(multi) dropped %d manifests, %d blobs: %v", m, bl, err)
	}
	r = readRepo(t, root, "app")
	if len(r.Tags)+len(r.Manifests)+len(r.Blobs) != 0 {
		t.Errorf("emptied repository: %+v", r)
	}
	assertConsistent(t, root)
}

func TestEditErrors(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 1)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), "app:v1")
	ctx := context.Background()
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	before := publishedSnapshot(t, root)
	for _, tc := range []struct {
		desc string
		do   func() error
		is   error
	}{
		{"rm missing tag", func() error { _, _, err := p.RemoveTags(ctx, "app", "v1", "v2"); return err }, publish.ErrNotFound},
		{"rm tag of missing repository", func() error { _, _, err := p.RemoveTags(ctx, "nope", "v1"); return err }, publish.ErrNotFound},
		{"rm invalid tag", func() error { _, _, err := p.RemoveTags(ctx, "app", "-x"); return err }, layout.ErrInvalidTag},
		{"rm missing repository", func() error { _, err := p.RemoveRepositories(ctx, "nope"); return err }, publish.ErrNotFound},
		{"rm invalid repository", func() error { _, err := p.RemoveRepositories(ctx, "../app"); return err }, layout.ErrInvalidName},
		{"tag missing tag", func() error { _, err := p.Tag(ctx, "app", "v2", "v3"); return err }, publish.ErrNotFound},
		{"tag missing repository", func() error { _, err := p.Tag(ctx, "nope", "v1", "v3"); return err }, publish.ErrNotFound},
		{"tag invalid new tag", func() error { _, err := p.Tag(ctx, "app", "v1", "a:b"); return err }, layout.ErrInvalidTag},
		{"not a tree", func() error {
			_, err := publish.New(publish.NewFSSink(layout.Root(dir))).Tag(ctx, "app", "v1", "v2")
			return err
		}, publish.ErrNotTree},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			if d := diffSnapshots(before, publishedSnapshot(t, root)); len(d) > 0 {
				t.Errorf("a failed edit changed the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestTag(t *testing.T) {
	dir := t.TempDir()
	spec, digests := imageSet(t, filepath.Join(dir, "src"), 2)
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, spec(0), "app:v1")
	mustPublish(t, root, spec(1), "app:v2")
	ctx := context.Background()
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	if d, err := p.Tag(ctx, "app", "v1", "stable"); err != nil || d != digests[0] {
		t.Fatalf("Tag = %s, %v", d, err)
	}
	// Tagging again changes nothing and writes nothing.
	before := publishedSnapshot(t, root)
	if _, err := p.Tag(ctx, "app", "v1", "stable"); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, publishedSnapshot(t, root)); len(d) > 0 {
		t.Errorf("a tag that changes nothing wrote:\n%s", strings.Join(d, "\n"))
	}
	// Moving a tag keeps the manifest it named, untagged.
	if d, err := p.Tag(ctx, "app", "v2", "v1"); err != nil || d != digests[1] {
		t.Fatalf("Tag = %s, %v", d, err)
	}
	r := readRepo(t, root, "app")
	if r.Tags["v1"] != digests[1] || r.Tags["stable"] != digests[0] || len(r.Manifests) != 2 {
		t.Errorf("tags %v, %d manifests", r.Tags, len(r.Manifests))
	}
	assertConsistent(t, root)
}

func TestRemoveRepositories(t *testing.T) {
	dir := t.TempDir()
	spec, _ := imageSet(t, filepath.Join(dir, "src"), 1)
	root := filepath.Join(dir, "tree")
	names := []string{"team/app/api", "team/app/web", "team/other", "solo"}
	for _, n := range names {
		mustPublish(t, root, spec(0), n+":v1")
	}
	ctx := context.Background()
	p := publish.New(publish.NewFSSink(layout.Root(root)))
	folder := func(key string) string { return layout.Root(root).Path(key) }
	exists := func(key string) bool {
		_, err := os.Stat(folder(key))
		return err == nil
	}
	steps := []struct {
		remove     []string
		gone, kept []string // folders
	}{
		{[]string{"team/app/api"}, nil, []string{"repositories/team/app"}},
		{[]string{"team/app/web"}, []string{"repositories/team/app"}, []string{"repositories/team"}},
		{[]string{"team/other", "solo"}, []string{"repositories/team"}, []string{"repositories"}},
	}
	for _, s := range steps {
		removed, err := p.RemoveRepositories(ctx, s.remove...)
		if err != nil || strings.Join(removed, ",") != strings.Join(sortedCopy(s.remove), ",") {
			t.Fatalf("RemoveRepositories(%v) = %v, %v", s.remove, removed, err)
		}
		for _, n := range s.remove {
			key, _ := layout.RepositoryKey(n)
			if exists(key) {
				t.Errorf("%s still exists", key)
			}
		}
		for _, f := range s.gone {
			if exists(f) {
				t.Errorf("empty folder %s left", f)
			}
		}
		for _, f := range s.kept {
			if !exists(f) {
				t.Errorf("folder %s removed", f)
			}
		}
		assertConsistent(t, root)
	}
	// A name listed in the catalog without a file (a removal that
	// stopped half-way) is removed from the catalog.
	if _, err := p.AddToCatalog(ctx, "ghost"); err != nil {
		t.Fatal(err)
	}
	if removed, err := p.RemoveRepositories(ctx, "ghost", "nope"); err != nil || len(removed) != 1 {
		t.Fatalf("RemoveRepositories(ghost) = %v, %v", removed, err)
	}
	assertConsistent(t, root)
	// The tree is still a tree, and takes new repositories.
	mustPublish(t, root, spec(0), "team/app/api:v2")
	assertConsistent(t, root)
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// publishedSnapshot is the snapshot of the published tree, without the
// writer's private state (lock files are created on first use).
func publishedSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	s := snapshot(t, root, true)
	for k := range s {
		if k == layout.WriterStateDirKey() || strings.HasPrefix(k, layout.WriterStateDirKey()+string(filepath.Separator)) {
			delete(s, k)
		}
	}
	return s
}
