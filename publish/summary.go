package publish

import (
	"sort"

	"github.com/opencontainers/go-digest"
)

// Summary is the machine-readable account of a publish, for CI: what
// `heron publish --output json` prints. Its JSON field names are a stable
// interface; fields are only ever added.
type Summary struct {
	// Source is the source as given; Policy is immediate or on_demand.
	Source string `json:"source"`
	Policy Policy `json:"policy"`
	// Digest and MediaType are those of the published manifest or index.
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Repositories are the repositories published to, sorted; Tags are
	// the NAME:TAG published, in the order given.
	Repositories []string `json:"repositories"`
	Tags         []string `json:"tags"`
	// Manifests and Blobs count the image's manifests and blobs.
	Manifests int `json:"manifests"`
	Blobs     int `json:"blobs"`
	// BlobsWritten and BytesWritten count the content (blobs and
	// manifests) copied into the tree; BlobsSkipped and BytesSkipped the
	// content that was already present and was not read again;
	// BlobsDeferred and BytesDeferred the blobs an on_demand publish
	// listed without storing them.
	BlobsWritten  int   `json:"blobsWritten"`
	BytesWritten  int64 `json:"bytesWritten"`
	BlobsSkipped  int   `json:"blobsSkipped"`
	BytesSkipped  int64 `json:"bytesSkipped"`
	BlobsDeferred int   `json:"blobsDeferred"`
	BytesDeferred int64 `json:"bytesDeferred"`
	// RepositoriesWritten are the repository files that changed.
	RepositoriesWritten []string `json:"repositoriesWritten"`
	// CatalogChanged and LayoutCreated are as in Result.
	CatalogChanged bool `json:"catalogChanged"`
	LayoutCreated  bool `json:"layoutCreated"`
}

// Summary returns the machine-readable account of r. Lists are never nil,
// so that they encode as [] rather than null.
func (r *Result) Summary() Summary {
	s := Summary{
		Source:              r.Source,
		Policy:              r.Policy,
		Digest:              r.Digest,
		MediaType:           r.MediaType,
		Repositories:        []string{},
		Tags:                make([]string, 0, len(r.Targets)),
		Manifests:           r.Manifests,
		Blobs:               r.Blobs,
		BlobsWritten:        r.BlobsWritten,
		BytesWritten:        r.BytesWritten,
		BlobsSkipped:        r.BlobsSkipped,
		BytesSkipped:        r.BytesSkipped,
		BlobsDeferred:       r.BlobsDeferred,
		BytesDeferred:       r.BytesDeferred,
		RepositoriesWritten: append([]string{}, r.RepositoriesWritten...),
		CatalogChanged:      r.CatalogChanged,
		LayoutCreated:       r.LayoutCreated,
	}
	if s.Policy == "" {
		s.Policy = PolicyImmediate
	}
	seen := map[string]bool{}
	for _, t := range r.Targets {
		s.Tags = append(s.Tags, t.String())
		if !seen[t.Repository] {
			seen[t.Repository] = true
			s.Repositories = append(s.Repositories, t.Repository)
		}
	}
	sort.Strings(s.Repositories)
	return s
}

// BatchSummary is what `heron publish --batch --output json` prints: what
// RunBatch did, for CI.
type BatchSummary struct {
	// Repositories has one entry per repository of the batch, in its
	// order.
	Repositories []BatchRepositorySummary `json:"repositories"`
	// Removed are the repositories pruned because the batch does not
	// list them.
	Removed []string `json:"removed"`
	// TagsPublished, TagsUnchanged and TagsPruned count the tags of all
	// the repositories; RepositoriesFailed those with an error.
	TagsPublished      int `json:"tagsPublished"`
	TagsUnchanged      int `json:"tagsUnchanged"`
	TagsPruned         int `json:"tagsPruned"`
	RepositoriesFailed int `json:"repositoriesFailed"`
	// BlobsWritten and BytesWritten count the content copied into the
	// tree.
	BlobsWritten int   `json:"blobsWritten"`
	BytesWritten int64 `json:"bytesWritten"`
	// CatalogChanged and LayoutCreated are as in BatchResult.
	CatalogChanged bool `json:"catalogChanged"`
	LayoutCreated  bool `json:"layoutCreated"`
}

// BatchRepositorySummary is one repository of a BatchSummary.
type BatchRepositorySummary struct {
	Name      string   `json:"name"`
	Published []string `json:"published"`
	Unchanged []string `json:"unchanged"`
	Pruned    []string `json:"pruned"`
	// Written reports whether the repository file was rewritten.
	Written bool `json:"written"`
	// Error is why the repository could not be brought to what the batch
	// says; absent when it was.
	Error string `json:"error,omitempty"`
}

// Summary returns r as a BatchSummary (empty lists as [], never null).
func (r *BatchResult) Summary() BatchSummary {
	s := BatchSummary{
		Repositories:   make([]BatchRepositorySummary, 0, len(r.Repositories)),
		Removed:        append([]string{}, r.Pruned...),
		BlobsWritten:   r.BlobsWritten,
		BytesWritten:   r.BytesWritten,
		CatalogChanged: r.CatalogChanged,
		LayoutCreated:  r.LayoutCreated,
	}
	for _, rr := range r.Repositories {
		rs := BatchRepositorySummary{
			Name:      rr.Name,
			Published: append([]string{}, rr.Published...),
			Unchanged: append([]string{}, rr.Unchanged...),
			Pruned:    append([]string{}, rr.PrunedTags...),
			Written:   rr.Written,
		}
		if rr.Err != nil {
			rs.Error = rr.Err.Error()
			s.RepositoriesFailed++
		}
		s.TagsPublished += len(rr.Published)
		s.TagsUnchanged += len(rr.Unchanged)
		s.TagsPruned += len(rr.PrunedTags)
		s.Repositories = append(s.Repositories, rs)
	}
	return s
}
