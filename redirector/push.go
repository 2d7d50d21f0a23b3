package redirector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// Pusher writes what clients push (docker push, crane, oras, skopeo): blob
// uploads, manifests, deletes. It is the server's seam to the publisher,
// as Filler is: package redirector never imports package publish, and
// cmd/heron wires one built on publish.Publisher, with its guarantees
// (content verified against its digest before it is visible; a
// repository file rewritten atomically, under its lock or a conditional
// write; a manifest accepted only when everything it references is in the
// tree at that moment).
//
// Errors: a method returns one of the *Error values below (ErrBlobUploadUnknown,
// ErrUploadRange, ErrUploadTooLarge, ErrDigestInvalid, ErrManifestInvalid,
// ErrManifestBlobUnknown, ErrManifestReferenceUnknown, ErrNameUnknown,
// ErrManifestUnknown, ErrBlobUnknown, ErrInUse, ErrNameInvalid,
// ErrTagInvalid), possibly with a detail, for what is the client's fault;
// anything else is answered 500 and logged.
type Pusher interface {
	// StartUpload starts an upload session for repository name and
	// returns its id (URL-safe).
	StartUpload(ctx context.Context, name string) (string, error)
	// UploadStatus returns the bytes session id of name holds.
	UploadStatus(ctx context.Context, name, id string) (int64, error)
	// AppendUpload adds r as the chunk at offset (which must be the
	// session's size: ErrUploadRange) and returns the new size; max (> 0)
	// bounds the session (ErrUploadTooLarge).
	AppendUpload(ctx context.Context, name, id string, offset int64, r io.Reader, max int64) (int64, error)
	// FinishUpload appends last (nil: nothing), verifies the whole
	// against d, stores it as blob d, lists it in repository name and
	// ends the session. It returns the blob's size.
	FinishUpload(ctx context.Context, name, id string, d digest.Digest, last io.Reader, max int64) (int64, error)
	// CancelUpload ends session id and removes what it holds.
	CancelUpload(ctx context.Context, name, id string) error
	// PutBlob stores blob d of exactly size bytes read from r, verified,
	// and lists it in repository name (a monolithic upload).
	PutBlob(ctx context.Context, name string, d digest.Digest, size int64, r io.Reader, max int64) error
	// MountBlob lists blob d in repository name when repository from
	// lists it (from empty: when the tree holds it); false when there is
	// nothing to mount.
	MountBlob(ctx context.Context, name, from string, d digest.Digest) (bool, error)
	// PutManifest stores a manifest pushed to name at reference (a tag or
	// a digest), tagged also with tags, and returns its digest. With
	// onlyListed, everything it references must be listed by the
	// repository (uploaded or mounted into it), not merely in the tree.
	PutManifest(ctx context.Context, name, reference, mediaType string, data []byte, tags []string, onlyListed bool) (digest.Digest, error)
	// DeleteManifest deletes a tag, or a manifest and its tags.
	DeleteManifest(ctx context.Context, name, reference string) error
	// DeleteBlob drops blob d from repository name's listing.
	DeleteBlob(ctx context.Context, name string, d digest.Digest) error
}

// PushOptions configure what a server with a Pusher accepts.
type PushOptions struct {
	// Delete allows DELETE of manifests, tags and blobs.
	Delete bool
	// MaxUploadSize bounds one blob, in bytes; 0 for no bound.
	MaxUploadSize int64
}

// WithPusher makes the server accept pushes (and, with o.Delete,
// deletes) through p, but into the names of its pull-through caches
// (WithPullThrough), which only their upstreams fill.
func WithPusher(p Pusher, o PushOptions) Option {
	return func(opts *options) { opts.pusher, opts.push = p, o }
}

