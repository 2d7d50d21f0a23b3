// Package storetest is the suite that every store.Store implementation
// passes, as distribution's storage-driver test suites hold every driver
// to one contract: each implementation's tests call [Run] with a
// constructor of empty stores.
//
// The suite checks what the writer and the reader rely on: a put is
// atomic (a reader sees the old content or all of the new one), content
// that fails verification (or whose reader fails) leaves nothing, staged
// content is invisible until committed, large content survives being cut
// into parts, ranges, listing, conditional writes (exactly one of
// racing writers wins), and that every missing key is store.ErrNotFound.
// The subtests of a capability run only when the store has it, and say
// so when it does not.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// PartSizer is a store that writes content larger than a part size in
// parts (a multipart upload): the suite then writes content of several
// parts, and of a part and a byte.
type PartSizer interface {
	PartSize() int64
}

// timeout bounds each subtest.
const timeout = time.Minute

// Run runs the suite. newStore must return a new, empty store each time
// it is called (a t.TempDir(), a fresh prefix of a bucket); it is called
// from subtests that run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutRead", testPutRead},
		{"Delete", testDelete},
		{"AtomicPut", testAtomicPut},
		{"VerifyFailure", testVerifyFailure},
		{"Stage", testStage},
		{"Large", testLarge},
		{"Open", testOpen},
		{"Ranges", testRanges},
		{"Stat", testStat},
		{"List", testList},
		{"Swap", testSwap},
		{"SwapRace", testSwapRace},
		{"Missing", testMissing},
		{"DeleteIfOlder", testDeleteIfOlder},
		{"Empty", testEmpty},
		{"SignURL", testSignURL},
	}
	// The group returns once its parallel subtests are done, so that a
	// caller may check what they left behind after Run.
	t.Run("group", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, newStore(t))
			})
		}
	})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s store.Store, key string, content []byte) {
	t.Helper()
	if err := s.Put(ctxFor(t), key, bytes.NewReader(content), store.Want{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func wantOf(content []byte) store.Want {
	return store.Want{Digest: digest.FromBytes(content), Size: int64(len(content))}
}

// read returns the content of key (with Open when the store has it, so
// that large content is read as a stream), or nil and the error.
func read(t *testing.T, s store.Store, key string) ([]byte, error) {
	t.Helper()
	ctx := ctxFor(t)
	if o, ok := s.(store.Opener); ok {
		rc, err := o.Open(ctx, key)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	return s.ReadFile(ctx, key, 1<<30)
}

// mustRead fails the test unless key holds want. It compares as it reads
// (with Open when the store has it), so that large content is not copied
// whole once more.
func mustRead(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	ctx := ctxFor(t)
	var r io.Reader
	if o, ok := s.(store.Opener); ok {
		rc, err := o.Open(ctx, key)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		defer rc.Close()
		r = rc
	} else {
		b, err := s.ReadFile(ctx, key, 1<<30)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		r = bytes.NewReader(b)
	}
	buf := make([]byte, 64<<10)
	var off int
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if off+n > len(want) || !bytes.Equal(buf[:n], want[off:off+n]) {
				t.Fatalf("read %s: bytes %d to %d differ from the %d bytes written (%.40q…)", key, off, off+n, len(want), want)
			}
			off += n
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
	}
	if off != len(want) {
		t.Fatalf("read %s: %d bytes, want %d (%.40q…)", key, off, len(want), want)
	}
}

// mustMiss fails the test unless key does not exist (store.ErrNotFound).
func mustMiss(t *testing.T, s store.Store, key string) {
	t.Helper()
	if b, err := s.ReadFile(ctxFor(t), key, 1<<30); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("read %s: %d bytes, error %v; want store.ErrNotFound", key, len(b), err)
	}
	if st, ok := s.(store.Stater); ok {
		if info, err := st.Stat(ctxFor(t), key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("stat %s: %+v, error %v; want store.ErrNotFound", key, info, err)
		}
	}
}

// keys lists every key of the store (but the writers' state, .heron/),
// or returns false when the store cannot list.
func keys(t *testing.T, s store.Store) ([]string, bool) {
	t.Helper()
	l, ok := s.(store.Lister)
	if !ok {
		return nil, false
	}
	var out []string
	err := l.List(ctxFor(t), "", func(key string, _ store.Info) error {
		if !strings.HasPrefix(key, ".heron/") {
			out = append(out, key)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return out, true
}

// mustHold fails the test unless the store holds exactly want (when it
// can list): nothing a failed write left behind.
func mustHold(t *testing.T, s store.Store, want ...string) {
	t.Helper()
	got, ok := keys(t, s)
	if !ok {
		return
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the store holds %q, want %q", got, want)
	}
}

func need[T any](t *testing.T, s store.Store, what string) T {
	t.Helper()
	c, ok := s.(T)
	if !ok {
		t.Skipf("%T is not a store.%s", s, what)
	}
	return c
}

// random returns n reproducible pseudo-random bytes.
func random(n int64, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// largeSize is the size of content written in several parts: two parts
// and a half for a store that writes parts (a part and a fifth under the
// race detector), else 3 MiB.
func largeSize(s store.Store) int64 {
	if p, ok := s.(PartSizer); ok {
		if raceEnabled {
			return p.PartSize() + p.PartSize()/5
		}
		return 2*p.PartSize() + p.PartSize()/2
	}
	return 3 << 20
}

const blobKey = "blobs/sha256/0a0b"

func testPutRead(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	put(t, s, "repositories/lib/alpine.json", []byte(`{"name":"lib/alpine"}`))
	mustRead(t, s, "repositories/lib/alpine.json", []byte(`{"name":"lib/alpine"}`))
	b, err := s.ReadFile(ctx, "repositories/lib/alpine.json", 100)
	if err != nil || string(b) != `{"name":"lib/alpine"}` {
		t.Fatalf("ReadFile: %q %v", b, err)
	}
	// Replacing.
	put(t, s, "repositories/lib/alpine.json", []byte(`{"name":"lib/alpine","tags":{}}`))
	mustRead(t, s, "repositories/lib/alpine.json", []byte(`{"name":"lib/alpine","tags":{}}`))
	// Larger than allowed: an error, but not "not found".
	if b, err := s.ReadFile(ctx, "repositories/lib/alpine.json", 5); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadFile with max 5: %q, error %v; want a size error", b, err)
	}
	// Exactly the limit is allowed.
	if _, err := s.ReadFile(ctx, "repositories/lib/alpine.json", int64(len(`{"name":"lib/alpine","tags":{}}`))); err != nil {
		t.Errorf("ReadFile with max = size: %v", err)
	}
	// Verified content, and empty content.
	content := []byte("a verified blob")
	if err := s.Put(ctx, blobKey, bytes.NewReader(content), wantOf(content)); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, blobKey, content)
	if err := s.Put(ctx, "blobs/sha256/empty", bytes.NewReader(nil), wantOf(nil)); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, "blobs/sha256/empty", []byte{})
	// A media type is kept by stores that keep one, and checked by none.
	if err := s.Put(ctx, "blobs/sha256/manifest", strings.NewReader("{}"), store.Want{Digest: digest.FromString("{}"), Size: 2,
		MediaType: "application/vnd.oci.image.manifest.v1+json"}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, s, "blobs/sha256/manifest", []byte("{}"))
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	put(t, s, "a/b/c", []byte("c"))
	put(t, s, "a/b/d", []byte("d"))
	if err := s.Delete(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, s, "a/b/c")
	mustRead(t, s, "a/b/d", []byte("d"))
	if err := s.Delete(ctx, "a/b/c"); err != nil {
		t.Errorf("deleting a deleted key: %v", err)
	}
	if err := s.Delete(ctx, "never/was"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	mustHold(t, s, "a/b/d")
}

// testAtomicPut reads a key while a Put of it is half-way through its
// content (the writer holds the rest back): the reader must see the old
// content (or nothing, for a new key), then all of the new one.
func testAtomicPut(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		name string
		size int64
		old  bool
	}{
		{"small new key", 4 << 10, false},
		{"small replacing", 4 << 10, true},
		{"large replacing", largeSize(s), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxFor(t)
			key := "blobs/sha256/" + strings.ReplaceAll(tc.name, " ", "-")
			old := []byte("the old content")
			if tc.old {
				put(t, s, key, old)
			}
			content := random(tc.size, 1)
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() { done <- s.Put(ctx, key, pr, wantOf(content)) }()
			half := int64(len(content)) / 2
			if _, err := pw.Write(content[:half]); err != nil {
				t.Fatal(err)
			}
			// The writer has taken the first half; whatever it did with
			// it, a reader must not see it.
			for range 3 {
				got, err := read(t, s, key)
				switch {
				case !tc.old && errors.Is(err, store.ErrNotFound):
				case err != nil:
					t.Fatalf("read during the put: %v", err)
				case !tc.old || !bytes.Equal(got, old):
					t.Fatalf("read during the put: %d bytes, want the old content", len(got))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := pw.Write(content[half:]); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			mustRead(t, s, key, content)
		})
	}
}

type failingReader struct{}

var errReaderFailed = errors.New("the reader failed")

func (failingReader) Read([]byte) (int, error) { return 0, errReaderFailed }

// testVerifyFailure writes content that does not match what it should be
// (or whose reader fails), with Put and with Stage, to a new key and over
// an existing one: the write fails and leaves the store as it was.
func testVerifyFailure(t *testing.T, s store.Store) {
	type writeFn func(ctx context.Context, key string, r io.Reader, want store.Want) error
	writers := []struct {
		name  string
		write writeFn
	}{{"Put", s.Put}}
	if sg, ok := s.(store.Stager); ok {
		writers = append(writers, struct {
			name  string
			write writeFn
		}{"Stage", func(ctx context.Context, key string, r io.Reader, want store.Want) error {
			st, err := sg.Stage(ctx, key, r, want)
			if err == nil {
				_ = st.Abort()
				return errors.New("Stage succeeded")
			}
			return err
		}})
	} else {
		t.Logf("%T is not a store.Stager: Put only", s)
	}
	small := []byte("hello, heron")
	large := random(largeSize(s), 2)
	type failure struct {
		name    string
		content []byte
		r       func() io.Reader
		is      error
	}
	failures := func(content []byte) []failure {
		n := len(content)
		other := bytes.Clone(content)
		other[n-1] ^= 1
		return []failure{
			{"other bytes", content, func() io.Reader { return bytes.NewReader(other) }, store.ErrDigestMismatch},
			{"too long", content, func() io.Reader { return io.MultiReader(bytes.NewReader(content), strings.NewReader("!")) }, store.ErrSizeMismatch},
			{"too short", content, func() io.Reader { return bytes.NewReader(content[:n-1]) }, store.ErrSizeMismatch},
			{"reader fails", content, func() io.Reader { return io.MultiReader(bytes.NewReader(content[:n-1]), failingReader{}) }, errReaderFailed},
		}
	}
	cases := failures(small)
	for _, f := range failures(large) {
		if f.name == "other bytes" || f.name == "reader fails" {
			f.name = "large " + f.name
			cases = append(cases, f)
		}
	}
	for _, w := range writers {
		for _, f := range cases {
			for _, existing := range []bool{false, true} {
				if existing && raceEnabled && len(f.content) == len(large) {
					continue // the small content checks it, at less cost
				}
				name := w.name + "/" + f.name
				if existing {
					name += " over existing"
				}
				t.Run(name, func(t *testing.T) {
					ctx := ctxFor(t)
					key := "blobs/sha256/" + strings.NewReplacer("/", "-", " ", "-").Replace(name)
					old := []byte("old")
					if existing {
						put(t, s, key, old)
					}
					err := w.write(ctx, key, f.r(), wantOf(f.content))
					if !errors.Is(err, f.is) {
						t.Fatalf("error %v, want %v", err, f.is)
					}
					var verr *store.VerifyError
					if f.is != errReaderFailed && !errors.As(err, &verr) {
						t.Errorf("error %T (%v) is not a *store.VerifyError", err, err)
					}
					if existing {
						mustRead(t, s, key, old)
					} else {
						mustMiss(t, s, key)
					}
				})
			}
		}
	}
	// Every write above failed: nothing but the old content is left.
	t.Run("nothing left", func(t *testing.T) {
		got, ok := keys(t, s)
		if !ok {
			t.Skipf("%T is not a store.Lister", s)
		}
		for _, k := range got {
			if b, err := s.ReadFile(ctxFor(t), k, 1<<20); err != nil || string(b) != "old" {
				t.Errorf("%s: %d bytes (%v): left by a failed write", k, len(b), err)
			}
		}
	})
}

func testStage(t *testing.T, s store.Store) {
	sg := need[store.Stager](t, s, "Stager")
	for _, size := range []int64{10, 2 << 20, largeSize(s)} {
		t.Run(fmt.Sprintf("%d bytes", size), func(t *testing.T) {
			ctx := ctxFor(t)
			content := random(size, 3)
			key := fmt.Sprintf("blobs/sha256/staged-%d", size)
			st, err := sg.Stage(ctx, key, bytes.NewReader(content), wantOf(content))
			if err != nil {
				t.Fatal(err)
			}
			mustMiss(t, s, key)
			if err := st.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			mustRead(t, s, key, content)
			if err := st.Commit(ctx); err != nil {
				t.Errorf("a second Commit: %v", err)
			}
			if err := st.Abort(); err != nil {
				t.Errorf("Abort after Commit: %v", err)
			}
			mustRead(t, s, key, content)

			aborted := key + "-aborted"
			st, err = sg.Stage(ctx, aborted, bytes.NewReader(content), wantOf(content))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := st.Abort(); err != nil {
				t.Errorf("a second Abort: %v", err)
			}
			mustMiss(t, s, aborted)
		})
	}
	t.Run("several, then commit", func(t *testing.T) {
		ctx := ctxFor(t)
		var staged []store.Staged
		for i := range 5 {
			c := []byte(fmt.Sprint("content ", i))
			st, err := sg.Stage(ctx, fmt.Sprint("several/", i), bytes.NewReader(c), wantOf(c))
			if err != nil {
				t.Fatal(err)
			}
			staged = append(staged, st)
		}
		for i := range 5 {
			mustMiss(t, s, fmt.Sprint("several/", i))
		}
		for _, st := range staged {
			if err := st.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 5 {
			mustRead(t, s, fmt.Sprint("several/", i), []byte(fmt.Sprint("content ", i)))
		}
	})
}

// testLarge writes content of several parts, and at the edges of a part.
func testLarge(t *testing.T, s store.Store) {
	sizes := []int64{largeSize(s)}
	if p, ok := s.(PartSizer); ok {
		sizes = append(sizes, p.PartSize(), p.PartSize()+1)
		if !raceEnabled {
			sizes = append(sizes, 2*p.PartSize())
		}
	} else {
		t.Logf("%T does not write in parts (no PartSize): one large size only", s)
	}
	for i, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			content := random(size, uint64(10+i))
			key := fmt.Sprintf("blobs/sha256/large-%d", size)
			// A reader that returns little at a time, as a network does.
			r := &chunkReader{r: bytes.NewReader(content), n: 100 << 10}
			if err := s.Put(ctxFor(t), key, r, wantOf(content)); err != nil {
				t.Fatal(err)
			}
			mustRead(t, s, key, content)
			if st, ok := s.(store.Stater); ok {
				info, err := st.Stat(ctxFor(t), key)
				if err != nil || info.Size != size || info.Dir {
					t.Errorf("stat: %+v, %v", info, err)
				}
			}
		})
	}
}

type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func testOpen(t *testing.T, s store.Store) {
	o := need[store.Opener](t, s, "Opener")
	ctx := ctxFor(t)
	content := random(100<<10, 4)
	put(t, s, blobKey, content)
	rc, err := o.Open(ctx, blobKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("open: %d bytes, %v", len(got), err)
	}
	if _, err := o.Open(ctx, "blobs/sha256/missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("open of a missing key: %v", err)
	}
}

func testRanges(t *testing.T, s store.Store) {
	ro := need[store.RangeOpener](t, s, "RangeOpener")
	content := []byte(strings.Repeat("0123456789", 10))
	put(t, s, blobKey, content)
	for _, tc := range []struct {
		off, n int64
		want   string
	}{
		{0, -1, string(content)},
		{0, 100, string(content)},
		{0, 1, "0"},
		{10, 5, "01234"},
		{99, 1, "9"},
		{95, 10, "56789"},
		{42, -1, string(content[42:])},
		{100, 5, ""},
		{100, -1, ""},
		{150, -1, ""},
		{150, 10, ""},
		{0, 0, ""},
		{10, 0, ""},
	} {
		t.Run(fmt.Sprintf("%d+%d", tc.off, tc.n), func(t *testing.T) {
			rc, err := ro.OpenRange(ctxFor(t), blobKey, tc.off, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q (%v), want %q", got, err, tc.want)
			}
		})
	}
	for _, n := range []int64{-1, 0, 5} {
		if _, err := ro.OpenRange(ctxFor(t), "blobs/sha256/missing", 10, n); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("range 10+%d of a missing key: %v", n, err)
		}
	}
}

func testStat(t *testing.T, s store.Store) {
	st := need[store.Stater](t, s, "Stater")
	ctx := ctxFor(t)
	before := time.Now()
	put(t, s, "repositories/a.json/b.json", []byte("the file of repository a.json/b"))
	put(t, s, blobKey, []byte("12345"))
	after := time.Now()
	info, err := st.Stat(ctx, blobKey)
	if err != nil {
		t.Fatal(err)
	}
	// Object stores keep whole seconds.
	if info.Size != 5 || info.Dir || info.ModTime.Before(before.Add(-2*time.Second)) || info.ModTime.After(after.Add(2*time.Second)) {
		t.Errorf("stat of a file: %+v (written between %v and %v)", info, before, after)
	}
	// A folder: what publish checks before it writes repositories/a.json.
	for _, dir := range []string{"repositories/a.json", "repositories", "blobs/sha256"} {
		info, err := st.Stat(ctx, dir)
		if err != nil || !info.Dir {
			t.Errorf("stat of the folder %s: %+v, %v", dir, info, err)
		}
	}
	for _, missing := range []string{"repositories/a", "repositories/a.js", "blobs/sha256/0a0", "nope"} {
		if info, err := st.Stat(ctx, missing); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("stat of %s: %+v, %v; want store.ErrNotFound", missing, info, err)
		}
	}
}

