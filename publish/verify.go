package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/store"
	"github.com/opencontainers/go-digest"
)

// VerifyOptions configures [VerifyTree].
type VerifyOptions struct {
	// Deep hashes every stored blob that a repository lists, which reads
	// the whole tree. Manifests are always hashed.
	Deep bool
}

// Problem is one thing wrong with a tree.
type Problem struct {
	// Key is the file the problem is about.
	Key string `json:"key"`
	// Message says what is wrong.
	Message string `json:"problem"`
}

func (p Problem) String() string { return p.Key + ": " + p.Message }

// VerifyReport is what VerifyTree found.
type VerifyReport struct {
	// Problems lists what is wrong, sorted by key. An empty list means the
	// tree is sound.
	Problems []Problem `json:"problems"`
	// Repositories, Manifests and Blobs count the repository files read
	// and the distinct manifests and blobs they list.
	Repositories int `json:"repositories"`
	Manifests    int `json:"manifests"`
	Blobs        int `json:"blobs"`
	// HashedBytes is how much content was read and hashed.
	HashedBytes int64 `json:"hashedBytes"`
	// Unreferenced and UnreferencedBytes count the blobs no repository
	// lists: not a problem (a removed tag leaves them; gc deletes them).
	// Both are -1 when a repository file could not be read or parsed, so
	// that what it lists is unknown.
	Unreferenced      int   `json:"unreferenced"`
	UnreferencedBytes int64 `json:"unreferencedBytes"`
	// Temporary counts writers' temporary files (in flight, or left by a
	// writer that died; gc deletes old ones), and UnnamedShards the
	// catalog shard files the index does not name (gc deletes those too).
	Temporary     int `json:"temporary"`
	UnnamedShards int `json:"unnamedShards"`
	// UnnamedRepositoryShards counts the shard files of repositories
	// that their repository file does not name (left by a writer that
	// died, or replaced while verify ran; gc deletes them).
	UnnamedRepositoryShards int `json:"unnamedRepositoryShards"`
	// Unlisted names the repositories that have a repository file but are
	// not in the catalog yet: a publish writes the repository file before
	// the catalog, so one killed between the two leaves its repository
	// served but not listed by /v2/_catalog. Not a problem (nothing is
	// served wrong, and the catalog never names a missing repository):
	// the next publish to it, or `heron gc`, lists it.
	Unlisted []string `json:"unlisted"`
}

// VerifyTree checks the tree behind sink, as a reader relies on it:
//
//   - heron-layout.json exists and names layout.Version (nothing else is
//     checked otherwise);
//   - every file under repositories/ is a repository file of a valid name
//     that parses, passes layout.Repository.Validate and names the
//     repository its key says;
//   - every manifest a repository lists is in blobs/ with the size listed,
//     hashes to its digest and has the media type listed; every stored
//     blob it lists is in blobs/ with the size listed (and, with
//     opts.Deep, hashes to its digest); a blob not stored yet (on_demand)
//     is checked only if it is there;
//   - blobs/ holds blob keys only;
//   - catalog/index.json parses, every shard it names exists, matches its
//     id and the first, last and count the index gives, and the catalog's
//     names are repositories that have a repository file (a repository
//     file whose name is not listed yet is reported in Unlisted, not as a
//     problem). A name whose repository file would be the folder of
//     another repository (a/b and a/b.json/c) is reported as such.
//
// Each problem is reported with the key of the file it is about; an error
// is returned only when the tree cannot be walked at all. The sink must be
// a [ListSink] and an [OpenSink] (FSSink is). VerifyTree reads a live tree
// file by file: a publish running at the same time can make it report a
// repository as Unlisted.
func VerifyTree(ctx context.Context, sink Sink, opts VerifyOptions) (*VerifyReport, error) {
	ls, ok := sink.(ListSink)
	if !ok {
		return nil, errors.New("verify: the sink cannot list its keys")
	}
	opener, ok := sink.(OpenSink)
	if !ok {
		return nil, errors.New("verify: the sink cannot read content")
	}
	v := &verifier{
		sink: sink, list: ls, open: opener, opts: opts,
		rep:        &VerifyReport{Problems: []Problem{}, Unlisted: []string{}},
		blobs:      map[digest.Digest]Info{},
		referenced: map[digest.Digest]bool{},
		hashed:     map[digest.Digest]bool{},
		manifests:  map[digest.Digest]bool{},
		listedBlob: map[digest.Digest]bool{},
		shardFiles: map[string]bool{},
		repoShards: map[string]bool{},
	}
	if err := v.run(ctx); err != nil {
		return nil, err
	}
	sort.SliceStable(v.rep.Problems, func(i, j int) bool { return v.rep.Problems[i].Key < v.rep.Problems[j].Key })
	return v.rep, nil
}

