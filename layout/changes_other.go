//go:build !unix

package layout

import (
	"errors"
	"os"
)

// ChangeCounter is the change counter mapped into memory; systems other
// than Unix ones have no mapping: writers do not increment it and servers
// validate every use of a parsed file with a stat.
type ChangeCounter struct{}

// MapChangeCounter is not supported here.
func MapChangeCounter(f *os.File, writable bool) (*ChangeCounter, error) {
	return nil, errors.ErrUnsupported
}

// Load returns 0.
func (c *ChangeCounter) Load() uint64 { return 0 }

// Increment does nothing.
func (c *ChangeCounter) Increment() {}

// Unmap does nothing.
func (c *ChangeCounter) Unmap() error { return nil }
