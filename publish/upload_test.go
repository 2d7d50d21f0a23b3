package publish_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heron-registry/heron/internal/s3test"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	s3store "github.com/heron-registry/heron/store/s3"
	"github.com/opencontainers/go-digest"
)

// uploadCase is one scenario of blob upload sessions, run on a fresh tree
// of every kind of store.
type uploadCase struct {
	name string
	run  func(t *testing.T, u *uploadEnv)
}

// uploadEnv is a fresh tree and a publisher writing it.
type uploadEnv struct {
	ctx context.Context
	st  publish.Sink
	p   *publish.Publisher
}

// newTree initialises an empty tree in st.
func newTree(t *testing.T, st publish.Sink) *uploadEnv {
	t.Helper()
	ctx := context.Background()
	if err := st.Put(ctx, layout.LayoutFileKey(), bytes.NewReader(layout.EncodeLayoutFile()), publish.Want{}); err != nil {
		t.Fatal(err)
	}
	return &uploadEnv{ctx: ctx, st: st, p: publish.New(st)}
}

func (u *uploadEnv) start(t *testing.T, name string) string {
	t.Helper()
	id, err := u.p.StartUpload(u.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := layout.ValidateUploadID(id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (u *uploadEnv) append(t *testing.T, name, id string, off int64, data string, want int64) {
	t.Helper()
	got, err := u.p.AppendUpload(u.ctx, name, id, off, strings.NewReader(data), 0)
	if err != nil || got != want {
		t.Fatalf("append %q at %d: %d, %v; want %d", data, off, got, err, want)
	}
}

func (u *uploadEnv) status(t *testing.T, name, id string, want int64) {
	t.Helper()
	got, err := u.p.UploadStatus(u.ctx, name, id)
	if err != nil || got != want {
		t.Fatalf("status: %d, %v; want %d", got, err, want)
	}
}

func (u *uploadEnv) finish(t *testing.T, name, id, last, content string) {
	t.Helper()
	var r io.Reader
	if last != "" {
		r = strings.NewReader(last)
	}
	d := digest.FromString(content)
	got, err := u.p.FinishUpload(u.ctx, name, id, d, r, 0)
	if err != nil || got != int64(len(content)) {
		t.Fatalf("finish: %d, %v; want %d", got, err, len(content))
	}
	u.blobIs(t, d, content)
	u.unknown(t, name, id)
}

// blobIs checks that the tree holds the blob d with content.
func (u *uploadEnv) blobIs(t *testing.T, d digest.Digest, content string) {
	t.Helper()
	key, _ := layout.BlobKey(d)
	b, err := u.st.ReadFile(u.ctx, key, 64<<20)
	if err != nil || string(b) != content {
		t.Fatalf("blob %s: %d bytes, %v; want %d", d, len(b), err, len(content))
	}
}

// noBlob checks that the tree does not hold the blob d.
func (u *uploadEnv) noBlob(t *testing.T, d digest.Digest) {
	t.Helper()
	key, _ := layout.BlobKey(d)
	if b, err := u.st.ReadFile(u.ctx, key, 1<<20); !errors.Is(err, publish.ErrNotFound) {
		t.Fatalf("blob %s is visible: %q, %v", d, b, err)
	}
}

// unknown checks that every operation on the session id of name fails
// with ErrUploadUnknown.
func (u *uploadEnv) unknown(t *testing.T, name, id string) {
	t.Helper()
	if _, err := u.p.UploadStatus(u.ctx, name, id); !errors.Is(err, publish.ErrUploadUnknown) {
		t.Errorf("status: %v, want ErrUploadUnknown", err)
	}
	if _, err := u.p.AppendUpload(u.ctx, name, id, 0, strings.NewReader("x"), 0); !errors.Is(err, publish.ErrUploadUnknown) {
		t.Errorf("append: %v, want ErrUploadUnknown", err)
	}
	if _, err := u.p.FinishUpload(u.ctx, name, id, digest.FromString("x"), strings.NewReader("x"), 0); !errors.Is(err, publish.ErrUploadUnknown) {
		t.Errorf("finish: %v, want ErrUploadUnknown", err)
	}
	if err := u.p.CancelUpload(u.ctx, name, id); !errors.Is(err, publish.ErrUploadUnknown) {
		t.Errorf("cancel: %v, want ErrUploadUnknown", err)
	}
}

// uploadKeys lists what the tree holds under .heron/uploads.
func (u *uploadEnv) uploadKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	if err := u.st.(publish.ListSink).List(u.ctx, layout.UploadsDirKey(), func(key string, _ publish.Info) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func (u *uploadEnv) noUploads(t *testing.T) {
	t.Helper()
	if keys := u.uploadKeys(t); len(keys) != 0 {
		t.Fatalf("left under %s: %v", layout.UploadsDirKey(), keys)
	}
}

// putChunk stores a chunk object as a writer that died before it
// rewrote the state would have left it.
func (u *uploadEnv) putChunk(t *testing.T, id string, off int64, data string) {
	t.Helper()
	key, err := layout.UploadChunkKey(id, off)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.st.Put(u.ctx, key, strings.NewReader(data), publish.Want{}); err != nil {
		t.Fatal(err)
	}
}

var uploadCases = []uploadCase{
	{"monolithic", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "team/app")
		u.status(t, "team/app", id, 0)
		u.finish(t, "team/app", id, "a whole blob", "a whole blob")
		u.noUploads(t)
	}},
	{"empty blob", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.finish(t, "app", id, "", "")
		u.noUploads(t)
	}},
	{"chunked", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "first ", 6)
		u.append(t, "app", id, 6, "second ", 13)
		u.append(t, "app", id, 13, "", 13) // an empty PATCH changes nothing
		u.append(t, "app", id, 13, "third", 18)
		u.status(t, "app", id, 18)
		u.finish(t, "app", id, "", "first second third")
		u.noUploads(t)
	}},
	{"chunked with a last chunk", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "one ", 4)
		u.append(t, "app", id, 4, "two ", 8)
		u.finish(t, "app", id, "three", "one two three")
		u.noUploads(t)
	}},
	{"chunks larger than a part", func(t *testing.T, u *uploadEnv) {
		// On a bucket, chunks and the blob are multipart uploads.
		a := strings.Repeat("a", 6<<20+1)
		b := strings.Repeat("b", 6<<20+3)
		id := u.start(t, "big")
		u.append(t, "big", id, 0, a, int64(len(a)))
		u.finish(t, "big", id, b, a+b)
		u.noUploads(t)
	}},
	{"out of order", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "12345", 5)
		for _, off := range []int64{0, 3, 6, 100, -1} {
			size, err := u.p.AppendUpload(u.ctx, "app", id, off, strings.NewReader("xyz"), 0)
			if !errors.Is(err, publish.ErrUploadRange) || size != 5 {
				t.Errorf("append at %d: %d, %v; want 5, ErrUploadRange", off, size, err)
			}
		}
		u.status(t, "app", id, 5)
		u.finish(t, "app", id, "678", "12345678")
	}},
	{"over max", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		if n, err := u.p.AppendUpload(u.ctx, "app", id, 0, strings.NewReader("12345"), 8); err != nil || n != 5 {
			t.Fatalf("append: %d, %v", n, err)
		}
		if n, err := u.p.AppendUpload(u.ctx, "app", id, 5, strings.NewReader("6789"), 8); !errors.Is(err, publish.ErrUploadTooLarge) || n != 5 {
			t.Fatalf("append past max: %d, %v; want ErrUploadTooLarge", n, err)
		}
		u.status(t, "app", id, 5)
		if n, err := u.p.AppendUpload(u.ctx, "app", id, 5, strings.NewReader("678"), 8); err != nil || n != 8 {
			t.Fatalf("append up to max: %d, %v", n, err)
		}
		if _, err := u.p.FinishUpload(u.ctx, "app", id, digest.FromString("123456789"), strings.NewReader("9"), 8); !errors.Is(err, publish.ErrUploadTooLarge) {
			t.Fatalf("finish past max: %v; want ErrUploadTooLarge", err)
		}
		u.noBlob(t, digest.FromString("123456789"))
		if n, err := u.p.FinishUpload(u.ctx, "app", id, digest.FromString("12345678"), nil, 8); err != nil || n != 8 {
			t.Fatalf("finish: %d, %v", n, err)
		}
		u.blobIs(t, digest.FromString("12345678"), "12345678")
		// Monolithic, too large at once.
		id = u.start(t, "app")
		if _, err := u.p.FinishUpload(u.ctx, "app", id, digest.FromString("too large"), strings.NewReader("too large"), 8); !errors.Is(err, publish.ErrUploadTooLarge) {
			t.Fatalf("monolithic past max: %v; want ErrUploadTooLarge", err)
		}
		u.status(t, "app", id, 0)
		if err := u.p.CancelUpload(u.ctx, "app", id); err != nil {
			t.Fatal(err)
		}
		u.noUploads(t)
	}},
	{"wrong digest", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "some ", 5)
		same := digest.FromString("other")    // same size: the digest is wrong
		longer := digest.FromString("longer") // the size is wrong, too
		if _, err := u.p.FinishUpload(u.ctx, "app", id, same, strings.NewReader("bytes"), 0); !errors.Is(err, publish.ErrDigestMismatch) {
			t.Fatalf("finish with a wrong digest: %v; want ErrDigestMismatch", err)
		}
		if _, err := u.p.FinishUpload(u.ctx, "app", id, longer, nil, 0); !errors.Is(err, publish.ErrDigestMismatch) {
			t.Fatalf("finish with a digest of other content: %v; want ErrDigestMismatch", err)
		}
		if _, err := u.p.FinishUpload(u.ctx, "app", id, "sha256:nope", nil, 0); !errors.Is(err, layout.ErrInvalidDigest) {
			t.Fatalf("finish with an invalid digest: %v; want ErrInvalidDigest", err)
		}
		u.noBlob(t, same)
		u.noBlob(t, longer)
		u.noBlob(t, digest.FromString("some bytes"))
		u.status(t, "app", id, 10)
		if err := u.p.CancelUpload(u.ctx, "app", id); err != nil {
			t.Fatal(err)
		}
		u.unknown(t, "app", id)
		u.noUploads(t)
	}},
	{"one chunk, wrong digest first", func(t *testing.T, u *uploadEnv) {
		// The chunk is moved on a file system: a mismatch must leave
		// it in the session, whole.
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "one chunk", 9)
		for _, d := range []digest.Digest{digest.FromString("one chunK"), digest.FromString("one chunk!")} {
			if _, err := u.p.FinishUpload(u.ctx, "app", id, d, nil, 0); !errors.Is(err, publish.ErrDigestMismatch) {
				t.Fatalf("finish with a wrong digest: %v; want ErrDigestMismatch", err)
			}
			u.noBlob(t, d)
		}
		u.status(t, "app", id, 9)
		u.finish(t, "app", id, "", "one chunk")
		u.noUploads(t)
	}},
	{"sha512", func(t *testing.T, u *uploadEnv) {
		// The session's hash is SHA-256: a sha512 digest is verified
		// by reading the chunk.
		for _, content := range []string{"one chunk", "two chunks"} {
			id := u.start(t, "app")
			first := content
			if content != "one chunk" {
				first = content[:4]
			}
			u.append(t, "app", id, 0, first, int64(len(first)))
			bad := digest.SHA512.FromString(content + "!")
			if _, err := u.p.FinishUpload(u.ctx, "app", id, bad, nil, 0); !errors.Is(err, publish.ErrDigestMismatch) {
				t.Fatalf("finish with a wrong sha512 digest: %v; want ErrDigestMismatch", err)
			}
			u.noBlob(t, bad)
			var last io.Reader
			if content != "one chunk" {
				last = strings.NewReader(content[4:])
			}
			d := digest.SHA512.FromString(content)
			if n, err := u.p.FinishUpload(u.ctx, "app", id, d, last, 0); err != nil || n != int64(len(content)) {
				t.Fatalf("finish with sha512: %d, %v", n, err)
			}
			u.blobIs(t, d, content)
		}
		u.noUploads(t)
	}},
	{"blob already present", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "a")
		u.finish(t, "a", id, "shared layer", "shared layer")
		id = u.start(t, "b")
		u.append(t, "b", id, 0, "shared ", 7)
		u.finish(t, "b", id, "layer", "shared layer")
		// Present, but the bytes sent are not the blob's: refused.
		id = u.start(t, "c")
		if _, err := u.p.FinishUpload(u.ctx, "c", id, digest.FromString("shared layer"), strings.NewReader("shared LAYER"), 0); !errors.Is(err, publish.ErrDigestMismatch) {
			t.Fatalf("finish with other bytes of a present blob: %v; want ErrDigestMismatch", err)
		}
		u.blobIs(t, digest.FromString("shared layer"), "shared layer")
		u.status(t, "c", id, 12)
	}},
	{"resume after a crash", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "before ", 7)
		// The next chunk was stored, the state not rewritten.
		u.putChunk(t, id, 7, "GARBAGE FROM A DEAD WRITER")
		u.status(t, "app", id, 7)
		u.append(t, "app", id, 7, "after", 12)
		u.finish(t, "app", id, "", "before after")
		u.noUploads(t)
		// An orphan chunk that is never overwritten is ignored, and
		// removed with its session.
		id = u.start(t, "app")
		u.append(t, "app", id, 0, "only", 4)
		u.putChunk(t, id, 4, "orphan")
		u.finish(t, "app", id, "", "only")
		u.noUploads(t)
	}},
	{"cancel", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "abc", 3)
		u.putChunk(t, id, 3, "orphan")
		keep := u.start(t, "app")
		if err := u.p.CancelUpload(u.ctx, "app", id); err != nil {
			t.Fatal(err)
		}
		u.unknown(t, "app", id)
		u.status(t, "app", keep, 0)
		if keys := u.uploadKeys(t); len(keys) != 1 || !strings.Contains(keys[0], keep) {
			t.Fatalf("after cancel: %v; want the other session's state only", keys)
		}
	}},
	{"expire", func(t *testing.T, u *uploadEnv) {
		a := u.start(t, "app")
		u.append(t, "app", a, 0, "abc", 3)
		b := u.start(t, "other")
		// An orphan folder: a removal cut short after the state.
		u.putChunk(t, strings.Repeat("Z", 26), 0, "orphan")
		if n, err := u.p.ExpireUploads(u.ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
			t.Fatalf("expire of nothing old: %d, %v", n, err)
		}
		u.status(t, "app", a, 3)
		u.status(t, "other", b, 0)
		// Every file written before this cutoff is older than it.
		if n, err := u.p.ExpireUploads(u.ctx, time.Now().Add(time.Hour)); err != nil || n != 3 {
			t.Fatalf("expire: %d, %v; want 3", n, err)
		}
		u.unknown(t, "app", a)
		u.unknown(t, "other", b)
		u.noUploads(t)
	}},
	{"another publisher goes on", func(t *testing.T, u *uploadEnv) {
		// A session lives in the tree: each step through a publisher of
		// its own, as through servers that share the tree.
		id := u.start(t, "app")
		u.p = publish.New(u.st)
		u.append(t, "app", id, 0, "from one ", 9)
		u.p = publish.New(u.st)
		u.status(t, "app", id, 9)
		u.finish(t, "app", id, "to another", "from one to another")
	}},
	{"racing appends", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "app")
		u.append(t, "app", id, 0, "head ", 5)
		const n = 4
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := u.p.AppendUpload(u.ctx, "app", id, 5, strings.NewReader(fmt.Sprintf("racer%d", i)), 0)
				errs <- err
			}()
		}
		won := 0
		for range n {
			switch err := <-errs; {
			case err == nil:
				won++
			case !errors.Is(err, publish.ErrUploadRange):
				t.Errorf("a losing append: %v; want ErrUploadRange", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d appends at the same offset won, want 1", won)
		}
		u.status(t, "app", id, 11)
		// On a bucket, a loser may have overwritten the winner's chunk:
		// finishing then fails, and nothing is visible. Either way the
		// session ends cleanly.
		finished := false
		for i := range n {
			_, err := u.p.FinishUpload(u.ctx, "app", id, digest.FromString(fmt.Sprintf("head racer%d", i)), nil, 0)
			if err == nil {
				finished = true
				break
			}
			if !errors.Is(err, publish.ErrDigestMismatch) {
				t.Fatal(err)
			}
		}
		if _, locks := u.st.(publish.LockSink); locks && !finished {
			t.Fatal("the session holds none of the racers' chunks")
		}
		if !finished {
			if err := u.p.CancelUpload(u.ctx, "app", id); err != nil {
				t.Fatal(err)
			}
		}
		u.noUploads(t)
	}},
	{"unknown id", func(t *testing.T, u *uploadEnv) {
		for _, id := range []string{strings.Repeat("A", 26), "", "short", "../../../heron-layout.json", "AAAAAAAAAAAAAAAAAAAAAA/../../x"} {
			u.unknown(t, "app", id)
		}
	}},
	{"another repository", func(t *testing.T, u *uploadEnv) {
		id := u.start(t, "mine")
		u.append(t, "mine", id, 0, "abc", 3)
		u.unknown(t, "yours", id)
		u.status(t, "mine", id, 3)
		u.finish(t, "mine", id, "", "abc")
	}},
	{"invalid repository", func(t *testing.T, u *uploadEnv) {
		if _, err := u.p.StartUpload(u.ctx, "../x"); !errors.Is(err, layout.ErrInvalidName) {
			t.Fatalf("start in ../x: %v; want ErrInvalidName", err)
		}
	}},
}