type verifier struct {
	sink Sink
	list ListSink
	open OpenSink
	opts VerifyOptions
	rep  *VerifyReport

	blobs      map[digest.Digest]Info // every blob in blobs/
	repoKeys   []string               // every repository file, by key
	shardFiles map[string]bool        // every shard file, by id
	repoShards map[string]bool        // every repository shard file, by key; true once named
	referenced map[digest.Digest]bool // listed by some repository
	hashed     map[digest.Digest]bool // hashed already (problems reported once)
	manifests  map[digest.Digest]bool // listed as a manifest
	listedBlob map[digest.Digest]bool // listed as a blob
	unreadable bool                   // a repository file could not be read
	protected  map[string]bool        // the repositories whose file is protected
}

func (v *verifier) problem(key, format string, args ...any) {
	v.rep.Problems = append(v.rep.Problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (v *verifier) run(ctx context.Context) error {
	lk := layout.LayoutFileKey()
	b, err := v.sink.ReadFile(ctx, lk, layout.MaxLayoutFileSize)
	switch {
	case errors.Is(err, ErrNotFound):
		v.problem(lk, "missing: this is not a heron tree")
		return nil
	case err != nil:
		return fmt.Errorf("verify: %w", err)
	}
	if _, err := layout.DecodeLayoutFile(b); err != nil {
		v.problem(lk, "%v", err)
		return nil
	}
	if err := v.walk(ctx); err != nil {
		return err
	}
	names := map[string]bool{}
	for _, key := range v.repoKeys {
		name, _ := layout.RepositoryNameFromKey(key)
		names[name] = true
		if err := v.repository(ctx, key, name); err != nil {
			return err
		}
	}
	if err := v.catalog(ctx, names); err != nil {
		return err
	}
	if v.unreadable {
		v.rep.Unreferenced, v.rep.UnreferencedBytes = -1, -1
		return nil
	}
	for d, info := range v.blobs {
		if !v.referenced[d] {
			v.rep.Unreferenced++
			v.rep.UnreferencedBytes += info.Size
		}
	}
	return nil
}

// walk lists the tree once: blobs, repository files, shard files, and
// files that have no business where they are.
func (v *verifier) walk(ctx context.Context) error {
	blobsDir := layout.BlobsDirKey() + "/"
	reposDir := layout.RepositoriesDirKey() + "/"
	shardsDir := layout.CatalogShardsDirKey() + "/"
	catalogDir := path.Dir(layout.CatalogIndexKey()) + "/"
	err := v.list.List(ctx, "", func(key string, info Info) error {
		switch {
		case strings.HasPrefix(key, layout.WriterStateDirKey()+"/"):
		case store.IsTempKey(key):
			v.rep.Temporary++
		case strings.HasPrefix(key, blobsDir):
			d, ok := layout.DigestFromBlobKey(key)
			if !ok {
				v.problem(key, "not a blob: blobs/ holds blobs/<algorithm>/<hex> files only")
				return nil
			}
			v.blobs[d] = info
		case isRepositoryShard(key):
			v.repoShards[key] = false
		case strings.HasPrefix(key, reposDir):
			if _, ok := layout.RepositoryNameFromKey(key); !ok {
				v.problem(key, "not a repository file: its path is not repositories/<valid name>.json")
				return nil
			}
			v.repoKeys = append(v.repoKeys, key)
		case strings.HasPrefix(key, shardsDir):
			id, ok := layout.CatalogShardIDFromKey(key)
			if !ok {
				v.problem(key, "not a catalog shard: catalog/shards/ holds <sha256 hex>.json files only")
				return nil
			}
			v.shardFiles[id] = true
		case key == layout.CatalogIndexKey():
		case strings.HasPrefix(key, catalogDir):
			v.problem(key, "unexpected file in the catalog folder")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// repository checks one repository file and the content it lists.
func (v *verifier) repository(ctx context.Context, key, name string) error {
	b, err := v.sink.ReadFile(ctx, key, layout.MaxRepositoryFileSize)
	if errors.Is(err, ErrNotFound) {
		return nil // removed since the walk
	}
	if err != nil {
		v.unreadable = true
		v.problem(key, "%v", err)
		return nil
	}
	r, err := layout.DecodeRepository(b)
	if err != nil {
		v.unreadable = true
		v.problem(key, "%v", err)
		return nil
	}
	for _, kind := range layout.ShardKinds {
		for _, ref := range r.Shards(kind) {
			if k, err := layout.RepositoryShardKey(r.Name, ref.ID); err == nil {
				v.repoShards[k] = true
			}
		}
	}
	if r.HasShards() {
		// Every shard there, whole, of the range the file gives, and the
		// repository consistent across its shards.
		if err := r.LoadShards(func(id string) ([]byte, error) {
			k, err := layout.RepositoryShardKey(r.Name, id)
			if err != nil {
				return nil, err
			}
			return v.sink.ReadFile(ctx, k, layout.MaxRepositoryFileSize)
		}); err != nil {
			v.unreadable = true
			v.problem(key, "%v", err)
			return nil
		}
	}
	v.rep.Repositories++
	if r.Protected {
		if v.protected == nil {
			v.protected = map[string]bool{}
		}
		v.protected[name] = true
	}
	if r.Name != name {
		v.problem(key, "the file names repository %q, its path says %q", r.Name, name)
	}
	for _, d := range slices.Sorted(maps.Keys(r.Manifests)) {
		m := r.Manifests[d]
		v.referenced[d] = true
		if !v.manifests[d] {
			v.manifests[d] = true
			v.rep.Manifests++
		}
		if v.present(key, "manifest", d, m.Size) {
			if err := v.hashManifest(ctx, d, m); err != nil {
				return err
			}
		}
	}
	for _, d := range slices.Sorted(maps.Keys(r.Blobs)) {
		bl := r.Blobs[d]
		if !v.listedBlob[d] {
			v.listedBlob[d] = true
			v.rep.Blobs++
		}
		v.referenced[d] = true
		if !bl.IsStored() {
			if _, ok := v.blobs[d]; !ok {
				continue
			}
		}
		if v.present(key, "blob", d, bl.Size) && v.opts.Deep {
			if err := v.hashBlob(ctx, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// present reports whether the content d that repository file key lists
// with size is in blobs/ with that size, and reports the problem when not.
func (v *verifier) present(key, what string, d digest.Digest, size int64) bool {
	bk, err := layout.BlobKey(d)
	if err != nil {
		v.problem(key, "%s %s: %v", what, d, err)
		return false
	}
	info, ok := v.blobs[d]
	if !ok {
		v.problem(key, "%s %s is missing (%s)", what, d, bk)
		return false
	}
	if info.Size != size {
		v.problem(key, "%s %s is listed with %d bytes, %s holds %d", what, d, size, bk, info.Size)
		return false
	}
	return true
}

// hashBlob hashes blob d once, reporting a mismatch with its key.
func (v *verifier) hashBlob(ctx context.Context, d digest.Digest) error {
	if v.hashed[d] {
		return nil
	}
	v.hashed[d] = true
	bk, _ := layout.BlobKey(d)
	rc, err := v.open.Open(ctx, bk)
	if errors.Is(err, ErrNotFound) {
		v.problem(bk, "vanished while verify ran")
		return nil
	}
	if err != nil {
		v.problem(bk, "%v", err)
		return nil
	}
	defer rc.Close()
	size := v.blobs[d].Size
	n, err := store.CopyVerified(ctx, bk, io.Discard, rc, Want{Digest: d, Size: size})
	v.rep.HashedBytes += n
	return v.contentError(ctx, bk, err)
}

// contentError reports a verification failure of bk as a problem, and
// returns the errors that stop verify (a cancelled context).
func (v *verifier) contentError(ctx context.Context, bk string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var verr *VerifyError
	if errors.As(err, &verr) {
		if verr.GotDigest != "" && verr.GotSize == verr.Want.Size {
			v.problem(bk, "content does not match its digest (it hashes to %s)", verr.GotDigest)
		} else {
			v.problem(bk, "changed size while verify read it")
		}
		return nil
	}
	v.problem(bk, "%v", err)
	return nil
}

// hashManifest hashes manifest d once and checks the media type it
// declares against the one the repository lists.
func (v *verifier) hashManifest(ctx context.Context, d digest.Digest, m layout.Manifest) error {
	bk, _ := layout.BlobKey(d)
	if v.hashed[d] {
		return nil
	}
	v.hashed[d] = true
	size := v.blobs[d].Size
	if size > layout.MaxManifestSize {
		v.problem(bk, "a manifest of %d bytes, more than the %d allowed", size, layout.MaxManifestSize)
		return nil
	}
	raw, err := v.sink.ReadFile(ctx, bk, layout.MaxManifestSize)
	if err != nil {
		v.problem(bk, "%v", err)
		return nil
	}
	v.rep.HashedBytes += int64(len(raw))
	if got := d.Algorithm().FromBytes(raw); got != d {
		v.problem(bk, "content does not match its digest (it hashes to %s)", got)
		return nil
	}
	var mt struct {
		MediaType string `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &mt); err != nil {
		v.problem(bk, "manifest does not parse: %v", err)
		return nil
	}
	if mt.MediaType != "" && mt.MediaType != m.MediaType {
		v.problem(bk, "the manifest declares media type %s, a repository lists it as %s", mt.MediaType, m.MediaType)
	}
	return nil
}

// catalog checks catalog/index.json and its shards, and that the catalog
// names exactly the repositories in names.
func (v *verifier) catalog(ctx context.Context, names map[string]bool) error {
	ik := layout.CatalogIndexKey()
	listed := map[string]string{} // name → key of the shard listing it
	b, err := v.sink.ReadFile(ctx, ik, layout.MaxCatalogFileSize)
	switch {
	case errors.Is(err, ErrNotFound):
		b = nil
	case err != nil:
		v.problem(ik, "%v", err)
		return nil
	}
	var idx *layout.CatalogIndex
	if b != nil {
		if idx, err = layout.DecodeCatalogIndex(b); err != nil {
			v.problem(ik, "%v", err)
			return nil
		}
	} else {
		idx = &layout.CatalogIndex{}
	}
	named := map[string]bool{}
	for i, s := range idx.Shards {
		named[s.ID] = true
		sk, _ := layout.CatalogShardKey(s.ID)
		sb, err := v.sink.ReadFile(ctx, sk, layout.MaxCatalogFileSize)
		if errors.Is(err, ErrNotFound) {
			v.problem(ik, "shard %d is missing (%s)", i, sk)
			continue
		}
		if err != nil {
			v.problem(sk, "%v", err)
			continue
		}
		sf, err := layout.DecodeCatalogShardFile(sb, s.ID)
		if err != nil {
			v.problem(sk, "%v", err)
			continue
		}
		shard := sf.Repositories
		if len(sf.Protected) != s.Protected {
			v.problem(sk, "marks %d names protected, the index says %d", len(sf.Protected), s.Protected)
		}
		for _, n := range shard {
			switch marked := slices.Contains(sf.Protected, n); {
			case v.protected[n] && !marked:
				v.problem(sk, "lists protected repository %s as public: heron serve shows its name in /v2/_catalog (the next heron publish --batch that says it is protected, or a publish into it, marks it)", n)
			case marked && !v.protected[n] && names[n]:
				v.problem(sk, "marks repository %s protected, but its file is not: heron serve leaves it out of /v2/_catalog", n)
			}
		}
		if len(shard) == 0 || shard[0] != s.First || shard[len(shard)-1] != s.Last || len(shard) != s.Count {
			v.problem(sk, "holds %d names, the index says %d from %q to %q", len(shard), s.Count, s.First, s.Last)
		}
		for j, n := range shard {
			if err := layout.ValidateRepository(n); err != nil {
				v.problem(sk, "%v", err)
				continue
			}
			if j > 0 && shard[j-1] >= n {
				v.problem(sk, "names not sorted and unique at %q", n)
			}
			if prev, dup := listed[n]; dup {
				v.problem(sk, "lists %q, which %s lists too", n, prev)
				continue
			}
			listed[n] = sk
		}
	}
	for id := range v.shardFiles {
		if !named[id] {
			v.rep.UnnamedShards++
		}
	}
	for _, named := range v.repoShards {
		if !named {
			v.rep.UnnamedRepositoryShards++
		}
	}
	for _, n := range slices.Sorted(maps.Keys(listed)) {
		if names[n] {
			continue
		}
		rk, _ := layout.RepositoryKey(n)
		if info, err := statIfSupported(ctx, v.sink, rk); err == nil && info.Dir {
			v.problem(listed[n], "lists repository %s, which cannot exist: %s is the folder of repositories named %s.json/…", n, rk, n)
			continue
		}
		v.problem(listed[n], "lists repository %s, which has no repository file (%s)", n, rk)
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		if _, ok := listed[n]; !ok {
			v.rep.Unlisted = append(v.rep.Unlisted, n)
		}
	}
	return nil
}

// statIfSupported is Stat when the sink has it.
func statIfSupported(ctx context.Context, sink Sink, key string) (Info, error) {
	ss, ok := sink.(StatSink)
	if !ok {
		return Info{}, errors.ErrUnsupported
	}
	return ss.Stat(ctx, key)
}
