package publish_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// hostile is one source of TestHostileSources.
type hostile struct {
	name string
	// setup writes the source into dir (a folder of bed.src) and returns
	// its spec.
	setup func(t *testing.T, bed *fuzzBed, dir string) string
	// want are parts of the error; none means the publish succeeds.
	want []string
	// maxAlloc, when set, bounds the bytes the publish may allocate.
	maxAlloc uint64
	// check, when set, checks the tree after a publish that succeeded.
	check func(t *testing.T, bed *fuzzBed)
}

const (
	mib = 1 << 20
	// claimed is what the hostile sources below claim to hold: far more
	// than publish reads whole (16 MiB at most).
	claimed = 100 * mib
)

// TestHostileSources publishes sources made to hurt: entries and links
// that lead out of an archive or a layout, files that are pipes, sizes of
// hundreds of MiB or 2^62 bytes, JSON nested deep, a decompression bomb.
// Each one fails with an error that says why, quickly and without
// allocating what it claims, and leaves the tree (which holds another
// image) as it was and everything outside it untouched; the bombs, which
// heron stores as they are without ever decompressing them, are published.
func TestHostileSources(t *testing.T) {
	img := newSmallImage(t, "app")
	for _, tc := range []hostile{
		// OCI image layouts.
		{name: "layout: blob file links out of the layout", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, indexJSON(t, img.manifestDesc))
			moveOut(t, bed, filepath.Join(dir, "blobs", "sha256", img.layerDesc.Digest.Encoded()))
			return "oci:" + dir
		}, want: []string{"blob " + img.layerDesc.Digest.String(), "symbolic link leads out of the layout"}},
		{name: "layout: blobs folder links out of the layout", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, indexJSON(t, img.manifestDesc))
			moveOut(t, bed, filepath.Join(dir, "blobs", "sha256"))
			return "oci:" + dir
		}, want: []string{"symbolic link leads out of the layout"}},
		{name: "layout: index.json links out of the layout", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, indexJSON(t, img.manifestDesc))
			moveOut(t, bed, filepath.Join(dir, "index.json"))
			return "oci:" + dir
		}, want: []string{"index.json", "symbolic link leads out of the layout"}},
		{name: "layout: index.json links to /dev/zero", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, nil)
			replaceWithLink(t, filepath.Join(dir, "index.json"), "/dev/zero")
			return "oci:" + dir
		}, want: []string{"index.json", "symbolic link leads out of the layout"}, maxAlloc: 16 * mib},
		{name: "layout: a link inside the layout is followed", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, indexJSON(t, img.manifestDesc))
			p := filepath.Join(dir, "blobs", "sha256", img.layerDesc.Digest.Encoded())
			if err := os.Rename(p, filepath.Join(dir, "layer")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..", "..", "layer"), p); err != nil {
				t.Fatal(err)
			}
			return "oci:" + dir
		}},
		{name: "layout: index.json is a named pipe", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, nil)
			mkfifo(t, filepath.Join(dir, "index.json"))
			return "oci:" + dir
		}, want: []string{"index.json", "not a regular file"}},
		{name: "layout: layer is a named pipe", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, indexJSON(t, img.manifestDesc))
			mkfifo(t, filepath.Join(dir, "blobs", "sha256", img.layerDesc.Digest.Encoded()))
			return "oci:" + dir
		}, want: []string{img.layerDesc.Digest.String(), "not a regular file"}},
		{name: "layout: index.json of 100 MiB", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, []byte(`{"schemaVersion":2,"manifests":[`))
			sparse(t, filepath.Join(dir, "index.json"), claimed)
			return "oci:" + dir
		}, want: []string{"index.json", "104857600 bytes, larger than the 16777216 allowed"}, maxAlloc: 16 * mib},
		{name: "layout: manifest of 100 MiB", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			big := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("big"), Size: claimed}
			writeOCILayout(t, dir, img, indexJSON(t, big))
			p := filepath.Join(dir, "blobs", "sha256", big.Digest.Encoded())
			if err := os.WriteFile(p, []byte(`{"schemaVersion":2,"layers":[`), 0o644); err != nil {
				t.Fatal(err)
			}
			sparse(t, p, claimed)
			return "oci:" + dir
		}, want: []string{"manifest " + digest.FromString("big").String(), "104857600 bytes, more than the 4194304 allowed"}, maxAlloc: 16 * mib},
		{name: "layout: manifest descriptor of 2^62 bytes", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			huge := img.manifestDesc
			huge.Size = 1 << 62
			writeOCILayout(t, dir, img, indexJSON(t, huge))
			return "oci:" + dir
		}, want: []string{"4611686018427387904 bytes, more than the 4194304 allowed"}, maxAlloc: 16 * mib},
		{name: "layout: layer descriptor of 2^62 bytes", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			layer := img.layerDesc
			layer.Size = 1 << 62
			m := writeManifest(t, dir, img.configDesc, layer)
			writeOCILayout(t, dir, img, indexJSON(t, m))
			return "oci:" + dir
		}, want: []string{"blob " + img.layerDesc.Digest.String(), "its descriptor states 4611686018427387904"}, maxAlloc: 16 * mib},
		{name: "layout: layer descriptor of the largest size", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			layer := img.layerDesc
			layer.Size = 1<<63 - 1
			m := writeManifest(t, dir, img.configDesc, layer)
			writeOCILayout(t, dir, img, indexJSON(t, m))
			return "oci:" + dir
		}, want: []string{"its descriptor states 9223372036854775807"}, maxAlloc: 16 * mib},
		{name: "layout: index.json nested deep", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, deepJSON(100000))
			return "oci:" + dir
		}, want: []string{"index.json", "exceeded max depth"}},
		{name: "layout: manifest nested deep", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			b := append([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":`), deepJSON(100000)...)
			b = append(b, '}')
			d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
			writeOCILayout(t, dir, img, indexJSON(t, d))
			writeBlob(t, dir, b)
			return "oci:" + dir
		}, want: []string{"exceeded max depth"}},
		{name: "layout: indexes nested 20 deep", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			writeOCILayout(t, dir, img, nil)
			d := img.manifestDesc
			for range 20 {
				b := indexJSON(t, d)
				writeBlob(t, dir, b)
				d = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(b), Size: int64(len(b))}
			}
			if err := os.WriteFile(filepath.Join(dir, "index.json"), indexJSON(t, d), 0o644); err != nil {
				t.Fatal(err)
			}
			return "oci:" + dir
		}, want: []string{"indexes nested too deep"}},
		{name: "layout: decompression bomb (1 GiB of zeros in 1 MiB) is stored as it is", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			bomb := gzipBomb(t, 1024)
			layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(bomb), Size: int64(len(bomb))}
			writeBlob(t, dir, bomb)
			m := writeManifest(t, dir, img.configDesc, layer)
			writeOCILayout(t, dir, img, indexJSON(t, m))
			return "oci:" + dir
		}, maxAlloc: 64 * mib, check: func(t *testing.T, bed *fuzzBed) {
			bomb := gzipBomb(t, 1024)
			if !bytes.Equal(readBlob(t, bed.tree, digest.FromBytes(bomb)), bomb) {
				t.Error("the bomb is not stored as it is")
			}
		}},

		// OCI archives.
		{name: "oci-archive: entry ../evil", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			return "oci-archive:" + writeArchive(t, dir, ociArchiveFiles(img, indexJSON(t, img.manifestDesc)), rawEntry(t, "../evil", "", tar.TypeReg, "evil"), true)
		}, want: []string{`tar entry "../evil"`, "leads out of the archive"}},
		{name: "oci-archive: entry blobs/../../index.json", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			return "oci-archive:" + writeArchive(t, dir, ociArchiveFiles(img, indexJSON(t, img.manifestDesc)), rawEntry(t, "blobs/../../index.json", "", tar.TypeReg, "{}"), false)
		}, want: []string{"leads out of the archive"}},
		{name: "oci-archive: absolute entry /index.json", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			return "oci-archive:" + writeArchive(t, dir, ociArchiveFiles(img, indexJSON(t, img.manifestDesc)), rawEntry(t, "/index.json", "", tar.TypeReg, "{}"), false)
		}, want: []string{`tar entry "/index.json"`, "absolute"}},
		{name: "oci-archive: index.json links to an absolute path", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := ociArchiveFiles(img, indexJSON(t, img.manifestDesc))[2:]
			return "oci-archive:" + writeArchive(t, dir, files, rawEntry(t, "index.json", bed.secret, tar.TypeSymlink, ""), false)
		}, want: []string{"symbolic link to", "absolute"}},
		{name: "oci-archive: blob links out of the archive", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := ociArchiveFiles(img, indexJSON(t, img.manifestDesc))
			return "oci-archive:" + writeArchive(t, dir, files, rawEntry(t, "blobs/sha256/"+digest.FromString(secretMarker).Encoded(), "../../../secret", tar.TypeSymlink, ""), false)
		}, want: []string{"symbolic link to", "leads out of the archive"}},
		{name: "oci-archive: hard link out of the archive", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := ociArchiveFiles(img, indexJSON(t, img.manifestDesc))
			return "oci-archive:" + writeArchive(t, dir, files, rawEntry(t, "x", "../secret", tar.TypeLink, ""), false)
		}, want: []string{"hard link to", "leads out of the archive"}},
		{name: "oci-archive: index.json twice", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := ociArchiveFiles(img, indexJSON(t, img.manifestDesc))
			return "oci-archive:" + writeArchive(t, dir, files, rawEntry(t, "./index.json", "", tar.TypeReg, "{}"), false)
		}, want: []string{"index.json appears twice"}},
		{name: "oci-archive: entry claiming 1 TiB", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := ociArchiveFiles(img, indexJSON(t, img.manifestDesc))
			raw, _ := rawTarEntry(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1 << 40, Mode: 0o644}, []byte("x"))
			return "oci-archive:" + writeArchive(t, dir, files, raw, false)
		}, want: []string{"truncated tar", "big"}, maxAlloc: 16 * mib},
		{name: "oci-archive: entry claiming the largest size", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := ociArchiveFiles(img, indexJSON(t, img.manifestDesc))
			raw, _ := rawTarEntry(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1<<63 - 1, Mode: 0o644}, []byte("x"))
			return "oci-archive:" + writeArchive(t, dir, files, raw, false)
		}, want: []string{"truncated tar", "big"}, maxAlloc: 16 * mib},
		{name: "oci-archive: index.json of 100 MiB", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			return "oci-archive:" + sparseArchive(t, dir, ociArchiveFiles(img, nil)[2:], "index.json")
		}, want: []string{"index.json", "larger than 16777216 bytes"}, maxAlloc: 16 * mib},

		// Docker save tarballs.
		{name: "docker-archive: entry ../manifest.json", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := dockerArchiveFiles(img, dockerManifestJSON("app:1"))
			return "docker-archive:" + writeArchive(t, dir, files, rawEntry(t, "../manifest.json", "", tar.TypeReg, "[]"), true)
		}, want: []string{"leads out of the archive"}},
		{name: "docker-archive: manifest.json twice", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := dockerArchiveFiles(img, dockerManifestJSON("app:1"))
			return "docker-archive:" + writeArchive(t, dir, files, rawEntry(t, "manifest.json", "", tar.TypeReg, "[]"), true)
		}, want: []string{"manifest.json appears twice"}},
		{name: "docker-archive: manifest.json links to itself", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := dockerArchiveFiles(img, nil)[1:]
			return "docker-archive:" + writeArchive(t, dir, files, rawEntry(t, "manifest.json", "manifest.json", tar.TypeSymlink, ""), false)
		}, want: []string{"manifest.json", "link"}},
		{name: "docker-archive: config links to an absolute path", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := dockerArchiveFiles(img, dockerManifestJSON("app:1"))
			files = append(files[:1], files[2:]...)
			return "docker-archive:" + writeArchive(t, dir, files, rawEntry(t, "config.json", bed.secret, tar.TypeSymlink, ""), false)
		}, want: []string{"config.json", "absolute"}},
		{name: "docker-archive: manifest.json of 100 MiB", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			return "docker-archive:" + sparseArchive(t, dir, dockerArchiveFiles(img, nil)[1:], "manifest.json")
		}, want: []string{"manifest.json is 104857600 bytes, more than the 16777216 allowed"}, maxAlloc: 16 * mib},
		{name: "docker-archive: config of 100 MiB", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			files := dockerArchiveFiles(img, dockerManifestJSON("app:1"))
			return "docker-archive:" + sparseArchive(t, dir, append(files[:1], files[2:]...), "config.json")
		}, want: []string{"config.json is 104857600 bytes, more than the 16777216 allowed"}, maxAlloc: 16 * mib},
		{name: "docker-archive: manifest.json nested deep", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			return "docker-archive:" + writeArchive(t, dir, dockerArchiveFiles(img, deepJSON(100000)), nil, false)
		}, want: []string{"manifest.json", "exceeded max depth"}},
		{name: "docker-archive: image @1 has the tag of image @0", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			m := `[{"Config":"config.json","RepoTags":["a:1"],"Layers":["layer.tar.gz"]},{"Config":"config.json","RepoTags":["a:1","b:2"],"Layers":["layer.tar.gz"]}]`
			return "docker-archive:" + writeArchive(t, dir, dockerArchiveFiles(img, []byte(m)), nil, false) + ":@1"
		}, want: []string{"image @1 is tagged a:1 like image @0, which would be read in its place"}},
		{name: "docker-archive: two images with the tag asked for", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			m := `[{"Config":"config.json","RepoTags":["a:1"],"Layers":["layer.tar.gz"]},{"Config":"config.json","RepoTags":["a:1"],"Layers":["layer.tar.gz"]}]`
			return "docker-archive:" + writeArchive(t, dir, dockerArchiveFiles(img, []byte(m)), nil, false) + ":a:1"
		}, want: []string{"2 images are tagged"}},
		{name: "docker-archive: foreign layer of 2^62 bytes", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			m := `[{"Config":"config.json","RepoTags":["app:1"],"Layers":["layer.tar.gz"],"LayerSources":{"` + diffID(t, img) +
				`":{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":4611686018427387904,"digest":"` +
				img.layerDesc.Digest.String() + `","urls":["https://example.com/layer"]}}}]`
			return "docker-archive:" + writeArchive(t, dir, dockerArchiveFiles(img, []byte(m)), nil, false)
		}, want: []string{"descriptor states 4611686018427387904"}, maxAlloc: 16 * mib},
		{name: "docker-archive: decompression bomb (1 GiB of zeros in 1 MiB) is stored as it is", setup: func(t *testing.T, bed *fuzzBed, dir string) string {
			bomb := img
			bomb.layer = gzipBomb(t, 1024)
			return "docker-archive:" + writeArchive(t, dir, dockerArchiveFiles(bomb, dockerManifestJSON("app:1")), nil, false)
		}, maxAlloc: 64 * mib, check: func(t *testing.T, bed *fuzzBed) {
			bomb := gzipBomb(t, 1024)
			if !bytes.Equal(readBlob(t, bed.tree, digest.FromBytes(bomb)), bomb) {
				t.Error("the bomb is not stored as it is")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bed := newFuzzBed(t)
			dir := filepath.Join(bed.src, "source")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			spec := tc.setup(t, bed, dir)
			bed.measure = true
			err := bed.publish(t, spec)
			if tc.maxAlloc > 0 && bed.alloc > tc.maxAlloc {
				t.Errorf("publish allocated %d MiB, more than %d MiB", bed.alloc/mib, tc.maxAlloc/mib)
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("publish: %v", err)
				}
				if tc.check != nil {
					tc.check(t, bed)
				}
				return
			}
			if err == nil {
				t.Fatal("publish succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// allocated returns the bytes f allocates (with whatever else runs).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// moveOut moves the file or folder p next to the source (outside it) and
// leaves a symbolic link to it in its place.
func moveOut(t *testing.T, bed *fuzzBed, p string) {
	t.Helper()
	out := filepath.Join(bed.dir, "moved-out-"+filepath.Base(p))
	if err := os.Rename(p, out); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, p); err != nil {
		t.Fatal(err)
	}
}

func replaceWithLink(t *testing.T, p, target string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
}

// sparse extends the file at p to size bytes without writing them.
func sparse(t *testing.T, p string, size int64) {
	t.Helper()
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
}

// writeBlob stores b in the layout at dir.
func writeBlob(t *testing.T, dir string, b []byte) {
	t.Helper()
	p := filepath.Join(dir, "blobs", "sha256", digest.FromBytes(b).Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeManifest stores an image manifest of config and layers in the
// layout at dir and returns its descriptor.
func writeManifest(t *testing.T, dir string, config ocispec.Descriptor, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	b := mustMarshal(t, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: layers})
	writeBlob(t, dir, b)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// deepJSON is an array nested n deep.
func deepJSON(n int) []byte {
	return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
}

// gzipBomb is n MiB of zeros gzipped: n gzip members of 1 MiB of zeros
// each, about 1 KiB apiece (a gzip reader reads them all as one stream).
func gzipBomb(t *testing.T, n int) []byte {
	t.Helper()
	var one bytes.Buffer
	zw, err := gzip.NewWriterLevel(&one, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(make([]byte, mib)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(one.Bytes(), n)
}

// diffID is the diff_id the config of img lists.
func diffID(t *testing.T, img smallImage) string {
	t.Helper()
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(img.config, &cfg); err != nil || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("config %s: %v", img.config, err)
	}
	return cfg.RootFS.DiffIDs[0]
}

// rawEntry is the raw bytes of one tar entry.
func rawEntry(t *testing.T, name, link string, typ byte, content string) []byte {
	t.Helper()
	raw, ok := rawTarEntry(&tar.Header{Name: name, Linkname: link, Typeflag: typ, Size: int64(len(content)), Mode: 0o644}, []byte(content))
	if !ok {
		t.Fatalf("cannot write a tar entry %q", name)
	}
	return raw
}

// writeArchive writes a tar of files and raw into dir and returns its
// path.
func writeArchive(t *testing.T, dir string, files []tarFile, raw []byte, rawFirst bool) string {
	t.Helper()
	p := filepath.Join(dir, "archive.tar")
	if err := os.WriteFile(p, buildTar(t, files, raw, rawFirst), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sparseArchive writes a tar of files followed by an entry name of 100
// MiB of zeros, written sparse, and returns its path.
func sparseArchive(t *testing.T, dir string, files []tarFile, name string) string {
	t.Helper()
	raw, ok := rawTarEntry(&tar.Header{Name: name, Typeflag: tar.TypeReg, Size: claimed, Mode: 0o644}, nil)
	if !ok {
		t.Fatal("cannot write the entry")
	}
	p := writeArchive(t, dir, files, raw, false)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// The entry's data, then the end-of-archive marker.
	sparse(t, p, fi.Size()+claimed)
	return p
}
