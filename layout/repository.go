package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// RepositorySchemaVersion is the version of the repository file this package
// writes for a repository without shards; ShardedSchemaVersion (shards.go)
// is the version of one with shards. Readers accept both.
const RepositorySchemaVersion = 1

// ErrUnsupportedVersion is wrapped by decoding errors for files of a schema
// or layout version this package does not know.
var ErrUnsupportedVersion = errors.New("unsupported version")

// VersionError is returned for a document of another version.
type VersionError struct {
	What string // "layout", "repository file", "catalog"
	Got  int
	Want int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s version %d is not supported (this heron reads version %d)", e.What, e.Got, e.Want)
}

// Is makes errors.Is(err, ErrUnsupportedVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrUnsupportedVersion }

// Repository is the repository file, repositories/<name>.json: everything a
// request for that repository needs, so that a request reads it and at most
// one blob.
type Repository struct {
	// SchemaVersion is RepositorySchemaVersion.
	SchemaVersion int `json:"schemaVersion"`
	// Name is the repository name; it matches the file's key.
	Name string `json:"name"`
	// BlobBaseURL, when set, makes the server redirect blob requests to
	// <BlobBaseURL>/blobs/<alg>/<hex>. It is an absolute http or https URL
	// (ValidateBlobBaseURL); Encode and DecodeRepository drop its trailing
	// slashes, so that a reader appends "/" and a key to it as it is.
	BlobBaseURL string `json:"blobBaseURL,omitempty"`
	// Protected repositories need credentials.
	Protected bool `json:"protected,omitempty"`
	// Upstream is where blobs that are listed but not stored can be fetched.
	Upstream *Upstream `json:"upstream,omitempty"`
	// Tags maps each tag to the digest of its manifest.
	Tags map[string]digest.Digest `json:"tags"`
	// Manifests lists every manifest the repository serves, tagged or not
	// (the children of an index included).
	Manifests map[digest.Digest]Manifest `json:"manifests"`
	// Blobs lists every blob any of its manifests references (configs and
	// layers).
	Blobs map[digest.Digest]Blob `json:"blobs"`
	// Referrers maps a subject digest to the descriptors of the manifests
	// in this repository whose subject it is (OCI 1.1).
	Referrers map[digest.Digest][]v1.Descriptor `json:"referrers,omitempty"`

	// TagShards, ManifestShards, BlobShards and ReferrerShards list the
	// shards of a kind the repository keeps in shard files (shards.go).
	// The file then holds none of that kind itself: the map of that kind
	// holds what a reader loaded of it (nothing, the shards it needed,
	// or all of them; see LoadShards).
	TagShards      []ShardRef `json:"tagShards,omitempty"`
	ManifestShards []ShardRef `json:"manifestShards,omitempty"`
	BlobShards     []ShardRef `json:"blobShards,omitempty"`
	ReferrerShards []ShardRef `json:"referrerShards,omitempty"`

	// extra holds the fields this version does not know, so that a rewrite
	// keeps them.
	extra map[string]json.RawMessage
}

// Upstream names a registry repository that content of this repository can
// be fetched from.
type Upstream struct {
	// Registry is a host[:port].
	Registry string `json:"registry"`
	// Repository is the name on that registry.
	Repository string `json:"repository"`
	// Insecure allows plain HTTP.
	Insecure bool `json:"insecure,omitempty"`
}

// Manifest describes one manifest of a repository.
type Manifest struct {
	MediaType    string `json:"mediaType"`
	Size         int64  `json:"size"`
	ArtifactType string `json:"artifactType,omitempty"`
	// Subject is the digest of the manifest this one refers to (OCI 1.1).
	Subject digest.Digest `json:"subject,omitempty"`
	// Children are the manifests an image index lists.
	Children []digest.Digest `json:"children,omitempty"`
	// Blobs are the config and layers an image manifest references.
	Blobs []digest.Digest `json:"blobs,omitempty"`
}

// Blob describes one blob of a repository.
type Blob struct {
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	// Stored is false for a blob recorded by an on_demand publish that is
	// not in blobs/ yet; it is fetched from the repository's Upstream.
	// Absent means stored.
	Stored *bool `json:"stored,omitempty"`
}

// IsStored reports whether the blob is in the tree.
func (b Blob) IsStored() bool { return b.Stored == nil || *b.Stored }

