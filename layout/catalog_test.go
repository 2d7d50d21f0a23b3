package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"
)

func TestCatalogGolden(t *testing.T) {
	shard1, id1, err := EncodeCatalogShard([]string{"a", "library/alpine"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "catalog-shard.json", shard1)
	_, id2, err := EncodeCatalogShard([]string{"team/app", "zeta"})
	if err != nil {
		t.Fatal(err)
	}
	idx := &CatalogIndex{Shards: []CatalogShard{
		{ID: id1, First: "a", Last: "library/alpine", Count: 2},
		{ID: id2, First: "team/app", Last: "zeta", Count: 2},
	}}
	b, err := EncodeCatalogIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "catalog-index.json", b)
	got, err := DecodeCatalogIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	names, err := DecodeCatalogShard(shard1, got.Shards[0].ID)
	if err != nil || len(names) != 2 || names[1] != "library/alpine" {
		t.Fatalf("shard: %v %v", names, err)
	}
	if _, err := DecodeCatalogShard(append(shard1, ' '), id1); err == nil {
		t.Fatal("a shard that does not match its id was accepted")
	}

	for _, tc := range []struct {
		last string
		want int
	}{{"", 0}, {"a", 0}, {"library/alpine", 1}, {"m", 1}, {"zeta", 2}, {"zz", 2}} {
		if got := idx.ShardAfter(tc.last); got != tc.want {
			t.Errorf("ShardAfter(%q) = %d, want %d", tc.last, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		want int
	}{{"0", 0}, {"b", 0}, {"m", 1}, {"library/alpine", 0}, {"zz", 1}} {
		if got := idx.ShardFor(tc.name); got != tc.want {
			t.Errorf("ShardFor(%q) = %d, want %d", tc.name, got, tc.want)
		}
	}
	if (&CatalogIndex{}).ShardFor("a") != -1 {
		t.Error("ShardFor on an empty index")
	}
}

func TestCatalogErrors(t *testing.T) {
	if _, _, err := EncodeCatalogShard([]string{"b", "a"}); err == nil {
		t.Error("unsorted shard accepted")
	}
	if _, _, err := EncodeCatalogShard([]string{"a", "a"}); err == nil {
		t.Error("duplicate names accepted")
	}
	if _, _, err := EncodeCatalogShard([]string{"A"}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("invalid name: %v", err)
	}
	if _, err := DecodeCatalogIndex([]byte(`{"layoutVersion":7,"shards":[]}`)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("version: %v", err)
	}
	if _, err := DecodeCatalogIndex([]byte(`{"layoutVersion":1,"shards":[{"id":"../../x","first":"a","last":"b"}]}`)); err == nil {
		t.Error("bad shard id accepted")
	}
	_, id, _ := EncodeCatalogShard([]string{"a"})
	out := `{"layoutVersion":1,"shards":[{"id":"` + id + `","first":"m","last":"n"},{"id":"` + id + `","first":"a","last":"b"}]}`
	if _, err := DecodeCatalogIndex([]byte(out)); err == nil {
		t.Error("shards out of order accepted")
	}
}

// TestScanCatalogShard: the fast path decodes what EncodeCatalogShard
// writes, and what it accepts it decodes as encoding/json does; anything
// else goes to encoding/json.
func TestScanCatalogShard(t *testing.T) {
	for _, tc := range []struct {
		data string
		fast bool // the fast path takes it
	}{
		{`{"repositories":["a","library/alpine"]}` + "\n", true},
		{`{"repositories":["a"]}`, true},
		{`{"repositories":[]}` + "\n", true},
		{`{"repositories":[""]}` + "\n", true},
		{`{"repositories":["a", "b"]}` + "\n", false},
		{`{"repositories":["a\u0062"]}`, false},
		{`{"repositories":["a\"b"]}`, false},
		{`{"repositories":["é"]}`, false},
		{`{"repositories":["a",]}`, false},
		{`{"repositories":["a""b"]}`, false},
		{`{"repositories":["a"]}` + "\n\n", false},
		{`{"repositories":["a]}`, false},
		{`{"repositories":[a]}`, false},
		{`{"repositories":["a"],"x":1}`, false},
		{` {"repositories":["a"]}`, false},
		{`{"Repositories":["a"]}`, false},
		{`{"repositories":["a","b"],"protected":["b"]}` + "\n", true},
		{`{"repositories":["a","b"],"protected":["a","b"]}`, true},
		{`{"repositories":["a","b"],"protected":[]}` + "\n", false},
		{`{"repositories":["a","b"],"protected":["c"]}` + "\n", false},
		{`{"repositories":["a","b"],"protected":["b","a"]}` + "\n", false},
		{`{"repositories":["a","b"],"protected":["a","a"]}` + "\n", false},
		{`{"repositories":[],"protected":["a"]}` + "\n", false},
		{`{"repositories":["a"],"protected":["a",]}` + "\n", false},
		{`{"repositories":["a"],"protected":"a"}` + "\n", false},
	} {
		t.Run(tc.data, func(t *testing.T) {
			c, ok := scanCatalogShard([]byte(tc.data))
			if ok != tc.fast {
				t.Fatalf("fast path: %v, want %v", ok, tc.fast)
			}
			sum := sha256.Sum256([]byte(tc.data))
			dec, err := DecodeCatalogShardFile([]byte(tc.data), hex.EncodeToString(sum[:]))
			var f CatalogShardFile
			jerr := json.Unmarshal([]byte(tc.data), &f)
			if jerr == nil {
				// What encoding/json decodes must also name protected
				// names among its names.
				jerr = checkProtected(f.Repositories, f.Protected)
			}
			if (err == nil) != (jerr == nil) {
				t.Fatalf("DecodeCatalogShardFile = %v; encoding/json and the check: %v", err, jerr)
			}
			if err == nil && (!reflect.DeepEqual(dec.Repositories, f.Repositories) || (dec.Repositories == nil) != (f.Repositories == nil) ||
				len(dec.Protected) != len(f.Protected) || (len(f.Protected) > 0 && !reflect.DeepEqual(dec.Protected, f.Protected))) {
				t.Fatalf("DecodeCatalogShardFile = %q; encoding/json: %q", *dec, f)
			}
			if ok && (!reflect.DeepEqual(c.Strings(), f.Repositories) || !reflect.DeepEqual(c.ProtectedStrings(), f.Protected)) {
				t.Fatalf("fast path %q %q, encoding/json %q", c.Strings(), c.ProtectedStrings(), f)
			}
			packed, err := DecodeCatalogNames([]byte(tc.data), hex.EncodeToString(sum[:]))
			if (err == nil) != (jerr == nil) || (err == nil && (!reflect.DeepEqual(packed.Strings(), PackCatalogNames(f.Repositories).Strings()) ||
				packed.Len() != len(f.Repositories) || len(packed.ProtectedStrings()) != len(f.Protected))) {
				t.Fatalf("DecodeCatalogNames = %v, %v; encoding/json: %q, %v", packed, err, f, jerr)
			}
			for i := 0; err == nil && i < packed.Len(); i++ {
				if want := slices.Contains(f.Protected, packed.At(i)); packed.Protected(i) != want {
					t.Fatalf("Protected(%d) = %v, want %v", i, !want, want)
				}
			}
		})
	}
	names := make([]string, CatalogShardSize)
	for i := range names {
		names[i] = fmt.Sprintf("org%02d/team%d/app%04d", i/100, i%7, i)
	}
	sort.Strings(names)
	data, _, err := EncodeCatalogShard(names)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := scanCatalogShard(data)
	if !ok || !reflect.DeepEqual(c.Strings(), names) {
		t.Fatalf("an encoded shard: fast path %v", ok)
	}
	// The same shard with every seventh name protected: the bits fall
	// across words of the bitmap.
	var protected []string
	for i := 0; i < len(names); i += 7 {
		protected = append(protected, names[i])
	}
	pdata, _, err := EncodeCatalogShardFile(&CatalogShardFile{Repositories: names, Protected: protected})
	if err != nil {
		t.Fatal(err)
	}
	pc, ok := scanCatalogShard(pdata)
	if !ok || !reflect.DeepEqual(pc.Strings(), names) || !reflect.DeepEqual(pc.ProtectedStrings(), protected) {
		t.Fatalf("an encoded shard with protected names: fast path %v", ok)
	}
	for i := range names {
		if pc.Protected(i) != (i%7 == 0) {
			t.Fatalf("Protected(%d) = %v", i, pc.Protected(i))
		}
	}
	if _, _, err := EncodeCatalogShardFile(&CatalogShardFile{Repositories: names, Protected: []string{"zz"}}); err == nil {
		t.Error("a protected name that is not a name was encoded")
	}
	for _, last := range []string{"", names[0], names[499], names[999], "zz"} {
		want := sort.SearchStrings(names, last)
		if want < len(names) && names[want] == last {
			want++
		}
		if got := c.After(last); got != want {
			t.Errorf("After(%q) = %d, want %d", last, got, want)
		}
	}
}

// benchCatalog is a catalog of n shards of CatalogShardSize names, the
// size of a tree of n thousand repositories: the index and one shard.
func benchCatalog(b *testing.B, n int) (index, shard []byte, id string) {
	b.Helper()
	var idx CatalogIndex
	for s := range n {
		names := make([]string, CatalogShardSize)
		for i := range names {
			names[i] = fmt.Sprintf("org%04d/team%d/app%04d", s, i%7, i)
		}
		sort.Strings(names)
		data, sid, err := EncodeCatalogShard(names)
		if err != nil {
			b.Fatal(err)
		}
		if s == 0 {
			shard, id = data, sid
		}
		idx.Shards = append(idx.Shards, CatalogShard{ID: sid, First: names[0], Last: names[len(names)-1], Count: len(names)})
	}
	index, err := EncodeCatalogIndex(&idx)
	if err != nil {
		b.Fatal(err)
	}
	return index, shard, id
}

func BenchmarkDecodeCatalogIndex1001(b *testing.B) {
	index, _, _ := benchCatalog(b, 1001)
	b.SetBytes(int64(len(index)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCatalogIndex(index); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCatalogNames(b *testing.B) {
	_, shard, id := benchCatalog(b, 1)
	b.SetBytes(int64(len(shard)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCatalogNames(shard, id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeCatalogShard(b *testing.B) {
	_, shard, id := benchCatalog(b, 1)
	b.SetBytes(int64(len(shard)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCatalogShard(shard, id); err != nil {
			b.Fatal(err)
		}
	}
}
