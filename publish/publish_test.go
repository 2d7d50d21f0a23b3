package publish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// sourceCase builds a source in dir and says what publishing it must give.
type sourceCase struct {
	name  string
	setup func(t *testing.T, dir string) (spec string, want digest.Digest, raw []byte, mediaType string, manifests int)
}

func sourceCases() []sourceCase {
	return []sourceCase{
		{"oci single image", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			img := ociImage(t, 1, 2)
			writeLayout(t, dir, entry{item: img})
			return "oci:" + dir, mustDigest(t, img), mustRaw(t, img), ocispec.MediaTypeImageManifest, 1
		}},
		{"oci with REF", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			a, b := ociImage(t, 1, 1), ociImage(t, 2, 2)
			writeLayout(t, dir, entry{item: a, ref: "v1"}, entry{item: b, ref: "v2"})
			return "oci:" + dir + ":v2", mustDigest(t, b), mustRaw(t, b), ocispec.MediaTypeImageManifest, 1
		}},
		{"oci with REF as digest", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			a, b := ociImage(t, 1, 1), ociImage(t, 2, 2)
			writeLayout(t, dir, entry{item: a, ref: "v1"}, entry{item: b, ref: "v2"})
			return "oci:" + dir + ":" + string(mustDigest(t, a)), mustDigest(t, a), mustRaw(t, a), ocispec.MediaTypeImageManifest, 1
		}},
		{"oci docker media types", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			img := dockerImage(t, 3, 2)
			writeLayout(t, dir, entry{item: img, ref: "latest"})
			return "oci:" + dir, mustDigest(t, img), mustRaw(t, img), string(types.DockerManifestSchema2), 1
		}},
		{"oci index of two platforms", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			idx := platformIndex(t, types.OCIImageIndex, ociImage(t, 4, 1), ociImage(t, 5, 2))
			writeLayout(t, dir, entry{item: idx, ref: "multi"})
			return "oci:" + dir + ":multi", mustDigest(t, idx), mustRaw(t, idx), ocispec.MediaTypeImageIndex, 3
		}},
		{"oci docker manifest list", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			idx := platformIndex(t, types.DockerManifestList, dockerImage(t, 6, 1), dockerImage(t, 7, 1))
			writeLayout(t, dir, entry{item: idx})
			return "oci:" + dir, mustDigest(t, idx), mustRaw(t, idx), string(types.DockerManifestList), 3
		}},
		{"oci nested index", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			inner := platformIndex(t, types.OCIImageIndex, ociImage(t, 8, 1), ociImage(t, 9, 1))
			outer := mutate.AppendManifests(mutate.IndexMediaType(emptyIndex(), types.OCIImageIndex),
				mutate.IndexAddendum{Add: inner}, mutate.IndexAddendum{Add: ociImage(t, 10, 1)})
			writeLayout(t, dir, entry{item: outer})
			return "oci:" + dir, mustDigest(t, outer), mustRaw(t, outer), ocispec.MediaTypeImageIndex, 5
		}},
		{"oci-archive", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			a := ociImage(t, 11, 2)
			idx := platformIndex(t, types.OCIImageIndex, ociImage(t, 12, 1), a)
			writeLayout(t, filepath.Join(dir, "l"), entry{item: a, ref: "one"}, entry{item: idx, ref: "multi"})
			tarPath := tarDir(t, filepath.Join(dir, "l"), filepath.Join(dir, "image.tar"))
			return "oci-archive:" + tarPath + ":multi", mustDigest(t, idx), mustRaw(t, idx), ocispec.MediaTypeImageIndex, 3
		}},
		{"docker-archive one image", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			p := dockerArchive(t, filepath.Join(dir, "image.tar"), map[string]v1.Image{"app:1": dockerImage(t, 13, 2)})
			loaded, err := tarball.ImageFromPath(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			return "docker-archive:" + p, mustDigest(t, loaded), mustRaw(t, loaded), string(types.DockerManifestSchema2), 1
		}},
		{"docker-archive two images by NAME:TAG", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			p := dockerArchive(t, filepath.Join(dir, "image.tar"), map[string]v1.Image{
				"example.com/a:1": dockerImage(t, 14, 1), "b:2": dockerImage(t, 15, 2)})
			loaded := loadTagged(t, p, "b:2")
			return "docker-archive:" + p + ":b:2", mustDigest(t, loaded), mustRaw(t, loaded), string(types.DockerManifestSchema2), 1
		}},
		{"docker-archive two images by @N", func(t *testing.T, dir string) (string, digest.Digest, []byte, string, int) {
			p := dockerArchive(t, filepath.Join(dir, "image.tar"), map[string]v1.Image{
				"a:1": dockerImage(t, 16, 1), "b:2": dockerImage(t, 17, 2)})
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(p) })
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			if strings.Contains(m[1].RepoTags[0], "a:1") {
				n = 1
			}
			loaded := loadTagged(t, p, "a:1")
			return "docker-archive:" + p + ":@" + string(rune('0'+n)), mustDigest(t, loaded), mustRaw(t, loaded), string(types.DockerManifestSchema2), 1
		}},
	}
}