// The errors of pushes, beside the readers' (errors.go).
var (
	// ErrBlobUploadUnknown: no such upload session, in this repository (404).
	ErrBlobUploadUnknown = &Error{Code: CodeBlobUploadUnknown, Status: http.StatusNotFound, Message: "blob upload unknown to registry"}
	// ErrBlobUploadInvalid: the upload request is malformed (400).
	ErrBlobUploadInvalid = &Error{Code: CodeBlobUploadInvalid, Status: http.StatusBadRequest, Message: "blob upload invalid"}
	// ErrUploadRange: a chunk that does not start at the session's size
	// (416; the answer carries the session's Range).
	ErrUploadRange = &Error{Code: CodeBlobUploadInvalid, Status: http.StatusRequestedRangeNotSatisfiable, Message: "the chunk does not start where the upload ends"}
	// ErrUploadTooLarge: more than --max-upload-size (413).
	ErrUploadTooLarge = &Error{Code: CodeSizeInvalid, Status: http.StatusRequestEntityTooLarge, Message: "blob larger than this registry accepts"}
	// ErrSizeInvalid: the body's length is not what the request says (400).
	ErrSizeInvalid = &Error{Code: CodeSizeInvalid, Status: http.StatusBadRequest, Message: "provided length did not match content length"}
	// ErrManifestInvalid: the pushed manifest is not one heron accepts (400).
	ErrManifestInvalid = &Error{Code: CodeManifestInvalid, Status: http.StatusBadRequest, Message: "manifest invalid"}
	// ErrManifestTooLarge: a manifest body over the limit (413).
	ErrManifestTooLarge = &Error{Code: CodeSizeInvalid, Status: http.StatusRequestEntityTooLarge, Message: "manifest larger than this registry accepts"}
	// ErrManifestBlobUnknown: the pushed manifest references a blob the
	// registry does not hold (400).
	ErrManifestBlobUnknown = &Error{Code: CodeManifestBlobUnknown, Status: http.StatusBadRequest, Message: "manifest references a blob unknown to the registry"}
	// ErrManifestReferenceUnknown: the pushed index lists a manifest the
	// registry does not hold (400).
	ErrManifestReferenceUnknown = &Error{Code: CodeManifestUnknown, Status: http.StatusBadRequest, Message: "index references a manifest unknown to the registry"}
	// ErrInUse: a delete of what the repository still needs (409).
	ErrInUse = &Error{Code: CodeDenied, Status: http.StatusConflict, Message: "still referenced in the repository"}
	// ErrDeleteDisabled: DELETE without --delete (405).
	ErrDeleteDisabled = &Error{Code: CodeUnsupported, Status: http.StatusMethodNotAllowed, Message: "the operation is unsupported: deletes are not enabled on this registry"}
	// ErrPushRefused: a write to a repository the server does not take
	// pushes for (405).
	ErrPushRefused = &Error{Code: CodeUnsupported, Status: http.StatusMethodNotAllowed, Message: "the operation is unsupported for this repository"}
)

// pushing is the push configuration of a Server.
type pushing struct {
	p PushOptions
	w Pusher
}

// uploadsSegment is the path segment of upload sessions:
// /v2/<name>/blobs/uploads/[<id>].
const uploadsSegment = "blobs/uploads"

