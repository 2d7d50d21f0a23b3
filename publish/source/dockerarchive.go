package source

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerSelector picks one image of a `docker save` tarball.
type dockerSelector struct {
	tag   string // NAME:TAG, or ""
	index int    // @N, or -1
}

func parseDockerSelector(s string) (dockerSelector, error) {
	switch {
	case s == "":
		return dockerSelector{index: -1}, nil
	case strings.HasPrefix(s, "@"):
		n, err := strconv.Atoi(s[1:])
		if err != nil || n < 0 {
			return dockerSelector{}, fmt.Errorf("image index %q: want @N with N a number from 0", s)
		}
		return dockerSelector{index: n}, nil
	}
	if _, err := name.NewTag(s); err != nil {
		return dockerSelector{}, fmt.Errorf("image %q: %w", s, err)
	}
	return dockerSelector{tag: s, index: -1}, nil
}

// dockerArchiveSource is a `docker save` tarball, read with ggcr's tarball
// package. Such a tarball holds no registry manifest: the one ggcr builds
// from manifest.json and the config (Docker schema 2, with gzip-compressed
// layers; uncompressed layers are compressed the way ggcr does) is what is
// published.
type dockerArchiveSource struct {
	spec string
	path string
	sel  dockerSelector

	mu       sync.Mutex
	tar      *tarIndex
	desc     ocispec.Descriptor
	manifest []byte
	config   []byte
	configD  digest.Digest
	layers   map[digest.Digest]v1.Layer
}

func (s *dockerArchiveSource) String() string { return s.spec }

// sectionReadCloser lets ggcr's tar reader skip entries with Seek.
type sectionReadCloser struct{ *io.SectionReader }

func (sectionReadCloser) Close() error { return nil }

func (s *dockerArchiveSource) Resolve(ctx context.Context) (ocispec.Descriptor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tar != nil {
		return s.desc, nil
	}
	if err := ctx.Err(); err != nil {
		return ocispec.Descriptor{}, err
	}
	t, err := scanTar(s.path)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", s.spec, err)
	}
	if err := s.load(t); err != nil {
		_ = t.close()
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", s.spec, err)
	}
	s.tar = t
	return s.desc, nil
}

func (s *dockerArchiveSource) load(t *tarIndex) error {
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	opener := func() (io.ReadCloser, error) {
		return sectionReadCloser{io.NewSectionReader(t.f, 0, fi.Size())}, nil
	}
	if _, ok := t.entries["manifest.json"]; !ok {
		return fmt.Errorf("not a docker save tarball: no manifest.json")
	}
	if err := t.checkSize("manifest.json", maxArchiveJSONSize); err != nil {
		return err
	}
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	if len(m) == 0 {
		return fmt.Errorf("manifest.json lists no image")
	}
	var tag *name.Tag
	switch {
	case s.sel.tag != "":
		t, err := name.NewTag(s.sel.tag)
		if err != nil {
			return err
		}
		if !archiveHasTag(m, t) {
			return fmt.Errorf("no image tagged %s; the archive holds: %s", s.sel.tag, describeArchive(m))
		}
		tag = &t
	case s.sel.index >= 0:
		if s.sel.index >= len(m) {
			return fmt.Errorf("no image @%d; the archive holds %d: %s", s.sel.index, len(m), describeArchive(m))
		}
		tags := m[s.sel.index].RepoTags
		if len(tags) > 0 {
			t, err := name.NewTag(tags[0])
			if err != nil {
				return fmt.Errorf("image @%d: %w", s.sel.index, err)
			}
			tag = &t
		} else if len(m) > 1 {
			return fmt.Errorf("image @%d has no RepoTags, and an untagged image can only be read from an archive that holds one image", s.sel.index)
		}
	default:
		if len(m) > 1 {
			return fmt.Errorf("the archive holds %d images, name one with :NAME:TAG or :@N: %s", len(m), describeArchive(m))
		}
	}
	// ggcr reads the first image that has the tag (or the only one):
	// make sure it is the one asked for, and that its config is of a
	// size to read whole.
	chosen, err := ggcrChoice(m, tag)
	if err != nil {
		return err
	}
	if s.sel.index >= 0 && chosen != s.sel.index {
		return fmt.Errorf("image @%d is tagged %s like image @%d, which would be read in its place", s.sel.index, tag, chosen)
	}
	if n := tagCount(m, tag); s.sel.tag != "" && n > 1 {
		return fmt.Errorf("%d images are tagged %s in the archive: %s", n, tag, describeArchive(m))
	}
	if err := t.checkSize(m[chosen].Config, maxArchiveJSONSize); err != nil {
		return err
	}
	img, err := tarball.Image(opener, tag)
	if err != nil {
		return err
	}
	if s.manifest, err = img.RawManifest(); err != nil {
		return fmt.Errorf("building the manifest: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	if s.config, err = img.RawConfigFile(); err != nil {
		return err
	}
	s.configD = digest.FromBytes(s.config)
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	s.layers = map[digest.Digest]v1.Layer{}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return err
		}
		s.layers[digest.Digest(h.String())] = l
	}
	s.desc = ocispec.Descriptor{
		MediaType: string(mt),
		Digest:    digest.FromBytes(s.manifest),
		Size:      int64(len(s.manifest)),
	}
	return nil
}

