package publish_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// These tests push manifests as a registry client does: the blobs first
// (put into the tree as an upload would), then the manifest
// (Publisher.PutManifest).

// pushTree is a fresh, initialised tree on the file system.
func pushTree(t *testing.T) (string, *store.FS, *publish.Publisher) {
	t.Helper()
	root := t.TempDir()
	sink := publish.NewFSSink(layout.Root(root))
	p := publish.New(sink)
	if err := p.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return root, sink, p
}

// putBlob stores b in the tree, as a finished upload does, and returns its
// descriptor.
func putBlob(t *testing.T, sink publish.Sink, mt string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	key, err := layout.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Put(context.Background(), key, bytes.NewReader(b), publish.Want{Digest: d, Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

// descOf is the descriptor of b, not stored.
func descOf(mt string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// imageManifest is the JSON of an OCI image manifest of config and layers.
func imageManifest(t *testing.T, mt string, config ocispec.Descriptor, layers []ocispec.Descriptor, subject *ocispec.Descriptor, artifactType string) []byte {
	t.Helper()
	m := map[string]any{"schemaVersion": 2, "config": config, "layers": layers}
	if mt != "" {
		m["mediaType"] = mt
	}
	if subject != nil {
		m["subject"] = subject
	}
	if artifactType != "" {
		m["artifactType"] = artifactType
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// indexOf is the JSON of an OCI index listing ms.
func indexOf(t *testing.T, ms ...ocispec.Descriptor) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex, "manifests": ms})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushImage puts a config and two layers (seeded by seed) into the tree and
// returns an OCI manifest of them, not pushed.
func pushImage(t *testing.T, sink publish.Sink, seed string) []byte {
	t.Helper()
	cfg := putBlob(t, sink, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","seed":"`+seed+`"}`))
	l1 := putBlob(t, sink, ocispec.MediaTypeImageLayerGzip, []byte("layer one "+seed))
	l2 := putBlob(t, sink, ocispec.MediaTypeImageLayerGzip, []byte("layer two "+seed))
	return imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l1, l2}, nil, "")
}

// verifyFS checks the tree at root as heron verify does.
func verifyFS(t *testing.T, root string) {
	t.Helper()
	verifyBucket(t, publish.NewFSSink(layout.Root(root)))
	assertConsistent(t, root)
}

func TestPutManifest(t *testing.T) {
	ctx := context.Background()
	cfgBytes := []byte(`{"architecture":"arm64","os":"linux"}`)
	layerBytes := []byte("a layer")
	type fixture struct {
		reference, contentType string
		data                   []byte
	}
	tests := []struct {
		name    string
		make    func(t *testing.T, sink publish.Sink) fixture
		wantErr error
		wantTag string
		wantMT  string
	}{
		{
			name: "oci image by tag",
			make: func(t *testing.T, sink publish.Sink) fixture {
				return fixture{"v1", ocispec.MediaTypeImageManifest, pushImage(t, sink, "a")}
			},
			wantTag: "v1", wantMT: ocispec.MediaTypeImageManifest,
		},
		{
			name: "oci image by sha256 digest",
			make: func(t *testing.T, sink publish.Sink) fixture {
				b := pushImage(t, sink, "b")
				return fixture{digest.FromBytes(b).String(), ocispec.MediaTypeImageManifest, b}
			},
			wantMT: ocispec.MediaTypeImageManifest,
		},
		{
			name: "oci image by sha512 digest",
			make: func(t *testing.T, sink publish.Sink) fixture {
				b := pushImage(t, sink, "c")
				return fixture{digest.SHA512.FromBytes(b).String(), ocispec.MediaTypeImageManifest, b}
			},
			wantMT: ocispec.MediaTypeImageManifest,
		},
		{
			name: "docker schema 2 with a generic content type",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := putBlob(t, sink, "application/vnd.docker.container.image.v1+json", cfgBytes)
				l := putBlob(t, sink, "application/vnd.docker.image.rootfs.diff.tar.gzip", layerBytes)
				return fixture{"latest", "application/json; charset=utf-8",
					imageManifest(t, "application/vnd.docker.distribution.manifest.v2+json", cfg, []ocispec.Descriptor{l}, nil, "")}
			},
			wantTag: "latest", wantMT: "application/vnd.docker.distribution.manifest.v2+json",
		},
		{
			name: "no media type anywhere: its fields say",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := putBlob(t, sink, ocispec.MediaTypeImageConfig, cfgBytes)
				return fixture{"bare", "", imageManifest(t, "", cfg, nil, nil, "")}
			},
			wantTag: "bare", wantMT: ocispec.MediaTypeImageManifest,
		},
		{
			name: "missing layer",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := putBlob(t, sink, ocispec.MediaTypeImageConfig, cfgBytes)
				l := descOf(ocispec.MediaTypeImageLayerGzip, layerBytes)
				return fixture{"v1", ocispec.MediaTypeImageManifest, imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l}, nil, "")}
			},
			wantErr: publish.ErrManifestBlobUnknown,
		},
		{
			name: "missing config",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := descOf(ocispec.MediaTypeImageConfig, cfgBytes)
				l := putBlob(t, sink, ocispec.MediaTypeImageLayerGzip, layerBytes)
				return fixture{"v1", ocispec.MediaTypeImageManifest, imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l}, nil, "")}
			},
			wantErr: publish.ErrManifestBlobUnknown,
		},
		{
			name: "layer of another size",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := putBlob(t, sink, ocispec.MediaTypeImageConfig, cfgBytes)
				l := putBlob(t, sink, ocispec.MediaTypeImageLayerGzip, layerBytes)
				l.Size++
				return fixture{"v1", ocispec.MediaTypeImageManifest, imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l}, nil, "")}
			},
			wantErr: publish.ErrManifestBlobUnknown,
		},
		{
			name: "missing non-distributable layer is allowed",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := putBlob(t, sink, "application/vnd.docker.container.image.v1+json", cfgBytes)
				l := descOf("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", layerBytes)
				return fixture{"win", "application/vnd.docker.distribution.manifest.v2+json",
					imageManifest(t, "application/vnd.docker.distribution.manifest.v2+json", cfg, []ocispec.Descriptor{l}, nil, "")}
			},
			wantTag: "win", wantMT: "application/vnd.docker.distribution.manifest.v2+json",
		},
		{
			name: "digest mismatch",
			make: func(t *testing.T, sink publish.Sink) fixture {
				b := pushImage(t, sink, "d")
				return fixture{digest.FromString("other").String(), ocispec.MediaTypeImageManifest, b}
			},
			wantErr: publish.ErrManifestDigestMismatch,
		},
		{
			name: "sha512 reference, sha256 content digest",
			make: func(t *testing.T, sink publish.Sink) fixture {
				b := pushImage(t, sink, "e")
				return fixture{"sha512:" + digest.FromBytes(b).Encoded() + digest.FromBytes(b).Encoded(), ocispec.MediaTypeImageManifest, b}
			},
			wantErr: publish.ErrManifestDigestMismatch,
		},
		{
			name: "invalid JSON",
			make: func(*testing.T, publish.Sink) fixture {
				return fixture{"v1", ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,`)}
			},
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name:    "empty body",
			make:    func(*testing.T, publish.Sink) fixture { return fixture{"v1", ocispec.MediaTypeImageManifest, nil} },
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name: "schema 1",
			make: func(*testing.T, publish.Sink) fixture {
				return fixture{"v1", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"fsLayers":[]}`)}
			},
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name: "unknown media type in the body",
			make: func(*testing.T, publish.Sink) fixture {
				return fixture{"v1", "", []byte(`{"schemaVersion":2,"mediaType":"application/x-something"}`)}
			},
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name: "content type and body disagree",
			make: func(t *testing.T, sink publish.Sink) fixture {
				return fixture{"v1", ocispec.MediaTypeImageIndex, pushImage(t, sink, "f")}
			},
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name: "manifest without config",
			make: func(*testing.T, publish.Sink) fixture {
				return fixture{"v1", ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","layers":[]}`)}
			},
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name: "index whose child is missing",
			make: func(t *testing.T, sink publish.Sink) fixture {
				child := pushImage(t, sink, "g") // blobs in the tree, manifest not pushed
				return fixture{"multi", ocispec.MediaTypeImageIndex, indexOf(t, descOf(ocispec.MediaTypeImageManifest, child))}
			},
			wantErr: publish.ErrManifestUnknown,
		},
		{
			name: "index whose child's layer is missing",
			make: func(t *testing.T, sink publish.Sink) fixture {
				cfg := putBlob(t, sink, ocispec.MediaTypeImageConfig, cfgBytes)
				l := descOf(ocispec.MediaTypeImageLayerGzip, layerBytes)
				child := putBlob(t, sink, ocispec.MediaTypeImageManifest, imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l}, nil, ""))
				return fixture{"multi", ocispec.MediaTypeImageIndex, indexOf(t, child)}
			},
			wantErr: publish.ErrManifestBlobUnknown,
		},
		{
			name: "index child with a bad descriptor",
			make: func(t *testing.T, sink publish.Sink) fixture {
				return fixture{"multi", ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `","manifests":[{"mediaType":"x","digest":"sha256:` + digest.FromString("x").Encoded() + `","size":-1}]}`)}
			},
			wantErr: publish.ErrManifestInvalid,
		},
		{
			name: "invalid tag",
			make: func(t *testing.T, sink publish.Sink) fixture {
				return fixture{"-bad", ocispec.MediaTypeImageManifest, pushImage(t, sink, "h")}
			},
			wantErr: layout.ErrInvalidTag,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, sink, p := pushTree(t)
			f := tt.make(t, sink)
			before := snapshot(t, root, false)
			d, err := p.PutManifest(ctx, "app/web", f.reference, f.contentType, f.data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if diff := diffSnapshots(before, snapshot(t, root, false)); len(diff) > 0 {
					t.Errorf("a failed push changed the tree:\n%v", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := digest.FromBytes(f.data)
			if dd, perr := digest.Parse(f.reference); perr == nil {
				want = dd.Algorithm().FromBytes(f.data)
			}
			if d != want {
				t.Errorf("digest %s, want %s", d, want)
			}
			r := readRepo(t, root, "app/web")
			m, ok := r.Manifests[d]
			if !ok {
				t.Fatalf("manifest %s not listed: %v", d, r.Manifests)
			}
			if m.MediaType != tt.wantMT || m.Size != int64(len(f.data)) {
				t.Errorf("listed as %+v", m)
			}
			if tt.wantTag != "" && r.Tags[tt.wantTag] != d {
				t.Errorf("tag %s = %s, want %s", tt.wantTag, r.Tags[tt.wantTag], d)
			}
			for _, b := range m.Blobs {
				if _, ok := r.Blobs[b]; !ok {
					t.Errorf("blob %s of the manifest not listed", b)
				}
			}
			if !bytes.Equal(readBlob(t, root, d), f.data) {
				t.Error("stored manifest differs from the pushed bytes")
			}
			names, err := publish.CatalogNames(ctx, sink)
			if err != nil || len(names) != 1 || names[0] != "app/web" {
				t.Errorf("catalog %v, %v", names, err)
			}
			verifyFS(t, root)

			// Pushing the same again changes nothing.
			before = withoutCounter(snapshot(t, root, false))
			if _, err := p.PutManifest(ctx, "app/web", f.reference, f.contentType, f.data); err != nil {
				t.Fatal(err)
			}
			if diff := diffSnapshots(before, withoutCounter(snapshot(t, root, false))); len(diff) > 0 {
				t.Errorf("pushing again changed the tree:\n%v", diff)
			}
		})
	}
}

