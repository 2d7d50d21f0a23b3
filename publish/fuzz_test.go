package publish_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/publish/source"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The fuzz targets of this file feed publish hostile sources: the
// index.json of an OCI image layout, the manifest.json of a docker save
// tarball, and any one tar entry (name, type, link, size, content) put
// among the entries of a valid archive. Whatever the input:
//
//   - publish does not panic;
//   - a publish that fails leaves the tree byte for byte as it was;
//   - a publish that succeeds leaves a consistent tree (every repository
//     file decodes, and names content of the right digest and size);
//   - nothing outside the tree is written, and no byte of the secret file
//     next to the source (which links in the source point to) ever reaches
//     the tree.
//
// Each iteration publishes into a copy of a small tree that holds another
// image already. scripts/fuzz.sh runs these targets; the seed corpora in
// testdata/fuzz run with the unit tests.

// secretMarker is the content of a file next to each source, outside it.
const secretMarker = "s3cret-next-to-the-source"

// smallImage is a tiny image, the same bytes every time for a given seed:
// a gzipped layer, a Docker config whose diff_ids name the layer's
// uncompressed digest, and an OCI manifest of both.
type smallImage struct {
	layer, config, manifest []byte
	layerDesc, configDesc   ocispec.Descriptor
	manifestDesc            ocispec.Descriptor
}

func newSmallImage(tb testing.TB, seed string) smallImage {
	tb.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	content := []byte("hello from " + seed + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		tb.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	img := smallImage{layer: gz.Bytes()}
	img.layerDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(img.layer), Size: int64(len(img.layer))}
	img.config = mustMarshal(tb, map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{digest.FromBytes(raw.Bytes())}},
	})
	img.configDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(img.config), Size: int64(len(img.config))}
	img.manifest = mustMarshal(tb, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.configDesc, Layers: []ocispec.Descriptor{img.layerDesc},
	})
	img.manifestDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(img.manifest), Size: int64(len(img.manifest))}
	return img
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// blobs returns the image's content by blob path (blobs/sha256/<hex>).
func (img smallImage) blobs() map[string][]byte {
	out := map[string][]byte{}
	for _, b := range [][]byte{img.layer, img.config, img.manifest} {
		d := digest.FromBytes(b)
		out["blobs/sha256/"+d.Encoded()] = b
	}
	return out
}

// indexJSON is an index.json listing descs.
func indexJSON(tb testing.TB, descs ...ocispec.Descriptor) []byte {
	tb.Helper()
	return mustMarshal(tb, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: descs})
}

// dockerManifestJSON is the manifest.json of a docker save tarball holding
// the image as config.json and layer.tar.gz.
func dockerManifestJSON(tags ...string) []byte {
	b, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": tags, "Layers": []string{"layer.tar.gz"}}})
	return b
}

// tarFile is one entry of a test archive.
type tarFile struct {
	name string
	data []byte
}

// ociArchiveFiles are the entries of an OCI archive of img, with index.
func ociArchiveFiles(img smallImage, index []byte) []tarFile {
	files := []tarFile{{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {"index.json", index}}
	for _, b := range [][]byte{img.config, img.layer, img.manifest} {
		files = append(files, tarFile{"blobs/sha256/" + digest.FromBytes(b).Encoded(), b})
	}
	return files
}

// dockerArchiveFiles are the entries of a docker save tarball of img.
func dockerArchiveFiles(img smallImage, manifest []byte) []tarFile {
	return []tarFile{{"manifest.json", manifest}, {"config.json", img.config}, {"layer.tar.gz", img.layer}}
}

// buildTar writes files as a tar, with the raw bytes of one more entry
// (see rawTarEntry) first or last.
func buildTar(tb testing.TB, files []tarFile, raw []byte, rawFirst bool) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if rawFirst {
		buf.Write(raw)
	}
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if !rawFirst {
		buf.Write(raw)
	}
	// The end-of-archive marker: two zero blocks.
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

// rawTarEntry returns the bytes of a tar entry whose header says what hdr
// says, followed by content padded to a block, whatever hdr.Size claims:
// an entry can hold fewer bytes than its header states, or more. It
// reports false for a header archive/tar cannot write.
func rawTarEntry(hdr *tar.Header, content []byte) ([]byte, bool) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, false
	}
	// archive/tar has written the header blocks; the content goes after
	// them, as it is.
	b.Write(content)
	if r := b.Len() % 512; r != 0 {
		b.Write(make([]byte, 512-r))
	}
	return b.Bytes(), true
}

