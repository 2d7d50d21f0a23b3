package source

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// tarIndex knows where each regular file of a tar archive starts, so that a
// file is read straight from the archive (an io.SectionReader) rather than
// by scanning it again. Building it reads every header, which also finds a
// truncated archive before anything is published.
type tarIndex struct {
	f       *os.File
	entries map[string]*tarEntry
}

type tarEntry struct {
	typ    byte
	offset int64
	size   int64
	link   string
}

// maxTarLinks bounds how many links are followed to find a file.
const maxTarLinks = 16

func scanTar(p string) (_ *tarIndex, err error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no such file: %w", ErrNotFound)
		}
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	idx := &tarIndex{f: f, entries: map[string]*tarEntry{}}
	seen := map[string]bool{} // entry names, true for a folder
	// archive/tar skips the data of each entry with Seek when it can, so
	// scanning reads headers only. After Next, the file's offset is where
	// the entry's data starts.
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the tar (truncated, or not a tar?): %w", err)
		}
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		if hdr.Size > fi.Size()-off {
			return nil, fmt.Errorf("truncated tar: entry %s ends past the end of the file: %w", hdr.Name, io.ErrUnexpectedEOF)
		}
		name, err := tarEntryName(hdr)
		if err != nil {
			return nil, err
		}
		if name == "" {
			continue // the archive's root folder, "./"
		}
		if wasDir, ok := seen[name]; ok && !(wasDir && hdr.Typeflag == tar.TypeDir) {
			// Readers disagree on which of two entries is the file (tar
			// extracts the last, ggcr's tarball package reads the first).
			return nil, fmt.Errorf("tar entry %s appears twice in the archive", name)
		}
		seen[name] = hdr.Typeflag == tar.TypeDir
		switch hdr.Typeflag {
		case tar.TypeReg: // archive/tar turns the old TypeRegA into TypeReg
			for k := range hdr.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					return nil, fmt.Errorf("tar entry %s: sparse files are not supported", hdr.Name)
				}
			}
			idx.entries[name] = &tarEntry{typ: tar.TypeReg, offset: off, size: hdr.Size}
		case tar.TypeLink:
			idx.entries[name] = &tarEntry{typ: tar.TypeLink, link: cleanTarName(hdr.Linkname)}
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			idx.entries[name] = &tarEntry{typ: tar.TypeSymlink, link: cleanTarName(target)}
		case tar.TypeGNUSparse:
			return nil, fmt.Errorf("tar entry %s: sparse files are not supported", hdr.Name)
		}
	}
	// The end-of-archive marker was read; anything after it is ignored, as
	// tar does.
	return idx, nil
}

// tarEntryName returns the clean name of an entry ("" for the archive's
// root folder) after checking that the entry and its link, if it is one,
// stay inside the archive: a name or a link that is absolute or climbs out
// with ".." is refused, as tar refuses to extract it.
func tarEntryName(hdr *tar.Header) (string, error) {
	if hdr.Name == "" {
		return "", errors.New("tar entry with an empty name")
	}
	if err := insideArchive(hdr.Name); err != nil {
		return "", fmt.Errorf("tar entry %q: %w", hdr.Name, err)
	}
	name := cleanTarName(hdr.Name)
	switch hdr.Typeflag {
	case tar.TypeLink:
		if err := insideArchive(hdr.Linkname); err != nil {
			return "", fmt.Errorf("tar entry %q, a hard link to %q: %w", hdr.Name, hdr.Linkname, err)
		}
	case tar.TypeSymlink:
		if path.IsAbs(hdr.Linkname) {
			return "", fmt.Errorf("tar entry %q, a symbolic link to %q: the link is absolute, it leads out of the archive", hdr.Name, hdr.Linkname)
		}
		if t := path.Join(path.Dir(name), hdr.Linkname); t == ".." || strings.HasPrefix(t, "../") {
			return "", fmt.Errorf("tar entry %q, a symbolic link to %q: it leads out of the archive", hdr.Name, hdr.Linkname)
		}
	}
	return name, nil
}

// insideArchive refuses a name that is absolute or has a ".." element.
func insideArchive(n string) error {
	if path.IsAbs(n) {
		return errors.New("the name is absolute, it leads out of the archive")
	}
	for elem := range strings.SplitSeq(n, "/") {
		if elem == ".." {
			return errors.New(`the name has a ".." element, it leads out of the archive`)
		}
	}
	return nil
}

func cleanTarName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// open returns a reader of the named file's bytes and its size.
func (t *tarIndex) open(name string) (io.ReadCloser, int64, error) {
	e, err := t.locate(name)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(io.NewSectionReader(t.f, e.offset, e.size)), e.size, nil
}

// locate returns the entry of the regular file name is, following links.
func (t *tarIndex) locate(name string) (*tarEntry, error) {
	name = cleanTarName(name)
	for range maxTarLinks {
		e, ok := t.entries[name]
		if !ok {
			return nil, fmt.Errorf("%s is not in the archive: %w", name, ErrNotFound)
		}
		if e.typ == tar.TypeReg {
			return e, nil
		}
		name = e.link
	}
	return nil, fmt.Errorf("%s: too many links", name)
}

func (t *tarIndex) close() error { return t.f.Close() }

// ociArchive is a tar of an OCI image layout.
type ociArchive struct{ *tarIndex }

func openOCIArchive(p string) (blobStore, error) {
	t, err := scanTar(p)
	if err != nil {
		return nil, err
	}
	if _, ok := t.entries["index.json"]; !ok {
		_ = t.close()
		return nil, errors.New("not an OCI archive: no index.json")
	}
	return ociArchive{t}, nil
}

func (a ociArchive) indexJSON() ([]byte, error) {
	rc, n, err := a.open("index.json")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if n > maxIndexJSONSize {
		return nil, fmt.Errorf("larger than %d bytes", maxIndexJSONSize)
	}
	return io.ReadAll(rc)
}

func (a ociArchive) openBlob(d digest.Digest) (io.ReadCloser, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, err
	}
	return a.open("blobs/" + string(d.Algorithm()) + "/" + d.Encoded())
}