func TestPutManifestReferenceError(t *testing.T) {
	_, sink, p := pushTree(t)
	cfg := putBlob(t, sink, ocispec.MediaTypeImageConfig, []byte("{}"))
	l := descOf(ocispec.MediaTypeImageLayerGzip, []byte("missing"))
	_, err := p.PutManifest(context.Background(), "a", "v1", "", imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l}, nil, ""))
	var re *publish.ReferenceError
	if !errors.As(err, &re) || re.Digest != l.Digest || re.Manifest || re.GotSize != -1 {
		t.Fatalf("err = %#v", err)
	}
	if errors.Is(err, publish.ErrManifestUnknown) {
		t.Error("a missing blob matches ErrManifestUnknown")
	}
}

func TestPutManifestIndex(t *testing.T) {
	ctx := context.Background()
	root, sink, p := pushTree(t)
	a, b := pushImage(t, sink, "amd64"), pushImage(t, sink, "arm64")
	da, err := p.PutManifest(ctx, "multi", digest.FromBytes(a).String(), ocispec.MediaTypeImageManifest, a)
	if err != nil {
		t.Fatal(err)
	}
	// b goes to another repository: the index's push must find it in
	// the tree and list it, with its blobs, in this one.
	db, err := p.PutManifest(ctx, "other", digest.FromBytes(b).String(), ocispec.MediaTypeImageManifest, b)
	if err != nil {
		t.Fatal(err)
	}
	idx := indexOf(t, descOf(ocispec.MediaTypeImageManifest, a), descOf(ocispec.MediaTypeImageManifest, b))
	di, err := p.PutManifest(ctx, "multi", "latest", ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		t.Fatal(err)
	}
	r := readRepo(t, root, "multi")
	if r.Tags["latest"] != di {
		t.Errorf("tags %v", r.Tags)
	}
	im := r.Manifests[di]
	if im.MediaType != ocispec.MediaTypeImageIndex || len(im.Children) != 2 || im.Children[0] != da || im.Children[1] != db {
		t.Errorf("index listed as %+v", im)
	}
	if _, ok := r.Manifests[db]; !ok {
		t.Error("child from another repository not listed")
	}
	if len(r.Blobs) != 6 {
		t.Errorf("%d blobs listed, want 6", len(r.Blobs))
	}
	verifyFS(t, root)
}

