//go:build !linux

package redirector

// readBeneath is Linux's; elsewhere readFile opens through the tree's
// *os.Root.
func (t *tree) readBeneath(key string, limit int64) (data []byte, id fileIdentity, err error, ok bool) {
	return nil, fileIdentity{}, nil, false
}

// readsIdentity reports whether readFileID knows the identity of what it
// reads: not here.
func (t *tree) readsIdentity() bool { return false }
