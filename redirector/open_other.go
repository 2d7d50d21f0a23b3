//go:build !unix

package redirector

import "os"

// openFlags opens the tree's files for reading.
const openFlags = os.O_RDONLY