func testList(t *testing.T, s store.Store) {
	l := need[store.Lister](t, s, "Lister")
	// Keys whose lexical order is also the order of the folders that hold
	// them (which a file system walks): the order is checked exactly.
	all := []string{
		"blobs/sha256/0a",
		"blobs/sha256/1b",
		"blobs/sha256/ff",
		"blobs/sha512/00",
		"catalog/index.json",
		"catalog/shards/aa.json",
		"heron-layout.json",
		"repositories/lib/alpine.json",
		"repositories/lib/busybox.json",
		"repositories/zed.json",
	}
	before := time.Now()
	for i, k := range slices.Backward(all) {
		put(t, s, k, bytes.Repeat([]byte("x"), i+1))
	}
	list := func(prefix string) []string {
		t.Helper()
		var got []string
		err := l.List(ctxFor(t), prefix, func(key string, info store.Info) error {
			if strings.HasPrefix(key, ".heron/") {
				return nil
			}
			if i := slices.Index(all, key); i < 0 || info.Size != int64(i+1) || info.Dir ||
				info.ModTime.Before(before.Add(-2*time.Second)) || info.ModTime.After(time.Now().Add(2*time.Second)) {
				t.Errorf("list %q: %s %+v", prefix, key, info)
			}
			got = append(got, key)
			return nil
		})
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		return got
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"blobs", all[:4]},
		{"blobs/sha256", all[:3]},
		{"catalog", all[4:6]},
		{"repositories", all[7:]},
		{"repositories/lib", all[7:9]},
		{"nope", nil},
		{"blob", nil},            // a prefix is a folder, not the start of a name
		{"repositories/li", nil}, // likewise
	} {
		if got := list(tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("list %q: %q, want %q", tc.prefix, got, tc.want)
		}
	}
	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	err := l.List(ctxFor(t), "blobs", func(string, store.Info) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 2 {
		t.Errorf("list stopped by fn: %v after %d calls", err, calls)
	}
}