// fuzzBed is a worker's place to publish: a template tree holding the base
// image, the copy a publish writes into, and the folder of sources next to
// a secret file.
type fuzzBed struct {
	dir      string // holds everything below
	template string // a tree holding base:1
	tree     string // the tree publish writes into, a copy of template
	src      string // where sources are written
	secret   string // a file outside the source and the tree
	dirty    bool   // tree changed: copy the template again
	before   map[string]string
	// measure makes publish count the bytes it allocates, in alloc.
	measure bool
	alloc   uint64
}

func newFuzzBed(tb testing.TB) *fuzzBed {
	tb.Helper()
	dir := tb.TempDir()
	b := &fuzzBed{
		dir: dir, template: filepath.Join(dir, "template"), tree: filepath.Join(dir, "tree"),
		src: filepath.Join(dir, "src"), secret: filepath.Join(dir, "secret"), dirty: true,
	}
	if err := os.WriteFile(b.secret, []byte(secretMarker), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(b.src, 0o755); err != nil {
		tb.Fatal(err)
	}
	base := newSmallImage(tb, "base")
	layoutDir := filepath.Join(dir, "base-layout")
	writeOCILayout(tb, layoutDir, base, indexJSON(tb, base.manifestDesc))
	src, err := source.Parse("oci:" + layoutDir)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	if _, err := publish.New(publish.NewFSSink(layout.Root(b.template))).Publish(context.Background(), src,
		[]publish.Target{{Repository: "base", Tag: "1"}, {Repository: "app", Tag: "old"}}); err != nil {
		tb.Fatal(err)
	}
	return b
}

// writeOCILayout writes an OCI image layout of img with the given
// index.json.
func writeOCILayout(tb testing.TB, dir string, img smallImage, index []byte) {
	tb.Helper()
	files := map[string][]byte{"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`), "index.json": index}
	for k, v := range img.blobs() {
		files[k] = v
	}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// copyTree copies the regular files and folders of src to dst.
func copyTree(tb testing.TB, src, dst string) {
	tb.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// publish publishes spec into the bed's tree as app:1 and checks what a
// publish of hostile input must do, whatever it did: a failure changed
// nothing, a success left a consistent tree without the secret; and
// nothing outside the tree changed. It returns the publish's error.
func (b *fuzzBed) publish(t *testing.T, spec string) error {
	t.Helper()
	if b.dirty {
		if err := os.RemoveAll(b.tree); err != nil {
			t.Fatal(err)
		}
		copyTree(t, b.template, b.tree)
		b.before = snapshot(t, b.tree, false)
		b.dirty = false
	}
	outside := b.outsideSnapshot(t)
	var err error
	if b.measure {
		b.alloc = allocated(func() { _, err = publishTo(t, b.tree, spec, "app:1") })
	} else {
		_, err = publishTo(t, b.tree, spec, "app:1")
	}
	if d := diffSnapshots(outside, b.outsideSnapshot(t)); len(d) > 0 {
		t.Fatalf("publish %s changed files outside the tree:\n%s", spec, strings.Join(d, "\n"))
	}
	if err != nil {
		t.Logf("publish %s: %v", spec, err)
		if err.Error() == "" {
			t.Fatal("publish failed with an empty error message")
		}
		if d := diffSnapshots(b.before, snapshot(t, b.tree, false)); len(d) > 0 {
			t.Fatalf("the failed publish (%v) changed the tree:\n%s", err, strings.Join(d, "\n"))
		}
		return err
	}
	b.dirty = true
	assertConsistent(t, b.tree)
	if f := treeHolding(t, b.tree, secretMarker); f != "" {
		t.Fatalf("publish %s copied the secret file into the tree, as %s", spec, f)
	}
	return nil
}

// outsideSnapshot describes everything in the bed but the tree: each
// file's size and hash, each link's target.
func (b *fuzzBed) outsideSnapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(b.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == b.tree {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(b.dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "link " + target
			return err
		case d.IsDir():
			out[rel] = "dir"
		case !d.Type().IsRegular():
			out[rel] = d.Type().String()
		default:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Size() > 1<<20 {
				out[rel] = fmt.Sprintf("file %d %d", fi.Size(), fi.ModTime().UnixNano())
				return nil
			}
			data, err := os.ReadFile(p)
			out[rel] = fmt.Sprintf("file %d %s", len(data), digest.FromBytes(data))
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeHolding returns a file under dir whose content holds s, or "".
func treeHolding(t *testing.T, dir, s string) string {
	t.Helper()
	var found string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || found != "" {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			found = p
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// FuzzOCILayoutIndex publishes an OCI image layout whose index.json is the
// input. The layout holds an image, an index of it, and a blob that is a
// symbolic link to the secret file outside the layout.
func FuzzOCILayoutIndex(f *testing.F) {
	bed := newFuzzBed(f)
	img := newSmallImage(f, "app")
	dir := filepath.Join(bed.src, "layout")
	writeOCILayout(f, dir, img, indexJSON(f, img.manifestDesc))
	nested := indexJSON(f, img.manifestDesc)
	nestedDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(nested), Size: int64(len(nested))}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", nestedDesc.Digest.Encoded()), nested, 0o644); err != nil {
		f.Fatal(err)
	}
	secretDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(secretMarker), Size: int64(len(secretMarker))}
	if err := os.Symlink(bed.secret, filepath.Join(dir, "blobs", "sha256", secretDesc.Digest.Encoded())); err != nil {
		f.Fatal(err)
	}
	// A manifest whose layer is the linked secret: its digest is known
	// (as it might be from anywhere), its bytes must not be copied.
	secretLayer := secretDesc
	secretLayer.MediaType = ocispec.MediaTypeImageLayerGzip
	leak := mustMarshal(f, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.configDesc, Layers: []ocispec.Descriptor{secretLayer}})
	leakDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(leak), Size: int64(len(leak))}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", leakDesc.Digest.Encoded()), leak, 0o644); err != nil {
		f.Fatal(err)
	}
	// The same through a linked folder: blobs/sha512 is a link to a
	// folder outside the layout, which holds the secret.
	outside512 := filepath.Join(bed.dir, "outside-sha512")
	secret512 := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.SHA512.FromString(secretMarker), Size: int64(len(secretMarker))}
	if err := os.MkdirAll(outside512, 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside512, secret512.Digest.Encoded()), []byte(secretMarker), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(outside512, filepath.Join(dir, "blobs", "sha512")); err != nil {
		f.Fatal(err)
	}
	leak512 := mustMarshal(f, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.configDesc, Layers: []ocispec.Descriptor{secret512}})
	leak512Desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(leak512), Size: int64(len(leak512))}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", leak512Desc.Digest.Encoded()), leak512, 0o644); err != nil {
		f.Fatal(err)
	}
	named := img.manifestDesc
	named.Annotations = map[string]string{ocispec.AnnotationRefName: "v1"}
	huge := img.manifestDesc
	huge.Size = 1 << 62
	for _, seed := range [][]byte{
		indexJSON(f, img.manifestDesc),
		indexJSON(f, nestedDesc),
		indexJSON(f, named),
		indexJSON(f, img.manifestDesc, nestedDesc),
		indexJSON(f, secretDesc),
		indexJSON(f, leakDesc),
		indexJSON(f, leak512Desc),
		indexJSON(f, huge),
		indexJSON(f, img.configDesc),
		indexJSON(f),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, index []byte) {
		if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = bed.publish(t, "oci:"+dir)
	})
}

