//go:build !linux

package redirector

// readBeneath is Linux's; elsewhere readFile opens through the tree's
// *os.Root.
func (t *tree) readBeneath(key string, limit int64) (data []byte, err error, ok bool) {
	return nil, nil, false
}
