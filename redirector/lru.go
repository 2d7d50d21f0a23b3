package redirector

import "sync"

// cacheBudget is the memory bound the server's caches share: the total
// weight (an approximate size in bytes) of the entries of every lru made
// with it. When an entry takes the total over the bound, the least
// recently used entries are dropped, whichever cache they are in, so that
// the memory goes to what the traffic asks for: repository files under a
// pull load, catalog shards under a crawl of /v2/_catalog. One lock guards
// the budget and all its lrus.
type cacheBudget struct {
	mu        sync.Mutex
	maxWeight int64
	weight    int64
	// clock counts uses of entries; each entry records the tick of its
	// last use, so that the least recently used entry of all the lrus is
	// the one whose tick is smallest.
	clock   uint64
	members []budgetMember
}

// budgetMember is an lru, seen by the budget it shares.
type budgetMember interface {
	// oldest returns the tick of the last use of the lru's least
	// recently used entry, or false when it is empty.
	oldest() (uint64, bool)
	// dropOldest drops that entry.
	dropOldest()
}

// newCacheBudget returns a budget of maxWeight (positive).
func newCacheBudget(maxWeight int64) *cacheBudget {
	return &cacheBudget{maxWeight: maxWeight}
}

// tick returns the next tick of the clock; b.mu is held.
func (b *cacheBudget) tick() uint64 {
	b.clock++
	return b.clock
}

// shrink drops the least recently used entries of all the members until
// the total weight is within the bound; b.mu is held.
func (b *cacheBudget) shrink() {
	for b.weight > b.maxWeight {
		var victim budgetMember
		var first uint64
		for _, m := range b.members {
			if t, ok := m.oldest(); ok && (victim == nil || t < first) {
				victim, first = m, t
			}
		}
		if victim == nil {
			return
		}
		victim.dropOldest()
	}
}

// lru is a map bounded by a number of entries and, with the other lrus of
// its budget, by a total weight; it drops the least recently used entries
// to stay within both. It is safe for concurrent use.
type lru[K comparable, V any] struct {
	budget     *cacheBudget // its mu guards this lru too
	maxEntries int
	weight     int64 // of this lru's entries
	items      map[K]*lruItem[K, V]
	// root is the sentinel of a circular list of the items, the most
	// recently used first.
	root lruItem[K, V]
}

type lruItem[K comparable, V any] struct {
	key        K
	value      V
	weight     int64
	used       uint64 // the budget's tick of its last use
	prev, next *lruItem[K, V]
}

// newLRU returns an empty lru of at most maxEntries entries weighing at
// most maxWeight in all, with a budget of its own; both must be positive.
func newLRU[K comparable, V any](maxEntries int, maxWeight int64) *lru[K, V] {
	return newLRUIn[K, V](maxEntries, newCacheBudget(maxWeight))
}

// newLRUIn returns an empty lru of at most maxEntries (positive) entries
// that shares budget b.
func newLRUIn[K comparable, V any](maxEntries int, b *cacheBudget) *lru[K, V] {
	c := &lru[K, V]{budget: b, maxEntries: maxEntries, items: map[K]*lruItem[K, V]{}}
	c.root.prev, c.root.next = &c.root, &c.root
	b.mu.Lock()
	b.members = append(b.members, c)
	b.mu.Unlock()
	return c
}

// get returns the value of k and marks it as the most recently used.
func (c *lru[K, V]) get(k K) (V, bool) {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	it, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	it.used = c.budget.tick()
	if c.root.next != it {
		c.unlink(it)
		c.pushFront(it)
	}
	return it.value, true
}

// peek returns the value of k without marking it as used.
func (c *lru[K, V]) peek(k K) (V, bool) {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	it, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return it.value, true
}

// add stores v under k, replacing what k held, and evicts the least
// recently used entries (of this lru for the entries bound, of all the
// budget's lrus for the weight) until the bounds hold again. A value
// heavier than the whole budget is not stored (and k is dropped).
func (c *lru[K, V]) add(k K, v V, weight int64) {
	b := c.budget
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := c.items[k]; ok {
		c.drop(old)
	}
	if weight > b.maxWeight {
		return
	}
	it := &lruItem[K, V]{key: k, value: v, weight: weight, used: b.tick()}
	c.items[k] = it
	c.pushFront(it)
	c.weight += weight
	b.weight += weight
	for len(c.items) > c.maxEntries {
		c.drop(c.root.prev)
	}
	b.shrink()
}

// remove drops k.
func (c *lru[K, V]) remove(k K) {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	if it, ok := c.items[k]; ok {
		c.drop(it)
	}
}

// size returns the number of entries and their total weight.
func (c *lru[K, V]) size() (int, int64) {
	c.budget.mu.Lock()
	defer c.budget.mu.Unlock()
	return len(c.items), c.weight
}

func (c *lru[K, V]) oldest() (uint64, bool) {
	if len(c.items) == 0 {
		return 0, false
	}
	return c.root.prev.used, true
}

func (c *lru[K, V]) dropOldest() { c.drop(c.root.prev) }

func (c *lru[K, V]) drop(it *lruItem[K, V]) {
	c.unlink(it)
	delete(c.items, it.key)
	c.weight -= it.weight
	c.budget.weight -= it.weight
}

func (c *lru[K, V]) unlink(it *lruItem[K, V]) {
	it.prev.next, it.next.prev = it.next, it.prev
	it.prev, it.next = nil, nil
}

func (c *lru[K, V]) pushFront(it *lruItem[K, V]) {
	it.prev, it.next = &c.root, c.root.next
	c.root.next.prev = it
	c.root.next = it
}