func loadTagged(t *testing.T, p, tag string) v1.Image {
	t.Helper()
	tg := mustTag(t, tag)
	img, err := tarball.ImageFromPath(p, &tg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPublishSources(t *testing.T) {
	for _, tc := range sourceCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec, want, raw, mt, manifests := tc.setup(t, filepath.Join(dir, "src"))
			root := filepath.Join(dir, "tree")
			res := mustPublish(t, root, spec, "team/app:v1", "team/app:latest", "other:x")
			if res.Digest != want || res.MediaType != mt || res.Manifests != manifests {
				t.Fatalf("result %s %s %d manifests, want %s %s %d", res.Digest, res.MediaType, res.Manifests, want, mt, manifests)
			}
			if !res.LayoutCreated || !res.CatalogChanged || len(res.RepositoriesWritten) != 2 {
				t.Errorf("result %+v", res)
			}
			if res.BlobsSkipped != 0 || res.BlobsWritten != res.Blobs+res.Manifests {
				t.Errorf("wrote %d, skipped %d, of %d blobs and %d manifests", res.BlobsWritten, res.BlobsSkipped, res.Blobs, res.Manifests)
			}
			if got := readBlob(t, root, want); !bytes.Equal(got, raw) {
				t.Errorf("stored manifest differs from the source's:\n%s\n%s", got, raw)
			}
			r := readRepo(t, root, "team/app")
			if r.Tags["v1"] != want || r.Tags["latest"] != want || len(r.Tags) != 2 {
				t.Errorf("tags %v", r.Tags)
			}
			if m := r.Manifests[want]; m.MediaType != mt || m.Size != int64(len(raw)) {
				t.Errorf("manifest entry %+v", m)
			}
			if len(r.Manifests) != manifests {
				t.Errorf("%d manifests listed, want %d", len(r.Manifests), manifests)
			}
			for d, m := range r.Manifests {
				if len(m.Children) == 0 && len(m.Blobs) == 0 {
					t.Errorf("manifest %s lists neither children nor blobs", d)
				}
			}
			if o := readRepo(t, root, "other"); o.Tags["x"] != want {
				t.Errorf("other:x = %s", o.Tags["x"])
			}
			b, err := os.ReadFile(filepath.Join(root, "heron-layout.json"))
			if err != nil || !bytes.Equal(b, layout.EncodeLayoutFile()) {
				t.Errorf("heron-layout.json: %q %v", b, err)
			}
			assertConsistent(t, root)
		})
	}
}

