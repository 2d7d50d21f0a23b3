//go:build reliability

package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tempPrefix starts the name of every temporary file heron publish writes
// (publish.FSSink): a file of that name is a leftover of an interrupted
// write, never content.
const tempPrefix = ".heron-tmp-"

// fileKind is what a file of the tree is, judged by its key alone.
type fileKind int

const (
	kindUnexpected fileKind = iota
	kindLayout
	kindBlob
	kindRepository
	kindCatalogIndex
	kindCatalogShard
	kindRepositoryShard
	kindTemp
	kindWriterState // lock files and such, which readers ignore
)

// area is where a file lives, for telling the phase a kill hit.
type area int

const (
	areaOther area = iota
	areaBlobs
	areaRepositories
	areaRepositoryShards // the shard files of a repository, and temporary files among them
	areaCatalog
)

// fileID tells two versions of a file apart without reading them.
type fileID struct {
	ino   uint64
	size  int64
	mtime int64
}

// entry is one file of a snapshot.
type entry struct {
	kind fileKind
	area area
	id   fileID
}

// snapshot is every file of a tree by key.
type snapshot map[string]entry

// classify tells the kind and area of a file by its key, using only the
// key functions of package layout (no path is spelled here).
func classify(key string) (fileKind, area) {
	base := path.Base(key)
	parts := strings.Split(key, "/")
	a := areaOther
	switch parts[0] {
	case topDir(layout.BlobsDirKey()):
		a = areaBlobs
	case topDir(layout.RepositoriesDirKey()):
		a = areaRepositories
	case topDir(layout.CatalogIndexKey()):
		a = areaCatalog
	}
	if a == areaRepositories && isShardsDir(path.Dir(key)) {
		a = areaRepositoryShards
	}
	switch {
	case parts[0] == topDir(layout.WriterStateDirKey()):
		return kindWriterState, a
	case strings.HasPrefix(base, tempPrefix):
		return kindTemp, a
	case key == layout.LayoutFileKey():
		return kindLayout, a
	case key == layout.CatalogIndexKey():
		return kindCatalogIndex, a
	}
	if _, ok := layout.DigestFromBlobKey(key); ok {
		return kindBlob, a
	}
	if _, ok := layout.RepositoryNameFromKey(key); ok {
		return kindRepository, a
	}
	if _, ok := layout.CatalogShardIDFromKey(key); ok {
		return kindCatalogShard, a
	}
	if _, _, ok := layout.RepositoryShardFromKey(key); ok {
		return kindRepositoryShard, a
	}
	return kindUnexpected, a
}

// isShardsDir reports whether dir is the folder of a repository's shard
// files (layout.RepositoryShardsDirKey), asking layout with the key a
// shard would have there.
func isShardsDir(dir string) bool {
	_, _, ok := layout.RepositoryShardFromKey(dir + "/" + strings.Repeat("0", 64) + ".json")
	return ok
}

func topDir(key string) string { return strings.Split(key, "/")[0] }

// takeSnapshot walks the tree at root.
func takeSnapshot(root string) (snapshot, error) {
	s := snapshot{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temporary file renamed or removed meanwhile
		}
		if err != nil {
			return err
		}
		e := entry{id: fileID{size: info.Size(), mtime: info.ModTime().UnixNano()}}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.id.ino = st.Ino
		}
		e.kind, e.area = classify(key)
		s[key] = e
		return nil
	})
	return s, err
}

// count returns the number of files of kind k (in area a, unless a is
// areaOther).
func (s snapshot) count(k fileKind, a area) int {
	n := 0
	for _, e := range s {
		if e.kind == k && (a == areaOther || e.area == a) {
			n++
		}
	}
	return n
}

// The phases a kill can hit, as told by what changed in the tree.
const (
	phaseBefore     = "before any write (reading the source, planning)"
	phaseCopy       = "copying blobs (temporary files only)"
	phaseRename     = "renaming blobs into place (repository file unchanged)"
	phaseShards     = "writing a repository's new shard files (repository file unchanged)"
	phaseRepository = "writing the repository file(s) (catalog unchanged)"
	phaseDropShards = "removing the shard files the new repository file no longer names"
	phaseCatalog    = "writing the catalog"
	phaseDone       = "after it had exited (published)"
	phaseConcurrent = "while another publish into the same repository ran (phase not told)"
)

var phaseOrder = []string{phaseBefore, phaseCopy, phaseRename, phaseShards, phaseRepository, phaseDropShards, phaseCatalog, phaseDone, phaseConcurrent}

