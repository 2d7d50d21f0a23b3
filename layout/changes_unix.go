//go:build unix

package layout

import (
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ChangeCounter is the change counter (ChangesKey) mapped into memory,
// shared with every process that maps the same file.
type ChangeCounter struct {
	mem  []byte
	word *uint64
}

// MapChangeCounter maps the change counter's file, open as f (read-write
// if writable), of at least ChangesFileSize bytes. The mapping outlives f.
func MapChangeCounter(f *os.File, writable bool) (*ChangeCounter, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() < ChangesFileSize {
		return nil, fmt.Errorf("%s: not a change counter (%d bytes, %v)", f.Name(), fi.Size(), fi.Mode().Type())
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, ChangesFileSize, prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("%s: map: %w", f.Name(), err)
	}
	// The mapping starts on a page, so the word is aligned for atomic
	// access.
	return &ChangeCounter{mem: mem, word: (*uint64)(unsafe.Pointer(&mem[0]))}, nil
}

// bigEndian is true on machines that store a uint64's most significant
// byte first: the counter is little-endian in the file.
var bigEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 0 }()

// Load returns the counter.
func (c *ChangeCounter) Load() uint64 {
	v := atomic.LoadUint64(c.word)
	if bigEndian {
		v = bits.ReverseBytes64(v)
	}
	return v
}

// Increment adds one to the counter, atomically with respect to every
// other process that increments it.
func (c *ChangeCounter) Increment() {
	if !bigEndian {
		atomic.AddUint64(c.word, 1)
		return
	}
	for {
		old := atomic.LoadUint64(c.word)
		if atomic.CompareAndSwapUint64(c.word, old, bits.ReverseBytes64(bits.ReverseBytes64(old)+1)) {
			return
		}
	}
}

// Unmap releases the mapping; c must not be used after.
func (c *ChangeCounter) Unmap() error { return unix.Munmap(c.mem) }