func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	twoRefs := writeLayout(t, filepath.Join(dir, "two"), entry{item: ociImage(t, 1, 1), ref: "v1"}, entry{item: ociImage(t, 2, 1), ref: "v2"})
	archive := dockerArchive(t, filepath.Join(dir, "d.tar"), map[string]v1.Image{"a:1": dockerImage(t, 3, 1), "b:2": dockerImage(t, 4, 1)})
	for _, tc := range []struct {
		name, spec string
		want       []string
	}{
		{"several manifests without REF", "oci:" + twoRefs, []string{"2 manifests", "v1", "v2"}},
		{"unknown REF", "oci:" + twoRefs + ":v3", []string{`"v3"`, "v1", "v2"}},
		{"not a layout", "oci:" + filepath.Join(dir, "nope"), []string{"not an OCI image layout"}},
		{"several images without selector", "docker-archive:" + archive, []string{"2 images", "a:1", "b:2"}},
		{"unknown tag", "docker-archive:" + archive + ":c:3", []string{"c:3", "a:1"}},
		{"index out of range", "docker-archive:" + archive + ":@2", []string{"@2"}},
		{"missing archive", "docker-archive:" + filepath.Join(dir, "none.tar"), []string{"none.tar"}},
		{"oci-archive of something else", "oci-archive:" + archive, []string{"no index.json"}},
		{"unknown transport", "dir:" + filepath.Join(dir, "x"), []string{"unknown transport"}},
		{"no transport", "/tmp/x", []string{"want oci:DIR"}},
		{"bad index", "docker-archive:" + archive + ":@x", []string{"@N"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "tree")
			_, err := publishTo(t, root, tc.spec, "app:1")
			if err == nil {
				t.Fatal("publish succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, serr := os.Stat(root); !os.IsNotExist(serr) {
				t.Errorf("the root was created: %v", serr)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want publish.Target
		ok   bool
	}{
		{"app:v1", publish.Target{Repository: "app", Tag: "v1"}, true},
		{"team/app/api:1.2.3-rc_1", publish.Target{Repository: "team/app/api", Tag: "1.2.3-rc_1"}, true},
		{"app", publish.Target{}, false},
		{"App:v1", publish.Target{}, false},
		{"app:", publish.Target{}, false},
		{"app:-x", publish.Target{}, false},
		{"localhost:5000/app:v1", publish.Target{}, false},
		{"../x:v1", publish.Target{}, false},
	} {
		got, err := publish.ParseTarget(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

// emptyLayer is the gzip of an empty tar, the layer Docker uses for
// configuration-only steps.
var emptyLayer = []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00}

const (
	emptyLayerDigest = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	emptyJSONDigest  = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
)

func TestArtifactsAndReferrers(t *testing.T) {
	if digest.FromBytes(emptyLayer) != emptyLayerDigest {
		t.Fatalf("test data: empty layer is %s", digest.FromBytes(emptyLayer))
	}
	l := newRawLayout(t)
	cfg := l.blob(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	img := l.json(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{l.blob(ocispec.MediaTypeImageLayerGzip, emptyLayer)},
	})
	emptyJSON := l.blob(ocispec.MediaTypeEmptyJSON, []byte("{}"))
	if emptyJSON.Digest != emptyJSONDigest {
		t.Fatalf("test data: empty descriptor is %s", emptyJSON.Digest)
	}
	subject := ocispec.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: img.Size}
	sbom := l.json(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.example.sbom+json",
		Config:       emptyJSON,
		Layers:       []ocispec.Descriptor{l.blob("application/vnd.example.sbom+json", []byte(`{"packages":[]}`))},
		Subject:      &subject,
		Annotations:  map[string]string{"org.example.kind": "sbom"},
	})
	sig := l.json(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config:  l.blob("application/vnd.example.signature.config+json", []byte(`{"v":1}`)),
		Layers:  []ocispec.Descriptor{l.blob("application/octet-stream", []byte("signature"))},
		Subject: &subject,
	})
	withRef := func(d ocispec.Descriptor, ref string) ocispec.Descriptor {
		d.Annotations = map[string]string{ocispec.AnnotationRefName: ref}
		return d
	}
	dir := l.index(withRef(img, "img"), withRef(sbom, "sbom"), withRef(sig, "sig"))
	root := filepath.Join(t.TempDir(), "tree")

	mustPublish(t, root, "oci:"+dir+":img", "app:1")
	mustPublish(t, root, "oci:"+dir+":sbom", "app:sbom")
	mustPublish(t, root, "oci:"+dir+":sig", "app:sig")

	r := readRepo(t, root, "app")
	refs := r.Referrers[img.Digest]
	if len(refs) != 2 {
		t.Fatalf("referrers of the image: %+v", r.Referrers)
	}
	byDigest := map[digest.Digest]ocispec.Descriptor{}
	for _, d := range refs {
		byDigest[d.Digest] = d
	}
	if d := byDigest[sbom.Digest]; d.ArtifactType != "application/vnd.example.sbom+json" || d.Size != sbom.Size ||
		d.MediaType != ocispec.MediaTypeImageManifest || d.Annotations["org.example.kind"] != "sbom" {
		t.Errorf("sbom referrer %+v", d)
	}
	if d := byDigest[sig.Digest]; d.ArtifactType != "application/vnd.example.signature.config+json" {
		t.Errorf("signature referrer (artifactType from its config) %+v", d)
	}
	if m := r.Manifests[sbom.Digest]; m.Subject != img.Digest || m.ArtifactType != "application/vnd.example.sbom+json" {
		t.Errorf("sbom manifest entry %+v", m)
	}
	if b := readBlob(t, root, emptyJSONDigest); string(b) != "{}" {
		t.Errorf("empty descriptor content %q", b)
	}
	if b := readBlob(t, root, emptyLayerDigest); !bytes.Equal(b, emptyLayer) {
		t.Errorf("empty layer content %x", b)
	}
	if _, ok := r.Blobs[emptyJSONDigest]; !ok {
		t.Errorf("empty descriptor not listed")
	}
	if _, ok := r.Blobs[emptyLayerDigest]; !ok {
		t.Errorf("empty layer not listed")
	}
	assertConsistent(t, root)

	// The referrers stay when the subject is published again, and an
	// artifact published before its subject is recorded too.
	mustPublish(t, root, "oci:"+dir+":img", "app:1")
	mustPublish(t, root, "oci:"+dir+":sbom", "early:sbom")
	if len(readRepo(t, root, "app").Referrers[img.Digest]) != 2 || len(readRepo(t, root, "early").Referrers[img.Digest]) != 1 {
		t.Error("referrers lost")
	}
}

// countingSource counts the blobs (not manifests) read from a source.
type countingSource struct {
	source.Source
	blobReads atomic.Int64
}

func (c *countingSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	switch d.MediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, string(types.DockerManifestSchema2), string(types.DockerManifestList):
	default:
		c.blobReads.Add(1)
	}
	return c.Source.Fetch(ctx, d)
}

