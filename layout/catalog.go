package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// CatalogShardSize is the most names publish puts in one catalog shard.
// A page of /v2/_catalog of at most this many names reads the index and one
// or two shards.
const CatalogShardSize = 1000

// CatalogIndex is catalog/index.json: the ordered list of shards. Shard i
// holds the names in [Shards[i].First, Shards[i].Last], and every name of
// shard i sorts before every name of shard i+1.
type CatalogIndex struct {
	LayoutVersion int            `json:"layoutVersion"`
	Shards        []CatalogShard `json:"shards"`
}

// CatalogShard describes one shard in the index.
type CatalogShard struct {
	// ID is the hex SHA-256 of the shard file's bytes; see CatalogShardKey.
	ID    string `json:"id"`
	First string `json:"first"`
	Last  string `json:"last"`
	Count int    `json:"count"`
	// Protected is how many of its names are protected (see
	// CatalogShardFile.Protected): a server that leaves them out of
	// /v2/_catalog skips a shard of protected names only without reading
	// it.
	Protected int `json:"protected,omitempty"`
}

// CatalogShardFile is the content of one shard: sorted repository names.
type CatalogShardFile struct {
	Repositories []string `json:"repositories"`
	// Protected are the names of Repositories whose repository file is
	// protected, sorted: a server leaves them out of /v2/_catalog for a
	// caller who may not read them. The repository file is the truth;
	// writers keep the catalog in step with it (docs/layout.md).
	Protected []string `json:"protected,omitempty"`
}

// Validate checks that the names are valid, sorted and unique, and that
// Protected is a sorted subset of them.
func (f *CatalogShardFile) Validate() error {
	for i, n := range f.Repositories {
		if err := ValidateRepository(n); err != nil {
			return err
		}
		if i > 0 && f.Repositories[i-1] >= n {
			return fmt.Errorf("catalog shard: names not sorted and unique at %q", n)
		}
	}
	return checkProtected(f.Repositories, f.Protected)
}

// checkProtected checks that protected is a sorted, duplicate-free subset
// of names (sorted).
func checkProtected(names, protected []string) error {
	j := 0
	for i, p := range protected {
		if i > 0 && protected[i-1] >= p {
			return fmt.Errorf("catalog shard: protected names not sorted and unique at %q", p)
		}
		for j < len(names) && names[j] < p {
			j++
		}
		if j == len(names) || names[j] != p {
			return fmt.Errorf("catalog shard: protected name %q is not one of its names", p)
		}
	}
	return nil
}

// EncodeCatalogIndex returns the bytes of catalog/index.json.
func EncodeCatalogIndex(idx *CatalogIndex) ([]byte, error) {
	idx.LayoutVersion = Version
	if idx.Shards == nil {
		idx.Shards = []CatalogShard{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxCatalogFileSize {
		return nil, fmt.Errorf("catalog index: %d shards take more than the %d bytes a reader accepts", len(idx.Shards), MaxCatalogFileSize)
	}
	return append(b, '\n'), nil
}

// DecodeCatalogIndex parses catalog/index.json.
func DecodeCatalogIndex(data []byte) (*CatalogIndex, error) {
	var idx CatalogIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("catalog index: %w", err)
	}
	if idx.LayoutVersion != Version {
		return nil, &VersionError{What: "catalog", Got: idx.LayoutVersion, Want: Version}
	}
	for i, s := range idx.Shards {
		if !validShardID(s.ID) {
			return nil, fmt.Errorf("catalog index: shard %d: layout: invalid catalog shard id %q", i, s.ID)
		}
		if s.Protected < 0 || s.Protected > s.Count {
			return nil, fmt.Errorf("catalog index: shard %d: %d protected names of %d", i, s.Protected, s.Count)
		}
		if i > 0 && !(idx.Shards[i-1].Last < s.First) {
			return nil, fmt.Errorf("catalog index: shards %d and %d are not in order", i-1, i)
		}
	}
	return &idx, nil
}

// EncodeCatalogShard returns the bytes and the id of a shard of names, none
// of them protected. The names must be sorted and unique.
func EncodeCatalogShard(names []string) (data []byte, id string, err error) {
	return EncodeCatalogShardFile(&CatalogShardFile{Repositories: names})
}

// EncodeCatalogShardFile returns a shard's bytes and its id; f must be
// valid (see CatalogShardFile.Validate).
func EncodeCatalogShardFile(f *CatalogShardFile) (data []byte, id string, err error) {
	if err := f.Validate(); err != nil {
		return nil, "", err
	}
	if len(f.Protected) == 0 {
		f = &CatalogShardFile{Repositories: f.Repositories} // no "protected": []
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(f); err != nil {
		return nil, "", err
	}
	if buf.Len() > MaxCatalogFileSize {
		return nil, "", fmt.Errorf("catalog shard: %d names take more than the %d bytes a reader accepts", len(f.Repositories), MaxCatalogFileSize)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:]), nil
}

// DecodeCatalogShard parses a shard, checks it against its id, and returns
// its names, protected or not.
func DecodeCatalogShard(data []byte, id string) ([]string, error) {
	f, err := DecodeCatalogShardFile(data, id)
	if err != nil {
		return nil, err
	}
	return f.Repositories, nil
}

// DecodeCatalogShardFile parses a shard and checks it against its id and
// that its protected names are some of its names.
func DecodeCatalogShardFile(data []byte, id string) (*CatalogShardFile, error) {
	if err := checkCatalogShard(data, id); err != nil {
		return nil, err
	}
	if names, ok := scanCatalogShard(data); ok {
		return &CatalogShardFile{Repositories: names.Strings(), Protected: names.ProtectedStrings()}, nil
	}
	return decodeCatalogShardJSON(data, id)
}

// DecodeCatalogNames is DecodeCatalogShardFile for a reader that keeps
// shards: the names come packed in one string (see CatalogNames).
func DecodeCatalogNames(data []byte, id string) (*CatalogNames, error) {
	if err := checkCatalogShard(data, id); err != nil {
		return nil, err
	}
	if names, ok := scanCatalogShard(data); ok {
		return names, nil
	}
	f, err := decodeCatalogShardJSON(data, id)
	if err != nil {
		return nil, err
	}
	return PackCatalogShard(f), nil
}

// checkCatalogShard checks that data is the shard id names.
func checkCatalogShard(data []byte, id string) error {
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != id {
		return fmt.Errorf("catalog shard %s: content does not match its id", id)
	}
	return nil
}

func decodeCatalogShardJSON(data []byte, id string) (*CatalogShardFile, error) {
	var f CatalogShardFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("catalog shard %s: %w", id, err)
	}
	if err := checkProtected(f.Repositories, f.Protected); err != nil {
		return nil, fmt.Errorf("catalog shard %s: %w", id, err)
	}
	return &f, nil
}

