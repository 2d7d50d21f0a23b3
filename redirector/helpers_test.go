package redirector

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// testTree writes a published tree by hand, through layout's keys and
// encoders only, so that the server's tests do not depend on publish.
type testTree struct {
	t    testing.TB
	root layout.Root
	// shardSize, when set, has repository writes every kind of entries in
	// shard files of at most shardSize entries (layout, shards.go), as a
	// repository too large for its file is written.
	shardSize int
}

func newTestTree(t testing.TB) *testTree {
	t.Helper()
	tt := &testTree{t: t, root: layout.Root(t.TempDir())}
	tt.write(layout.LayoutFileKey(), layout.EncodeLayoutFile())
	return tt
}

func (tt *testTree) dir() string { return string(tt.root) }

// write writes data at key.
func (tt *testTree) write(key string, data []byte) {
	tt.t.Helper()
	p := tt.root.Path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tt.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tt.t.Fatal(err)
	}
}

// blob stores data under its digest and returns its descriptor.
func (tt *testTree) blob(mediaType string, data []byte) v1.Descriptor {
	tt.t.Helper()
	d := digest.FromBytes(data)
	key, err := layout.BlobKey(d)
	if err != nil {
		tt.t.Fatal(err)
	}
	tt.write(key, data)
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

// manifest stores an image manifest and returns its descriptor and bytes.
func (tt *testTree) manifest(m v1.Manifest) (v1.Descriptor, []byte) {
	tt.t.Helper()
	m.SchemaVersion = 2
	m.MediaType = v1.MediaTypeImageManifest
	data := mustJSON(tt.t, m)
	desc := tt.blob(v1.MediaTypeImageManifest, data)
	desc.ArtifactType = m.ArtifactType
	return desc, data
}

// index stores an image index of children and returns its descriptor and
// bytes.
func (tt *testTree) index(children ...v1.Descriptor) (v1.Descriptor, []byte) {
	tt.t.Helper()
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: children}
	idx.SchemaVersion = 2
	data := mustJSON(tt.t, idx)
	return tt.blob(v1.MediaTypeImageIndex, data), data
}

// repository writes a repository file (and its shards, with shardSize).
func (tt *testTree) repository(r *layout.Repository) {
	tt.t.Helper()
	if tt.shardSize > 0 {
		tt.shard(r, tt.shardSize)
	}
	data, err := r.Encode()
	if err != nil {
		tt.t.Fatal(err)
	}
	key, err := layout.RepositoryKey(r.Name)
	if err != nil {
		tt.t.Fatal(err)
	}
	tt.write(key, data)
}

// shard writes every kind of entries of r in shard files of at most size
// entries, and lists them in r.
func (tt *testTree) shard(r *layout.Repository, size int) {
	tt.t.Helper()
	for _, kind := range layout.ShardKinds {
		keys := r.Keys(kind)
		var refs []layout.ShardRef
		for len(keys) > 0 {
			part := keys[:min(size, len(keys))]
			keys = keys[len(part):]
			sh, err := r.ShardOf(kind, part, nil)
			if err != nil {
				tt.t.Fatal(err)
			}
			data, id, err := layout.EncodeRepositoryShard(sh)
			if err != nil {
				tt.t.Fatal(err)
			}
			key, err := layout.RepositoryShardKey(r.Name, id)
			if err != nil {
				tt.t.Fatal(err)
			}
			tt.write(key, data)
			refs = append(refs, layout.ShardRef{ID: id, First: part[0], Last: part[len(part)-1], Count: len(part)})
		}
		r.SetShards(kind, refs)
	}
}

// catalog writes the catalog of sorted names, perShard names to a shard,
// marking those of protected (see layout.CatalogShardFile), and returns the
// shard keys.
func (tt *testTree) catalog(names []string, perShard int, protected ...string) []string {
	tt.t.Helper()
	var idx layout.CatalogIndex
	var keys []string
	for len(names) > 0 {
		n := min(perShard, len(names))
		f := &layout.CatalogShardFile{Repositories: names[:n]}
		for _, name := range f.Repositories {
			if slices.Contains(protected, name) {
				f.Protected = append(f.Protected, name)
			}
		}
		data, id, err := layout.EncodeCatalogShardFile(f)
		if err != nil {
			tt.t.Fatal(err)
		}
		key, err := layout.CatalogShardKey(id)
		if err != nil {
			tt.t.Fatal(err)
		}
		tt.write(key, data)
		keys = append(keys, key)
		idx.Shards = append(idx.Shards, layout.CatalogShard{ID: id, First: names[0], Last: names[n-1], Count: n, Protected: len(f.Protected)})
		names = names[n:]
	}
	data, err := layout.EncodeCatalogIndex(&idx)
	if err != nil {
		tt.t.Fatal(err)
	}
	tt.write(layout.CatalogIndexKey(), data)
	return keys
}

// addImage lists an image manifest (and its config and layers) in r.
func addImage(r *layout.Repository, desc v1.Descriptor, m v1.Manifest) {
	var blobs []digest.Digest
	for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		r.Blobs[b.Digest] = layout.Blob{Size: b.Size, MediaType: b.MediaType}
		blobs = append(blobs, b.Digest)
	}
	r.Manifests[desc.Digest] = layout.Manifest{
		MediaType: desc.MediaType, Size: desc.Size, ArtifactType: m.ArtifactType, Blobs: blobs,
	}
	if m.Subject != nil {
		mm := r.Manifests[desc.Digest]
		mm.Subject = m.Subject.Digest
		r.Manifests[desc.Digest] = mm
		if r.Referrers == nil {
			r.Referrers = map[digest.Digest][]v1.Descriptor{}
		}
		r.Referrers[m.Subject.Digest] = append(r.Referrers[m.Subject.Digest], desc)
	}
}

// fetch sends one request to srv as a client that does not follow
// redirects, and returns the response with its whole body (read and
// closed).
func fetch(t testing.TB, srv *httptest.Server, method, target string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := *srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// get answers one request directly, without a connection.
func get(h http.Handler, method, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logBuffer collects a server's log lines; the server logs from its own
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns what was logged since the last call.
func (b *logBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
