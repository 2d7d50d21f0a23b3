package redirector

import (
	"context"
	"net/http"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// reader is what the handlers read from a tree beside the lookups of
// lookups.go: blobs, sent by the server when they are not redirected, and
// the layout marker. *tree (a folder, through an *os.Root) and *storeTree
// (a store.Store, storetree.go) implement it; the server holds one and
// never checks which.
type reader interface {
	// statBlob checks that blob d is there with the listed size, for a
	// HEAD answered without reading it.
	statBlob(ctx context.Context, d digest.Digest, size int64) error
	// sendBlob answers a GET or HEAD of blob d of the listed size with
	// its bytes (serveContent's answers: 200, 206, 304, 416), or returns
	// an error before anything is written. It never sends a whole 200 of
	// bytes that are not the blob's.
	sendBlob(w http.ResponseWriter, r *http.Request, d digest.Digest, size int64) error
	// ready checks that the tree is readable and of the layout version
	// this server reads (see Server.Ready).
	ready(ctx context.Context) error
	// close releases what the reader holds.
	close() error
}

var (
	_ reader = (*tree)(nil)
	_ reader = (*storeTree)(nil)
)

// sendBlob implements reader: the file, through http.ServeContent (which
// sends it with sendfile(2)).
func (t *tree) sendBlob(w http.ResponseWriter, r *http.Request, d digest.Digest, size int64) error {
	f, err := t.openBlob(d, size)
	if err != nil {
		// The repository lists it, so a missing file is a broken tree,
		// not an unknown blob.
		return err
	}
	defer f.Close()
	serveContent(w, r, d, f)
	return nil
}

// ready implements reader: it reads heron-layout.json.
func (t *tree) ready(context.Context) error {
	key := layout.LayoutFileKey()
	data, err := t.readFile(key, layout.MaxLayoutFileSize)
	if err != nil {
		return err
	}
	if _, err := layout.DecodeLayoutFile(data); err != nil {
		return t.fileError(key, err)
	}
	return nil
}
