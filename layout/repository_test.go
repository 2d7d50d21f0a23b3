package layout

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func d(c byte) digest.Digest { return digest.Digest("sha256:" + strings.Repeat(string(c), 64)) }

func sampleRepository() *Repository {
	f := false
	r := NewRepository("team/app")
	r.BlobBaseURL = "https://cdn.example.test/tree"
	r.Tags["latest"] = d('1')
	r.Tags["v1"] = d('1')
	r.Tags["multi"] = d('2')
	r.Manifests[d('1')] = Manifest{MediaType: v1.MediaTypeImageManifest, Size: 500, Blobs: []digest.Digest{d('a'), d('b')}}
	r.Manifests[d('2')] = Manifest{MediaType: v1.MediaTypeImageIndex, Size: 300, Children: []digest.Digest{d('1'), d('3')}}
	r.Manifests[d('3')] = Manifest{MediaType: v1.MediaTypeImageManifest, Size: 501, Blobs: []digest.Digest{d('a'), d('c')}}
	r.Manifests[d('4')] = Manifest{MediaType: v1.MediaTypeImageManifest, Size: 400, ArtifactType: "application/vnd.example.sig", Subject: d('1'), Blobs: []digest.Digest{d('a')}}
	r.Blobs[d('a')] = Blob{Size: 2, MediaType: v1.MediaTypeEmptyJSON}
	r.Blobs[d('b')] = Blob{Size: 1000, MediaType: v1.MediaTypeImageLayerGzip}
	r.Blobs[d('c')] = Blob{Size: 1001, MediaType: v1.MediaTypeImageLayerGzip, Stored: &f}
	r.Referrers = map[digest.Digest][]v1.Descriptor{
		d('1'): {{MediaType: v1.MediaTypeImageManifest, Digest: d('4'), Size: 400, ArtifactType: "application/vnd.example.sig"}},
	}
	return r
}

func TestRepositoryGolden(t *testing.T) {
	b, err := sampleRepository().Encode()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "repository.json", b)
	r, err := DecodeRepository(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip changed the bytes:\n%s\n%s", b, b2)
	}
	if r.Blobs[d('c')].IsStored() || !r.Blobs[d('b')].IsStored() {
		t.Fatal("stored flags lost")
	}
	if got, ok := r.Resolve("latest"); !ok || got != d('1') {
		t.Fatalf("Resolve(latest) = %v, %v", got, ok)
	}
	if _, ok := r.Resolve(string(d('9'))); ok {
		t.Fatal("Resolve of an unlisted digest succeeded")
	}
	if got := strings.Join(r.SortedTags(), ","); got != "latest,multi,v1" {
		t.Fatalf("SortedTags = %s", got)
	}
}