// CatalogNames are the names of one catalog shard, in order, packed in one
// string: a reader that keeps many shards (the server's cache) holds their
// bytes and 4 more per name, where a []string takes 16 more per name and
// a pointer for the garbage collector to follow. The 1,000 names of a
// shard of a tree of 1,000,000 repositories take about 21 KB.
type CatalogNames struct {
	all  string
	ends []uint32 // name i is all[ends[i-1]:ends[i]] (from 0 for i = 0)
	// protected has bit i set when name i is protected; nil when none is.
	protected []uint64
}

// PackCatalogShard packs the names of a shard and marks its protected ones;
// f must be valid.
func PackCatalogShard(f *CatalogShardFile) *CatalogNames {
	c := PackCatalogNames(f.Repositories)
	c.markProtected(f.Protected)
	return c
}

// markProtected sets the protected bit of each name of protected, a sorted
// subset of c's names.
func (c *CatalogNames) markProtected(protected []string) {
	if len(protected) == 0 {
		return
	}
	c.protected = make([]uint64, (c.Len()+63)/64)
	j := 0
	for _, p := range protected {
		for j < c.Len() && c.At(j) < p {
			j++
		}
		if j < c.Len() && c.At(j) == p {
			c.protected[j/64] |= 1 << (j % 64)
		}
	}
}

// Protected reports whether name i is protected.
func (c *CatalogNames) Protected(i int) bool {
	return c.protected != nil && c.protected[i/64]&(1<<(i%64)) != 0
}

// ProtectedStrings returns the protected names (nil when none is).
func (c *CatalogNames) ProtectedStrings() []string {
	var out []string
	for i := 0; c.protected != nil && i < c.Len(); i++ {
		if c.Protected(i) {
			out = append(out, c.At(i))
		}
	}
	return out
}

// PackCatalogNames packs names (of at most 4 GiB in all), none protected.
func PackCatalogNames(names []string) *CatalogNames {
	n := 0
	for _, name := range names {
		n += len(name)
	}
	var b strings.Builder
	b.Grow(n)
	c := &CatalogNames{ends: make([]uint32, len(names))}
	for i, name := range names {
		b.WriteString(name)
		c.ends[i] = uint32(b.Len())
	}
	c.all = b.String()
	return c
}

// Len returns the number of names.
func (c *CatalogNames) Len() int { return len(c.ends) }

// At returns name i.
func (c *CatalogNames) At(i int) string {
	start := uint32(0)
	if i > 0 {
		start = c.ends[i-1]
	}
	return c.all[start:c.ends[i]]
}

// After returns the index of the first name that sorts after last (Len()
// if none does); the names are sorted.
func (c *CatalogNames) After(last string) int {
	return sort.Search(c.Len(), func(i int) bool { return c.At(i) > last })
}

