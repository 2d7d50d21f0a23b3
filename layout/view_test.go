package layout

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// sameView decodes data both ways and checks that they agree: the fast
// path succeeds only where the slow path does, with the same view, and
// DecodeRepositoryView fails exactly where DecodeRepositoryFile does.
func sameView(t testing.TB, name string, data []byte) (RepositoryView, bool) {
	t.Helper()
	r, err := DecodeRepositoryFile(name, data)
	v, verr := DecodeRepositoryView(name, data)
	if (err == nil) != (verr == nil) {
		t.Fatalf("DecodeRepositoryFile: %v; DecodeRepositoryView: %v", err, verr)
	}
	fast, ok := scanRepositoryView(name, data)
	if err != nil {
		if ok {
			t.Fatalf("the fast path accepts a file the slow path refuses (%v): %s", err, data)
		}
		return RepositoryView{}, false
	}
	slow, err := ViewOf(r)
	if err != nil {
		t.Fatalf("ViewOf: %v", err)
	}
	if v != slow {
		t.Fatalf("DecodeRepositoryView:\n%q\nViewOf:\n%q", v.s, slow.s)
	}
	if ok && fast != slow {
		t.Fatalf("fast path:\n%q\nslow path:\n%q", fast.s, slow.s)
	}
	checkViewOf(t, r, slow)
	return slow, ok
}

// checkViewOf checks every lookup of v against the repository it is the
// view of.
func checkViewOf(t testing.TB, r *Repository, v RepositoryView) {
	t.Helper()
	if v.Name() != r.Name || v.BlobBaseURL() != strings.TrimRight(r.BlobBaseURL, "/") || v.Protected() != r.Protected || !reflect.DeepEqual(v.Upstream(), r.Upstream) {
		t.Fatalf("settings: %v %q %v %+v, file %+v", v.Name(), v.BlobBaseURL(), v.Protected(), v.Upstream(), r)
	}
	tags := r.SortedTags()
	if v.Tags() != len(tags) {
		t.Fatalf("%d tags, file %d", v.Tags(), len(tags))
	}
	for i, tag := range tags {
		if v.TagAt(i) != tag {
			t.Fatalf("tag %d = %q, want %q", i, v.TagAt(i), tag)
		}
		m, ok := v.Resolve(tag)
		want := r.Manifests[r.Tags[tag]]
		if !ok || m.Digest() != r.Tags[tag] || m.MediaType != want.MediaType || m.Size != want.Size {
			t.Fatalf("Resolve(%q) = %+v, %v; file %s %+v", tag, m, ok, r.Tags[tag], want)
		}
		if got := v.TagsAfter(tag); got != i+1 {
			t.Fatalf("TagsAfter(%q) = %d, want %d", tag, got, i+1)
		}
	}
	for d, want := range r.Manifests {
		m, ok := v.Resolve(string(d))
		if m2, ok2 := v.Manifest(d); !ok || !ok2 || m != m2 || m.Digest() != d || m.MediaType != want.MediaType || m.Size != want.Size {
			t.Fatalf("manifest %s = %+v, %v; file %+v", d, m, ok, want)
		}
	}
	for d, want := range r.Blobs {
		size, stored, ok := v.Blob(d)
		if !ok || size != want.Size || stored != want.IsStored() {
			t.Fatalf("blob %s = %d, %v, %v; file %+v", d, size, stored, ok, want)
		}
	}
	for _, absent := range []string{"no-such-tag", "sha256:" + strings.Repeat("0", 64), "sha512:" + strings.Repeat("f", 128), "sha256:short"} {
		_, tagged := r.Tags[absent]
		_, listed := r.Manifests[digest.Digest(absent)]
		if _, ok := v.Resolve(absent); ok != (tagged || listed) {
			t.Fatalf("Resolve(%q) = %v, want %v", absent, ok, tagged || listed)
		}
		_, listed = r.Blobs[digest.Digest(absent)]
		if _, _, ok := v.Blob(digest.Digest(absent)); ok != listed {
			t.Fatalf("Blob(%q) = %v, want %v", absent, ok, listed)
		}
	}
	for s, refs := range r.Referrers {
		want := slices.Clone(refs)
		sortDescriptors(want)
		// What the referrers endpoint sends is their JSON.
		refsOf := v.Referrers(s)
		if len(refsOf) == 0 && len(want) == 0 {
			continue
		}
		got, _ := json.Marshal(refsOf)
		wantJSON, _ := json.Marshal(want)
		if string(got) != string(wantJSON) {
			t.Fatalf("referrers of %s:\n%s\nfile:\n%s", s, got, wantJSON)
		}
	}
}

