package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxIndexJSONSize bounds the index.json of a source layout.
const maxIndexJSONSize = 16 << 20

// blobStore is the part of an OCI image layout a source needs: its
// index.json and its blobs. A folder (read with ggcr's layout package) and
// a tar archive both provide it.
type blobStore interface {
	indexJSON() ([]byte, error)
	// openBlob opens blobs/<alg>/<hex>; a missing blob is ErrNotFound.
	openBlob(d digest.Digest) (io.ReadCloser, int64, error)
	close() error
}

// layoutSource is a Source over an OCI image layout, in a folder or a tar.
type layoutSource struct {
	spec   string
	ref    string
	opener func(context.Context) (blobStore, error)

	mu    sync.Mutex
	store blobStore
	root  ocispec.Descriptor
}

func (s *layoutSource) String() string { return s.spec }

func (s *layoutSource) open(ctx context.Context) (blobStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	st, err := s.opener(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.spec, err)
	}
	s.store = st
	return st, nil
}

func (s *layoutSource) Resolve(ctx context.Context) (ocispec.Descriptor, error) {
	st, err := s.open(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	b, err := st.indexJSON()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: index.json: %w", s.spec, err)
	}
	if len(b) > maxIndexJSONSize {
		return ocispec.Descriptor{}, fmt.Errorf("%s: index.json is larger than %d bytes", s.spec, maxIndexJSONSize)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: index.json: %w", s.spec, err)
	}
	d, err := selectManifest(idx.Manifests, s.ref)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", s.spec, err)
	}
	return d, nil
}

func (s *layoutSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	st, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	rc, _, err := st.openBlob(desc.Digest)
	if err != nil {
		return nil, err
	}
	return rc, nil
}

func (s *layoutSource) Stat(ctx context.Context, desc ocispec.Descriptor) (int64, error) {
	st, err := s.open(ctx)
	if err != nil {
		return 0, err
	}
	rc, n, err := st.openBlob(desc.Digest)
	if err != nil {
		return 0, err
	}
	_ = rc.Close()
	return n, nil
}

func (s *layoutSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		return nil
	}
	err := s.store.close()
	s.store = nil
	return err
}

// selectManifest picks the entry of index.json that ref names: by its
// org.opencontainers.image.ref.name annotation, or by digest. Without ref,
// the only entry.
func selectManifest(ds []ocispec.Descriptor, ref string) (ocispec.Descriptor, error) {
	if len(ds) == 0 {
		return ocispec.Descriptor{}, errors.New("index.json lists no manifest")
	}
	if ref == "" {
		if len(ds) == 1 {
			return ds[0], nil
		}
		return ocispec.Descriptor{}, fmt.Errorf("index.json lists %d manifests, name one with :REF: %s", len(ds), describeEntries(ds))
	}
	var found []ocispec.Descriptor
	for _, d := range ds {
		if d.Annotations[ocispec.AnnotationRefName] == ref || string(d.Digest) == ref {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return ocispec.Descriptor{}, fmt.Errorf("no manifest named %q in index.json; it lists: %s", ref, describeEntries(ds))
	}
	if found[0].Digest == found[1].Digest {
		return found[0], nil
	}
	return ocispec.Descriptor{}, fmt.Errorf("%d manifests are named %q in index.json", len(found), ref)
}

func describeEntries(ds []ocispec.Descriptor) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		s := string(d.Digest)
		if n := d.Annotations[ocispec.AnnotationRefName]; n != "" {
			s = n + " (" + s + ")"
		}
		if p := d.Platform; p != nil {
			s += " [" + p.OS + "/" + p.Architecture
			if p.Variant != "" {
				s += "/" + p.Variant
			}
			s += "]"
		}
		parts[i] = s
	}
	return strings.Join(parts, ", ")
}

// ociDir is an OCI image layout folder. Its files are opened through an
// os.Root, so that no symbolic link, of a file or of a folder, leads out of
// the layout: a blob is the layout's, whatever digest it has. A file is
// checked to be a regular file before it is opened (opening a named pipe
// would wait for a writer) and index.json is checked for size before it is
// read.
type ociDir struct {
	root *os.Root
}

func openOCIDir(dir string) (blobStore, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	if _, err := root.Lstat("index.json"); err != nil {
		_ = root.Close()
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	return &ociDir{root: root}, nil
}

// openFile opens the regular file at the slash-separated name and returns
// its size.
func (o *ociDir) openFile(name string) (*os.File, int64, error) {
	osName := filepath.FromSlash(name)
	fi, err := o.root.Stat(osName)
	if err != nil {
		return nil, 0, layoutFileError(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	f, err := o.root.Open(osName)
	if err != nil {
		return nil, 0, layoutFileError(err)
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		_ = f.Close()
		return nil, 0, fmt.Errorf("changed while it was opened")
	}
	return f, fi.Size(), nil
}

// layoutFileError says why a file of a layout cannot be opened.
func layoutFileError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Err.Error() == "path escapes from parent" {
		return fmt.Errorf("a symbolic link leads out of the layout (%w)", err)
	}
	return err
}

func (o *ociDir) indexJSON() ([]byte, error) {
	f, n, err := o.openFile("index.json")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if n > maxIndexJSONSize {
		return nil, fmt.Errorf("%d bytes, larger than the %d allowed", n, maxIndexJSONSize)
	}
	return io.ReadAll(io.LimitReader(f, maxIndexJSONSize+1))
}

func (o *ociDir) openBlob(d digest.Digest) (io.ReadCloser, int64, error) {
	return o.openBlobFile(d)
}

// openBlobFile opens blobs/<alg>/<hex>.
func (o *ociDir) openBlobFile(d digest.Digest) (*os.File, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, err
	}
	return o.openFile(path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()))
}

func (o *ociDir) close() error { return o.root.Close() }