// Size is the approximate memory of c, in bytes.
func (c *CatalogNames) Size() int64 {
	return int64(len(c.all)) + 4*int64(len(c.ends)) + 8*int64(len(c.protected)) + 96
}

// Strings returns the names; they share c's memory.
func (c *CatalogNames) Strings() []string {
	names := make([]string, c.Len())
	for i := range names {
		names[i] = c.At(i)
	}
	return names
}

// catalogShardPrefix, catalogShardProtected and catalogShardSuffix frame
// the names of a shard as EncodeCatalogShardFile writes it.
const (
	catalogShardPrefix    = `{"repositories":[`
	catalogShardProtected = `],"protected":[`
	catalogShardSuffix    = "]}\n"
)

// scanCatalogShard decodes a shard written exactly as
// EncodeCatalogShardFile writes it, names without escapes, in one pass and
// an order of magnitude faster than encoding/json: the server reads a
// shard of a thousand names for a page of a hundred. It reports false for
// anything else (other spacing, escapes, bytes outside printable ASCII,
// protected names that are not some of the names in order), which the
// decoders then leave to encoding/json: what it accepts, it decodes as
// encoding/json would.
func scanCatalogShard(data []byte) (*CatalogNames, bool) {
	body, ok := bytes.CutPrefix(data, []byte(catalogShardPrefix))
	if !ok {
		return nil, false
	}
	if body, ok = bytes.CutSuffix(body, []byte(catalogShardSuffix)); !ok {
		// Without the newline.
		if body, ok = bytes.CutSuffix(body, []byte(catalogShardSuffix[:2])); !ok {
			return nil, false
		}
	}
	var protected []byte
	if i := bytes.Index(body, []byte(catalogShardProtected)); i >= 0 {
		body, protected = body[:i], body[i+len(catalogShardProtected):]
		if len(protected) == 0 {
			return nil, false // EncodeCatalogShardFile writes no empty list
		}
	}
	c := &CatalogNames{}
	if len(body) == 0 {
		return c, protected == nil
	}
	all, ends, ok := scanNames(body, true)
	if !ok {
		return nil, false
	}
	c.all, c.ends = all, ends
	if protected != nil {
		p, pends, ok := scanNames(protected, false)
		if !ok {
			return nil, false
		}
		names := (&CatalogNames{all: p, ends: pends}).Strings()
		if checkProtected(c.Strings(), names) != nil {
			return nil, false
		}
		c.markProtected(names)
	}
	return c, true
}

// scanNames scans a non-empty list of quoted names separated by commas
// ("a","b"), with no escapes and only printable ASCII, and returns them
// packed as CatalogNames holds them. With exact, the string is sized
// exactly (it is kept); else it is scratch.
func scanNames(body []byte, exact bool) (string, []uint32, bool) {
	// Each name has two quotes, and its bytes are the body's less the
	// quotes and the commas between them.
	quotes := bytes.Count(body, []byte{'"'})
	if quotes%2 != 0 || quotes == 0 {
		return "", nil, false
	}
	n := quotes / 2
	if len(body) < 3*n-1 {
		return "", nil, false
	}
	var all strings.Builder
	if exact {
		all.Grow(len(body) - (3*n - 1))
	}
	ends := make([]uint32, 0, n)
	for i := 0; ; {
		// body[i] opens a name.
		if body[i] != '"' {
			return "", nil, false
		}
		j := i + 1
		for ; j < len(body) && body[j] != '"'; j++ {
			if b := body[j]; b < 0x20 || b >= 0x7f || b == '\\' {
				return "", nil, false
			}
		}
		if j == len(body) || len(ends) == n {
			return "", nil, false
		}
		all.Write(body[i+1 : j])
		ends = append(ends, uint32(all.Len()))
		switch {
		case j+1 == len(body):
			return all.String(), ends, len(ends) == n
		case body[j+1] != ',':
			return "", nil, false
		}
		i = j + 2
		if i == len(body) {
			return "", nil, false
		}
	}
}

// ShardAfter returns the index of the first shard that may hold a name
// sorting after last ("" for the first page), or len(Shards) if none does.
func (idx *CatalogIndex) ShardAfter(last string) int {
	return sort.Search(len(idx.Shards), func(i int) bool { return idx.Shards[i].Last > last })
}

// ShardFor returns the index of the shard a new name belongs in: the first
// shard whose Last sorts at or after name, or the last shard. It returns -1
// when there are no shards.
func (idx *CatalogIndex) ShardFor(name string) int {
	if len(idx.Shards) == 0 {
		return -1
	}
	i := sort.Search(len(idx.Shards), func(i int) bool { return idx.Shards[i].Last >= name })
	if i == len(idx.Shards) {
		i--
	}
	return i
}
