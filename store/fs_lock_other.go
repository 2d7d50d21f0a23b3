//go:build !unix

package store

import (
	"context"
	"sync"

	"github.com/heron-registry/heron/layout"
)

// processLocks holds one channel per lock path; without flock(2), locks
// exclude the goroutines of this process only.
var processLocks sync.Map // string → chan struct{}

// Lock implements Locker. On systems without flock(2) it excludes the
// writers of this process only: run one heron publish at a time there.
func (s *FS) Lock(ctx context.Context, key string) (func(), error) {
	lk, err := layout.LockKey(key)
	if err != nil {
		return nil, err
	}
	v, _ := processLocks.LoadOrStore(s.root.Path(lk), make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
