//go:build !linux

package redirector

import "os"

// identitySupported reports whether tree.identity works on this system;
// where it does not, repository files and the catalog index are not
// cached (manifests and catalog shards still are).
const identitySupported = false

type identityDir struct{}

func openIdentityDir(*os.Root) (identityDir, error) { return identityDir{}, nil }

func (identityDir) close() error { return nil }

func (t *tree) identity(string) (fileIdentity, error) { return fileIdentity{}, errNotRegular }
