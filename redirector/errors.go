package redirector

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Code is an error code of the OCI error body
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes).
type Code string

// The codes the server sends. Each one is typed here and nowhere else.
//
// The specification says that a 4xx JSON error body's code MUST be one of
// its table; heron keeps to it with one exception,
// CodePaginationNumberInvalid, which distribution (registry:2) sends for a
// bad "n" and clients know. 5xx answers carry CodeUnknown, distribution's
// code for an internal error (the table does not constrain 5xx bodies).
const (
	CodeBlobUnknown             Code = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid       Code = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown       Code = "BLOB_UPLOAD_UNKNOWN"
	CodeManifestBlobUnknown     Code = "MANIFEST_BLOB_UNKNOWN"
	CodeSizeInvalid             Code = "SIZE_INVALID"
	CodeUnauthorized            Code = "UNAUTHORIZED"
	CodeDenied                  Code = "DENIED"
	CodeDigestInvalid           Code = "DIGEST_INVALID"
	CodeManifestInvalid         Code = "MANIFEST_INVALID"
	CodeManifestUnknown         Code = "MANIFEST_UNKNOWN"
	CodeNameInvalid             Code = "NAME_INVALID"
	CodeNameUnknown             Code = "NAME_UNKNOWN"
	CodeUnsupported             Code = "UNSUPPORTED"
	CodePaginationNumberInvalid Code = "PAGINATION_NUMBER_INVALID"
	CodeUnknown                 Code = "UNKNOWN"
)

// Error is one OCI error: its code, the HTTP status it is sent with, a
// message and an optional detail. Handlers return it; the server writes it
// in one place as {"errors":[{"code":…,"message":…,"detail":…}]}.
type Error struct {
	Code    Code
	Status  int
	Message string
	Detail  any
}

// The errors the server answers with. Compare with errors.Is, which matches
// on code and status (so a copy carrying a detail still matches).
var (
	// ErrBlobUnknown: the repository does not list the blob (404).
	ErrBlobUnknown = &Error{Code: CodeBlobUnknown, Status: http.StatusNotFound, Message: "blob unknown to registry"}
	// ErrManifestUnknown: the repository does not list the manifest or tag (404).
	ErrManifestUnknown = &Error{Code: CodeManifestUnknown, Status: http.StatusNotFound, Message: "manifest unknown to registry"}
	// ErrNameUnknown: there is no such repository (404).
	ErrNameUnknown = &Error{Code: CodeNameUnknown, Status: http.StatusNotFound, Message: "repository name not known to registry"}
	// ErrNameInvalid: the name is not of the OCI grammar, or the path
	// cannot be a name at all (encoded slashes, "..", NUL bytes) (400).
	ErrNameInvalid = &Error{Code: CodeNameInvalid, Status: http.StatusBadRequest, Message: "invalid repository name"}
	// ErrDigestInvalid: a digest in the URL is malformed or of an
	// algorithm heron does not store (400).
	ErrDigestInvalid = &Error{Code: CodeDigestInvalid, Status: http.StatusBadRequest, Message: "invalid digest"}
	// ErrTagInvalid: a manifest reference is neither a digest nor a tag of
	// the OCI grammar (400). The specification's table has no code for a
	// malformed tag (distribution's TAG_INVALID means "tag does not match
	// the URI" on upload), so it is sent as MANIFEST_INVALID.
	ErrTagInvalid = &Error{Code: CodeManifestInvalid, Status: http.StatusBadRequest, Message: "invalid tag"}
	// ErrUnsupported: the server is read-only; anything that would write
	// is refused (405).
	ErrUnsupported = &Error{Code: CodeUnsupported, Status: http.StatusMethodNotAllowed, Message: "the operation is unsupported: this registry is read-only"}
	// ErrNotFound: no endpoint of the API has this path (404).
	ErrNotFound = &Error{Code: CodeUnsupported, Status: http.StatusNotFound, Message: "unknown endpoint"}
	// ErrPaginationNumberInvalid: the "n" query parameter is not a
	// non-negative integer (400).
	ErrPaginationNumberInvalid = &Error{Code: CodePaginationNumberInvalid, Status: http.StatusBadRequest, Message: "invalid number of results requested"}
	// ErrUpstream: a blob the repository lists but the tree does not
	// hold yet could not be fetched from the repository's upstream
	// (502, see WithFiller); the detail says why in the server's words,
	// the upstream's own error is logged.
	ErrUpstream = &Error{Code: CodeUnknown, Status: http.StatusBadGateway, Message: "the blob is not stored here and could not be fetched from the upstream registry"}
	// ErrUpstreamTimeout: the same, because the upstream stopped sending
	// (504).
	ErrUpstreamTimeout = &Error{Code: CodeUnknown, Status: http.StatusGatewayTimeout, Message: "the blob is not stored here and the upstream registry did not send it in time"}
	// ErrShuttingDown: the server is closing and starts no more work
	// (503).
	ErrShuttingDown = &Error{Code: CodeUnknown, Status: http.StatusServiceUnavailable, Message: "the server is shutting down"}
	// ErrInternal is what a client sees of any other failure (500); the
	// cause is logged, never sent.
	ErrInternal = &Error{Code: CodeUnknown, Status: http.StatusInternalServerError, Message: "internal server error"}
)

// Error implements error.
func (e *Error) Error() string {
	if e.Detail != nil {
		return fmt.Sprintf("%s: %s (%v)", e.Code, e.Message, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code and status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Status == e.Status
}

// WithDetail returns a copy of e carrying detail.
func (e *Error) WithDetail(detail any) *Error {
	c := *e
	c.Detail = detail
	return &c
}

// redirect is returned by a handler whose answer is a 307 to location. It
// is an error value so that the decision "redirect or serve" stays inside
// the handler and the writing happens in respond, like ggcr's RedirectError.
type redirect struct {
	location string
}

func (r *redirect) Error() string { return "redirect to " + r.location }

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// respond writes what a handler returned: nothing for nil, a 307 for a
// redirect, the OCI error body for an *Error, and ErrInternal (after
// logging the cause) for anything else. It is the only place errors are
// written.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, err error) {
	if err == nil {
		return
	}
	rd, ok := err.(*redirect) // the common case, without errors.As's reflection
	if ok || errors.As(err, &rd) {
		w.Header()[locationKey] = []string{rd.location}
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		attrs := []any{"method", r.Method, "path", r.URL.Path, "err", err}
		var fe *fileError
		if errors.As(err, &fe) {
			attrs = append(attrs, "file", fe.path)
		}
		s.log.ErrorContext(r.Context(), "request failed", attrs...)
		e = ErrInternal
	}
	body, merr := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	if merr != nil {
		// A detail that does not marshal is a bug; send the error without it.
		body, _ = json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message}}})
	}
	s.setChallenge(w, r, err)
	h := w.Header()
	// Headers a handler set for a success (digest, ETag, caching) do not
	// describe an error body.
	for _, k := range successOnlyKeys {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}