// maxArchiveJSONSize bounds manifest.json and the image config of a docker
// save tarball, which are read whole.
const maxArchiveJSONSize = 16 << 20

// checkSize refuses a file of the archive larger than limit. A file that is
// not there is left to the reader to report.
func (t *tarIndex) checkSize(name string, limit int64) error {
	e, err := t.locate(name)
	if err != nil {
		return nil
	}
	if e.size > limit {
		return fmt.Errorf("%s is %d bytes, more than the %d allowed", name, e.size, limit)
	}
	return nil
}

// ggcrChoice returns the index of the image of m that ggcr's tarball
// package reads for tag: the only one without a tag, else the first
// tagged so.
func ggcrChoice(m tarball.Manifest, tag *name.Tag) (int, error) {
	if tag == nil {
		if len(m) != 1 {
			return 0, fmt.Errorf("the archive holds %d images, name one with :NAME:TAG or :@N: %s", len(m), describeArchive(m))
		}
		return 0, nil
	}
	for i, d := range m {
		for _, rt := range d.RepoTags {
			if t, err := name.NewTag(rt); err == nil && t.Name() == tag.Name() {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("no image tagged %s; the archive holds: %s", tag, describeArchive(m))
}

// tagCount is the number of images of m tagged tag (0 for no tag).
func tagCount(m tarball.Manifest, tag *name.Tag) int {
	if tag == nil {
		return 0
	}
	n := 0
	for _, d := range m {
		for _, rt := range d.RepoTags {
			if t, err := name.NewTag(rt); err == nil && t.Name() == tag.Name() {
				n++
				break
			}
		}
	}
	return n
}

func archiveHasTag(m tarball.Manifest, want name.Tag) bool {
	for _, d := range m {
		for _, rt := range d.RepoTags {
			if t, err := name.NewTag(rt); err == nil && t.Name() == want.Name() {
				return true
			}
		}
	}
	return false
}

func describeArchive(m tarball.Manifest) string {
	parts := make([]string, len(m))
	for i, d := range m {
		tags := "untagged"
		if len(d.RepoTags) > 0 {
			tags = strings.Join(d.RepoTags, " ")
		}
		parts[i] = fmt.Sprintf("@%d %s", i, tags)
	}
	return strings.Join(parts, ", ")
}

func (s *dockerArchiveSource) content(ctx context.Context, desc ocispec.Descriptor) ([]byte, v1.Layer, error) {
	if _, err := s.Resolve(ctx); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch desc.Digest {
	case s.desc.Digest:
		return s.manifest, nil, nil
	case s.configD:
		return s.config, nil, nil
	}
	if l, ok := s.layers[desc.Digest]; ok {
		return nil, l, nil
	}
	return nil, nil, ErrNotFound
}

func (s *dockerArchiveSource) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	b, l, err := s.content(ctx, desc)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return rc, nil
}

func (s *dockerArchiveSource) Stat(ctx context.Context, desc ocispec.Descriptor) (int64, error) {
	b, l, err := s.content(ctx, desc)
	if err != nil {
		return 0, err
	}
	if l == nil {
		return int64(len(b)), nil
	}
	n, err := l.Size()
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (s *dockerArchiveSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tar == nil {
		return nil
	}
	err := s.tar.close()
	s.tar = nil
	return err
}
