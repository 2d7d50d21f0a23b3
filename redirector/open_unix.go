//go:build unix

package redirector

import (
	"os"
	"syscall"
)

// openFlags opens the tree's files without blocking: opening a named pipe
// for reading would otherwise wait for a writer, and hang the request. The
// server refuses anything but a regular file once it is open, and
// O_NONBLOCK changes nothing for reading a regular file.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK
