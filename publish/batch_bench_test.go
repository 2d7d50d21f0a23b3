package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeTinyLayout writes an OCI image layout of one image, of its own
// config and a layer shared by all, the way a build or a content
// repository would export it.
func writeTinyLayout(b *testing.B, dir, seed string) {
	b.Helper()
	put := func(mt string, data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), data, 0o644); err != nil {
			b.Fatal(err)
		}
		return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(data))}
	}
	mustJSON := func(v any) []byte {
		data, err := json.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		b.Fatal(err)
	}
	cfg := put(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":"`+seed+`"}`))
	layer := put(ocispec.MediaTypeImageLayer, []byte("the layer every image shares"))
	m := put(ocispec.MediaTypeImageManifest, mustJSON(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{layer},
	}))
	m.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}
	idx := mustJSON(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{m}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBatchNoChange measures heron publish --batch on a tree that
// already holds everything the batch lists: 1,000 repositories, each
// published from an OCI layout of its own under several tags. One
// iteration reads and parses the batch file, resolves each source (reads
// its index.json), reads each repository file and the catalog, and writes
// nothing. The setup publishes the 1,000 repositories once, which takes a
// while (every file is synced).
//
//	go test ./publish/ -run '^$' -bench BatchNoChange -benchtime 10x
func BenchmarkBatchNoChange(b *testing.B) {
	if testing.Short() {
		b.Skip("publishes 1,000 repositories first")
	}
	const repos = 1000
	dir := b.TempDir()
	root := filepath.Join(dir, "tree")
	for i := range repos {
		writeTinyLayout(b, filepath.Join(dir, "src", fmt.Sprint(i)), fmt.Sprint(i))
	}
	for _, tags := range []int{1, 5} {
		b.Run(fmt.Sprintf("repos=%d/tags=%d", repos, tags), func(b *testing.B) {
			var s strings.Builder
			s.WriteString("repositories:\n")
			for i := range repos {
				fmt.Fprintf(&s, "  - name: team%d/app%d\n    tags:\n", i%10, i)
				for t := range tags {
					fmt.Fprintf(&s, "      v%d: oci:%s\n", t, filepath.Join(dir, "src", fmt.Sprint(i)))
				}
			}
			file := filepath.Join(dir, fmt.Sprintf("batch-%d.yaml", tags))
			if err := os.WriteFile(file, []byte(s.String()), 0o644); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			p := publish.New(publish.NewFSSink(layout.Root(root)))
			run := func(prune bool) *publish.BatchResult {
				batch, err := publish.ReadBatchFile(file)
				if err != nil {
					b.Fatal(err)
				}
				res, err := p.RunBatch(ctx, batch, publish.BatchOptions{Prune: prune})
				if err != nil {
					b.Fatal(err)
				}
				return res
			}
			run(true) // the first run publishes
			for _, prune := range []bool{false, true} {
				b.Run(fmt.Sprintf("prune=%v", prune), func(b *testing.B) {
					for b.Loop() {
						res := run(prune)
						for _, r := range res.Repositories {
							if r.Written || len(r.Published) > 0 {
								b.Fatalf("%s: a run without change wrote", r.Name)
							}
						}
						if res.CatalogChanged {
							b.Fatal("a run without change wrote the catalog")
						}
					}
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(repos*tags), "ns/tag")
				})
			}
		})
	}
}