func TestRepositoryKeepsUnknownFields(t *testing.T) {
	in := `{"schemaVersion":1,"name":"a","tags":{},"manifests":{},"blobs":{},"x-future":{"k":[1,2]},"note":"hi"}`
	r, err := DecodeRepository([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	r.Protected = true
	out, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"x-future": {`, `"note": "hi"`, `"protected": true`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("encoded file lacks %s:\n%s", want, out)
		}
	}
}

func TestDecodeRepositoryErrors(t *testing.T) {
	tests := []struct {
		desc, in string
		is       error
	}{
		{"not json", `{`, nil},
		{"no version", `{"name":"a"}`, nil},
		{"future version", `{"schemaVersion":3,"name":"a"}`, ErrUnsupportedVersion},
		{"version 2 without shards", `{"schemaVersion":2,"name":"a"}`, nil},
		{"bad name", `{"schemaVersion":1,"name":"../a"}`, ErrInvalidName},
		{"bad tag", `{"schemaVersion":1,"name":"a","tags":{"-x":"` + string(d('1')) + `"},"manifests":{"` + string(d('1')) + `":{"mediaType":"m","size":1}}}`, ErrInvalidTag},
		{"dangling tag", `{"schemaVersion":1,"name":"a","tags":{"x":"` + string(d('1')) + `"}}`, nil},
		{"dangling child", `{"schemaVersion":1,"name":"a","manifests":{"` + string(d('1')) + `":{"mediaType":"m","size":1,"children":["` + string(d('2')) + `"]}}}`, nil},
		{"dangling blob", `{"schemaVersion":1,"name":"a","manifests":{"` + string(d('1')) + `":{"mediaType":"m","size":1,"blobs":["` + string(d('2')) + `"]}}}`, nil},
		{"bad blob digest", `{"schemaVersion":1,"name":"a","blobs":{"sha256:../x":{"size":1}}}`, ErrInvalidDigest},
		{"negative size", `{"schemaVersion":1,"name":"a","blobs":{"` + string(d('2')) + `":{"size":-1}}}`, nil},
		{"dangling referrer", `{"schemaVersion":1,"name":"a","referrers":{"` + string(d('1')) + `":[{"mediaType":"m","digest":"` + string(d('2')) + `","size":1}]}}`, nil},
		{"too large", `{"schemaVersion":1,"name":"a","pad":"` + strings.Repeat("x", MaxRepositoryFileSize) + `"}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := DecodeRepository([]byte(tc.in))
			if err == nil {
				t.Fatal("decoded, want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v is not %v", err, tc.is)
			}
		})
	}
}

func TestLayoutFile(t *testing.T) {
	golden(t, "heron-layout.json", EncodeLayoutFile())
	if _, err := DecodeLayoutFile(EncodeLayoutFile()); err != nil {
		t.Fatal(err)
	}
	var ve *VersionError
	if _, err := DecodeLayoutFile([]byte(`{"layoutVersion":2}`)); !errors.As(err, &ve) || ve.Got != 2 {
		t.Fatalf("version 2: %v", err)
	}
	if _, err := DecodeLayoutFile([]byte(`nope`)); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestBlobBaseURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"https://cdn.example.com", "https://cdn.example.com", true},
		{"https://cdn.example.com/tree/", "https://cdn.example.com/tree", true},
		{"http://127.0.0.1:8080//", "http://127.0.0.1:8080", true},
		{"/blobs", "", false},
		{"cdn.example.com", "", false},
		{"ftp://cdn.example.com", "", false},
		{"https://cdn.example.com/?sig=1", "", false},
		{"https://cdn.example.com/?", "", false},
		{"https://cdn.example.com/#x", "", false},
		{"https://", "", false},
	} {
		got, err := NormalizeBlobBaseURL(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("NormalizeBlobBaseURL(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidBaseURL) {
			t.Errorf("NormalizeBlobBaseURL(%q): %v is not ErrInvalidBaseURL", tc.in, err)
		}
	}
}

func TestRepositoryBlobBaseURL(t *testing.T) {
	r := NewRepository("app")
	r.BlobBaseURL = "https://cdn.example.com/tree//"
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRepository(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.BlobBaseURL != "https://cdn.example.com/tree" {
		t.Errorf("BlobBaseURL after a round trip = %q", got.BlobBaseURL)
	}
	// Another writer's trailing slash is dropped on decoding.
	slashed := bytes.Replace(b, []byte(`tree"`), []byte(`tree/"`), 1)
	if got, err := DecodeRepository(slashed); err != nil || got.BlobBaseURL != "https://cdn.example.com/tree" {
		t.Errorf("decoding a base URL with a trailing slash: %v, %v", got, err)
	}
	bad := bytes.Replace(b, []byte(`https://cdn.example.com/tree`), []byte(`ftp://cdn.example.com`), 1)
	if _, err := DecodeRepository(bad); !errors.Is(err, ErrInvalidBaseURL) {
		t.Errorf("decoding an ftp base URL: %v, want ErrInvalidBaseURL", err)
	}
}

func TestDecodeRepositoryFile(t *testing.T) {
	b, err := NewRepository("a/b").Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeRepositoryFile("a/b", b); err != nil {
		t.Errorf("its own name: %v", err)
	}
	if _, err := DecodeRepositoryFile("a/c", b); err == nil || !strings.Contains(err.Error(), `names repository "a/b"`) {
		t.Errorf("another name: %v", err)
	}
}