// phaseOf tells the phase a killed publish was in from what it changed:
// snapshots of the tree before and after it, and the shard files the
// repository files named before (a shard file named before that is still
// there, but no longer named, was to be removed after the repository file
// was written).
func phaseOf(before snapshot, after *treeState, namedBefore map[string]bool) string {
	for key := range namedBefore {
		if _, ok := after.snap[key]; ok && !after.named[key] {
			return phaseDropShards
		}
	}
	return phaseOfFiles(before, after.snap)
}

// phaseOfFiles tells the phase from the files that changed.
func phaseOfFiles(before, after snapshot) string {
	changed := func(k fileKind, a area) bool {
		for key, e := range after {
			if e.kind != k || (a != areaOther && e.area != a) {
				continue
			}
			if old, ok := before[key]; !ok || old.id != e.id {
				return true
			}
		}
		return false
	}
	switch {
	case changed(kindCatalogIndex, areaOther) || changed(kindCatalogShard, areaOther) || changed(kindTemp, areaCatalog):
		return phaseCatalog
	case changed(kindRepository, areaOther) || changed(kindTemp, areaRepositories):
		return phaseRepository
	case changed(kindRepositoryShard, areaOther) || changed(kindTemp, areaRepositoryShards):
		return phaseShards
	case changed(kindBlob, areaOther):
		return phaseRename
	case changed(kindTemp, areaBlobs):
		return phaseCopy
	}
	return phaseBefore
}

// treeState is what the tree holds, as checkTree read it.
type treeState struct {
	snap    snapshot
	repos   map[string]*layout.Repository // with the entries of their shards
	catalog []string
	temps   int
	// named are the keys of the shard files repository files name;
	// unnamed counts the shard files none names (left by a killed
	// publish: heron verify counts them, heron gc deletes them).
	named   map[string]bool
	unnamed int
}

// blobMemo remembers the blob files whose content was checked against
// their digest: a file renamed into place is never written again, so a
// file with the same identity need not be read twice.
type blobMemo map[string]fileID

// checkedBlobs remembers, like blobMemo, the blob files checkTree read,
// with the bytes of the small ones (manifests).
type checkedBlobs map[string]checkedBlob

type checkedBlob struct {
	id  fileID
	raw []byte
}

