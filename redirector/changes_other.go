//go:build !linux

package redirector

import "github.com/heron-registry/heron/layout"

// mapChanges is not supported here: without tree.identity, repository
// files are not cached at all.
func (t *tree) mapChanges() (*layout.ChangeCounter, fileIdentity, error) {
	return nil, fileIdentity{}, errCounterNotLocal
}
