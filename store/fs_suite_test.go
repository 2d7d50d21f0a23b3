package store_test

import (
	"testing"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/heron-registry/heron/store/storetest"
)

// TestFSSuite holds FS to the contract every store passes.
func TestFSSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewFS(layout.Root(t.TempDir())) })
}