func testSwap(t *testing.T, s store.Store) {
	sw := need[store.Swapper](t, s, "Swapper")
	ctx := ctxFor(t)
	const key = "repositories/lib/alpine.json"
	// A new key: only if there is none.
	v1, err := sw.PutIf(ctx, key, []byte("one"), store.Want{}, "")
	if err != nil || v1 == "" {
		t.Fatalf("PutIf of a new key: %q, %v", v1, err)
	}
	b, v, err := sw.ReadVersion(ctx, key, 100)
	if err != nil || string(b) != "one" || v != v1 {
		t.Fatalf("ReadVersion: %q %q %v; want %q", b, v, err, v1)
	}
	if _, err := sw.PutIf(ctx, key, []byte("again"), store.Want{}, ""); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutIf \"\" of an existing key: %v, want store.ErrConflict", err)
	}
	mustRead(t, s, key, []byte("one"))
	// Replacing the version read.
	v2, err := sw.PutIf(ctx, key, []byte("two"), store.Want{}, v1)
	if err != nil || v2 == "" || v2 == v1 {
		t.Fatalf("PutIf of the current version: %q, %v (was %q)", v2, err, v1)
	}
	// A stale version.
	if _, err := sw.PutIf(ctx, key, []byte("three"), store.Want{}, v1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutIf of a stale version: %v, want store.ErrConflict", err)
	}
	mustRead(t, s, key, []byte("two"))
	// Conditional reads.
	if b, _, err := sw.ReadIfChanged(ctx, key, 100, v2); !errors.Is(err, store.ErrNotModified) || b != nil {
		t.Errorf("ReadIfChanged of the current version: %q, %v; want store.ErrNotModified", b, err)
	}
	if b, v, err := sw.ReadIfChanged(ctx, key, 100, v1); err != nil || string(b) != "two" || v != v2 {
		t.Errorf("ReadIfChanged of an old version: %q %q %v", b, v, err)
	}
	if b, v, err := sw.ReadIfChanged(ctx, key, 100, ""); err != nil || string(b) != "two" || v != v2 {
		t.Errorf("ReadIfChanged of no version: %q %q %v", b, v, err)
	}
	// A version of a key that is gone.
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := sw.PutIf(ctx, key, []byte("four"), store.Want{}, v2); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutIf of a deleted key's version: %v, want store.ErrConflict", err)
	}
	mustMiss(t, s, key)
	if _, _, err := sw.ReadVersion(ctx, key, 100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadVersion of a missing key: %v", err)
	}
	if _, _, err := sw.ReadIfChanged(ctx, key, 100, v2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadIfChanged of a missing key: %v", err)
	}
	// Verified like Put.
	c := []byte("verified")
	w := wantOf(c)
	if _, err := sw.PutIf(ctx, key, []byte("not that one"), w, ""); !errors.Is(err, store.ErrSizeMismatch) {
		t.Errorf("PutIf of content that is not what it should be: %v", err)
	}
	mustMiss(t, s, key)
	if _, err := sw.PutIf(ctx, key, c, w, ""); err != nil {
		t.Errorf("PutIf verified: %v", err)
	}
	// Too large to read.
	if _, _, err := sw.ReadVersion(ctx, key, 3); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadVersion with max 3: %v; want a size error", err)
	}
}

