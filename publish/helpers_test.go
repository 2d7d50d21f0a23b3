package publish_test

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
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

// dockerImage is a random single-platform image with Docker media types.
func dockerImage(t *testing.T, seed int64, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(256, layers, random.WithSource(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// ociImage is a random single-platform image with OCI media types.
func ociImage(t *testing.T, seed int64, layers int) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for i := range layers {
		l, err := random.Layer(200+int64(i), types.OCILayer, random.WithSource(rand.NewSource(seed*100+int64(i))))
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// platformIndex is an index of two images, for linux/amd64 and linux/arm64.
func platformIndex(t *testing.T, mt types.MediaType, a, b v1.Image) v1.ImageIndex {
	t.Helper()
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, mt),
		mutate.IndexAddendum{Add: a, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: b, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
}

// entry is one entry of a test layout's index.json.
type entry struct {
	item any // v1.Image or v1.ImageIndex
	ref  string
}

// writeLayout writes an OCI image layout with ggcr whose index.json lists
// the entries, each with its ref name annotation when it has one.
func writeLayout(t *testing.T, dir string, entries ...entry) string {
	t.Helper()
	p, err := ggcrlayout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var opts []ggcrlayout.Option
		if e.ref != "" {
			opts = append(opts, ggcrlayout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: e.ref}))
		}
		switch it := e.item.(type) {
		case v1.Image:
			err = p.AppendImage(it, opts...)
		case v1.ImageIndex:
			err = p.AppendIndex(it, opts...)
		default:
			t.Fatalf("entry of type %T", e.item)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rawLayout writes a hand-made OCI image layout, byte by byte.
type rawLayout struct {
	t   *testing.T
	dir string
}

func newRawLayout(t *testing.T) *rawLayout {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return &rawLayout{t: t, dir: dir}
}

func (l *rawLayout) blob(mt string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

func (l *rawLayout) json(mt string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.blob(mt, b)
}

func (l *rawLayout) index(ds ...ocispec.Descriptor) string {
	b, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: ds})
	if err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "index.json"), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return l.dir
}

// tarDir writes a tar of dir's files (an oci-archive) to out.
func tarDir(t *testing.T, dir, out string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// dockerArchive writes a docker save tarball holding the images by tag.
func dockerArchive(t *testing.T, out string, imgs map[string]v1.Image) string {
	t.Helper()
	m := map[name.Tag]v1.Image{}
	for s, img := range imgs {
		tag, err := name.NewTag(s)
		if err != nil {
			t.Fatal(err)
		}
		m[tag] = img
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := tarball.MultiWriteToFile(out, m); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustDigest(t *testing.T, x interface{ Digest() (v1.Hash, error) }) digest.Digest {
	t.Helper()
	h, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func mustRaw(t *testing.T, x interface{ RawManifest() ([]byte, error) }) []byte {
	t.Helper()
	b, err := x.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishTo parses spec and targets and publishes into root.
func publishTo(t *testing.T, root, spec string, targets ...string) (*publish.Result, error) {
	t.Helper()
	return publishWith(t, publish.New(publish.NewFSSink(layout.Root(root))), spec, nil, targets...)
}

// publishWith parses spec (with opts) and targets and publishes with p.
func publishWith(t *testing.T, p *publish.Publisher, spec string, opts []source.Option, targets ...string) (*publish.Result, error) {
	t.Helper()
	src, err := source.ParseWith(spec, opts...)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var ts []publish.Target
	for _, s := range targets {
		tg, err := publish.ParseTarget(s)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tg)
	}
	return p.Publish(context.Background(), src, ts)
}

func mustPublish(t *testing.T, root, spec string, targets ...string) *publish.Result {
	t.Helper()
	res, err := publishTo(t, root, spec, targets...)
	if err != nil {
		t.Fatalf("publish %s: %v", spec, err)
	}
	return res
}

func readRepo(t *testing.T, root, repo string) *layout.Repository {
	t.Helper()
	r, err := publish.ReadRepository(context.Background(), publish.NewFSSink(layout.Root(root)), repo)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readBlob(t *testing.T, root string, d digest.Digest) []byte {
	t.Helper()
	key, err := layout.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(layout.Root(root).Path(key))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertConsistent checks what a reader relies on: every repository file
// decodes, and every manifest and blob it lists is in blobs/ with the
// digest and size it states; the catalog lists exactly the repositories.
func assertConsistent(t *testing.T, root string) {
	t.Helper()
	ctx := context.Background()
	sink := publish.NewFSSink(layout.Root(root))
	var names []string
	shardFiles := map[string][]string{} // by repository
	reposDir := layout.Root(root).Path(layout.RepositoriesDirKey())
	err := filepath.WalkDir(reposDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if n, id, ok := layout.RepositoryShardFromKey(filepath.ToSlash(rel)); ok {
			shardFiles[n] = append(shardFiles[n], id)
			return nil
		}
		n, ok := layout.RepositoryNameFromKey(filepath.ToSlash(rel))
		if !ok {
			return fmt.Errorf("stray file %s", rel)
		}
		names = append(names, n)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, n := range names {
		r, err := publish.ReadRepository(ctx, sink, n)
		if err != nil {
			t.Fatal(err)
		}
		// Every shard file is named by its repository file (a publish
		// that returned removed the ones it replaced).
		named := map[string]bool{}
		for _, kind := range layout.ShardKinds {
			for _, ref := range r.Shards(kind) {
				named[ref.ID] = true
			}
		}
		for _, id := range shardFiles[n] {
			if !named[id] {
				t.Errorf("repository %s: shard file %s not named by the repository file", n, id)
			}
		}
		delete(shardFiles, n)
		check := func(d digest.Digest, size int64) {
			b := readBlob(t, root, d)
			if int64(len(b)) != size || d.Algorithm().FromBytes(b) != d {
				t.Errorf("repository %s: content of %s does not match (%d bytes, want %d)", n, d, len(b), size)
			}
		}
		for d, m := range r.Manifests {
			check(d, m.Size)
		}
		for d, b := range r.Blobs {
			if b.IsStored() { // else listed by an on_demand publish
				check(d, b.Size)
			}
		}
	}
	for n, ids := range shardFiles {
		t.Errorf("shard files %v of %s, which has no repository file", ids, n)
	}
	cat, err := publish.CatalogNames(ctx, sink)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if strings.Join(cat, ",") != strings.Join(names, ",") {
		t.Errorf("catalog %v, repositories %v", cat, names)
	}
}

// snapshot describes every file and folder under root: type, mode, size,
// content hash and (for files, and for folders when dirTimes) mtime.
func snapshot(t *testing.T, root string, dirTimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == root {
				return nil
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			s := "dir " + fi.Mode().String()
			if dirTimes {
				s += fmt.Sprint(" ", fi.ModTime().UnixNano())
			}
			out[rel] = s
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = fmt.Sprintf("file %s %d %s %d", fi.Mode(), len(b), hex.EncodeToString(sum[:]), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withoutCounter drops the change counter from a snapshot: a publish that
// writes nothing still increments it when the files it found had changed
// within the last seconds (FSSink.SignalIfRecent, TestSignalIfRecent).
func withoutCounter(s map[string]string) map[string]string {
	delete(s, filepath.FromSlash(layout.ChangesKey()))
	return s
}

func diffSnapshots(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, fmt.Sprintf("%s: %q -> %q", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	sort.Strings(out)
	return out
}

func emptyIndex() v1.ImageIndex { return empty.Index }

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// leftovers lists the files under root whose names are not final: a write
// must never leave a temporary file behind.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
