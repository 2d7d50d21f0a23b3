package layout

import (
	"fmt"
	"strconv"
	"strings"
)

// Blob uploads (the OCI distribution spec's upload sessions) keep their
// state under the writers' folder, so that a push begun on one server can
// go on through another that shares the tree, and nothing of it is ever
// served:
//
//	.heron/uploads/<id>/state.json   the session: repository, times, chunks
//	.heron/uploads/<id>/<offset>     one chunk, by its offset (20 digits)
//
// The state file's format is the writer's (package publish) business;
// readers never open it.

const (
	uploadsDir      = "uploads"
	uploadStateName = "state.json"
	uploadOffsetLen = 20 // digits of the largest int64, zero padded
	uploadIDMinLen  = 16
	uploadIDMaxLen  = 64
)

// UploadsDirKey is the folder of every upload session: .heron/uploads.
func UploadsDirKey() string { return writerStateDir + "/" + uploadsDir }

// ValidateUploadID checks that id can name an upload session: 16 to 64
// characters of the URL-safe base64 alphabet [A-Za-z0-9_-], so that an id
// taken from a URL can never reach outside its folder.
func ValidateUploadID(id string) error {
	if len(id) < uploadIDMinLen || len(id) > uploadIDMaxLen {
		return fmt.Errorf("layout: invalid upload id %q: want %d to %d characters", id, uploadIDMinLen, uploadIDMaxLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return fmt.Errorf("layout: invalid upload id %q: only [A-Za-z0-9_-] are allowed", id)
		}
	}
	return nil
}

// UploadDirKey is the folder of the upload session id:
// .heron/uploads/<id>.
func UploadDirKey(id string) (string, error) {
	if err := ValidateUploadID(id); err != nil {
		return "", err
	}
	return UploadsDirKey() + "/" + id, nil
}

// UploadStateKey is the key of the state file of the upload session id:
// .heron/uploads/<id>/state.json.
func UploadStateKey(id string) (string, error) {
	dir, err := UploadDirKey(id)
	if err != nil {
		return "", err
	}
	return dir + "/" + uploadStateName, nil
}

// UploadChunkKey is the key of the chunk of the upload session id that
// starts at offset: .heron/uploads/<id>/<offset>, the offset in decimal
// padded with zeros to 20 digits, so that the chunks of a session list in
// the order of their offsets.
func UploadChunkKey(id string, offset int64) (string, error) {
	if offset < 0 {
		return "", fmt.Errorf("layout: invalid upload offset %d", offset)
	}
	dir, err := UploadDirKey(id)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s/%0*d", dir, uploadOffsetLen, offset), nil
}

// UploadFromKey is the inverse of UploadDirKey, UploadStateKey and
// UploadChunkKey: the id of the session key belongs to, and what key is
// (UploadState, UploadChunk with its offset, or UploadOther for any other
// file in the session's folder, such as a writer's temporary file). It
// reports false for a key outside a valid session's folder.
func UploadFromKey(key string) (id string, kind UploadKeyKind, offset int64, ok bool) {
	rest, ok := strings.CutPrefix(key, UploadsDirKey()+"/")
	if !ok {
		return "", 0, 0, false
	}
	id, name, ok := strings.Cut(rest, "/")
	if !ok || ValidateUploadID(id) != nil || name == "" || strings.Contains(name, "/") {
		return "", 0, 0, false
	}
	if name == uploadStateName {
		return id, UploadState, 0, true
	}
	if len(name) == uploadOffsetLen {
		if n, err := strconv.ParseInt(name, 10, 64); err == nil && n >= 0 {
			if k, err := UploadChunkKey(id, n); err == nil && k == key {
				return id, UploadChunk, n, true
			}
		}
	}
	return id, UploadOther, 0, true
}

// UploadKeyKind tells what a key in an upload session's folder is.
type UploadKeyKind int

// The kinds of UploadFromKey.
const (
	UploadOther UploadKeyKind = iota
	UploadState
	UploadChunk
)