// checkTree reads the whole tree at root the way `heron verify --deep`
// should, independently of it: the layout marker; every file is of a kind
// the layout defines (or a temporary file, or writer state); every
// repository file parses, names itself, every shard file it names is there
// and verifies (its id, its kind, its range and count as the file says,
// and the repository whole is valid), and every manifest and blob it
// lists is in blobs/ with the listed size and matching its digest, with
// every manifest's references listed; the catalog index and shards parse
// and verify, and name only repositories that exist. It returns what it
// read and every problem it found.
func checkTree(root string, memo checkedBlobs) (*treeState, []string, error) {
	snap, err := takeSnapshot(root)
	if err != nil {
		return nil, nil, err
	}
	st := &treeState{snap: snap, repos: map[string]*layout.Repository{}, named: map[string]bool{}}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	rt := layout.Root(root)

	if b, err := os.ReadFile(rt.Path(layout.LayoutFileKey())); err != nil {
		bad("layout file: %v", err)
	} else if _, err := layout.DecodeLayoutFile(b); err != nil {
		bad("layout file: %v", err)
	}
	keys := make([]string, 0, len(snap))
	for k := range snap {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch snap[k].kind {
		case kindUnexpected:
			bad("%s: a file the layout does not define", k)
		case kindTemp:
			st.temps++
		}
	}

	// checkBlob verifies the file of d against d and size.
	checkBlob := func(d digest.Digest, size int64) ([]byte, error) {
		key, err := layout.BlobKey(d)
		if err != nil {
			return nil, err
		}
		e, ok := snap[key]
		if !ok {
			return nil, fmt.Errorf("%s is missing", key)
		}
		if e.id.size != size {
			return nil, fmt.Errorf("%s is %d bytes, listed as %d", key, e.id.size, size)
		}
		if c, ok := memo[key]; ok && c.id == e.id {
			return c.raw, nil
		}
		f, err := os.Open(rt.Path(key))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		v := d.Verifier()
		var small []byte
		var w io.Writer = v
		if size <= 64<<10 {
			small = make([]byte, 0, size)
			w = io.MultiWriter(v, (*appendWriter)(&small))
		}
		n, err := io.Copy(w, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if n != size || !v.Verified() {
			return nil, fmt.Errorf("%s: content does not match its digest (%d bytes)", key, n)
		}
		memo[key] = checkedBlob{id: e.id, raw: small}
		return small, nil
	}

	for _, k := range keys {
		if snap[k].kind != kindRepository {
			continue
		}
		name, _ := layout.RepositoryNameFromKey(k)
		b, err := os.ReadFile(rt.Path(k))
		if err != nil {
			bad("%s: %v", k, err)
			continue
		}
		r, err := layout.DecodeRepository(b)
		if err != nil {
			bad("%s: %v", k, err)
			continue
		}
		if r.Name != name {
			bad("%s: names repository %q", k, r.Name)
			continue
		}
		if r.HasShards() {
			for _, kind := range layout.ShardKinds {
				for _, ref := range r.Shards(kind) {
					if sk, err := layout.RepositoryShardKey(name, ref.ID); err == nil {
						st.named[sk] = true
					}
				}
			}
			err := r.LoadShards(func(id string) ([]byte, error) {
				sk, err := layout.RepositoryShardKey(name, id)
				if err != nil {
					return nil, err
				}
				if _, ok := snap[sk]; !ok {
					return nil, fmt.Errorf("%s is missing", sk)
				}
				return os.ReadFile(rt.Path(sk))
			})
			if err != nil {
				bad("%s: %v", k, err)
				continue
			}
		}
		st.repos[name] = r
		for d, m := range r.Manifests {
			raw, err := checkBlob(d, m.Size)
			if err != nil {
				bad("repository %s: manifest %s: %v", name, d, err)
				continue
			}
			for _, p := range manifestRefs(raw, m.MediaType, r) {
				bad("repository %s: manifest %s: %s", name, d, p)
			}
		}
		for d, bl := range r.Blobs {
			if !bl.IsStored() {
				continue
			}
			if _, err := checkBlob(d, bl.Size); err != nil {
				bad("repository %s: blob %s: %v", name, d, err)
			}
		}
	}

	for _, k := range keys {
		if snap[k].kind == kindRepositoryShard && !st.named[k] {
			st.unnamed++
		}
	}

	if b, err := os.ReadFile(rt.Path(layout.CatalogIndexKey())); err != nil {
		if !errors.Is(err, fs.ErrNotExist) || len(st.repos) > 0 {
			bad("catalog index: %v", err)
		}
	} else if idx, err := layout.DecodeCatalogIndex(b); err != nil {
		bad("catalog index: %v", err)
	} else {
		for _, s := range idx.Shards {
			key, _ := layout.CatalogShardKey(s.ID)
			sb, err := os.ReadFile(rt.Path(key))
			if err != nil {
				bad("catalog shard: %v", err)
				continue
			}
			names, err := layout.DecodeCatalogShard(sb, s.ID)
			if err != nil {
				bad("catalog shard: %v", err)
				continue
			}
			if len(names) != s.Count || len(names) == 0 || names[0] != s.First || names[len(names)-1] != s.Last {
				bad("catalog shard %s: holds %d names %v, the index says %d from %q to %q", s.ID, len(names), names, s.Count, s.First, s.Last)
			}
			st.catalog = append(st.catalog, names...)
		}
		for i, n := range st.catalog {
			if i > 0 && st.catalog[i-1] >= n {
				bad("catalog: %q and %q are not in order", st.catalog[i-1], n)
			}
			if _, ok := st.repos[n]; !ok {
				bad("catalog: names repository %s, which has no repository file", n)
			}
		}
	}
	return st, problems, nil
}

type appendWriter []byte

func (w *appendWriter) Write(p []byte) (int, error) {
	*w = append(*w, p...)
	return len(p), nil
}

// manifestRefs checks that everything the manifest raw references is
// listed in r, with the size the manifest states.
func manifestRefs(raw []byte, mediaType string, r *layout.Repository) []string {
	if raw == nil {
		return nil // a large manifest checked before; never in these tests
	}
	var m struct {
		MediaType string               `json:"mediaType"`
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var out []string
	if m.MediaType != "" && m.MediaType != mediaType {
		out = append(out, fmt.Sprintf("media type %s, listed as %s", m.MediaType, mediaType))
	}
	for _, c := range m.Manifests {
		if lm, ok := r.Manifests[c.Digest]; !ok || lm.Size != c.Size {
			out = append(out, fmt.Sprintf("child %s (%d bytes) is not listed with that size", c.Digest, c.Size))
		}
	}
	blobs := m.Layers
	if m.Config != nil {
		blobs = append([]ocispec.Descriptor{*m.Config}, blobs...)
	}
	for _, b := range blobs {
		if lb, ok := r.Blobs[b.Digest]; !ok || lb.Size != b.Size {
			out = append(out, fmt.Sprintf("blob %s (%d bytes) is not listed with that size", b.Digest, b.Size))
		}
	}
	return out
}
