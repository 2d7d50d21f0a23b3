// Package treegen writes large, valid heron trees quickly, for scale tests
// and benchmarks: N repositories of M tags each, all serving one small image
// whose blobs are stored once, and the sorted, sharded catalog of their
// names. Every key and every document comes from package layout, so a
// generated tree is exactly what heron publish would have written for the
// same repositories.
//
// Unlike publish, the generator writes into a fresh folder that nothing
// serves yet, so it skips the temporary names and syncs that make a publish
// safe for concurrent readers; it writes heron-layout.json last instead,
// so an interrupted run leaves a folder that is not a tree.
package treegen

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options says what tree to write.
type Options struct {
	// Root is the folder to write; it must be absent or empty.
	Root string
	// Repos is the number of generated repositories, named by
	// RepositoryName(0..Repos-1).
	Repos int
	// Tags is the number of tags of each generated repository, named by
	// TagName(0..Tags-1); all of them name the same manifest.
	Tags int
	// Extra adds named repositories with their own number of tags (for
	// example one repository of 100 tags for a tags/list benchmark).
	Extra []Extra
	// LayerSize is the size of the shared layer; DefaultLayerSize if 0.
	LayerSize int
	// Workers bounds the goroutines that write files; 4 per CPU if 0
	// (file creation blocks in the kernel, so more writers than cores keep
	// the cores busy).
	Workers int
	// Progress, if not nil, is increased by the number of repository files
	// written, as they are written.
	Progress *atomic.Int64
}

// Extra is one named repository of a generated tree.
type Extra struct {
	Name string
	Tags int
}

// Stats reports what Generate wrote and how long each phase took.
type Stats struct {
	Image        *Image
	Repositories int
	Shards       int
	Files        int
	Bytes        int64
	// NamesTime is the time to build and sort the name list,
	// RepositoriesTime the time to write the repository files,
	// CatalogTime the time to write the catalog, Total the whole run.
	NamesTime, RepositoriesTime, CatalogTime, Total time.Duration
}

// RepositoryName returns the name of generated repository i (i >= 0):
// names spread over organisations of 1000 repositories, one in ten of them
// at two levels (org12/svc3), the others at three (org12/team4/app56).
func RepositoryName(i int) string {
	org, j := i/1000, i%1000
	if j%10 == 0 {
		return fmt.Sprintf("org%d/svc%d", org, j/10)
	}
	return fmt.Sprintf("org%d/team%d/app%d", org, j/100, j%100)
}

// TagName returns the name of tag k (k >= 0) of a generated repository:
// "latest", then v1.0.1, v1.0.2, …
func TagName(k int) string {
	if k == 0 {
		return "latest"
	}
	return fmt.Sprintf("v%d.%d.%d", 1+k/100, (k/10)%10, k%10)
}