// serveWrite answers a POST, PUT, PATCH or DELETE under /v2/.
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, rest string) error {
	if s.push == nil {
		w.Header().Set("Allow", "GET, HEAD")
		return ErrUnsupported
	}
	if err := checkPath(r, rest); err != nil {
		return err
	}
	rt := parsePath(rest)
	switch rt.endpoint {
	case endpointManifest, endpointBlob, endpointUpload:
	default:
		return ErrUnsupported
	}
	if err := layout.ValidateRepository(rt.name); err != nil {
		return ErrNameInvalid.WithDetail(err.Error())
	}
	if s.pull != nil {
		if c, ok := s.pull.owns(rt.name); ok {
			return ErrPushRefused.WithDetail(fmt.Sprintf("%s is in the pull-through cache %s (of %s), which only the upstream fills", rt.name, c.Prefix, c.URL))
		}
	}
	if r.Method == http.MethodDelete && !s.push.p.Delete && rt.endpoint != endpointUpload {
		return ErrDeleteDisabled
	}
	if s.guard != nil {
		var err error
		// (A write needs push or delete, so a caller who may not pull
		// is refused here, never hidden.)
		if r, err = s.guard.authorize(w, r, rt); err != nil {
			return err
		}
	}
	defer s.repos.forget(rt.name)
	switch {
	case rt.endpoint == endpointUpload && r.Method == http.MethodPost && rt.ref == "":
		return s.startUpload(w, r, rt.name)
	case rt.endpoint == endpointUpload && rt.ref != "" && r.Method == http.MethodPatch:
		return s.patchUpload(w, r, rt.name, rt.ref)
	case rt.endpoint == endpointUpload && rt.ref != "" && r.Method == http.MethodPut:
		return s.finishUpload(w, r, rt.name, rt.ref)
	case rt.endpoint == endpointUpload && rt.ref != "" && r.Method == http.MethodDelete:
		if err := s.push.w.CancelUpload(r.Context(), rt.name, rt.ref); err != nil {
			return err
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return nil
	case rt.endpoint == endpointManifest && r.Method == http.MethodPut:
		return s.putManifest(w, r, rt.name, rt.ref)
	case rt.endpoint == endpointManifest && r.Method == http.MethodDelete:
		if err := s.push.w.DeleteManifest(r.Context(), rt.name, rt.ref); err != nil {
			return err
		}
		return accepted(w)
	case rt.endpoint == endpointBlob && r.Method == http.MethodDelete:
		d, err := layout.ParseDigest(rt.ref)
		if err != nil {
			return ErrDigestInvalid.WithDetail(err.Error())
		}
		if err := s.push.w.DeleteBlob(r.Context(), rt.name, d); err != nil {
			return err
		}
		return accepted(w)
	}
	w.Header().Set("Allow", allowed(rt))
	return ErrUnsupported.WithDetail(fmt.Sprintf("%s is not answered for this path", r.Method))
}

// allowed is the Allow header of a 405 for rt.
func allowed(rt route) string {
	switch {
	case rt.endpoint == endpointUpload && rt.ref == "":
		return "POST"
	case rt.endpoint == endpointUpload:
		return "GET, PATCH, PUT, DELETE"
	case rt.endpoint == endpointManifest:
		return "GET, HEAD, PUT, DELETE"
	}
	return "GET, HEAD, DELETE"
}

func accepted(w http.ResponseWriter) error {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// uploadLocation is the URL of session id of name.
func uploadLocation(name, id string) string {
	return "/v2/" + name + "/" + uploadsSegment + "/" + url.PathEscape(id)
}

// setUploadHeaders sets the headers of an answer about session id: where
// it is, and the bytes it holds (Range: 0-<last>; "0-0" when empty, as
// distribution answers).
func setUploadHeaders(h http.Header, name, id string, size int64) {
	h.Set("Location", uploadLocation(name, id))
	h.Set("Docker-Upload-UUID", id)
	h.Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
	h.Set("Content-Length", "0")
}

// blobCreated answers 201 for blob d of name.
func blobCreated(w http.ResponseWriter, name string, d digest.Digest) error {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+d.String())
	h.Set(contentDigestHeader, d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// startUpload answers POST /v2/<name>/blobs/uploads/: a mount
// (?mount=&from=), a monolithic upload (?digest=, the blob as body), or a
// new session (202).
func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	ctx := r.Context()
	if m := q.Get("mount"); m != "" {
		d, err := layout.ParseDigest(m)
		if err != nil {
			return ErrDigestInvalid.WithDetail(err.Error())
		}
		from := q.Get("from")
		if from != "" {
			if err := layout.ValidateRepository(from); err != nil {
				return ErrNameInvalid.WithDetail(err.Error())
			}
		}
		if s.guard == nil || s.guard.mayMount(r, from) {
			mounted, err := s.push.w.MountBlob(ctx, name, from, d)
			if err != nil {
				return err
			}
			if mounted {
				return blobCreated(w, name, d)
			}
		}
		// Nothing to mount: a session, as the spec says.
	} else if v := q.Get("digest"); v != "" {
		d, err := layout.ParseDigest(v)
		if err != nil {
			return ErrDigestInvalid.WithDetail(err.Error())
		}
		// A declared length over --max-upload-size is refused by PutBlob
		// before it reads anything.
		body := s.limitBody(w, r)
		if r.ContentLength >= 0 {
			if err := s.push.w.PutBlob(ctx, name, d, r.ContentLength, body, s.push.p.MaxUploadSize); err != nil {
				return body.cut(err)
			}
			return blobCreated(w, name, d)
		}
		// A body of unknown length goes through a session.
		id, err := s.push.w.StartUpload(ctx, name)
		if err != nil {
			return err
		}
		if _, err := s.push.w.FinishUpload(ctx, name, id, d, body, s.push.p.MaxUploadSize); err != nil {
			_ = s.push.w.CancelUpload(context.WithoutCancel(ctx), name, id)
			return body.cut(err)
		}
		return blobCreated(w, name, d)
	}
	id, err := s.push.w.StartUpload(ctx, name)
	if err != nil {
		return err
	}
	setUploadHeaders(w.Header(), name, id, 0)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// serveUploadStatus answers GET of a session: 204 with its Range.
func (s *Server) serveUploadStatus(w http.ResponseWriter, r *http.Request, name, id string) error {
	if s.push == nil {
		return ErrNotFound
	}
	size, err := s.push.w.UploadStatus(r.Context(), name, id)
	if err != nil {
		return err
	}
	setUploadHeaders(w.Header(), name, id, size)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// patchUpload answers PATCH of a session: a chunk, at the offset its
// Content-Range gives (or at the session's end, for a streamed upload
// without one).
func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, name, id string) error {
	ctx := r.Context()
	start, end, ok, err := parseContentRange(r.Header.Get("Content-Range"))
	if err != nil {
		return ErrBlobUploadInvalid.WithDetail(err.Error())
	}
	if ok {
		if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
			return ErrUploadRange.WithDetail(fmt.Sprintf("Content-Range %d-%d is %d bytes, Content-Length %d", start, end, end-start+1, r.ContentLength))
		}
	} else {
		if start, err = s.push.w.UploadStatus(ctx, name, id); err != nil {
			return err
		}
	}
	body := s.limitBody(w, r)
	size, err := s.push.w.AppendUpload(ctx, name, id, start, body, s.push.p.MaxUploadSize)
	if err != nil {
		if errors.Is(err, ErrUploadRange) {
			setUploadHeaders(w.Header(), name, id, size)
		}
		return body.cut(err)
	}
	if ok && size != end+1 {
		// The body was shorter than its Content-Range: what came is
		// kept, and the client learns where the session ends.
		setUploadHeaders(w.Header(), name, id, size)
		return ErrSizeInvalid.WithDetail(fmt.Sprintf("Content-Range ends at %d, the upload holds %d bytes", end, size))
	}
	setUploadHeaders(w.Header(), name, id, size)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// finishUpload answers PUT of a session: ?digest= (required), with an
// optional last chunk as body.
func (s *Server) finishUpload(w http.ResponseWriter, r *http.Request, name, id string) error {
	v := r.URL.Query().Get("digest")
	if v == "" {
		return ErrDigestInvalid.WithDetail("the digest parameter is missing")
	}
	d, err := layout.ParseDigest(v)
	if err != nil {
		return ErrDigestInvalid.WithDetail(err.Error())
	}
	var last io.Reader
	var body *requestBody
	if r.ContentLength != 0 {
		if cr := r.Header.Get("Content-Range"); cr != "" {
			start, _, _, err := parseContentRange(cr)
			if err != nil {
				return ErrBlobUploadInvalid.WithDetail(err.Error())
			}
			size, err := s.push.w.UploadStatus(r.Context(), name, id)
			if err != nil {
				return err
			}
			if start != size {
				setUploadHeaders(w.Header(), name, id, size)
				return ErrUploadRange.WithDetail(fmt.Sprintf("the chunk starts at %d, the upload holds %d bytes", start, size))
			}
		}
		body = s.limitBody(w, r)
		last = body
	}
	if _, err := s.push.w.FinishUpload(r.Context(), name, id, d, last, s.push.p.MaxUploadSize); err != nil {
		return body.cut(err)
	}
	return blobCreated(w, name, d)
}

// limitBody is the request's body, cut at the upload bound (plus one
// byte, so that the writer sees it was passed).
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) *requestBody {
	if m := s.push.p.MaxUploadSize; m > 0 {
		return &requestBody{r: http.MaxBytesReader(w, r.Body, m+1)}
	}
	return &requestBody{r: r.Body}
}

// requestBody is an upload's body that remembers why reading it failed.
type requestBody struct {
	r   io.Reader
	err error
}

func (b *requestBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// cut turns err, the Pusher's error for an upload that read b, into the
// client's fault when the body did not come whole (the connection broke,
// or it sent less than it announced): a 400, not a 500 with an error
// logged. A client that went away is clientGone's (every write). Any other
// error is returned as it is.
func (b *requestBody) cut(err error) error {
	var e *Error
	if b == nil || b.err == nil || err == nil || errors.As(err, &e) {
		return err
	}
	return ErrBlobUploadInvalid.WithDetail("the request body did not come whole: " + b.err.Error())
}

// clientGone turns the failure of a write whose client went away (its
// request's context ended: the client closed the connection, or cancelled
// the request after another one failed, as crane does) into the answer to
// a request that did not come whole, which nobody reads: it is not a
// server error, and is not logged as one. What the write had done is
// kept or undone as for any failure (a session keeps its chunks).
func clientGone(r *http.Request, err error) error {
	var e *Error
	if err == nil || r.Context().Err() == nil || errors.As(err, &e) {
		return err
	}
	return ErrBlobUploadInvalid.WithDetail("the client went away: " + context.Cause(r.Context()).Error())
}

// parseContentRange parses a chunk's Content-Range: "<start>-<end>", as
// the OCI spec writes it, or "bytes <start>-<end>[/<total>]" or
// "bytes=<start>-<end>", as some clients send it. ok is false for an
// empty header.
func parseContentRange(v string) (start, end int64, ok bool, err error) {
	if v == "" {
		return 0, 0, false, nil
	}
	s := strings.TrimSpace(v)
	s = strings.TrimPrefix(s, "bytes")
	s = strings.TrimLeft(s, " =")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false, fmt.Errorf("Content-Range %q: want <start>-<end>", v)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false, fmt.Errorf("Content-Range %q: want <start>-<end>", v)
	}
	return start, end, true, nil
}

// putManifest answers PUT /v2/<name>/manifests/<reference>[?tag=…].
func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, name, ref string) error {
	if strings.Contains(ref, ":") {
		if _, err := layout.ParseDigest(ref); err != nil {
			return ErrDigestInvalid.WithDetail(err.Error())
		}
	} else if err := layout.ValidateTag(ref); err != nil {
		return ErrTagInvalid.WithDetail(err.Error())
	}
	tags := r.URL.Query()["tag"]
	for _, t := range tags {
		if err := layout.ValidateTag(t); err != nil {
			return ErrTagInvalid.WithDetail(err.Error())
		}
	}
	if r.ContentLength > layout.MaxManifestSize {
		return ErrManifestTooLarge.WithDetail(fmt.Sprintf("%d bytes, more than the %d accepted", r.ContentLength, layout.MaxManifestSize))
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, layout.MaxManifestSize+1))
	if err != nil {
		return ErrManifestInvalid.WithDetail("reading the body: " + err.Error())
	}
	if len(data) > layout.MaxManifestSize {
		return ErrManifestTooLarge.WithDetail(fmt.Sprintf("more than the %d bytes accepted", layout.MaxManifestSize))
	}
	// Where some callers may not read some repositories, a manifest may
	// reference only what its repository lists.
	onlyListed := s.guard != nil && s.guard.a.Restricted()
	d, err := s.push.w.PutManifest(r.Context(), name, ref, r.Header.Get("Content-Type"), data, tags, onlyListed)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/manifests/"+d.String())
	h.Set(contentDigestHeader, d.String())
	if subj := subjectOf(data); subj != "" {
		h.Set("OCI-Subject", subj)
	}
	for _, t := range tags {
		h.Add("OCI-Tag", t)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// subjectOf returns the digest of the subject of a manifest, or "".
func subjectOf(data []byte) string {
	var m struct {
		Subject *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(data, &m) != nil || m.Subject == nil {
		return ""
	}
	return m.Subject.Digest.String()
}
