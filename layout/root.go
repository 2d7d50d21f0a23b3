package layout

import (
	"path/filepath"
)

// Root is the directory a tree lives in. Its methods turn keys into
// file-system paths; this is the only place where that happens.
type Root string

// Path returns the file-system path of key under the root. Keys come from
// the functions of this package, which validate what they are built from.
func (r Root) Path(key string) string {
	return filepath.Join(string(r), filepath.FromSlash(key))
}

// OSKey converts a key to the slash-separated relative path os.Root and
// io/fs expect on this system.
func OSKey(key string) string { return filepath.FromSlash(key) }