// Generate writes the tree that opts describes.
func Generate(ctx context.Context, opts Options) (*Stats, error) {
	start := time.Now()
	if opts.Repos < 0 || opts.Tags < 1 {
		return nil, fmt.Errorf("treegen: want repositories >= 0 and tags >= 1, got %d and %d", opts.Repos, opts.Tags)
	}
	if opts.LayerSize == 0 {
		opts.LayerSize = DefaultLayerSize
	}
	if opts.Workers <= 0 {
		opts.Workers = 4 * runtime.NumCPU()
	}
	if err := prepareRoot(opts.Root); err != nil {
		return nil, err
	}
	img, err := NewImage(opts.LayerSize)
	if err != nil {
		return nil, err
	}
	st := &Stats{Image: img}
	w := &writer{root: layout.Root(opts.Root)}

	// Blobs first, as publish orders it: content before the files that
	// name it.
	for _, b := range [][]byte{img.Layer, img.Config, img.Manifest} {
		key, err := layout.BlobKey(digest.FromBytes(b))
		if err != nil {
			return nil, err
		}
		if err := w.write(key, b, nil); err != nil {
			return nil, err
		}
	}

	t0 := time.Now()
	names, tags, err := nameList(opts)
	if err != nil {
		return nil, err
	}
	st.NamesTime = time.Since(t0)

	t0 = time.Now()
	enc := newEncoder(img)
	err = parallel(ctx, opts.Workers, len(names), 512, func(lo, hi int) error {
		var lastDir string
		for i := lo; i < hi; i++ {
			n := opts.Tags
			if t, ok := tags[names[i]]; ok {
				n = t
			}
			data, err := enc.encode(names[i], n)
			if err != nil {
				return err
			}
			key, err := layout.RepositoryKey(names[i])
			if err != nil {
				return err
			}
			if err := w.write(key, data, &lastDir); err != nil {
				return err
			}
		}
		if opts.Progress != nil {
			opts.Progress.Add(int64(hi - lo))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	st.Repositories = len(names)
	st.RepositoriesTime = time.Since(t0)

	t0 = time.Now()
	if st.Shards, err = writeCatalog(ctx, w, names, opts.Workers); err != nil {
		return nil, err
	}
	st.CatalogTime = time.Since(t0)

	// The change counter, as heron's writers keep it (docs/layout.md), so
	// that servers of the tree may trust it.
	if err := w.write(layout.ChangesKey(), layout.EncodeChanges(1), nil); err != nil {
		return nil, err
	}
	// The marker last: a folder without it is not a tree, so a run that
	// stopped half way is never mistaken for a whole one.
	if err := w.write(layout.LayoutFileKey(), layout.EncodeLayoutFile(), nil); err != nil {
		return nil, err
	}
	st.Files = int(w.files.Load())
	st.Bytes = w.bytes.Load()
	st.Total = time.Since(start)
	return st, nil
}

// prepareRoot creates root, or checks that it is an empty folder.
func prepareRoot(root string) error {
	if root == "" {
		return errors.New("treegen: no root folder given")
	}
	entries, err := os.ReadDir(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(root, 0o755)
	case err != nil:
		return fmt.Errorf("treegen: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("treegen: %s is not empty; the generator writes fresh trees only", root)
	}
	return nil
}

// nameList returns the sorted names of all repositories, and the tag count
// of the extra ones.
func nameList(opts Options) ([]string, map[string]int, error) {
	names := make([]string, 0, opts.Repos+len(opts.Extra))
	for i := 0; i < opts.Repos; i++ {
		names = append(names, RepositoryName(i))
	}
	tags := make(map[string]int, len(opts.Extra))
	for _, e := range opts.Extra {
		if err := layout.ValidateRepository(e.Name); err != nil {
			return nil, nil, fmt.Errorf("treegen: extra repository: %w", err)
		}
		if e.Tags < 1 {
			return nil, nil, fmt.Errorf("treegen: extra repository %s: want at least one tag", e.Name)
		}
		tags[e.Name] = e.Tags
		names = append(names, e.Name)
	}
	sort.Strings(names)
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			return nil, nil, fmt.Errorf("treegen: repository %s is named twice", names[i])
		}
	}
	return names, tags, nil
}

// encoder builds repository files. All generated repositories list the
// same manifest and blobs; only the name and the tags differ.
type encoder struct {
	img *Image
}

func newEncoder(img *Image) *encoder { return &encoder{img: img} }

func (e *encoder) encode(name string, tags int) ([]byte, error) {
	img := e.img
	r := layout.NewRepository(name)
	for k := 0; k < tags; k++ {
		r.Tags[TagName(k)] = img.ManifestDigest
	}
	r.Manifests[img.ManifestDigest] = layout.Manifest{
		MediaType: ManifestMediaType,
		Size:      int64(len(img.Manifest)),
		Blobs:     []digest.Digest{img.ConfigDigest, img.LayerDigest},
	}
	r.Blobs[img.ConfigDigest] = layout.Blob{Size: int64(len(img.Config)), MediaType: v1.MediaTypeImageConfig}
	r.Blobs[img.LayerDigest] = layout.Blob{Size: int64(len(img.Layer)), MediaType: LayerMediaType}
	return r.Encode()
}

// writeCatalog cuts the sorted names into shards of
// layout.CatalogShardSize, writes them in parallel, then the index.
func writeCatalog(ctx context.Context, w *writer, names []string, workers int) (int, error) {
	n := (len(names) + layout.CatalogShardSize - 1) / layout.CatalogShardSize
	shards := make([]layout.CatalogShard, n)
	err := parallel(ctx, workers, n, 1, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			part := names[i*layout.CatalogShardSize : min((i+1)*layout.CatalogShardSize, len(names))]
			data, id, err := layout.EncodeCatalogShard(part)
			if err != nil {
				return err
			}
			key, err := layout.CatalogShardKey(id)
			if err != nil {
				return err
			}
			if err := w.write(key, data, nil); err != nil {
				return err
			}
			shards[i] = layout.CatalogShard{ID: id, First: part[0], Last: part[len(part)-1], Count: len(part)}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	data, err := layout.EncodeCatalogIndex(&layout.CatalogIndex{Shards: shards})
	if err != nil {
		return 0, err
	}
	return n, w.write(layout.CatalogIndexKey(), data, nil)
}

// writer writes files under a root, creating their folders.
type writer struct {
	root  layout.Root
	files atomic.Int64
	bytes atomic.Int64
	dirs  sync.Map // folders already created
}

// write writes data at key. lastDir, if not nil, remembers the folder of
// the previous write of the same goroutine: sorted names share their
// folders, so most writes need no mkdir at all.
func (w *writer) write(key string, data []byte, lastDir *string) error {
	p := w.root.Path(key)
	dir := filepath.Dir(p)
	if lastDir == nil || *lastDir != dir {
		if _, ok := w.dirs.Load(dir); !ok {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("treegen: %w", err)
			}
			w.dirs.Store(dir, true)
		}
		if lastDir != nil {
			*lastDir = dir
		}
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("treegen: %w", err)
	}
	w.files.Add(1)
	w.bytes.Add(int64(len(data)))
	return nil
}

// parallel calls fn on consecutive ranges [lo, hi) of at most chunk items
// covering [0, n), from at most workers goroutines, and returns the first
// error. It stops handing out ranges after an error or when ctx ends.
func parallel(ctx context.Context, workers, n, chunk int, fn func(lo, hi int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   atomic.Bool
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		failed.Store(true)
	}
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				if err := ctx.Err(); err != nil {
					fail(err)
					return
				}
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return
				}
				if err := fn(lo, min(lo+chunk, n)); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
