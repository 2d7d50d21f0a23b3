package layout

import (
	"strings"
	"testing"
)

// TestUploadKeys pins the keys of upload sessions, which a server sharing
// the tree must agree on, and their inverse.
func TestUploadKeys(t *testing.T) {
	id := "AbCdEfGhIjKlMnOp_-0123"
	tests := []struct {
		desc string
		key  func() (string, error)
		want string // "" when an error is expected
	}{
		{"uploads dir", func() (string, error) { return UploadsDirKey(), nil }, ".heron/uploads"},
		{"upload dir", func() (string, error) { return UploadDirKey(id) }, ".heron/uploads/" + id},
		{"state", func() (string, error) { return UploadStateKey(id) }, ".heron/uploads/" + id + "/state.json"},
		{"chunk 0", func() (string, error) { return UploadChunkKey(id, 0) }, ".heron/uploads/" + id + "/00000000000000000000"},
		{"chunk", func() (string, error) { return UploadChunkKey(id, 1234567) }, ".heron/uploads/" + id + "/00000000000001234567"},
		{"chunk max", func() (string, error) { return UploadChunkKey(id, 1<<63-1) }, ".heron/uploads/" + id + "/09223372036854775807"},
		{"negative offset", func() (string, error) { return UploadChunkKey(id, -1) }, ""},
		{"short id", func() (string, error) { return UploadStateKey("abc") }, ""},
		{"long id", func() (string, error) { return UploadStateKey(strings.Repeat("a", 65)) }, ""},
		{"traversal id", func() (string, error) { return UploadStateKey("../../../../etc/passwd") }, ""},
		{"slash id", func() (string, error) { return UploadDirKey("aaaaaaaa/bbbbbbbbbb") }, ""},
		{"dot id", func() (string, error) { return UploadDirKey("aaaaaaaa.bbbbbbbbbb") }, ""},
		{"empty id", func() (string, error) { return UploadDirKey("") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := tc.key()
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if !strings.HasPrefix(got, WriterStateDirKey()+"/") && got != UploadsDirKey() {
				t.Errorf("%q is not under the writers' folder", got)
			}
		})
	}

	inverse := []struct {
		key    string
		ok     bool
		kind   UploadKeyKind
		offset int64
	}{
		{".heron/uploads/" + id + "/state.json", true, UploadState, 0},
		{".heron/uploads/" + id + "/00000000000001234567", true, UploadChunk, 1234567},
		{".heron/uploads/" + id + "/.heron-tmp-123", true, UploadOther, 0},
		{".heron/uploads/" + id + "/1234567", true, UploadOther, 0},
		{".heron/uploads/" + id + "/-0000000000001234567", true, UploadOther, 0},
		{".heron/uploads/" + id, false, 0, 0},
		{".heron/uploads/" + id + "/a/b", false, 0, 0},
		{".heron/uploads/short/state.json", false, 0, 0},
		{".heron/locks/x.lock", false, 0, 0},
		{"blobs/sha256/x", false, 0, 0},
	}
	for _, tc := range inverse {
		gotID, kind, off, ok := UploadFromKey(tc.key)
		if ok != tc.ok || (ok && (gotID != id || kind != tc.kind || off != tc.offset)) {
			t.Errorf("UploadFromKey(%q) = %q, %v, %d, %v; want %v, %v, %d", tc.key, gotID, kind, off, ok, tc.ok, tc.kind, tc.offset)
		}
	}
}
