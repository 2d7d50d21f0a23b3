//go:build unix

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/heron-registry/heron/layout"
)

// Lock implements Locker with flock(2) on the lock file layout.LockKey
// gives for key, created when missing. flock locks belong to an open file,
// so they exclude other processes and other goroutines of this one alike
// (each Lock opens the file anew), and the kernel releases them when the
// process dies, however it dies.
func (s *FS) Lock(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lk, err := layout.LockKey(key)
	if err != nil {
		return nil, err
	}
	p := s.root.Path(lk)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("create lock folder: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	fd := int(f.Fd())
	unlock := func() {
		_ = flock(fd, syscall.LOCK_UN)
		_ = f.Close()
	}
	err = flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		return unlock, nil
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		_ = f.Close()
		return nil, fmt.Errorf("flock: %w", err)
	}
	// Somebody holds it: wait in a blocking flock, which can only be
	// abandoned, not interrupted, when ctx ends.
	done := make(chan error, 1)
	go func() { done <- flock(fd, syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("flock: %w", err)
		}
		return unlock, nil
	case <-ctx.Done():
		go func() {
			<-done
			unlock()
		}()
		return nil, ctx.Err()
	}
}

// flock is syscall.Flock, retried when a signal interrupts it.
func flock(fd, how int) error {
	for {
		err := syscall.Flock(fd, how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