func TestRepositoryView(t *testing.T) {
	golden, err := os.ReadFile("../testdata/golden/repository.json")
	if err != nil {
		t.Fatal(err)
	}
	d := func(c string, n int) string { return "sha256:" + strings.Repeat(c, n) }
	d512 := "sha512:" + strings.Repeat("e", 128)
	minimal := `{"schemaVersion":1,"name":"a","tags":{},"manifests":{},"blobs":{}}`
	mixed := fmt.Sprintf(`{"schemaVersion":1,"name":"x/y","tags":{"b":%q,"a":%q},
		"manifests":{%q:{"mediaType":"application/vnd.example+json","size":7,"blobs":[%q]},%q:{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":9}},
		"blobs":{%q:{"size":3,"stored":false},%q:{"size":4}},"upstream":{"registry":"r.example","repository":"x","insecure":true},"extra":{"a":[1,"\u00e9"]}}`,
		d512, d("1", 64), d512, d("b", 64), d("1", 64), d("b", 64), d("c", 64))
	for _, tc := range []struct {
		name, file string
		fast       bool // read by the fast path
	}{
		{"team/app", string(golden), true},
		{"a", minimal, true},
		{"x/y", mixed, true},
		{"a", strings.ReplaceAll(minimal, ":", " : "), true},
		{"a", `{"schemaVersion":1,"name":"a","tags":{},"manifests":{},"blobs":{},"referrers":null}`, true},
		{"a", `{"schemaVersion":1,"name":"a","Tags":{},"manifests":{},"blobs":{}}`, false},
		{"a", `{"schemaVersion":1,"name":"\u0061","tags":{},"manifests":{},"blobs":{}}`, false},
		{"a", `{"schemaVersion":1,"name":"a","name":"a","tags":{},"manifests":{},"blobs":{}}`, false},
		{"a", `{"schemaVersion":1.0,"name":"a"}`, false},
		{"a", `{"schemaVersion":2,"name":"a"}`, false},
		{"a", `{"schemaVersion":1,"name":"b"}`, false},
		{"a", `{"schemaVersion":1,"name":"a","tags":{"t":"` + d("1", 64) + `"}}`, false},
		{"a", `{"schemaVersion":1,"name":"a","blobBaseURL":"ftp://x"}`, false},
		{"a", `{"schemaVersion":1,"name":"a","blobs":{"` + d("1", 64) + `":{"size":-1}}}`, false},
		{"a", `{"schemaVersion":1,"name":"a"} x`, false},
	} {
		t.Run(tc.name+" "+tc.file[:min(len(tc.file), 40)], func(t *testing.T) {
			_, fast := sameView(t, tc.name, []byte(tc.file))
			if fast != tc.fast {
				t.Errorf("fast path: %v, want %v", fast, tc.fast)
			}
		})
	}
}

func BenchmarkDecodeRepositoryView(b *testing.B) {
	r := NewRepository("org1/svc2")
	for i := range 3 {
		md := digest.FromString(fmt.Sprint("m", i))
		r.Tags[fmt.Sprint("v", i)] = md
		cfg, layer := digest.FromString(fmt.Sprint("c", i)), digest.FromString(fmt.Sprint("l", i))
		r.Manifests[md] = Manifest{MediaType: v1.MediaTypeImageManifest, Size: 500, Blobs: []digest.Digest{cfg, layer}}
		r.Blobs[cfg] = Blob{Size: 300, MediaType: v1.MediaTypeImageConfig}
		r.Blobs[layer] = Blob{Size: 1 << 20, MediaType: v1.MediaTypeImageLayerGzip}
	}
	data, err := r.Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("view", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeRepositoryView(r.Name, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeRepositoryFile(r.Name, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	v, _ := DecodeRepositoryView(r.Name, data)
	b.Logf("file %d bytes; view %d bytes", len(data), v.Size())
}
