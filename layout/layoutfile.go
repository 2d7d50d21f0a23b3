package layout

import (
	"encoding/json"
	"fmt"
)

// LayoutFile is heron-layout.json, the marker at the root of every tree.
type LayoutFile struct {
	LayoutVersion int `json:"layoutVersion"`
}

// EncodeLayoutFile returns the bytes of heron-layout.json for this version.
func EncodeLayoutFile() []byte {
	return []byte(fmt.Sprintf("{\"layoutVersion\": %d}\n", Version))
}

// DecodeLayoutFile parses heron-layout.json and refuses any version but
// Version.
func DecodeLayoutFile(data []byte) (*LayoutFile, error) {
	var f LayoutFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", layoutFileName, err)
	}
	if f.LayoutVersion != Version {
		return nil, &VersionError{What: "layout", Got: f.LayoutVersion, Want: Version}
	}
	return &f, nil
}
