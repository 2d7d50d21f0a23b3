package redirector

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
)

// The change counter (layout.ChangesKey) lets a hot request skip the stat
// that validates a cached repository file or catalog index. Writers
// increment it after every change to such a file and before they report
// the change done; the server reads it (mapped memory: no system call)
// before it stats a file, and records the value with the file's identity.
// While the counter still has that value, no signalled file has changed
// since the stat, so the cached copy is the file's, and the next request
// after a publish returns sees the new file, as with a stat per request.
//
// It is trusted for at most trustWindow after the last stat of an entry:
// a writer that does not increment it (a copy made with rsync, a tool
// other than heron, a counter file replaced under the server's mapping)
// is seen within that time, where a stat per request would see it at
// once. Without a counter file, or on a file system where a mapping is
// not shared memory (NFS, overlayfs), every use is validated by a stat.
const trustWindow = time.Second

// errCounterNotLocal is mapChanges' answer for a change counter that is
// not on a local file system (or on a system where mapping it is not
// supported): one whose mapping may not show a writer's increments, so
// the server does not trust it.
var errCounterNotLocal = errors.New("not on a local file system")

// changeSignal is the tree's change counter as the server sees it: mapped
// once it exists, looked for again (and its identity checked, so that a
// replaced counter file is mapped anew) at most once per trustWindow.
type changeSignal struct {
	t         *tree
	counter   atomic.Pointer[layout.ChangeCounter]
	nextCheck atomic.Int64 // unix nanoseconds

	mu   sync.Mutex
	id   fileIdentity // of the mapped file
	maps *mappings
}

// mappings are every mapping a changeSignal made. They are unmapped once
// the changeSignal is unreachable, when no request can be reading one.
type mappings struct {
	mu   sync.Mutex
	list []*layout.ChangeCounter
}

func newChangeSignal(t *tree) *changeSignal {
	s := &changeSignal{t: t, maps: &mappings{}}
	runtime.AddCleanup(s, func(m *mappings) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, c := range m.list {
			c.Unmap()
		}
		m.list = nil
	}, s.maps)
	return s
}

// load returns the counter, or false if the tree has none that can be
// trusted. now is the time of the request, in unix nanoseconds.
func (s *changeSignal) load(now int64) (uint64, bool) {
	if now >= s.nextCheck.Load() {
		s.check(now)
	}
	c := s.counter.Load()
	if c == nil {
		return 0, false
	}
	return c.Load(), true
}

// check maps the counter if it is there and not mapped yet, or mapped
// from a file since replaced; it drops it if it is gone.
func (s *changeSignal) check(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now < s.nextCheck.Load() {
		return
	}
	s.nextCheck.Store(now + int64(trustWindow))
	if s.counter.Load() != nil {
		// Mapped already: one stat tells whether it is still the file.
		if id, err := s.t.identity(layout.ChangesKey()); err == nil && id.dev == s.id.dev && id.ino == s.id.ino {
			return
		}
	}
	c, id, err := s.t.mapChanges()
	if err != nil {
		s.counter.Store(nil)
		return
	}
	// Earlier mappings stay mapped: a request may still be reading one.
	s.maps.mu.Lock()
	s.maps.list = append(s.maps.list, c)
	s.maps.mu.Unlock()
	s.id = id
	s.counter.Store(c)
}