func TestRepublishIsNoop(t *testing.T) {
	for _, tc := range sourceCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec, _, _, _, _ := tc.setup(t, filepath.Join(dir, "src"))
			root := filepath.Join(dir, "tree")
			mustPublish(t, root, spec, "team/app:v1", "x:1")
			before := snapshot(t, root, true)

			src, err := source.Parse(spec)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			cs := &countingSource{Source: src}
			tv1, _ := publish.ParseTarget("team/app:v1")
			tx, _ := publish.ParseTarget("x:1")
			res, err := publish.New(publish.NewFSSink(layout.Root(root))).Publish(context.Background(), cs, []publish.Target{tx, tv1})
			if err != nil {
				t.Fatal(err)
			}
			if res.BlobsWritten != 0 || res.BytesWritten != 0 || len(res.RepositoriesWritten) != 0 || res.CatalogChanged || res.LayoutCreated {
				t.Errorf("re-publish wrote: %+v", res)
			}
			if n := cs.blobReads.Load(); n != 0 {
				t.Errorf("re-publish read %d blobs from the source", n)
			}
			if d := diffSnapshots(withoutCounter(before), withoutCounter(snapshot(t, root, true))); len(d) > 0 {
				t.Errorf("re-publish changed the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestBlobDedupeAcrossRepositories(t *testing.T) {
	dir := t.TempDir()
	a := ociImage(t, 1, 2)
	extra, err := random.Layer(300, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mutate.AppendLayers(a, extra)
	if err != nil {
		t.Fatal(err)
	}
	src := writeLayout(t, filepath.Join(dir, "src"), entry{item: a, ref: "a"}, entry{item: b, ref: "b"})
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, "oci:"+src+":a", "one:1")
	res := mustPublish(t, root, "oci:"+src+":b", "two:1")
	// b shares a's two layers; its config, new layer and manifest are new.
	if res.BlobsSkipped != 2 || res.BlobsWritten != 3 {
		t.Errorf("wrote %d, skipped %d; want 3 and 2", res.BlobsWritten, res.BlobsSkipped)
	}
	layers, err := a.Layers()
	if err != nil {
		t.Fatal(err)
	}
	shared := mustDigest(t, layers[0])
	for _, repo := range []string{"one", "two"} {
		if _, ok := readRepo(t, root, repo).Blobs[shared]; !ok {
			t.Errorf("repository %s does not list the shared layer", repo)
		}
	}
	assertConsistent(t, root)
}

func TestRepositoryUpdate(t *testing.T) {
	dir := t.TempDir()
	a, b := ociImage(t, 1, 1), ociImage(t, 2, 1)
	src := writeLayout(t, filepath.Join(dir, "src"), entry{item: a, ref: "a"}, entry{item: b, ref: "b"})
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, "oci:"+src+":a", "app:v1", "app:stable")

	// A field this version does not know survives a rewrite.
	key, _ := layout.RepositoryKey("app")
	p := layout.Root(root).Path(key)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["x-future"] = map[string]any{"kept": true}
	raw, _ = json.Marshal(doc)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	pub := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithBlobBaseURL("https://cdn.example.com/tree/"))
	if _, err := publishWith(t, pub, "oci:"+src+":b", nil, "app:v1"); err != nil {
		t.Fatal(err)
	}
	r := readRepo(t, root, "app")
	da, db := mustDigest(t, a), mustDigest(t, b)
	if r.Tags["v1"] != db || r.Tags["stable"] != da {
		t.Errorf("tags %v", r.Tags)
	}
	if _, ok := r.Manifests[da]; !ok {
		t.Error("the manifest the moved tag pointed at is no longer listed")
	}
	if r.BlobBaseURL != "https://cdn.example.com/tree" {
		t.Errorf("blobBaseURL %q", r.BlobBaseURL)
	}
	raw, _ = os.ReadFile(p)
	if !strings.Contains(string(raw), `"x-future"`) {
		t.Errorf("unknown field lost:\n%s", raw)
	}
	// Without the option, the base URL stays.
	mustPublish(t, root, "oci:"+src+":a", "app:v2")
	if r := readRepo(t, root, "app"); r.BlobBaseURL != "https://cdn.example.com/tree" || len(r.Tags) != 3 {
		t.Errorf("after another publish: %q %v", r.BlobBaseURL, r.Tags)
	}
	assertConsistent(t, root)
}

