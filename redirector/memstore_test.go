package redirector

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heron-registry/heron/store"
)

// memStore is a store.Store over a map, with the capabilities of a bucket
// (store.Stater, store.Swapper, store.RangeOpener, store.Signer): what the
// server does with a store that is not a folder, tested in process. The
// real bucket (store/s3 against an S3-compatible server) is tested end to
// end elsewhere.
type memStore struct {
	mu      sync.Mutex
	objects map[string]memObject
	gen     int

	// Counts of the calls the tests look at.
	readFiles, readVersions, readIfChanged, opens, stats, signs atomic.Int64
	// beforeRead, when set, runs at the start of every read of a small
	// file (ReadFile, ReadVersion, ReadIfChanged).
	beforeRead func(key string)
	// afterStat, when set, runs at the end of every Stat.
	afterStat func(key string)
	// signKey signs URLs (HMAC-SHA256 over the canonical string, like a
	// presigned S3 URL's).
	signKey []byte
}

type memObject struct {
	data    []byte
	version store.Version
}

var (
	_ store.Stater      = (*memStore)(nil)
	_ store.Swapper     = (*memStore)(nil)
	_ store.RangeOpener = (*memStore)(nil)
	_ store.Signer      = (*memStore)(nil)
)

// memBucket is the host of memStore's presigned URLs.
const memBucket = "https://bucket.example.com"

func newMemStore() *memStore {
	return &memStore{objects: map[string]memObject{}, signKey: []byte("test signing key")}
}

// memStoreOf returns a memStore holding the regular files of the tree at
// dir (symbolic links are left out: a bucket has none).
func memStoreOf(t testing.TB, dir string) *memStore {
	t.Helper()
	m := newMemStore()
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m.set(filepath.ToSlash(rel), data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// set writes key, with a new version.
func (m *memStore) set(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	m.objects[key] = memObject{data: bytes.Clone(data), version: store.Version(fmt.Sprintf(`"v%d"`, m.gen))}
}

func (m *memStore) get(key string) (memObject, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return memObject{}, fmt.Errorf("%s: %w", key, store.ErrNotFound)
	}
	return o, nil
}

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, want store.Want) error {
	var buf bytes.Buffer
	if _, err := store.CopyVerified(ctx, key, &buf, r, want); err != nil {
		return err
	}
	m.set(key, buf.Bytes())
	return nil
}

func (m *memStore) read(key string, max int64) (memObject, error) {
	if m.beforeRead != nil {
		m.beforeRead(key)
	}
	o, err := m.get(key)
	if err != nil {
		return o, err
	}
	if int64(len(o.data)) > max {
		return memObject{}, fmt.Errorf("read %s: %d bytes, more than the %d allowed", key, len(o.data), max)
	}
	return o, nil
}

func (m *memStore) ReadFile(_ context.Context, key string, max int64) ([]byte, error) {
	m.readFiles.Add(1)
	o, err := m.read(key, max)
	return o.data, err
}

func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

func (m *memStore) Stat(_ context.Context, key string) (store.Info, error) {
	m.stats.Add(1)
	o, err := m.get(key)
	if m.afterStat != nil {
		m.afterStat(key)
	}
	if err != nil {
		return store.Info{}, err
	}
	return store.Info{Size: int64(len(o.data))}, nil
}

func (m *memStore) ReadVersion(_ context.Context, key string, max int64) ([]byte, store.Version, error) {
	m.readVersions.Add(1)
	o, err := m.read(key, max)
	return o.data, o.version, err
}

func (m *memStore) ReadIfChanged(_ context.Context, key string, max int64, v store.Version) ([]byte, store.Version, error) {
	m.readIfChanged.Add(1)
	o, err := m.read(key, max)
	if err != nil {
		return nil, "", err
	}
	if o.version == v {
		return nil, "", store.ErrNotModified
	}
	return o.data, o.version, nil
}

func (m *memStore) PutIf(_ context.Context, key string, data []byte, _ store.Want, match store.Version) (store.Version, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objects[key].version != match {
		return "", store.ErrConflict
	}
	m.gen++
	v := store.Version(fmt.Sprintf(`"v%d"`, m.gen))
	m.objects[key] = memObject{data: bytes.Clone(data), version: v}
	return v, nil
}

func (m *memStore) OpenRange(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	m.opens.Add(1)
	o, err := m.get(key)
	if err != nil {
		return nil, err
	}
	data := o.data[min(offset, int64(len(o.data))):]
	if length >= 0 {
		data = data[:min(length, int64(len(data)))]
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// SignURL signs as a presigned S3 URL does, in spirit: a canonical
// string of the method, key and expiry, HMAC'ed in a chain of keys.
func (m *memStore) SignURL(_ context.Context, method, key string, expiry time.Duration) (string, error) {
	m.signs.Add(1)
	expires := strconv.FormatInt(time.Now().Add(expiry).UnixNano(), 10)
	k := m.signKey
	for _, part := range []string{"20260101", "us-east-1", "s3", "aws4_request"} {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte(part))
		k = mac.Sum(nil)
	}
	mac := hmac.New(sha256.New, k)
	fmt.Fprintf(mac, "%s\n/%s\n%s", method, key, expires)
	q := url.Values{"X-Method": {method}, "X-Expires": {expires}, "X-Signature": {hex.EncodeToString(mac.Sum(nil))}}
	return memBucket + "/" + key + "?" + q.Encode(), nil
}

// plainStore is a store.Store with OpenRange only: no Stat, no versions,
// no signatures (what the server does with a minimal store).
type plainStore struct{ m *memStore }

func (p plainStore) Put(ctx context.Context, key string, r io.Reader, want store.Want) error {
	return p.m.Put(ctx, key, r, want)
}
func (p plainStore) ReadFile(ctx context.Context, key string, max int64) ([]byte, error) {
	return p.m.ReadFile(ctx, key, max)
}
func (p plainStore) Delete(ctx context.Context, key string) error { return p.m.Delete(ctx, key) }
func (p plainStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return p.m.OpenRange(ctx, key, offset, length)
}
