package auth

import (
	"bufio"
	"bytes"
	"container/list"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// users is a parsed htpasswd file: user name -> bcrypt hash.
type users struct {
	hash map[string][]byte
	cost int // of the first entry: the cost of the dummy hash for unknown users
}

// parseHtpasswd reads an htpasswd file of bcrypt entries (htpasswd -B).
// Blank lines and lines starting with # are skipped.
func parseHtpasswd(file string, data []byte) (*users, error) {
	u := &users{hash: map[string][]byte{}, cost: bcrypt.DefaultCost}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("htpasswd file %s: line %d: expected user:hash", file, n)
		}
		if _, dup := u.hash[name]; dup {
			return nil, fmt.Errorf("htpasswd file %s: line %d: user %s: listed twice", file, n, name)
		}
		if !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$") {
			return nil, fmt.Errorf("htpasswd file %s: line %d: user %s: only bcrypt hashes are accepted (htpasswd -B)", file, n, name)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("htpasswd file %s: line %d: user %s: malformed bcrypt hash: %v", file, n, name, err)
		}
		if first {
			u.cost, first = cost, false
		}
		u.hash[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd file %s: %w", file, err)
	}
	return u, nil
}

// Bounds of the cache of verified credentials.
const (
	credCacheSize = 4096
	credCacheTTL  = 10 * time.Minute
)

// credCache remembers verified credentials for a while, so that a client
// sending basic credentials with every request pays bcrypt's cost once.
// The key is a SHA-256 of the user, the password and the stored hash: a
// new password (a new hash) is a different key, so nothing needs to be
// invalidated; and the password is not kept in memory in clear. Failures
// are not cached.
type credCache = ttlCache[struct{}]

func newCredCache(size int, ttl time.Duration) *credCache {
	return newTTLCache[struct{}](size, ttl)
}

// ttlCache is a bounded map of SHA-256 keys to values that expire, the
// least recently used entry going first when it is full.
type ttlCache[V any] struct {
	mu      sync.Mutex
	entries map[[32]byte]*list.Element
	order   *list.List // front = most recently used
	size    int
	ttl     time.Duration
}

type ttlEntry[V any] struct {
	key     [32]byte
	val     V
	expires time.Time
}

func newTTLCache[V any](size int, ttl time.Duration) *ttlCache[V] {
	return &ttlCache[V]{entries: map[[32]byte]*list.Element{}, order: list.New(), size: size, ttl: ttl}
}

func credKey(user, password string, hash []byte) [32]byte {
	h := sha256.New()
	// Lengths first, so that no two triples share an encoding.
	fmt.Fprintf(h, "%d:%d:%d:", len(user), len(password), len(hash))
	h.Write([]byte(user))
	h.Write([]byte(password))
	h.Write(hash)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *ttlCache[V]) get(k [32]byte, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	e, ok := c.entries[k]
	if !ok {
		return zero, false
	}
	te := e.Value.(*ttlEntry[V])
	if !now.Before(te.expires) {
		c.order.Remove(e)
		delete(c.entries, k)
		return zero, false
	}
	c.order.MoveToFront(e)
	return te.val, true
}

func (c *ttlCache[V]) hit(k [32]byte, now time.Time) bool {
	_, ok := c.get(k, now)
	return ok
}

// add keeps k until now+ttl.
func (c *ttlCache[V]) add(k [32]byte, now time.Time) { c.put(k, *new(V), now, time.Time{}) }

// put keeps v until now+ttl, or until the earlier time until when given.
func (c *ttlCache[V]) put(k [32]byte, v V, now, until time.Time) {
	expires := now.Add(c.ttl)
	if !until.IsZero() && until.Before(expires) {
		expires = until
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		te := e.Value.(*ttlEntry[V])
		te.val, te.expires = v, expires
		c.order.MoveToFront(e)
		return
	}
	c.entries[k] = c.order.PushFront(&ttlEntry[V]{key: k, val: v, expires: expires})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*ttlEntry[V]).key)
	}
}

func (c *ttlCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// dummyHashes holds one bcrypt hash per cost, compared against when the
// user is unknown so that an unknown user takes as long as a wrong
// password.
var dummyHashes sync.Map // int -> []byte

func dummyHash(cost int) []byte {
	if h, ok := dummyHashes.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("heron: no such user"), cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword([]byte("heron: no such user"), bcrypt.DefaultCost)
	}
	dummyHashes.Store(cost, h)
	return h
}