// FuzzDockerArchiveManifest publishes a docker save tarball whose
// manifest.json is the input; the tarball holds config.json and
// layer.tar.gz.
func FuzzDockerArchiveManifest(f *testing.F) {
	bed := newFuzzBed(f)
	img := newSmallImage(f, "app")
	p := filepath.Join(bed.src, "docker.tar")
	// Hostile manifest.json files are in
	// testdata/fuzz/FuzzDockerArchiveManifest.
	f.Add(dockerManifestJSON("app:1"))
	f.Add(dockerManifestJSON())
	f.Fuzz(func(t *testing.T, manifest []byte) {
		if err := os.WriteFile(p, buildTar(t, dockerArchiveFiles(img, manifest), nil, false), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = bed.publish(t, "docker-archive:"+p)
	})
}

// FuzzTarEntry publishes an OCI archive, or a docker save tarball, with one
// more entry, first or last, made of the input: any name, type flag, link
// name and size, and content that may be shorter or longer than the size.
// An entry named like a file of the archive takes its place.
func FuzzTarEntry(f *testing.F) {
	bed := newFuzzBed(f)
	img := newSmallImage(f, "app")
	p := filepath.Join(bed.src, "archive.tar")
	manifestBlob := "blobs/sha256/" + img.manifestDesc.Digest.Encoded()
	for _, s := range []struct {
		name, link string
		typ        byte
		size       int64
		content    string
		first      bool
		docker     bool
	}{
		// Hostile entries that name no file of this run are in
		// testdata/fuzz/FuzzTarEntry.
		{"extra", "", tar.TypeReg, 5, "extra", false, false},
		{"index.json", bed.secret, tar.TypeSymlink, 0, "", false, false},
		{"index.json", "../../../../" + bed.secret, tar.TypeSymlink, 0, "", false, false},
		{"index.json", manifestBlob, tar.TypeLink, 0, "", false, false},
		{manifestBlob, "../" + manifestBlob, tar.TypeSymlink, 0, "", false, false},
		{"extra", "", tar.TypeReg, 5, "extra", false, true},
		{"config.json", bed.secret, tar.TypeSymlink, 0, "", true, true},
	} {
		f.Add(s.name, s.link, s.typ, s.size, []byte(s.content), s.first, s.docker)
	}
	f.Fuzz(func(t *testing.T, name, link string, typ byte, size int64, content []byte, first, docker bool) {
		if size < 0 || len(name) > 1024 || len(link) > 1024 {
			return
		}
		raw, ok := rawTarEntry(&tar.Header{Name: name, Linkname: link, Typeflag: typ, Size: size, Mode: 0o644}, content)
		if !ok {
			return
		}
		files, spec := ociArchiveFiles(img, indexJSON(t, img.manifestDesc)), "oci-archive:"+p
		if docker {
			files, spec = dockerArchiveFiles(img, dockerManifestJSON("app:1")), "docker-archive:"+p
		}
		// An entry of the same name as a file of the archive replaces it
		// ("./index.json" and the like still make two entries).
		for i, file := range files {
			if file.name == name {
				files = append(files[:i:i], files[i+1:]...)
				break
			}
		}
		if err := os.WriteFile(p, buildTar(t, files, raw, first), 0o644); err != nil {
			t.Fatal(err)
		}
		_ = bed.publish(t, spec)
	})
}

// TestFuzzBedCatches makes sure the checks of fuzzBed.publish fail when
// they should: a publish that writes outside the tree, or leaves the
// secret in it, does not pass unseen.
func TestFuzzBedCatches(t *testing.T) {
	bed := newFuzzBed(t)
	img := newSmallImage(t, "app")
	dir := filepath.Join(bed.src, "layout")
	writeOCILayout(t, dir, img, indexJSON(t, img.manifestDesc))
	if err := bed.publish(t, "oci:"+dir); err != nil || !bed.dirty {
		t.Fatal("a good publish did not change the tree")
	}
	// The secret, published as the content of a layer, is found.
	secret := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString(secretMarker), Size: int64(len(secretMarker))}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", secret.Digest.Encoded()), []byte(secretMarker), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mustMarshal(t, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: img.configDesc, Layers: []ocispec.Descriptor{secret}})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", md.Digest.Encoded()), m, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), indexJSON(t, md), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publishTo(t, bed.tree, "oci:"+dir, "app:2"); err != nil {
		t.Fatal(err)
	}
	if treeHolding(t, bed.tree, secretMarker) == "" {
		t.Error("treeHolding does not find the secret in the tree")
	}
	// A changed tree after a failure is found by the snapshots.
	before := snapshot(t, bed.tree, false)
	if err := os.WriteFile(filepath.Join(bed.tree, "stray"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, bed.tree, false)); len(d) != 1 {
		t.Errorf("a new file in the tree: diff %q", d)
	}
}
