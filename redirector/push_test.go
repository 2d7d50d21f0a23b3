package redirector

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestClientGone: a write that failed because its client went away is
// answered as a request that did not come whole (400, not logged as a
// server error); other failures, and OCI errors, are left as they are.
func TestClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := httptest.NewRequest(http.MethodPut, "/v2/a/blobs/uploads/x", nil).WithContext(ctx)
	live := httptest.NewRequest(http.MethodPut, "/v2/a/blobs/uploads/x", nil)
	failed := errors.New("upload x: context canceled")
	for _, tc := range []struct {
		name string
		r    *http.Request
		err  error
		want error
	}{
		{"gone", gone, failed, ErrBlobUploadInvalid},
		{"gone, OCI error", gone, ErrDigestInvalid, ErrDigestInvalid},
		{"gone, no error", gone, nil, nil},
		{"live", live, failed, failed},
	} {
		got := clientGone(tc.r, tc.err)
		if !errors.Is(got, tc.want) || (tc.want == nil) != (got == nil) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
