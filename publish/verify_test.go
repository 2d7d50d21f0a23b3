package publish_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fsckTree is a published tree: one:1 (an image), multi:1 (an index of
// two images), team/two:1 (another image, sharing no layer with one).
type fsckTree struct {
	root             string
	layer, manifest  string // keys of one:1's first layer and its manifest
	shard            string // key of the catalog's only shard
	oneKey           string
	manifestMediaTyp string
}

func newFsckTree(t *testing.T, src string) *fsckTree {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	mustPublish(t, root, "oci:"+src+":a", "one:1")
	mustPublish(t, root, "oci:"+src+":multi", "multi:1")
	mustPublish(t, root, "oci:"+src+":b", "team/two:1")
	ft := &fsckTree{root: root, oneKey: "repositories/one.json"}
	r := readRepo(t, root, "one")
	d := r.Tags["1"]
	ft.manifest = blobKey(t, d)
	ft.manifestMediaTyp = r.Manifests[d].MediaType
	ft.layer = blobKey(t, r.Manifests[d].Blobs[1])
	ents, err := os.ReadDir(layout.Root(root).Path(layout.CatalogShardsDirKey()))
	if err != nil || len(ents) != 1 {
		t.Fatalf("shards %v, %v", ents, err)
	}
	ft.shard = layout.CatalogShardsDirKey() + "/" + ents[0].Name()
	return ft
}

func (ft *fsckTree) path(key string) string { return layout.Root(ft.root).Path(key) }

func (ft *fsckTree) write(t *testing.T, key, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(ft.path(key)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ft.path(key), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (ft *fsckTree) read(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(ft.path(key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (ft *fsckTree) remove(t *testing.T, key string) {
	t.Helper()
	if err := os.Remove(ft.path(key)); err != nil {
		t.Fatal(err)
	}
}

// flip changes one byte in the middle of key, keeping its size.
func (ft *fsckTree) flip(t *testing.T, key string) {
	t.Helper()
	b := []byte(ft.read(t, key))
	b[len(b)/2] ^= 0x01
	ft.write(t, key, string(b))
}

func fsckSource(t *testing.T) string {
	t.Helper()
	return writeLayout(t, filepath.Join(t.TempDir(), "src"),
		entry{item: ociImage(t, 11, 2), ref: "a"},
		entry{item: ociImage(t, 12, 1), ref: "b"},
		entry{item: platformIndex(t, types.OCIImageIndex, ociImage(t, 13, 1), ociImage(t, 14, 1)), ref: "multi"},
	)
}

func TestVerifyFreshTree(t *testing.T) {
	ft := newFsckTree(t, fsckSource(t))
	rep := assertVerifies(t, ft.root, true)
	// one: 1 manifest, config + 2 layers; multi: 3 manifests, 2 × (config
	// + layer); team/two: 1 manifest, config + 1 layer.
	if rep.Repositories != 3 || rep.Manifests != 5 || rep.Blobs != 9 || rep.Unreferenced != 0 || rep.HashedBytes == 0 {
		t.Errorf("report %+v", rep)
	}
	// A removed tag leaves unreferenced blobs: counted, not a problem.
	p := publish.New(publish.NewFSSink(layout.Root(ft.root)))
	if _, _, err := p.RemoveTags(context.Background(), "team/two", "1"); err != nil {
		t.Fatal(err)
	}
	if rep := assertVerifies(t, ft.root, false); rep.Unreferenced != 3 || rep.UnreferencedBytes == 0 {
		t.Errorf("after removing a tag: %+v, want 3 unreferenced", rep)
	}
	// What an unreadable repository file lists is unknown: so is what is
	// unreferenced.
	ft.write(t, ft.oneKey, "{")
	rep, err := publish.VerifyTree(context.Background(), publish.NewFSSink(layout.Root(ft.root)), publish.VerifyOptions{})
	if err != nil || len(rep.Problems) != 1 || rep.Unreferenced != -1 || rep.UnreferencedBytes != -1 {
		t.Errorf("with an unreadable repository file: %+v, %v", rep, err)
	}
}

func TestVerifyFindsProblems(t *testing.T) {
	src := fsckSource(t)
	ctx := context.Background()
	for _, tc := range []struct {
		desc    string
		deep    bool
		corrupt func(t *testing.T, ft *fsckTree)
		key     func(ft *fsckTree) string // the key of the problem
		want    string                    // in its message
		n       int                       // how many problems
	}{
		{"deleted blob", false, func(t *testing.T, ft *fsckTree) { ft.remove(t, ft.layer) },
			func(ft *fsckTree) string { return ft.oneKey }, "is missing (blobs/sha256/", 1},
		{"deleted manifest", false, func(t *testing.T, ft *fsckTree) { ft.remove(t, ft.manifest) },
			func(ft *fsckTree) string { return ft.oneKey }, "manifest sha256:", 1},
		{"truncated blob", false, func(t *testing.T, ft *fsckTree) { ft.write(t, ft.layer, ft.read(t, ft.layer)[:10]) },
			func(ft *fsckTree) string { return ft.oneKey }, "holds 10", 1},
		{"flipped byte, shallow", false, func(t *testing.T, ft *fsckTree) { ft.flip(t, ft.layer) },
			nil, "", 0},
		{"flipped byte, deep", true, func(t *testing.T, ft *fsckTree) { ft.flip(t, ft.layer) },
			func(ft *fsckTree) string { return ft.layer }, "content does not match its digest", 1},
		{"flipped byte in a manifest", false, func(t *testing.T, ft *fsckTree) { ft.flip(t, ft.manifest) },
			func(ft *fsckTree) string { return ft.manifest }, "content does not match its digest", 1},
		{"malformed repository file", false, func(t *testing.T, ft *fsckTree) { ft.write(t, ft.oneKey, `{"schemaVersion": 1, "name": `) },
			func(ft *fsckTree) string { return ft.oneKey }, "repository file", 1},
		{"repository file of another version", false, func(t *testing.T, ft *fsckTree) { ft.write(t, ft.oneKey, `{"schemaVersion": 3}`) },
			func(ft *fsckTree) string { return ft.oneKey }, "version 3 is not supported", 1},
		{"repository file naming another repository", false, func(t *testing.T, ft *fsckTree) {
			ft.write(t, ft.oneKey, strings.Replace(ft.read(t, ft.oneKey), `"name": "one"`, `"name": "other"`, 1))
		}, func(ft *fsckTree) string { return ft.oneKey }, `names repository "other"`, 1},
		{"manifest listed with another media type", false, func(t *testing.T, ft *fsckTree) {
			ft.write(t, ft.oneKey, strings.Replace(ft.read(t, ft.oneKey), `"mediaType": "`+ft.manifestMediaTyp+`",`+"\n      \"size\"", `"mediaType": "`+ocispec.MediaTypeImageIndex+`",`+"\n      \"size\"", 1))
		}, func(ft *fsckTree) string { return ft.manifest }, "a repository lists it as " + ocispec.MediaTypeImageIndex, 1},
		{"catalog missing a name", false, func(t *testing.T, ft *fsckTree) {
			if _, err := publish.New(publish.NewFSSink(layout.Root(ft.root))).RemoveFromCatalog(ctx, "one"); err != nil {
				t.Fatal(err)
			}
		}, nil, "", 0},
		{"catalog listing a protected repository as public", false, func(t *testing.T, ft *fsckTree) {
			ft.write(t, ft.oneKey, strings.Replace(ft.read(t, ft.oneKey), `"name": "one"`, `"name": "one", "protected": true`, 1))
		}, func(ft *fsckTree) string { return ft.shard }, "lists protected repository one as public", 1},
		{"catalog listing a deleted repository", false, func(t *testing.T, ft *fsckTree) { ft.remove(t, ft.oneKey) },
			func(ft *fsckTree) string { return ft.shard }, "lists repository one, which has no repository file", 1},
		{"catalog listing a shadowed repository", false, func(t *testing.T, ft *fsckTree) {
			mustPublish(t, ft.root, "oci:"+src+":b", "a/b.json/c:1")
			if _, err := publish.New(publish.NewFSSink(layout.Root(ft.root))).AddToCatalog(ctx, "a/b"); err != nil {
				t.Fatal(err)
			}
		}, func(ft *fsckTree) string { return ft.shardNow(t) }, "repositories/a/b.json is the folder of repositories named a/b.json/", 1},
		{"missing catalog shard", false, func(t *testing.T, ft *fsckTree) { ft.remove(t, ft.shard) },
			func(*fsckTree) string { return layout.CatalogIndexKey() }, "shard 0 is missing", 1},
		{"catalog shard not matching its id", false, func(t *testing.T, ft *fsckTree) { ft.write(t, ft.shard, ft.read(t, ft.shard)+" ") },
			func(ft *fsckTree) string { return ft.shard }, "does not match its id", 1},
		{"malformed catalog index", false, func(t *testing.T, ft *fsckTree) {
			ft.write(t, layout.CatalogIndexKey(), `{"layoutVersion": 1, "shards": [`)
		},
			func(*fsckTree) string { return layout.CatalogIndexKey() }, "catalog index", 1},
		{"wrong layout version", false, func(t *testing.T, ft *fsckTree) { ft.write(t, layout.LayoutFileKey(), `{"layoutVersion": 2}`) },
			func(*fsckTree) string { return layout.LayoutFileKey() }, "layout version 2 is not supported", 1},
		{"no layout file", false, func(t *testing.T, ft *fsckTree) { ft.remove(t, layout.LayoutFileKey()) },
			func(*fsckTree) string { return layout.LayoutFileKey() }, "not a heron tree", 1},
		{"stray file in blobs", false, func(t *testing.T, ft *fsckTree) { ft.write(t, "blobs/sha256/junk", "x") },
			func(*fsckTree) string { return "blobs/sha256/junk" }, "not a blob", 1},
		{"stray file in repositories", false, func(t *testing.T, ft *fsckTree) { ft.write(t, "repositories/Bad.json", "{}") },
			func(*fsckTree) string { return "repositories/Bad.json" }, "not a repository file", 1},
		{"temporary files are no problem", false, func(t *testing.T, ft *fsckTree) {
			ft.write(t, "blobs/sha256/.heron-tmp-1", "x")
			ft.write(t, "repositories/.heron-tmp-2", "x")
			ft.write(t, ".heron/locks/whatever", "x")
		}, nil, "", 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ft := newFsckTree(t, src)
			tc.corrupt(t, ft)
			rep, err := publish.VerifyTree(ctx, publish.NewFSSink(layout.Root(ft.root)), publish.VerifyOptions{Deep: tc.deep})
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			found := tc.key == nil
			for _, p := range rep.Problems {
				lines = append(lines, p.String())
				if tc.key != nil && p.Key == tc.key(ft) && strings.Contains(p.Message, tc.want) {
					found = true
				}
			}
			if !found || len(rep.Problems) != tc.n {
				want := "nothing"
				if tc.key != nil {
					want = tc.key(ft) + ": …" + tc.want + "…"
				}
				t.Errorf("problems (%d, want %d):\n%s\nwant %s", len(rep.Problems), tc.n, strings.Join(lines, "\n"), want)
			}
		})
	}
}

// shardNow is the key of the catalog's only shard as it is now.
func (ft *fsckTree) shardNow(t *testing.T) string {
	t.Helper()
	ents, err := os.ReadDir(ft.path(layout.CatalogShardsDirKey()))
	if err != nil || len(ents) != 1 {
		t.Fatalf("shards %v, %v", ents, err)
	}
	return layout.CatalogShardsDirKey() + "/" + ents[0].Name()
}

// TestUnlistedRepositoryRelistedByGC: a repository file whose name the
// catalog does not list (a publish killed between its repository file and
// its catalog step) is no problem for verify but is reported in Unlisted;
// gc --dry-run reports it and changes nothing, gc lists it, and verify then
// reports nothing.
func TestUnlistedRepositoryRelistedByGC(t *testing.T) {
	ctx := context.Background()
	ft := newFsckTree(t, fsckSource(t))
	sink := publish.NewFSSink(layout.Root(ft.root))
	p := publish.New(sink)
	if _, err := p.RemoveFromCatalog(ctx, "one", "team/two"); err != nil {
		t.Fatal(err)
	}
	rep, err := publish.VerifyTree(ctx, sink, publish.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || !slices.Equal(rep.Unlisted, []string{"one", "team/two"}) {
		t.Fatalf("verify: problems %v, unlisted %v", rep.Problems, rep.Unlisted)
	}
	res, err := p.GC(ctx, publish.GCOptions{Grace: time.Hour, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Listed, []string{"one", "team/two"}) {
		t.Fatalf("gc --dry-run listed %v", res.Listed)
	}
	if names, _ := publish.CatalogNames(ctx, sink); !slices.Equal(names, []string{"multi"}) {
		t.Fatalf("gc --dry-run changed the catalog: %v", names)
	}
	if res, err = p.GC(ctx, publish.GCOptions{Grace: time.Hour}); err != nil || !slices.Equal(res.Listed, []string{"one", "team/two"}) {
		t.Fatalf("gc: listed %v, %v", res.Listed, err)
	}
	if names, _ := publish.CatalogNames(ctx, sink); !slices.Equal(names, []string{"multi", "one", "team/two"}) {
		t.Fatalf("catalog after gc: %v", names)
	}
	rep, err = publish.VerifyTree(ctx, sink, publish.VerifyOptions{})
	if err != nil || len(rep.Problems) != 0 || len(rep.Unlisted) != 0 {
		t.Fatalf("verify after gc: %+v, %v", rep, err)
	}
	if res, err = p.GC(ctx, publish.GCOptions{Grace: time.Hour}); err != nil || len(res.Listed) != 0 {
		t.Fatalf("second gc: listed %v, %v", res.Listed, err)
	}
}
