package publish_test

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
)

// checkCatalog verifies the catalog of root against want: the names, their
// order, the index (which DecodeCatalogIndex must accept), each shard's
// bounds and count, and that no shard file is left over.
func checkCatalog(t *testing.T, root string, shardSize int, want map[string]bool) *layout.CatalogIndex {
	t.Helper()
	ctx := context.Background()
	sink := publish.NewFSSink(layout.Root(root))
	names, err := publish.CatalogNames(ctx, sink)
	if err != nil {
		t.Fatal(err)
	}
	var w []string
	for n := range want {
		w = append(w, n)
	}
	sort.Strings(w)
	if strings.Join(names, " ") != strings.Join(w, " ") {
		t.Fatalf("catalog\n got %v\nwant %v", names, w)
	}
	b, err := os.ReadFile(layout.Root(root).Path(layout.CatalogIndexKey()))
	if os.IsNotExist(err) && len(want) == 0 {
		return &layout.CatalogIndex{}
	}
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.DecodeCatalogIndex(b)
	if err != nil {
		t.Fatalf("DecodeCatalogIndex: %v\n%s", err, b)
	}
	onDisk := map[string]bool{}
	ents, _ := os.ReadDir(layout.Root(root).Path(layout.CatalogShardsDirKey()))
	for _, e := range ents {
		onDisk[e.Name()] = true
	}
	total := 0
	for i, s := range idx.Shards {
		key, _ := layout.CatalogShardKey(s.ID)
		data, err := os.ReadFile(layout.Root(root).Path(key))
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		sn, err := layout.DecodeCatalogShard(data, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(sn) == 0 || len(sn) > shardSize || len(sn) != s.Count || sn[0] != s.First || sn[len(sn)-1] != s.Last {
			t.Errorf("shard %d: %+v holds %d names %v", i, s, len(sn), sn)
		}
		total += len(sn)
		delete(onDisk, filepath.Base(key))
	}
	if total != len(want) {
		t.Errorf("shards hold %d names, want %d", total, len(want))
	}
	if len(onDisk) > 0 {
		t.Errorf("shard files left over: %v", onDisk)
	}
	return idx
}

func TestCatalogSplit(t *testing.T) {
	root := t.TempDir()
	p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithCatalogShardSize(4))
	ctx := context.Background()
	want := map[string]bool{}
	for i, n := range []string{"b", "d", "f", "h"} {
		changed, err := p.AddToCatalog(ctx, n)
		if err != nil || !changed {
			t.Fatalf("add %s: %v %v", n, changed, err)
		}
		want[n] = true
		if idx := checkCatalog(t, root, 4, want); len(idx.Shards) != 1 {
			t.Fatalf("after %d names: %d shards", i+1, len(idx.Shards))
		}
	}
	// A fifth name splits the full shard in two.
	if _, err := p.AddToCatalog(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	want["a"] = true
	if idx := checkCatalog(t, root, 4, want); len(idx.Shards) != 2 || idx.Shards[0].Count != 2 || idx.Shards[1].Count != 3 {
		t.Fatalf("after the split: %+v", idx.Shards)
	}
	// Names before, between and after the shards land in the right ones.
	if _, err := p.AddToCatalog(ctx, "0", "c", "e", "zz"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"0", "c", "e", "zz"} {
		want[n] = true
	}
	checkCatalog(t, root, 4, want)
	// Adding names that are there changes nothing.
	before := snapshot(t, root, true)
	if changed, err := p.AddToCatalog(ctx, "a", "zz", "c"); err != nil || changed {
		t.Fatalf("re-add: %v %v", changed, err)
	}
	if changed, err := p.RemoveFromCatalog(ctx, "nope", "zzz"); err != nil || changed {
		t.Fatalf("remove absent: %v %v", changed, err)
	}
	if d := diffSnapshots(withoutCounter(before), withoutCounter(snapshot(t, root, true))); len(d) > 0 {
		t.Errorf("a no-op changed the tree: %v", d)
	}
	if _, err := p.AddToCatalog(ctx, "Bad Name"); err == nil {
		t.Error("an invalid name was accepted")
	}
}

func TestCatalogManyNames(t *testing.T) {
	for _, size := range []int{1, 3, 8} {
		t.Run(fmt.Sprint("shard size ", size), func(t *testing.T) {
			root := t.TempDir()
			p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithCatalogShardSize(size))
			ctx := context.Background()
			rng := rand.New(rand.NewSource(int64(size)))
			var all []string
			for i := range 120 {
				all = append(all, fmt.Sprintf("ns%d/app-%03d", i%7, rng.Intn(1000)))
			}
			want := map[string]bool{}
			for len(all) > 0 {
				n := min(len(all), 1+rng.Intn(9))
				batch := all[:n]
				all = all[n:]
				if _, err := p.AddToCatalog(ctx, batch...); err != nil {
					t.Fatal(err)
				}
				for _, b := range batch {
					want[b] = true
				}
				checkCatalog(t, root, size, want)
			}
			var names []string
			for n := range want {
				names = append(names, n)
			}
			sort.Strings(names)
			rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
			for len(names) > 0 {
				n := min(len(names), 1+rng.Intn(11))
				batch := names[:n]
				names = names[n:]
				changed, err := p.RemoveFromCatalog(ctx, batch...)
				if err != nil || !changed {
					t.Fatalf("remove %v: %v %v", batch, changed, err)
				}
				for _, b := range batch {
					delete(want, b)
				}
				checkCatalog(t, root, size, want)
			}
			idx := checkCatalog(t, root, size, want)
			if len(idx.Shards) != 0 {
				t.Errorf("empty catalog has shards %+v", idx.Shards)
			}
		})
	}
}

func TestPublishAddsToCatalog(t *testing.T) {
	dir := t.TempDir()
	src := "oci:" + writeLayout(t, filepath.Join(dir, "src"), entry{item: ociImage(t, 1, 1)})
	root := filepath.Join(dir, "tree")
	want := map[string]bool{}
	for i := range 7 {
		name := fmt.Sprintf("team%d/app", 6-i)
		p := publish.New(publish.NewFSSink(layout.Root(root)), publish.WithCatalogShardSize(2))
		res, err := publishWith(t, p, src, nil, name+":1", "shared:"+fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if !res.CatalogChanged {
			t.Errorf("publish %d did not change the catalog", i)
		}
		want[name], want["shared"] = true, true
		checkCatalog(t, root, 2, want)
	}
	assertConsistent(t, root)
}
