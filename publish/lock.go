package publish

import (
	"context"
	"fmt"

	"github.com/heron-registry/heron/layout"
)

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
