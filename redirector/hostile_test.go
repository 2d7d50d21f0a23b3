package redirector

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// TestHostile runs hostile requests, and requests for the broken parts of
// hostileTree, against the server with its caches off, on, and warmed by
// the same request. TestCalls (redirector_test.go) has the first rows of
// this kind; these are the rest. No answer may carry a byte of a file
// outside the tree, or a part of a blob as if it were the whole.
func TestHostile(t *testing.T) { forEachCacheMode(t, testHostile) }

func testHostile(t *testing.T, mode cacheMode) {
	h := newHostileTree(t)
	srv, _, logs := mode.newServer(t, h.dir())
	alpineBlob := blobURL("library/alpine", h.alpineLayer.Digest)
	layerData := string(h.files[h.alpineLayer.Digest])
	name255 := strings.Repeat("a", 127) + "/" + strings.Repeat("b", 127)
	hex256 := h.alpineLayer.Digest.Encoded()

	runCalls(t, srv, logs, []call{
		// Good requests first: the caches answer some (see cacheMode).
		{Description: "good manifest", URL: manifestURL("library/alpine", "latest"), Code: 200, WantBody: string(h.alpineIdxData)},
		{Description: "good manifest again", URL: manifestURL("library/alpine", "latest"), Code: 200, WantBody: string(h.alpineIdxData)},
		{Description: "good blob", URL: alpineBlob, Code: 200, WantBody: layerData},

		// Dot segments, encoded or not, anywhere.
		{Description: "encoded dot-dot as the reference", URL: manifestURL("library/alpine", "%2e%2e"), Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded dot-dot as the digest", URL: "/v2/library/alpine/blobs/%2e%2e", Code: 400, WantErr: CodeNameInvalid},
		{Description: "uppercase encoded dot-dot", URL: "/v2/%2E%2E/%2E%2E/outside/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded dot", URL: "/v2/library/%2e/alpine/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "double-encoded dot-dot", URL: "/v2/%252e%252e/outside/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "dot-dot to a file outside", URL: "/v2/library/alpine/blobs/../../../outside/layer", Code: 400, WantErr: CodeNameInvalid, NotInBody: secretMarker},

		// Encoded slashes and other separators.
		{Description: "encoded slash in a tag", URL: manifestURL("library/alpine", "a%2fb"), Code: 400, WantErr: CodeNameInvalid},
		{Description: "encoded slash in the query is only a query", URL: "/v2/_catalog?last=library%2falpine", Code: 200,
			WantBody: `{"repositories":["long","short","team/app/api","truncated","zshard-altered","zshard-dir","zshard-huge","zshard-leak"]}`},
		{Description: "encoded backslash in a name", URL: "/v2/library%5calpine/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "backslash dot-dot", URL: "/v2/library/alpine/blobs/..%5c..%5cheron-layout.json", Code: 400, WantErr: CodeDigestInvalid},

		// Absolute paths.
		{Description: "absolute path as the digest", URL: "/v2/library/alpine/blobs//etc/passwd", Code: 404, WantErr: CodeUnsupported},
		{Description: "absolute path as the reference", URL: "/v2/library/alpine/manifests//etc/passwd", Code: 404, WantErr: CodeUnsupported},
		{Description: "absolute path of the outside file", URL: "/v2/" + strings.TrimPrefix(filepath.ToSlash(h.outside), "/") + "/tags/list", Code: 400, WantErr: CodeNameInvalid},

		// NUL bytes.
		{Description: "NUL in a digest", URL: "/v2/library/alpine/blobs/sha256:" + hex256[:10] + "%00", Code: 400, WantErr: CodeDigestInvalid},
		{Description: "NUL after a valid digest", URL: alpineBlob + "%00", Code: 400, WantErr: CodeDigestInvalid},
		{Description: "NUL as last", URL: "/v2/_catalog?n=1&last=%00", Code: 200, WantBody: `{"repositories":["alias"]}`},
		{Description: "NUL as n", URL: "/v2/library/alpine/tags/list?n=%00", Code: 400, WantErr: CodePaginationNumberInvalid},

		// Overlong input (OCI limits: names of at most 255 characters,
		// tags of at most 128).
		{Description: "name of 255 characters", URL: "/v2/" + name255 + "/tags/list", Code: 404, WantErr: CodeNameUnknown},
		{Description: "name of 256 characters", URL: "/v2/" + name255 + "b/tags/list", Code: 400, WantErr: CodeNameInvalid},
		{Description: "name of 8 KiB", URL: "/v2/" + strings.Repeat("ab/", 2730) + "c/tags/list", Code: 400, WantErr: CodeNameInvalid},
		// A component of 251 to 255 characters is valid, and its file
		// name (with ".json") too long for the file system: absent, not
		// an internal error (issue 10, defect 2).
		{Description: "component of 251 characters", URL: "/v2/" + strings.Repeat("a", 251) + "/tags/list", Code: 404, WantErr: CodeNameUnknown},
		{Description: "component of 255 characters, manifest", URL: manifestURL(strings.Repeat("a", 255), "latest"), Code: 404, WantErr: CodeNameUnknown},
		{Description: "nested component of 253 characters, blob", URL: blobURL("x/"+strings.Repeat("b", 253), h.alpineLayer.Digest), Code: 404, WantErr: CodeNameUnknown},
		{Description: "component of 251 characters, HEAD", Method: http.MethodHead, URL: manifestURL(strings.Repeat("c", 251), "latest"), Code: 404},

		// Many ranges (issue 10, defect 1): coalesced when they overlap,
		// the whole blob past the bound, never a multipart answer of
		// hundreds of parts.
		{Description: "a range", URL: alpineBlob, Header: map[string]string{"Range": "bytes=0-3"}, Code: 206, WantBody: layerData[:4]},
		{Description: "200 times the first byte", URL: alpineBlob, Header: map[string]string{"Range": "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 200), ",")},
			Code: 206, WantBody: layerData[:1], WantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes 0-0/%d", len(layerData))}},
		{Description: "1000 ranges", URL: alpineBlob, Header: map[string]string{"Range": "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 1000), ",")},
			Code: 200, WantBody: layerData},
		{Description: "tag of 128 characters", URL: manifestURL("library/alpine", strings.Repeat("t", 128)), Code: 404, WantErr: CodeManifestUnknown},
		{Description: "digest of 10000 hex digits", URL: "/v2/library/alpine/blobs/sha256:" + strings.Repeat("ab", 5000), Code: 400, WantErr: CodeDigestInvalid},
		{Description: "n of 30 digits", URL: "/v2/_catalog?n=" + strings.Repeat("9", 30), Code: 400, WantErr: CodePaginationNumberInvalid},
		{Description: "n of the largest int", URL: "/v2/library/alpine/tags/list?n=9223372036854775807", Code: 200,
			WantBody: `{"name":"library/alpine","tags":["latest","v1"]}`},
		{Description: "last of 8 KiB", URL: "/v2/_catalog?last=" + strings.Repeat("z", 8192), Code: 200, WantBody: `{"repositories":[]}`},

		// Uppercase.
		{Description: "uppercase algorithm", URL: "/v2/library/alpine/blobs/SHA256:" + hex256, Code: 400, WantErr: CodeDigestInvalid},
		{Description: "uppercase endpoint", URL: "/v2/library/alpine/MANIFESTS/latest", Code: 404, WantErr: CodeUnsupported},
		{Description: "uppercase API version", URL: "/V2/", Code: 404, WantErr: CodeUnsupported},
		{Description: "uppercase tag is a tag", URL: manifestURL("library/alpine", "LATEST"), Code: 404, WantErr: CodeManifestUnknown},

		// Symbolic links in the tree.
		{Description: "repository file linked from outside", URL: "/v2/escape/tags/list", Code: 500, WantErr: CodeUnknown,
			NotInBody: outsideTag, WantLog: "path escapes"},
		{Description: "repository file linked from outside, by its tag", URL: manifestURL("escape", outsideTag), Code: 500, WantErr: CodeUnknown},
		{Description: "repository file linked from outside, HEAD", Method: "HEAD", URL: manifestURL("escape", outsideTag), Code: 500},
		{Description: "repository file linked from outside, well-known blob", URL: blobURL("escape", emptyLayerDigest), Code: 500, WantErr: CodeUnknown},
		{Description: "blob file linked outside", URL: blobURL("leak", h.leakLayer.Digest), Code: 500, WantErr: CodeUnknown,
			NotInBody: secretMarker, WantLog: "path escapes"},
		{Description: "blob file linked outside, HEAD", Method: "HEAD", URL: blobURL("leak", h.leakLayer.Digest), Code: 500,
			WantHeader: map[string]string{"Content-Length": fmt.Sprint(len(`{"errors":[{"code":"UNKNOWN","message":"internal server error"}]}`))}},
		{Description: "blob file linked outside, range", URL: blobURL("leak", h.leakLayer.Digest), Header: map[string]string{"Range": "bytes=7-"},
			Code: 500, WantErr: CodeUnknown, NotInBody: secretMarker},
		{Description: "manifest file linked outside", URL: manifestURL("leak", "latest"), Code: 500, WantErr: CodeUnknown, NotInBody: secretMarker},
		{Description: "manifest file linked outside, HEAD", Method: "HEAD", URL: manifestURL("leak", "latest"), Code: 500},
		{Description: "manifest file linked outside, as a blob", URL: blobURL("leak", h.leakManifest.Digest), Code: 500, NotInBody: secretMarker},
		{Description: "blob folder linked outside", URL: blobURL("leakdir", h.leak512), Code: 500, WantErr: CodeUnknown, NotInBody: secretMarker},
		{Description: "a repository with links outside still lists its tags", URL: "/v2/leak/tags/list", Code: 200, WantBody: `{"name":"leak","tags":["latest"]}`},
		{Description: "repository file linked inside the tree names another repository", URL: "/v2/alias/tags/list", Code: 500, WantErr: CodeUnknown,
			NotInBody: "latest", WantLog: `names repository \"library/alpine\"`},

		// Repository files that are truncated or huge.
		{Description: "truncated repository file", URL: "/v2/truncated/tags/list", Code: 500, WantErr: CodeUnknown, WantLog: "unexpected end of JSON input"},
		{Description: "truncated repository file, manifest", URL: manifestURL("truncated", "latest"), Code: 500, WantErr: CodeUnknown},
		{Description: "huge repository file", URL: "/v2/huge/tags/list", Code: 500, WantErr: CodeUnknown, WantLog: "more than the"},
		{Description: "huge repository file, blob", URL: blobURL("huge", emptyJSONDigest), Code: 500, WantErr: CodeUnknown},
		{Description: "shard file linked from outside", URL: manifestURL("zshard-leak", outsideTag), Code: 500, WantErr: CodeUnknown},
		{Description: "shard file linked from outside, tags", URL: "/v2/zshard-leak/tags/list", Code: 500, WantErr: CodeUnknown, NotInBody: outsideTag},
		{Description: "shard file linked from outside, HEAD", Method: http.MethodHead, URL: manifestURL("zshard-leak", outsideTag), Code: 500},
		{Description: "a tag in a shard inside the tree", URL: manifestURL("zshard-leak", "latest"), Code: 200, WantHeader: map[string]string{"Docker-Content-Digest": h.alpineA.Digest.String()}},
		{Description: "shard folder linked outside", URL: manifestURL("zshard-dir", "latest"), Code: 500, WantErr: CodeUnknown},
		{Description: "shard folder linked outside, blob", URL: blobURL("zshard-dir", h.alpineLayer.Digest), Code: 500, WantErr: CodeUnknown},
		{Description: "shard folder linked outside, tags", URL: "/v2/zshard-dir/tags/list?n=1", Code: 500, WantErr: CodeUnknown},
		{Description: "huge shard file", URL: manifestURL("zshard-huge", outsideTag), Code: 500, WantErr: CodeUnknown, WantLog: "more than the"},
		{Description: "shard file altered", URL: manifestURL("zshard-altered", outsideTag), Code: 500, WantErr: CodeUnknown, WantLog: "does not match its id"},
		{Description: "shard file altered, tags", URL: "/v2/zshard-altered/tags/list", Code: 500, WantErr: CodeUnknown},
		{Description: "the catalog lists broken repositories", URL: "/v2/_catalog?n=3&last=leakdir", Code: 200,
			WantBody: `{"repositories":["library/alpine","long","short"]}`},

		// Blobs and manifests whose files are shorter or longer than
		// their repository file says: never served as if whole.
		{Description: "blob shorter than listed", URL: blobURL("short", h.shortLayer.Digest), Code: 500, WantErr: CodeUnknown,
			NotInBody: "short layer", WantLog: "but the repository lists"},
		{Description: "blob shorter than listed, range inside the file", URL: blobURL("short", h.shortLayer.Digest),
			Header: map[string]string{"Range": "bytes=0-5"}, Code: 500, WantErr: CodeUnknown, NotInBody: "the wh"},
		{Description: "blob shorter than listed, suffix range", URL: blobURL("short", h.shortLayer.Digest),
			Header: map[string]string{"Range": "bytes=-5"}, Code: 500, WantErr: CodeUnknown},
		{Description: "blob shorter than listed, If-None-Match", URL: blobURL("short", h.shortLayer.Digest),
			Header: map[string]string{"If-None-Match": etagOf(h.shortLayer.Digest)}, Code: 500, WantErr: CodeUnknown},
		{Description: "blob shorter than listed, HEAD", Method: "HEAD", URL: blobURL("short", h.shortLayer.Digest), Code: 500,
			WantHeader: map[string]string{"Docker-Content-Digest": "", "Content-Range": ""}},
		{Description: "manifest shorter than listed", URL: manifestURL("short", "latest"), Code: 500, WantErr: CodeUnknown,
			NotInBody: "schemaVersion", WantLog: "but the repository lists"},
		{Description: "manifest shorter than listed, HEAD", Method: "HEAD", URL: manifestURL("short", "latest"), Code: 500},
		{Description: "manifest shorter than listed, as a blob", URL: blobURL("short", h.shortManifest.Digest), Code: 500, NotInBody: "schemaVersion"},
		{Description: "blob longer than listed", URL: blobURL("long", h.longLayer.Digest), Code: 500, WantErr: CodeUnknown,
			NotInBody: "a layer", WantLog: "but the repository lists"},
		{Description: "blob longer than listed, range", URL: blobURL("long", h.longLayer.Digest),
			Header: map[string]string{"Range": "bytes=40-"}, Code: 500, WantErr: CodeUnknown},

		// Ranges that select no bytes (golang/go#81262): the whole blob.
		{Description: "zero-length suffix range", URL: alpineBlob, Header: map[string]string{"Range": "bytes=-0"}, Code: 200, WantBody: layerData,
			WantHeader: map[string]string{"Content-Range": ""}},
		{Description: "zero-length suffix range among others", URL: alpineBlob, Header: map[string]string{"Range": "bytes=0-1, -0"}, Code: 206, WantBody: "01",
			WantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes 0-1/%d", len(layerData))}},
		{Description: "zero-length suffix range with whitespace inside", URL: alpineBlob, Header: map[string]string{"Range": "bytes=-1,-\t\t0"}, Code: 206,
			WantBody: layerData[len(layerData)-1:], WantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes %d-%d/%d", len(layerData)-1, len(layerData)-1, len(layerData))}},
		{Description: "suffix range of an empty blob", URL: blobURL("library/alpine", h.emptyLayer.Digest), Header: map[string]string{"Range": "bytes=-5"},
			Code: 200, WantEmptyBody: true, WantHeader: map[string]string{"Content-Range": "", "Content-Length": "0"}},
		{Description: "range past the end", URL: alpineBlob, Header: map[string]string{"Range": "bytes=1000-"}, Code: 416},
		{Description: "malformed range", URL: alpineBlob, Header: map[string]string{"Range": "bytes=5-1"}, Code: 416},
		{Description: "range of another unit", URL: alpineBlob, Header: map[string]string{"Range": "lines=1-2"}, Code: 416},

		// Good requests still work after all of the above.
		{Description: "good manifest at the end", URL: manifestURL("library/alpine", "v1"), Code: 200},
		{Description: "good tags at the end", URL: "/v2/library/alpine/tags/list", Code: 200, WantBody: `{"name":"library/alpine","tags":["latest","v1"]}`},
	})
}

// TestHostileSpecialFiles puts a named pipe where a repository file, a
// blob and a manifest are expected: opening one for reading blocks until a
// writer comes, so a server that opened it would hang the request (and
// keep its goroutine and descriptor) forever.
func TestHostileSpecialFiles(t *testing.T) { forEachCacheMode(t, testHostileSpecialFiles) }

func testHostileSpecialFiles(t *testing.T, mode cacheMode) {
	h := newHostileTree(t)
	var fifos []string
	fifo := func(key string) {
		t.Helper()
		p := h.root.Path(key)
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		fifos = append(fifos, p)
	}
	fifo(h.key(layout.RepositoryKey("pipe")))
	pipes := layout.NewRepository("pipes")
	layer := digest.FromString("a layer that is a pipe")
	pipes.Blobs[layer] = layout.Blob{Size: 22}
	fifo(h.key(layout.BlobKey(layer)))
	manifest := digest.FromString("a manifest that is a pipe")
	pipes.Manifests[manifest] = layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 25}
	pipes.Tags["latest"] = manifest
	fifo(h.key(layout.ManifestKey(manifest)))
	h.repository(pipes)
	// A repository whose tag shard is a pipe.
	pipeShard := layout.NewRepository("pipeshard")
	other := digest.FromString("a manifest never read")
	pipeShard.Manifests[other] = layout.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 21}
	pipeShard.Tags["latest"] = other
	h.shard(pipeShard, 1)
	h.repository(pipeShard)
	shardKey := h.key(layout.RepositoryShardKey("pipeshard", pipeShard.TagShards[0].ID))
	if err := os.Remove(h.root.Path(shardKey)); err != nil {
		t.Fatal(err)
	}
	fifo(shardKey)

	// Should a request be stuck opening a pipe, writers that come and go
	// release it, until the server has closed (cleanups run last first).
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	srv, _, logs := mode.newServer(t, h.dir())
	srv.Client().Timeout = 5 * time.Second
	t.Cleanup(func() {
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				for _, p := range fifos {
					if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						f.Close()
					}
				}
			}
		}()
	})
	runCalls(t, srv, logs, []call{
		{Description: "good manifest", URL: manifestURL("library/alpine", "latest"), Code: 200},
		{Description: "good manifest again", URL: manifestURL("library/alpine", "latest"), Code: 200},
		{Description: "repository file is a pipe", URL: "/v2/pipe/tags/list", Code: 500, WantErr: CodeUnknown, WantLog: "not a regular file"},
		{Description: "blob is a pipe", URL: blobURL("pipes", layer), Code: 500, WantErr: CodeUnknown, WantLog: "not a regular file"},
		{Description: "blob is a pipe, HEAD", Method: http.MethodHead, URL: blobURL("pipes", layer), Code: 500},
		{Description: "manifest is a pipe", URL: manifestURL("pipes", "latest"), Code: 500, WantErr: CodeUnknown, WantLog: "not a regular file"},
		{Description: "manifest is a pipe, HEAD", Method: http.MethodHead, URL: manifestURL("pipes", "latest"), Code: 500},
		{Description: "shard is a pipe", URL: manifestURL("pipeshard", "latest"), Code: 500, WantErr: CodeUnknown, WantLog: "not a regular file"},
		{Description: "shard is a pipe, tags", URL: "/v2/pipeshard/tags/list", Code: 500, WantErr: CodeUnknown},
	})
}