// faultySink is a real FSSink whose writes of one key fail half-way, as a
// full disk would make them.
type faultySink struct {
	*publish.FSSink
	failKey string
}

type enospcReader struct {
	r io.Reader
	n int
}

func (e *enospcReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, syscall.ENOSPC
	}
	if len(p) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= n
	return n, err
}

func (f *faultySink) Stage(ctx context.Context, key string, r io.Reader, want publish.Want) (publish.Staged, error) {
	if key == f.failKey {
		r = &enospcReader{r: r, n: 10}
	}
	return f.FSSink.Stage(ctx, key, r, want)
}

func (f *faultySink) Put(ctx context.Context, key string, r io.Reader, want publish.Want) error {
	if key == f.failKey {
		r = &enospcReader{r: r, n: 10}
	}
	return f.FSSink.Put(ctx, key, r, want)
}

func TestFailuresLeaveTreeUnchanged(t *testing.T) {
	blobPath := func(dir string, d digest.Digest) string {
		return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
	}
	lastLayer := func(t *testing.T, img v1.Image) digest.Digest {
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		return mustDigest(t, ls[len(ls)-1])
	}
	for _, tc := range []struct {
		name string
		// setup returns the source and, optionally, a sink to use.
		setup func(t *testing.T, dir, root string) (string, publish.Sink)
		is    error
		// targets default to team/app:v1 and new:1.
		targets []string
	}{
		{"corrupt layer (same size, other bytes)", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			img := ociImage(t, 20, 3)
			src := writeLayout(t, dir, entry{item: img})
			p := blobPath(src, lastLayer(t, img))
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return "oci:" + src, nil
		}, publish.ErrDigestMismatch, nil},
		{"layer shorter than its descriptor", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			img := ociImage(t, 21, 2)
			src := writeLayout(t, dir, entry{item: img})
			p := blobPath(src, lastLayer(t, img))
			if err := os.Truncate(p, 10); err != nil {
				t.Fatal(err)
			}
			return "oci:" + src, nil
		}, publish.ErrSizeMismatch, nil},
		{"corrupt manifest", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			img := ociImage(t, 22, 1)
			src := writeLayout(t, dir, entry{item: img})
			p := blobPath(src, mustDigest(t, img))
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, bytes.Replace(b, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":3`), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			return "oci:" + src, nil
		}, publish.ErrDigestMismatch, nil},
		{"missing layer in the layout", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			img := ociImage(t, 23, 2)
			src := writeLayout(t, dir, entry{item: img})
			if err := os.Remove(blobPath(src, lastLayer(t, img))); err != nil {
				t.Fatal(err)
			}
			return "oci:" + src, nil
		}, publish.ErrNotFound, nil},
		{"index child missing from the layout", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			child := ociImage(t, 25, 1)
			idx := platformIndex(t, types.OCIImageIndex, ociImage(t, 24, 1), child)
			src := writeLayout(t, dir, entry{item: idx})
			if err := os.Remove(blobPath(src, mustDigest(t, child))); err != nil {
				t.Fatal(err)
			}
			return "oci:" + src, nil
		}, publish.ErrNotFound, nil},
		{"truncated docker-archive", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			p := dockerArchive(t, filepath.Join(t.TempDir(), "d.tar"), map[string]v1.Image{"a:1": dockerImage(t, 26, 3)})
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			return "docker-archive:" + p, nil
		}, nil, nil},
		{"truncated oci-archive", func(t *testing.T, dir, _ string) (string, publish.Sink) {
			src := writeLayout(t, dir, entry{item: ociImage(t, 27, 3)})
			p := tarDir(t, src, filepath.Join(t.TempDir(), "o.tar"))
			fi, _ := os.Stat(p)
			if err := os.Truncate(p, fi.Size()-3000); err != nil {
				t.Fatal(err)
			}
			return "oci-archive:" + p, nil
		}, nil, nil},
		{"disk full while writing a layer", func(t *testing.T, dir, root string) (string, publish.Sink) {
			img := ociImage(t, 28, 3)
			src := writeLayout(t, dir, entry{item: img})
			key, _ := layout.BlobKey(lastLayer(t, img))
			return "oci:" + src, &faultySink{FSSink: publish.NewFSSink(layout.Root(root)), failKey: key}
		}, syscall.ENOSPC, nil},
		{"disk full while writing the index", func(t *testing.T, dir, root string) (string, publish.Sink) {
			idx := platformIndex(t, types.OCIImageIndex, ociImage(t, 29, 1), ociImage(t, 30, 1))
			src := writeLayout(t, dir, entry{item: idx})
			key, _ := layout.BlobKey(mustDigest(t, idx))
			return "oci:" + src, &faultySink{FSSink: publish.NewFSSink(layout.Root(root)), failKey: key}
		}, syscall.ENOSPC, nil},
		{"repository file cannot be written", func(t *testing.T, dir, root string) (string, publish.Sink) {
			src := writeLayout(t, dir, entry{item: ociImage(t, 31, 1)})
			// The repository's folder is a file: nothing can be created in it.
			if err := os.MkdirAll(filepath.Join(root, "repositories"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "repositories", "zzz"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return "oci:" + src, nil
		}, syscall.ENOTDIR, []string{"team/app:v1", "zzz/app:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "tree")
			base := writeLayout(t, filepath.Join(dir, "base"), entry{item: ociImage(t, 1, 2)})
			mustPublish(t, root, "oci:"+base, "base:1", "team/app:old")
			src, sink := tc.setup(t, filepath.Join(dir, "src"), root)
			before := snapshot(t, root, false)
			if sink == nil {
				sink = publish.NewFSSink(layout.Root(root))
			}
			targets := tc.targets
			if targets == nil {
				targets = []string{"team/app:v1", "new:1"}
			}
			_, err := publishWith(t, publish.New(sink), src, nil, targets...)
			if err == nil {
				t.Fatal("publish succeeded")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if d := diffSnapshots(before, snapshot(t, root, false)); len(d) > 0 {
				t.Errorf("the failed publish changed the tree:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestFailureOnNewRootWritesNothing(t *testing.T) {
	dir := t.TempDir()
	img := ociImage(t, 1, 2)
	src := writeLayout(t, filepath.Join(dir, "src"), entry{item: img})
	ls, _ := img.Layers()
	if err := os.Remove(filepath.Join(src, "blobs", "sha256", strings.TrimPrefix(string(mustDigest(t, ls[0])), "sha256:"))); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "tree")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := publishTo(t, root, "oci:"+src, "app:1"); !errors.Is(err, publish.ErrNotFound) {
		t.Fatalf("error %v", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("the failed publish wrote %v", ents)
	}
	// A root below a regular file cannot be written at all.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publishTo(t, filepath.Join(file, "tree"), "oci:"+writeLayout(t, filepath.Join(dir, "src2"), entry{item: img}), "app:1"); err == nil {
		t.Error("publishing below a file succeeded")
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("the file changed")
	}
}

func TestUnwritableRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("permissions do not stop root")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "tree")
	mustPublish(t, root, "oci:"+writeLayout(t, filepath.Join(dir, "base"), entry{item: ociImage(t, 1, 1)}), "base:1")
	src := writeLayout(t, filepath.Join(dir, "src"), entry{item: ociImage(t, 2, 1)})
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	})
	for _, d := range dirs {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			_ = os.Chmod(d, 0o755)
		}
	})
	before := snapshot(t, root, false)
	if _, err := publishTo(t, root, "oci:"+src, "app:1"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("error %v", err)
	}
	if d := diffSnapshots(before, snapshot(t, root, false)); len(d) > 0 {
		t.Errorf("tree changed:\n%s", strings.Join(d, "\n"))
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	src := "oci:" + writeLayout(t, filepath.Join(dir, "src"), entry{item: ociImage(t, 1, 1)})
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, root string)
		targets []string
		opts    []publish.Option
		is      error
		want    string
	}{
		{"another layout version", func(t *testing.T, root string) {
			mustPublish(t, root, src, "app:1")
			if err := os.WriteFile(filepath.Join(root, "heron-layout.json"), []byte(`{"layoutVersion": 2}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"app:2"}, nil, layout.ErrUnsupportedVersion, "version 2"},
		{"a folder that is not a tree", func(t *testing.T, root string) {
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "notes.txt"), []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"app:1"}, nil, publish.ErrNotTree, "heron-layout.json"},
		{"file of a/b.json/c would be below the file of a/b", func(t *testing.T, root string) {
			mustPublish(t, root, src, "a/b:1")
		}, []string{"a/b.json/c:1"}, nil, publish.ErrNameConflict, `"a/b"`},
		{"file of a/b is the folder of a/b.json/c", func(t *testing.T, root string) {
			mustPublish(t, root, src, "a/b.json/c:1")
		}, []string{"ok:1", "a/b:1"}, nil, publish.ErrNameConflict, "a/b.json"},
		{"no target", func(t *testing.T, root string) {}, nil, nil, publish.ErrNoTargets, "NAME:TAG"},
		{"bad blob base URL", func(t *testing.T, root string) {}, []string{"app:1"},
			[]publish.Option{publish.WithBlobBaseURL("cdn.example.com")}, nil, "http"},
		{"corrupt repository file", func(t *testing.T, root string) {
			mustPublish(t, root, src, "app:1")
			key, _ := layout.RepositoryKey("app")
			if err := os.WriteFile(layout.Root(root).Path(key), []byte(`{"schemaVersion":1,"name":"app","tags":{"x":"sha256:00"}}`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"other:1", "app:2"}, nil, nil, "repositories/app.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "tree")
			tc.prepare(t, root)
			before := snapshot(t, root, true)
			p := publish.New(publish.NewFSSink(layout.Root(root)), tc.opts...)
			_, err := publishWith(t, p, src, nil, tc.targets...)
			if err == nil {
				t.Fatal("publish succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if d := diffSnapshots(before, snapshot(t, root, true)); len(d) > 0 {
				t.Errorf("tree changed:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestFailedFirstPublishLeavesUsableTree(t *testing.T) {
	dir := t.TempDir()
	img := ociImage(t, 1, 2)
	bad := writeLayout(t, filepath.Join(dir, "bad"), entry{item: img})
	ls, _ := img.Layers()
	d := mustDigest(t, ls[1])
	p := filepath.Join(bad, "blobs", "sha256", d.Encoded())
	b, _ := os.ReadFile(p)
	b[0] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "tree")
	if _, err := publishTo(t, root, "oci:"+bad, "app:1"); !errors.Is(err, publish.ErrDigestMismatch) {
		t.Fatalf("error %v", err)
	}
	if l := leftovers(t, root); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
	if _, err := os.Stat(filepath.Join(root, "repositories")); !os.IsNotExist(err) {
		t.Errorf("a repository was written: %v", err)
	}
	good := writeLayout(t, filepath.Join(dir, "good"), entry{item: ociImage(t, 2, 1)})
	mustPublish(t, root, "oci:"+good, "app:1")
	assertConsistent(t, root)
}