func TestPutManifestSubject(t *testing.T) {
	ctx := context.Background()
	root, sink, p := pushTree(t)
	img := pushImage(t, sink, "s")
	// The referrer is pushed first: its subject need not be there.
	cfg := putBlob(t, sink, "application/vnd.oci.empty.v1+json", []byte("{}"))
	sig := putBlob(t, sink, "application/vnd.example.signature", []byte("signature"))
	subject := descOf(ocispec.MediaTypeImageManifest, img)
	ref := imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{sig}, &subject, "application/vnd.example.sig")
	dr, err := p.PutManifest(ctx, "signed", digest.FromBytes(ref).String(), ocispec.MediaTypeImageManifest, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PutManifest(ctx, "signed", "v1", ocispec.MediaTypeImageManifest, img); err != nil {
		t.Fatal(err)
	}
	r := readRepo(t, root, "signed")
	refs := r.Referrers[subject.Digest]
	if len(refs) != 1 || refs[0].Digest != dr || refs[0].ArtifactType != "application/vnd.example.sig" || refs[0].Size != int64(len(ref)) {
		t.Fatalf("referrers %+v", r.Referrers)
	}
	if r.Manifests[dr].Subject != subject.Digest {
		t.Errorf("manifest listed as %+v", r.Manifests[dr])
	}
	verifyFS(t, root)
}

