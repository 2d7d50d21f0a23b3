package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/heron-registry/heron/store"
)

// Compare-and-swap writes, for a sink without locks (an object store).
//
// On a sink that is a [LockSink] (a file system), every read-modify-write
// of a repository file or of the catalog holds that file's lock. A bucket
// has no lock that writers on different machines share; it has
// conditional writes ([SwapSink]): the file is read with its version (an
// ETag), changed, and written back only if it still has that version,
// else read again and changed again (every change in this package is a
// pure function of the file it reads, so applying it again to the newer
// file is right). Two publishers racing on one repository both see their
// tags in the end, and the file is always whole.
//
// What the lock also gave, and a swap does not, is one critical section
// over several files: a repository file and the catalog are then each
// changed atomically, one after the other, rather than together. The
// catalog can name a repository a moment before its file is removed, or
// list it a moment after (gc lists repository files it finds unlisted),
// and the shards a rewritten file or catalog no longer names are left for
// gc (after its grace period) rather than deleted at once, since another
// writer may have read the old file and still read them.

// ErrConflict is returned by a [SwapSink] whose file changed since it was
// read: store.ErrConflict. Publish retries; it reaches a caller only after
// maxSwapAttempts.
var ErrConflict = store.ErrConflict

// maxSwapAttempts bounds the rounds of one read-modify-write on a SwapSink
// whose file keeps changing under it (each round lost to a writer that won
// its own).
const maxSwapAttempts = 50

// swaps reports whether read-modify-writes go by compare-and-swap: the
// sink can, and has no locks.
func (p *Publisher) swaps() bool { return sinkSwaps(p.sink) }

func sinkSwaps(sink Sink) bool {
	if _, ok := sink.(LockSink); ok {
		return false
	}
	_, ok := sink.(SwapSink)
	return ok
}

// readVersion reads the small file at key, with its version when the sink
// is a SwapSink (the empty Version otherwise).
func readVersion(ctx context.Context, sink Sink, key string, max int64) ([]byte, store.Version, error) {
	if sinkSwaps(sink) {
		return sink.(SwapSink).ReadVersion(ctx, key, max)
	}
	b, err := sink.ReadFile(ctx, key, max)
	return b, "", err
}

// putFile writes the small file at key (a repository file, the catalog
// index): on a sink that swaps, only if it still has version match (the
// empty Version: only if there is none), else ErrConflict.
func (p *Publisher) putFile(ctx context.Context, key string, data []byte, match store.Version) error {
	if p.swaps() {
		_, err := p.sink.(SwapSink).PutIf(ctx, key, data, Want{MediaType: "application/json"}, match)
		return err
	}
	return p.sink.Put(ctx, key, bytes.NewReader(data), Want{MediaType: "application/json"})
}

// errStale marks an error of a read-modify-write that read a file another
// writer replaced before it was done: a shard its file named is gone.
// On a sink that swaps, the whole change is tried again.
var errStale = errors.New("read while another writer changed it")

// stale marks err, the failure to read a file (a shard) that the file
// read before it named, as errStale on a sink that swaps: the file was
// replaced in between.
func stale(sink Sink, err error) error {
	if sinkSwaps(sink) && errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %w", errStale, err)
	}
	return err
}

// swapped runs one read-modify-write, op, again while it fails with
// ErrConflict or errStale on a sink that swaps, waiting a little longer
// each time (with jitter, so that racing writers spread out). what names
// the file for the error after the last attempt.
func (p *Publisher) swapped(ctx context.Context, what string, op func() error) error {
	if !p.swaps() {
		return op()
	}
	wait := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !(errors.Is(err, ErrConflict) || errors.Is(err, errStale)) {
			return err
		}
		if attempt == maxSwapAttempts {
			return fmt.Errorf("%s: gave up after %d attempts, each lost to another writer: %w", what, attempt, err)
		}
		p.log.DebugContext(ctx, "conditional write lost, trying again", "file", what, "attempt", attempt)
		d := wait/2 + rand.N(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}