// testSwapRace has writers read the same version and write it back at
// once: exactly one wins, the others get store.ErrConflict, and the key
// holds the winner's content.
func testSwapRace(t *testing.T, s store.Store) {
	sw := need[store.Swapper](t, s, "Swapper")
	ctx := ctxFor(t)
	const key = "catalog/index.json"
	for round := range 5 {
		var base store.Version
		if round > 0 {
			_, v, err := sw.ReadVersion(ctx, key, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			base = v
		}
		const writers = 4
		var wg sync.WaitGroup
		versions := make([]store.Version, writers)
		errs := make([]error, writers)
		start := make(chan struct{})
		for i := range writers {
			wg.Go(func() {
				<-start
				versions[i], errs[i] = sw.PutIf(ctx, key, []byte(fmt.Sprintf("round %d writer %d", round, i)), store.Want{}, base)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both won", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrConflict):
				t.Fatalf("round %d: writer %d: %v, want store.ErrConflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		b, v, err := sw.ReadVersion(ctx, key, 1<<20)
		if err != nil || string(b) != fmt.Sprintf("round %d writer %d", round, winner) || v != versions[winner] {
			t.Fatalf("round %d: the key holds %q (%q, %v), writer %d won with %q", round, b, v, err, winner, versions[winner])
		}
	}
}

func testMissing(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	put(t, s, "blobs/sha256/there", []byte("x"))
	for _, key := range []string{"blobs/sha256/missing", "repositories/nope.json", "blobs/sha256/ther"} {
		mustMiss(t, s, key)
		if o, ok := s.(store.Opener); ok {
			if _, err := o.Open(ctx, key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("open %s: %v", key, err)
			}
		}
		if ro, ok := s.(store.RangeOpener); ok {
			if _, err := ro.OpenRange(ctx, key, 0, 10); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("open range of %s: %v", key, err)
			}
		}
		if sw, ok := s.(store.Swapper); ok {
			if _, _, err := sw.ReadVersion(ctx, key, 10); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("read version of %s: %v", key, err)
			}
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("delete %s: %v", key, err)
		}
		if e, ok := s.(store.Expirer); ok {
			if deleted, err := e.DeleteIfOlder(ctx, key, time.Now().Add(time.Hour)); deleted || err != nil {
				t.Errorf("delete if older %s: %v, %v", key, deleted, err)
			}
		}
	}
	if l, ok := s.(store.Lister); ok {
		if err := l.List(ctx, "nope", func(k string, _ store.Info) error { return fmt.Errorf("listed %s", k) }); err != nil {
			t.Errorf("list of a missing prefix: %v", err)
		}
	}
}

func testDeleteIfOlder(t *testing.T, s store.Store) {
	e := need[store.Expirer](t, s, "Expirer")
	ctx := ctxFor(t)
	put(t, s, blobKey, []byte("x"))
	if deleted, err := e.DeleteIfOlder(ctx, blobKey, time.Now().Add(-time.Hour)); deleted || err != nil {
		t.Fatalf("delete if older than an hour ago: %v, %v", deleted, err)
	}
	mustRead(t, s, blobKey, []byte("x"))
	if deleted, err := e.DeleteIfOlder(ctx, blobKey, time.Now().Add(time.Hour)); !deleted || err != nil {
		t.Fatalf("delete if older than an hour from now: %v, %v", deleted, err)
	}
	mustMiss(t, s, blobKey)
	if deleted, err := e.DeleteIfOlder(ctx, blobKey, time.Now().Add(time.Hour)); deleted || err != nil {
		t.Fatalf("delete if older of a deleted key: %v, %v", deleted, err)
	}
}

func testEmpty(t *testing.T, s store.Store) {
	e := need[store.Emptier](t, s, "Emptier")
	ctx := ctxFor(t)
	if empty, err := e.Empty(ctx); !empty || err != nil {
		t.Fatalf("a new store: empty %v, %v", empty, err)
	}
	put(t, s, "some/thing", []byte("x"))
	if empty, err := e.Empty(ctx); empty || err != nil {
		t.Fatalf("a store with a key: empty %v, %v", empty, err)
	}
}

func testSignURL(t *testing.T, s store.Store) {
	sg := need[store.Signer](t, s, "Signer")
	ctx := ctxFor(t)
	content := []byte("a blob served by the store itself")
	put(t, s, blobKey, content)
	get, err := sg.SignURL(ctx, http.MethodGet, blobKey, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	head, err := sg.SignURL(ctx, http.MethodHead, blobKey, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, url string, body io.Reader) (int, []byte, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header
	}
	if code, b, _ := do(http.MethodGet, get, nil); code != http.StatusOK || !bytes.Equal(b, content) {
		t.Errorf("GET of the signed URL: %d %q", code, b)
	}
	if code, _, h := do(http.MethodHead, head, nil); code != http.StatusOK || h.Get("Content-Length") != fmt.Sprint(len(content)) {
		t.Errorf("HEAD of the signed URL: %d, Content-Length %q", code, h.Get("Content-Length"))
	}
	// A signature is for one method and one key.
	if code, _, _ := do(http.MethodPut, get, strings.NewReader("overwritten")); code < 400 {
		t.Errorf("PUT with the GET URL: %d", code)
	}
	if code, _, _ := do(http.MethodDelete, get, nil); code < 400 {
		t.Errorf("DELETE with the GET URL: %d", code)
	}
	mustRead(t, s, blobKey, content)
	if _, err := sg.SignURL(ctx, http.MethodPut, blobKey, time.Minute); err == nil {
		t.Errorf("a signed PUT URL")
	}
	// A missing key signs (signing sends nothing) and is not found.
	missing, err := sg.SignURL(ctx, http.MethodGet, "blobs/sha256/missing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, _ := do(http.MethodGet, missing, nil); code != http.StatusNotFound {
		t.Errorf("GET of a missing key's signed URL: %d", code)
	}
}