func runUploadCases(t *testing.T, open func(t *testing.T, i int) publish.Sink) {
	for i, tc := range uploadCases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newTree(t, open(t, i)))
		})
	}
}

func TestUploadFS(t *testing.T) {
	runUploadCases(t, func(t *testing.T, _ int) publish.Sink {
		return publish.NewFSSink(layout.Root(t.TempDir()))
	})
}

func TestUploadBucket(t *testing.T) {
	srv := s3test.Start(t)
	runUploadCases(t, func(t *testing.T, i int) publish.Sink {
		st, err := s3store.Open(context.Background(), srv.URL(fmt.Sprintf("tree%d", i)), s3store.Options{
			Endpoint:    srv.Endpoint,
			Region:      s3test.Region,
			Credentials: srv.Credentials(),
			PartSize:    s3store.MinPartSize,
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// sessionLocks lists the lock files of the tree at root but those a
// publisher keeps for good: of the repository file of name (a finished
// upload lists its blob there) and of the catalog index.
func sessionLocks(t *testing.T, root, name string) []string {
	t.Helper()
	keep := map[string]bool{}
	repoKey, err := layout.RepositoryKey(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{repoKey, layout.CatalogIndexKey()} {
		lk, err := layout.LockKey(k)
		if err != nil {
			t.Fatal(err)
		}
		keep[path.Base(lk)] = true
	}
	ents, err := os.ReadDir(layout.Root(root).Path(".heron/locks"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !keep[e.Name()] {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestUploadFSLeavesNoLocks checks that a finished or cancelled session
// leaves no lock file behind: lock files are otherwise never removed, and
// a busy registry starts many sessions.
func TestUploadFSLeavesNoLocks(t *testing.T) {
	root := t.TempDir()
	u := newTree(t, publish.NewFSSink(layout.Root(root)))
	a := u.start(t, "app")
	u.append(t, "app", a, 0, "abc", 3)
	u.finish(t, "app", a, "def", "abcdef")
	b := u.start(t, "app")
	u.append(t, "app", b, 0, "abc", 3)
	if err := u.p.CancelUpload(u.ctx, "app", b); err != nil {
		t.Fatal(err)
	}
	if locks := sessionLocks(t, root, "app"); len(locks) != 0 {
		t.Fatalf("%d lock files left: %v", len(locks), locks)
	}
	if ents, err := os.ReadDir(layout.Root(root).Path(layout.UploadsDirKey())); err != nil || len(ents) != 0 {
		t.Fatalf("uploads folder: %d entries, %v", len(ents), err)
	}
}

// TestUploadFSMovesOneChunk checks that on a file system the one chunk of
// a session becomes the blob by a rename (the same file), not a copy,
// and that a session of two chunks is copied.
func TestUploadFSMovesOneChunk(t *testing.T) {
	root := layout.Root(t.TempDir())
	u := newTree(t, publish.NewFSSink(root))
	inode := func(key string) uint64 {
		t.Helper()
		fi, err := os.Stat(root.Path(key))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	for _, chunks := range [][]string{{"a whole layer"}, {"two ", "chunks"}} {
		id := u.start(t, "app")
		var off int64
		var ino []uint64
		for _, c := range chunks {
			u.append(t, "app", id, off, c, off+int64(len(c)))
			key, _ := layout.UploadChunkKey(id, off)
			ino = append(ino, inode(key))
			off += int64(len(c))
		}
		content := strings.Join(chunks, "")
		u.finish(t, "app", id, "", content)
		key, _ := layout.BlobKey(digest.FromString(content))
		if moved := inode(key) == ino[0]; moved != (len(chunks) == 1) {
			t.Errorf("%d chunks: the blob is the first chunk's file: %v", len(chunks), moved)
		}
		if fi, err := os.Stat(root.Path(key)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("blob %s: %v, %v; want mode 0644", key, fi.Mode(), err)
		}
	}
	u.noUploads(t)
}

// TestUploadHashState checks the SHA-256 state a session keeps: it is
// the hash of every byte appended so far, across chunks, and a session
// without one (begun by a server that did not keep it) is finished by
// reading its chunk, with the same verdicts.
func TestUploadHashState(t *testing.T) {
	root := layout.Root(t.TempDir())
	u := newTree(t, publish.NewFSSink(root))
	id := u.start(t, "app")
	stateKey, _ := layout.UploadStateKey(id)
	readState := func() map[string]any {
		t.Helper()
		b, err := os.ReadFile(root.Path(stateKey))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	content := ""
	for _, c := range []string{"one ", "two ", "three"} {
		u.append(t, "app", id, int64(len(content)), c, int64(len(content)+len(c)))
		content += c
		enc, _ := readState()["sha256"].(string)
		raw, err := base64.StdEncoding.DecodeString(enc)
		if err != nil || len(raw) == 0 {
			t.Fatalf("after %q: sha256 state %q, %v", content, enc, err)
		}
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(raw); err != nil {
			t.Fatal(err)
		}
		if got := digest.NewDigest(digest.SHA256, h); got != digest.FromString(content) {
			t.Fatalf("after %q: the state hashes to %s, want %s", content, got, digest.FromString(content))
		}
	}
	u.finish(t, "app", id, "", content)

	// One chunk, its state without a hash: read and verified.
	id = u.start(t, "app")
	stateKey, _ = layout.UploadStateKey(id)
	u.append(t, "app", id, 0, "no hash", 7)
	m := readState()
	delete(m, "sha256")
	b, _ := json.Marshal(m)
	if err := os.WriteFile(root.Path(stateKey), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := u.p.FinishUpload(u.ctx, "app", id, digest.FromString("no HASH"), nil, 0); !errors.Is(err, publish.ErrDigestMismatch) {
		t.Fatalf("finish with a wrong digest: %v; want ErrDigestMismatch", err)
	}
	u.noBlob(t, digest.FromString("no HASH"))
	// A chunk changed under a session without a hash is found out.
	chunkKey, _ := layout.UploadChunkKey(id, 0)
	if err := os.WriteFile(root.Path(chunkKey), []byte("no HASH"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := u.p.FinishUpload(u.ctx, "app", id, digest.FromString("no hash"), nil, 0); !errors.Is(err, publish.ErrDigestMismatch) {
		t.Fatalf("finish of a changed chunk: %v; want ErrDigestMismatch", err)
	}
	u.noBlob(t, digest.FromString("no hash"))
	if err := os.WriteFile(root.Path(chunkKey), []byte("no hash"), 0o644); err != nil {
		t.Fatal(err)
	}
	u.finish(t, "app", id, "", "no hash")
	u.noUploads(t)
}

// TestUploadGC checks that gc removes the sessions idle for longer than
// its grace period, and only those.
func TestUploadGC(t *testing.T) {
	root := t.TempDir()
	u := newTree(t, publish.NewFSSink(layout.Root(root)))
	old := u.start(t, "app")
	u.append(t, "app", old, 0, "abc", 3)
	past := time.Now().Add(-2 * time.Hour)
	for _, name := range []string{"state.json", "00000000000000000000"} {
		if err := os.Chtimes(layout.Root(root).Path(layout.UploadsDirKey()+"/"+old+"/"+name), past, past); err != nil {
			t.Fatal(err)
		}
	}
	young := u.start(t, "app")
	u.append(t, "app", young, 0, "abc", 3)
	res, err := u.p.GC(u.ctx, publish.GCOptions{Grace: time.Hour, DryRun: true})
	if err != nil || res.Uploads != 1 {
		t.Fatalf("gc --dry-run: %+v, %v; want 1 upload", res, err)
	}
	u.status(t, "app", old, 3)
	res, err = u.p.GC(u.ctx, publish.GCOptions{Grace: time.Hour})
	if err != nil || res.Uploads != 1 {
		t.Fatalf("gc: %+v, %v; want 1 upload", res, err)
	}
	u.unknown(t, "app", old)
	u.status(t, "app", young, 3)
}

// errCut is the error of a writer cut short (killed) in a test.
var errCut = errors.New("cut short")

// cutSink is a file-system store whose deletes fail once left of them
// have succeeded: a writer killed part-way through removing a session.
type cutSink struct {
	*publish.FSSink
	left int
}

func (c *cutSink) Delete(ctx context.Context, key string) error {
	if c.left == 0 {
		return errCut
	}
	c.left--
	return c.FSSink.Delete(ctx, key)
}

// TestUploadRemovalCutShort checks that a session whose cancel or finish
// was cut short after any number of its deletes is removed whole by
// ExpireUploads (heron gc): its files and its lock file. A removal that
// deleted the session's files, then died before deleting its lock file,
// left a lock file nothing named any more, which gc never found.
func TestUploadRemovalCutShort(t *testing.T) {
	for _, finish := range []bool{false, true} {
		for n := 0; ; n++ {
			root := t.TempDir()
			fs := publish.NewFSSink(layout.Root(root))
			u := newTree(t, fs)
			id := u.start(t, "app")
			u.append(t, "app", id, 0, "abc", 3)
			u.append(t, "app", id, 3, "def", 6)
			cut := publish.New(&cutSink{FSSink: fs, left: n})
			var err error
			if finish {
				_, err = cut.FinishUpload(u.ctx, "app", id, digest.FromString("abcdef"), nil, 0)
			} else {
				err = cut.CancelUpload(u.ctx, "app", id)
			}
			if err != nil && !errors.Is(err, errCut) {
				t.Fatalf("finish %v, cut after %d deletes: %v", finish, n, err)
			}
			if _, err := u.p.ExpireUploads(u.ctx, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			u.noUploads(t)
			if locks := sessionLocks(t, root, "app"); len(locks) != 0 {
				t.Fatalf("finish %v, cut after %d deletes, then ExpireUploads: %d lock file(s) left", finish, n, len(locks))
			}
			if err == nil {
				break
			}
		}
	}
}