func TestPutManifestMoreTags(t *testing.T) {
	ctx := context.Background()
	root, sink, p := pushTree(t)
	img := pushImage(t, sink, "t")
	d, err := p.PutManifest(ctx, "app", digest.FromBytes(img).String(), ocispec.MediaTypeImageManifest, img, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	r := readRepo(t, root, "app")
	if r.Tags["a"] != d || r.Tags["b"] != d || len(r.Tags) != 2 {
		t.Errorf("tags %v", r.Tags)
	}
}

func TestPutManifestConcurrentSameTag(t *testing.T) {
	ctx := context.Background()
	root, sink, _ := pushTree(t)
	const n = 6
	imgs := make([][]byte, n)
	for i := range imgs {
		imgs[i] = pushImage(t, sink, fmt.Sprint("race", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range imgs {
		wg.Go(func() {
			// Each its own Publisher, as separate server processes.
			_, errs[i] = publish.New(publish.NewFSSink(layout.Root(root))).PutManifest(ctx, "race", "latest", ocispec.MediaTypeImageManifest, imgs[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := readRepo(t, root, "race")
	won := false
	for _, img := range imgs {
		d := digest.FromBytes(img)
		if _, ok := r.Manifests[d]; !ok {
			t.Errorf("manifest %s lost", d)
		}
		won = won || r.Tags["latest"] == d
	}
	if !won {
		t.Errorf("tag latest = %s, none of the pushed", r.Tags["latest"])
	}
	verifyFS(t, root)
}

// deletingSink deletes a key just before the lock of a repository file is
// taken: a delete (or gc) that strikes between a push's checks and its
// edit of the repository file.
type deletingSink struct {
	*store.FS
	del string
}

func (s *deletingSink) Lock(ctx context.Context, key string) (func(), error) {
	if s.del != "" && key != layout.CatalogIndexKey() {
		if err := s.Delete(ctx, s.del); err != nil {
			return nil, err
		}
		s.del = ""
	}
	return s.FS.Lock(ctx, key)
}

func TestPutManifestRacingDelete(t *testing.T) {
	ctx := context.Background()
	root, fsink, p := pushTree(t)
	img := pushImage(t, fsink, "v1")
	if _, err := p.PutManifest(ctx, "app", "v1", ocispec.MediaTypeImageManifest, img); err != nil {
		t.Fatal(err)
	}
	cfg := putBlob(t, fsink, ocispec.MediaTypeImageConfig, []byte(`{"v":2}`))
	l := putBlob(t, fsink, ocispec.MediaTypeImageLayerGzip, []byte("layer of v2"))
	img2 := imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{l}, nil, "")
	key, _ := layout.BlobKey(l.Digest)
	sink := &deletingSink{FS: fsink, del: key}
	before := snapshot(t, root, false)
	_, err := publish.New(sink).PutManifest(ctx, "app", "v1", ocispec.MediaTypeImageManifest, img2)
	var re *publish.ReferenceError
	if !errors.Is(err, publish.ErrManifestBlobUnknown) || !errors.As(err, &re) || !re.Deleted || re.Digest != l.Digest {
		t.Fatalf("err = %v, want the deleted layer", err)
	}
	// The layer is gone, the new manifest stored (unreferenced, for
	// gc), the config touched; the repository file and the catalog are
	// as they were.
	after := snapshot(t, root, false)
	if _, ok := after[filepath.FromSlash(key)]; ok {
		t.Error("layer not deleted")
	}
	for k, v := range before {
		if strings.HasPrefix(k, "repositories") || strings.HasPrefix(k, "catalog") {
			if after[k] != v {
				t.Errorf("%s changed", k)
			}
		}
	}
	if r := readRepo(t, root, "app"); r.Tags["v1"] != digest.FromBytes(img) {
		t.Errorf("tag moved to %s", r.Tags["v1"])
	}
	verifyFS(t, root)
}

func TestBucketPutManifest(t *testing.T) {
	ctx := context.Background()
	_, st := openBucket(t)
	p := publish.New(st)
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 4
	imgs := make([][]byte, n)
	for i := range imgs {
		imgs[i] = pushImage(t, st, fmt.Sprint("bucket", i))
	}
	// A missing layer: refused, nothing written.
	cfg := putBlob(t, st, ocispec.MediaTypeImageConfig, []byte("{}"))
	bad := imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{descOf(ocispec.MediaTypeImageLayerGzip, []byte("nope"))}, nil, "")
	if _, err := p.PutManifest(ctx, "race", "latest", ocispec.MediaTypeImageManifest, bad); !errors.Is(err, publish.ErrManifestBlobUnknown) {
		t.Fatalf("err = %v", err)
	}
	if _, err := publish.ReadRepository(ctx, st, "race"); !errors.Is(err, publish.ErrNotFound) {
		t.Fatalf("repository after a refused push: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range imgs {
		wg.Go(func() {
			_, errs[i] = publish.New(st).PutManifest(ctx, "race", "latest", ocispec.MediaTypeImageManifest, imgs[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := publish.ReadRepository(ctx, st, "race")
	if err != nil {
		t.Fatal(err)
	}
	won := false
	for _, img := range imgs {
		d := digest.FromBytes(img)
		if _, ok := r.Manifests[d]; !ok {
			t.Errorf("manifest %s lost", d)
		}
		won = won || r.Tags["latest"] == d
	}
	if !won {
		t.Errorf("tag latest = %s", r.Tags["latest"])
	}
	// Blobs the bad push found are listed by no repository: gc's.
	verifyBucket(t, st)
}

func TestPutManifestRacingDeleteOfItself(t *testing.T) {
	ctx := context.Background()
	root, fsink, _ := pushTree(t)
	img := pushImage(t, fsink, "self")
	d := digest.FromBytes(img)
	key, _ := layout.BlobKey(d)
	sink := &deletingSink{FS: fsink, del: key}
	if _, err := publish.New(sink).PutManifest(ctx, "app", "v1", ocispec.MediaTypeImageManifest, img); err != nil {
		t.Fatal(err)
	}
	if sink.del != "" {
		t.Fatal("nothing deleted")
	}
	if !bytes.Equal(readBlob(t, root, d), img) {
		t.Error("the manifest deleted under the push was not written again")
	}
	verifyFS(t, root)
}

func TestDeleteManifestAndUnlinkBlob(t *testing.T) {
	ctx := context.Background()
	root, sink, p := pushTree(t)
	img := pushImage(t, sink, "del")
	di, err := p.PutManifest(ctx, "app", "v1", ocispec.MediaTypeImageManifest, img, "v1.0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := putBlob(t, sink, "application/vnd.oci.empty.v1+json", []byte("{}"))
	sig := putBlob(t, sink, "application/vnd.example.signature", []byte("sig"))
	subject := descOf(ocispec.MediaTypeImageManifest, img)
	ref := imageManifest(t, ocispec.MediaTypeImageManifest, cfg, []ocispec.Descriptor{sig}, &subject, "application/vnd.example.sig")
	dr, err := p.PutManifest(ctx, "app", digest.FromBytes(ref).String(), ocispec.MediaTypeImageManifest, ref)
	if err != nil {
		t.Fatal(err)
	}
	idx := indexOf(t, subject)
	dx, err := p.PutManifest(ctx, "app", "multi", ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		t.Fatal(err)
	}
	var layer digest.Digest
	{
		var m ocispec.Manifest
		if err := json.Unmarshal(img, &m); err != nil {
			t.Fatal(err)
		}
		layer = m.Layers[0].Digest
	}

	tests := []struct {
		name    string
		do      func() error
		wantErr error
		check   func(r *layout.Repository) bool
	}{
		{"missing tag", func() error { return p.DeleteManifest(ctx, "app", "nope") }, publish.ErrNotFound, nil},
		{"missing repository", func() error { return p.DeleteManifest(ctx, "none", "v1") }, publish.ErrNotFound, nil},
		{"missing manifest", func() error { return p.DeleteManifest(ctx, "app", digest.FromString("x").String()) }, publish.ErrNotFound, nil},
		{"child of a listed index", func() error { return p.DeleteManifest(ctx, "app", di.String()) }, publish.ErrManifestInUse, nil},
		{"blob in use", func() error { return p.UnlinkBlob(ctx, "app", layer) }, publish.ErrBlobInUse, nil},
		{"unlisted blob", func() error { return p.UnlinkBlob(ctx, "app", digest.FromString("y")) }, publish.ErrNotFound, nil},
		{"tag", func() error { return p.DeleteManifest(ctx, "app", "v1") }, nil, func(r *layout.Repository) bool {
			_, listed := r.Manifests[di]
			return r.Tags["v1"] == "" && r.Tags["v1.0"] == di && listed
		}},
		{"index by digest", func() error { return p.DeleteManifest(ctx, "app", dx.String()) }, nil, func(r *layout.Repository) bool {
			_, listed := r.Manifests[dx]
			return !listed && r.Tags["multi"] == ""
		}},
		{"referrer by digest", func() error { return p.DeleteManifest(ctx, "app", dr.String()) }, nil, func(r *layout.Repository) bool {
			_, listed := r.Manifests[dr]
			_, sigListed := r.Blobs[sig.Digest]
			return !listed && r.Referrers == nil && sigListed
		}},
		{"image by digest", func() error { return p.DeleteManifest(ctx, "app", di.String()) }, nil, func(r *layout.Repository) bool {
			return len(r.Manifests) == 0 && len(r.Tags) == 0 && len(r.Blobs) == 5
		}},
		{"unused blob", func() error { return p.UnlinkBlob(ctx, "app", layer) }, nil, func(r *layout.Repository) bool {
			_, listed := r.Blobs[layer]
			return !listed && len(r.Blobs) == 4
		}},
		{"unlinked blob", func() error { return p.UnlinkBlob(ctx, "app", layer) }, publish.ErrNotFound, nil},
	}
	for _, tt := range tests {
		before := snapshot(t, root, false)
		err := tt.do()
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
			}
			if diff := diffSnapshots(withoutLocks(before), withoutLocks(snapshot(t, root, false))); len(diff) > 0 {
				t.Errorf("%s: changed the tree: %v", tt.name, diff)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r := readRepo(t, root, "app"); !tt.check(r) {
			t.Errorf("%s: repository after: tags %v manifests %v blobs %v referrers %v", tt.name, r.Tags, r.Manifests, r.Blobs, r.Referrers)
		}
		verifyFS(t, root)
	}
}

// withoutLocks drops the lock files from a snapshot: taking a lock
// creates its file.
func withoutLocks(s map[string]string) map[string]string {
	for k := range s {
		if strings.HasPrefix(k, ".heron") {
			delete(s, k)
		}
	}
	return s
}
