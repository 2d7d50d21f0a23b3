package publish

import (
	"context"
	"fmt"

	"github.com/heron-registry/heron/layout"
)

// LockSink is a Sink that can make writers of the same tree, in any number
// of processes, take turns on a file: publish holds the lock of a
// repository file while it reads, changes and rewrites it, and the lock of
// catalog/index.json while it changes the catalog, so that no concurrent
// update is lost.
//
// Every read-modify-write in this package applies a change that is a pure
// function of the file it read, so that a sink without locks (an object
// store) can implement the same guarantee later with a compare-and-swap on
// the file, re-applying the change when the file changed under it.
//
// A sink that is not a LockSink gets no coordination: one writer at a time
// is then the caller's business.
type LockSink interface {
	Sink
	// Lock waits until it holds the exclusive lock of key (the key of the
	// file to protect, such as repositories/<name>.json), or until ctx
	// ends. unlock releases it; it must be called exactly once. A lock is
	// not reentrant: taking it again before unlocking waits forever. A
	// writer that dies holding a lock must not keep it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// lock takes the lock of key when the sink has locks; otherwise it returns
// a no-op unlock.
func (p *Publisher) lock(ctx context.Context, key string) (func(), error) {
	ls, ok := p.sink.(LockSink)
	if !ok {
		return func() {}, nil
	}
	unlock, err := ls.Lock(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	return unlock, nil
}

// lockRepository takes the lock of name's repository file.
func (p *Publisher) lockRepository(ctx context.Context, name string) (func(), error) {
	key, err := layout.RepositoryKey(name)
	if err != nil {
		return nil, err
	}
	return p.lock(ctx, key)
}

// lockCatalog takes the lock of the catalog. A writer that needs both takes
// the catalog's lock before any repository's.
func (p *Publisher) lockCatalog(ctx context.Context) (func(), error) {
	return p.lock(ctx, layout.CatalogIndexKey())
}

// signalIfRecent is called, under the lock of key, by a read-modify-write
// that found nothing to change: it calls the sink's SignalIfRecent when the
// sink is a ChangeSignaller.
func (p *Publisher) signalIfRecent(ctx context.Context, key string) error {
	if cs, ok := p.sink.(ChangeSignaller); ok {
		return cs.SignalIfRecent(ctx, key)
	}
	return nil
}