// NewRepository returns an empty repository file for name.
func NewRepository(name string) *Repository {
	return &Repository{
		SchemaVersion: RepositorySchemaVersion,
		Name:          name,
		Tags:          map[string]digest.Digest{},
		Manifests:     map[digest.Digest]Manifest{},
		Blobs:         map[digest.Digest]Blob{},
	}
}

var knownRepositoryFields = map[string]bool{
	"schemaVersion": true, "name": true, "blobBaseURL": true, "protected": true, "upstream": true,
	"tags": true, "manifests": true, "blobs": true, "referrers": true,
	"tagShards": true, "manifestShards": true, "blobShards": true, "referrerShards": true,
}

type repositoryJSON Repository

// DecodeRepository parses and validates a repository file.
func DecodeRepository(data []byte) (*Repository, error) {
	if len(data) > MaxRepositoryFileSize {
		return nil, fmt.Errorf("repository file is %d bytes, more than the %d allowed", len(data), MaxRepositoryFileSize)
	}
	var probe struct {
		SchemaVersion *int `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("repository file: %w", err)
	}
	if probe.SchemaVersion == nil {
		return nil, fmt.Errorf("repository file: no schemaVersion")
	}
	if v := *probe.SchemaVersion; v != RepositorySchemaVersion && v != ShardedSchemaVersion {
		return nil, &VersionError{What: "repository file", Got: v, Want: ShardedSchemaVersion}
	}
	var r Repository
	if err := json.Unmarshal(data, (*repositoryJSON)(&r)); err != nil {
		return nil, fmt.Errorf("repository file: %w", err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("repository file: %w", err)
	}
	for k, v := range all {
		if !knownRepositoryFields[k] {
			if r.extra == nil {
				r.extra = map[string]json.RawMessage{}
			}
			r.extra[k] = v
		}
	}
	if r.Tags == nil {
		r.Tags = map[string]digest.Digest{}
	}
	if r.Manifests == nil {
		r.Manifests = map[digest.Digest]Manifest{}
	}
	if r.Blobs == nil {
		r.Blobs = map[digest.Digest]Blob{}
	}
	for _, kind := range ShardKinds {
		if r.Sharded(kind) && len(r.Keys(kind)) > 0 {
			return nil, fmt.Errorf("repository file: %s both in the file and in shards", kind)
		}
	}
	r.BlobBaseURL = strings.TrimRight(r.BlobBaseURL, "/")
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeRepositoryFile is DecodeRepository for the file of repository
// name: it also checks that the file names the repository whose key it was
// read from, so that a file copied to another repository's key is never
// served as that repository.
func DecodeRepositoryFile(name string, data []byte) (*Repository, error) {
	r, err := DecodeRepository(data)
	if err != nil {
		return nil, err
	}
	if r.Name != name {
		return nil, fmt.Errorf("repository file: the file names repository %q, its key says %q", r.Name, name)
	}
	return r, nil
}

// Encode returns the repository file's bytes: indented JSON with sorted
// keys (Go sorts map keys), unknown fields kept, and a final newline.
// The same repository always encodes to the same bytes. A repository with
// shards is written as of ShardedSchemaVersion, without the entries of
// the kinds it shards (the shard files hold them); one without, as of
// RepositorySchemaVersion.
func (r *Repository) Encode() ([]byte, error) {
	r.SchemaVersion = RepositorySchemaVersion
	if r.HasShards() {
		r.SchemaVersion = ShardedSchemaVersion
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	for _, refs := range r.Referrers {
		sortDescriptors(refs)
	}
	r.BlobBaseURL = strings.TrimRight(r.BlobBaseURL, "/")
	b, err := json.Marshal((*repositoryJSON)(r))
	if err != nil {
		return nil, err
	}
	if len(r.extra) > 0 || r.HasShards() {
		var all map[string]json.RawMessage
		if err := json.Unmarshal(b, &all); err != nil {
			return nil, err
		}
		for k, v := range r.extra {
			all[k] = v
		}
		for _, kind := range ShardKinds {
			if r.Sharded(kind) {
				delete(all, kind.String()) // the shard files hold them
			}
		}
		if b, err = json.Marshal(all); err != nil {
			return nil, err
		}
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	if out.Len() > MaxRepositoryFileSize {
		return nil, fmt.Errorf("repository %s: the file would be %d bytes, more than the %d a reader accepts", r.Name, out.Len(), MaxRepositoryFileSize)
	}
	return out.Bytes(), nil
}

func sortDescriptors(ds []v1.Descriptor) {
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Digest < ds[j].Digest })
}

// Validate checks the repository file's internal consistency: valid name,
// tags and digests; every tag names a listed manifest; every child and blob
// of a manifest is listed. A check that needs the entries of a kind the
// repository shards is left out (r may hold a part of them only): the
// shards' own checks are in LoadShards.
func (r *Repository) Validate() error { return r.validate(false) }

// validate is Validate; with whole, r holds every entry of every kind
// (LoadShards read them), and every check is made.
func (r *Repository) validate(whole bool) error {
	switch {
	case r.SchemaVersion == RepositorySchemaVersion && r.HasShards():
		return fmt.Errorf("repository file: shards in a file of schema version %d", r.SchemaVersion)
	case r.SchemaVersion == ShardedSchemaVersion && !r.HasShards():
		return fmt.Errorf("repository file: schema version %d without shards", r.SchemaVersion)
	case r.SchemaVersion != RepositorySchemaVersion && r.SchemaVersion != ShardedSchemaVersion:
		return &VersionError{What: "repository file", Got: r.SchemaVersion, Want: ShardedSchemaVersion}
	}
	for _, kind := range ShardKinds {
		if err := checkShardRefs(kind, r.Shards(kind)); err != nil {
			return fmt.Errorf("repository %s: %w", r.Name, err)
		}
	}
	// has reports whether the check of an entry of kind can be made.
	if r.Sharded(ManifestKind) && !r.Sharded(TagKind) && len(r.Tags) > 0 {
		// A tag in the file finds its manifest's media type and size in
		// the file; one in a shard, in the shard.
		return fmt.Errorf("repository %s: manifests in shards and tags in the file", r.Name)
	}
	has := func(kind ShardKind) bool { return whole || !r.Sharded(kind) }
	if err := ValidateRepository(r.Name); err != nil {
		return fmt.Errorf("repository file: %w", err)
	}
	if r.BlobBaseURL != "" {
		if err := ValidateBlobBaseURL(r.BlobBaseURL); err != nil {
			return fmt.Errorf("repository %s: %w", r.Name, err)
		}
	}
	for tag, d := range r.Tags {
		if err := ValidateTag(tag); err != nil {
			return fmt.Errorf("repository %s: %w", r.Name, err)
		}
		if _, ok := r.Manifests[d]; !ok && has(ManifestKind) {
			return fmt.Errorf("repository %s: tag %q names manifest %s, which is not listed", r.Name, tag, d)
		}
	}
	for d, m := range r.Manifests {
		if _, err := ParseDigest(string(d)); err != nil {
			return fmt.Errorf("repository %s: manifest: %w", r.Name, err)
		}
		if m.MediaType == "" || m.Size < 0 {
			return fmt.Errorf("repository %s: manifest %s: media type and size are required", r.Name, d)
		}
		for _, c := range m.Children {
			if _, ok := r.Manifests[c]; !ok && has(ManifestKind) {
				return fmt.Errorf("repository %s: index %s lists manifest %s, which is not listed", r.Name, d, c)
			}
		}
		for _, b := range m.Blobs {
			if _, ok := r.Blobs[b]; !ok && has(BlobKind) {
				return fmt.Errorf("repository %s: manifest %s references blob %s, which is not listed", r.Name, d, b)
			}
		}
	}
	for d, b := range r.Blobs {
		if _, err := ParseDigest(string(d)); err != nil {
			return fmt.Errorf("repository %s: blob: %w", r.Name, err)
		}
		if b.Size < 0 {
			return fmt.Errorf("repository %s: blob %s: negative size", r.Name, d)
		}
	}
	for s, refs := range r.Referrers {
		if _, err := ParseDigest(string(s)); err != nil {
			return fmt.Errorf("repository %s: referrers: %w", r.Name, err)
		}
		for _, ref := range refs {
			if _, ok := r.Manifests[ref.Digest]; !ok && has(ManifestKind) {
				return fmt.Errorf("repository %s: referrer %s of %s is not listed", r.Name, ref.Digest, s)
			}
		}
	}
	return nil
}

// Resolve returns the digest a reference (tag or digest) names in this
// repository, and whether it is listed.
func (r *Repository) Resolve(ref string) (digest.Digest, bool) {
	if IsDigest(ref) {
		d := digest.Digest(ref)
		_, ok := r.Manifests[d]
		return d, ok
	}
	d, ok := r.Tags[ref]
	return d, ok
}

// SortedTags returns the repository's tags in lexical order.
func (r *Repository) SortedTags() []string {
	tags := make([]string, 0, len(r.Tags))
	for t := range r.Tags {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	return tags
}
