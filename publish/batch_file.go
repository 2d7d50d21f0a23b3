package publish

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/heron-registry/heron/layout"
	"go.yaml.in/yaml/v3"
)

// maxBatchFileSize bounds a batch file.
const maxBatchFileSize = 256 << 20

// Batch is a batch file: the repositories `heron publish --batch` brings
// the tree to, each with its tags and the source each tag is published
// from. It is documented, with an example, in docs/publish-batch.md.
type Batch struct {
	// Repositories lists each repository once.
	Repositories []BatchRepository `json:"repositories" yaml:"repositories"`
}

// BatchRepository is one repository of a batch file.
type BatchRepository struct {
	// Name is the repository name.
	Name string `json:"name" yaml:"name"`
	// Tags maps each tag to the source it is published from, in the
	// syntax of the SOURCE argument of heron publish (see source.Parse).
	// Tags with the same source are published together.
	Tags map[string]string `json:"tags" yaml:"tags"`
	// BlobBaseURL, when present, sets the repository's blobBaseURL; ""
	// removes it. Absent, the repository keeps the one it has.
	BlobBaseURL *string `json:"blobBaseURL,omitempty" yaml:"blobBaseURL,omitempty"`
	// Protected, when present, sets whether the repository needs
	// credentials. Absent, the repository keeps what it has.
	Protected *bool `json:"protected,omitempty" yaml:"protected,omitempty"`
	// Policy, when set, is the publish policy of this repository's
	// sources (see the --policy flag of heron publish).
	Policy string `json:"policy,omitempty" yaml:"policy,omitempty"`
}

// ReadBatchFile reads and parses the batch file at path.
func ReadBatchFile(path string) (*Batch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("batch file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("batch file: %w", err)
	}
	if fi.Size() > maxBatchFileSize {
		return nil, fmt.Errorf("batch file %s: %d bytes, more than the %d allowed", path, fi.Size(), maxBatchFileSize)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil && fi.Size() > 0 {
		return nil, fmt.Errorf("batch file %s: %w", path, err)
	}
	b, err := ParseBatch(data)
	if err != nil {
		return nil, fmt.Errorf("batch file %s: %w", path, err)
	}
	return b, nil
}

// ParseBatch parses a batch file, YAML or JSON (JSON is YAML), and
// validates it (see Batch.Validate). Unknown fields and duplicate keys are
// errors, so that a misspelt setting is not silently ignored. A tag is
// taken as written: an unquoted 1.0 is the tag "1.0", not a number.
func ParseBatch(data []byte) (*Batch, error) {
	var b Batch
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&b); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty batch file (want a mapping with a repositories list)")
		}
		return nil, err
	}
	var more any
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate checks every name, tag, source (its syntax: nothing is opened),
// base URL and policy, and that no repository is listed twice.
func (b *Batch) Validate() error {
	seen := make(map[string]bool, len(b.Repositories))
	for i, r := range b.Repositories {
		where := fmt.Sprintf("repositories[%d]", i)
		if r.Name != "" {
			where += " (" + r.Name + ")"
		}
		if err := layout.ValidateRepository(r.Name); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if seen[r.Name] {
			return fmt.Errorf("%s: repository %s is listed twice", where, r.Name)
		}
		seen[r.Name] = true
		for _, tag := range sortedKeys(r.Tags) {
			if err := layout.ValidateTag(tag); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if strings.TrimSpace(r.Tags[tag]) == "" {
				return fmt.Errorf("%s: tag %s: no source", where, tag)
			}
		}
		if r.BlobBaseURL != nil && *r.BlobBaseURL != "" {
			if err := layout.ValidateBlobBaseURL(*r.BlobBaseURL); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		if _, err := ParsePolicy(r.Policy); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
