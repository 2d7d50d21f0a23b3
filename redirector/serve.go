package redirector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heron-registry/heron/layout"
	"github.com/opencontainers/go-digest"
)

// wellKnownBlobs are served from any existing repository, listed or not and
// stored or not, by a server that takes no pushes: clients (and Docker's
// schema 1 conversions) ask for them without any manifest of the
// repository naming them.
var wellKnownBlobs = map[digest.Digest][]byte{
	// EmptyLayer is a gzipped empty tar archive (two zero blocks), the
	// layer Docker uses for "throwaway" layers; these are its canonical
	// 32 bytes, as distribution ships them.
	emptyLayerDigest: {
		0x1f, 0x8b, 0x08, 0x00, 0x00, 0x09, 0x6e, 0x88, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14,
		0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
	},
	// The OCI empty descriptor's content
	// (https://github.com/opencontainers/image-spec/blob/main/manifest.md#guidance-for-an-empty-descriptor).
	emptyJSONDigest: []byte("{}"),
}

const (
	emptyLayerDigest digest.Digest = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
	emptyJSONDigest  digest.Digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
)

// repository returns the repository file of a valid name, ErrNameUnknown if
// there is none, or an internal error (logged by respond, with the file's
// path) if it cannot be read or is malformed: that fails this repository
// only.
//
// A protected repository is answered exactly as one that does not exist:
// heron serve has no authentication yet, so no caller may read it, and
// none may tell it from a name that is not there (the catalog leaves it
// out too, see catalogPage). The first one asked for is logged, once.
func (s *Server) repository(ctx context.Context, name string) (layout.RepositoryView, error) {
	repo, err := s.repos.repository(ctx, name)
	found := !errors.Is(err, errNotFound)
	if found && err != nil {
		return repo, err
	}
	if err := s.hides(ctx, name, found, found && repo.Protected()); err != nil {
		if found && repo.Protected() && s.guard == nil && !s.protectedSeen.Load() && s.protectedSeen.CompareAndSwap(false, true) {
			s.log.WarnContext(ctx, "a protected repository was asked for: heron serve has no authentication yet, so it answers every request for a protected repository as for one that does not exist, and leaves protected repositories out of /v2/_catalog (logged once)",
				"repository", name)
		}
		return layout.RepositoryView{}, err
	}
	return repo, nil
}

// blobBase is where blobs (and, with WithRedirectManifests, manifests) of
// repository name, of which repo is the file, are redirected to: the
// repository's own base URL, else the server's, else nowhere (""). A
// repository anonymous callers may not read is redirected there only when
// the redirects are signed (and expire): a plain URL would serve its
// content to anyone who has it; its content is then sent by the server
// (or redirected to a presigned URL of its bucket).
func (s *Server) blobBase(name string, repo layout.RepositoryView) string {
	base := repo.BlobBaseURL() // normalized by layout
	if base == "" {
		base = s.redirectBase
	}
	if base != "" && s.guard != nil && s.signer == nil && !s.publicRepository(name, repo) {
		return ""
	}
	return base
}

// redirectTo returns the redirect to the blob key of d under base, signed
// when the server signs its redirects.
func (s *Server) redirectTo(base string, d digest.Digest) error {
	key, err := layout.BlobKey(d)
	if err != nil {
		return err
	}
	return &redirect{location: s.signRedirect(base + "/" + key)}
}

func etag(d digest.Digest) string { return `"` + d.String() + `"` }

// notModified reports whether the request's If-None-Match matches the ETag
// (weak comparison, as RFC 9110 asks for If-None-Match).
func notModified(r *http.Request, tag string) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return false
	}
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}

// serveManifest answers GET and HEAD /v2/<name>/manifests/<reference>
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests).
// The stored manifest is sent whatever the Accept header says, as
// registries do; its Content-Type is the media type the repository file
// records.
func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, name, ref string) error {
	if layout.IsDigest(ref) {
		if _, err := layout.ParseDigest(ref); err != nil {
			return ErrDigestInvalid.WithDetail(err.Error())
		}
	} else if err := layout.ValidateTag(ref); err != nil {
		return ErrTagInvalid.WithDetail(err.Error())
	}
	repo, err := s.repository(r.Context(), name)
	if err != nil {
		return err
	}
	kind := layout.TagKind
	if layout.IsDigest(ref) {
		kind = layout.ManifestKind
	}
	hv, ok, err := s.holder(r.Context(), name, repo, kind, ref)
	if err != nil {
		return err
	}
	var m layout.ManifestInfo
	if ok {
		m, ok = hv.Resolve(ref)
	}
	if !ok {
		return ErrManifestUnknown.WithDetail(map[string]string{"name": name, "reference": ref})
	}
	// A hot manifest (in the cache) is answered without any file access;
	// otherwise mc carries its headers only, until it is read.
	mc, hot := s.manifests.hotManifest(m)
	if !hot {
		mc = newManifestEntry(m.Digest(), m.Size, nil)
	}
	h := w.Header()
	h[contentDigestKey] = mc.digest
	h[etagKey] = mc.etag
	if r.Method == http.MethodGet && s.redirectManifests {
		if base := s.blobBase(name, repo); base != "" {
			return s.redirectTo(base, digest.Digest(mc.digest[0]))
		}
	}
	if notModified(r, mc.etag[0]) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	switch {
	case hot:
	case r.Method == http.MethodHead:
		// HEAD sends no bytes, so without a cache to fill it does not
		// read them: the file must only be there with the listed size.
		// A cache reads and keeps them for the GET that follows, and
		// answers as without a cache if they do not verify.
		full, err := s.manifests.checkManifest(r.Context(), m)
		if err != nil {
			return err
		}
		if full != nil {
			mc = full
		}
	default:
		if mc, err = s.manifests.manifest(r.Context(), m); err != nil {
			return err
		}
	}
	h[contentTypeKey] = []string{m.MediaType}
	h[contentLengthKey] = mc.length
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(mc.data)
	}
	return nil
}

// serveBlob answers GET and HEAD /v2/<name>/blobs/<digest>
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-blobs):
// only for a digest the repository lists as a blob or a manifest, by a 307
// to the blob base URL if there is one, or with the bytes and Range
// support otherwise. A blob listed as not stored is fetched on demand
// (ondemand.go) when the server has a Filler.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	d, err := layout.ParseDigest(ref)
	if err != nil {
		return ErrDigestInvalid.WithDetail(err.Error())
	}
	repo, err := s.repository(r.Context(), name)
	if err != nil {
		return err
	}
	// Where clients push, the listing is the truth: a push client that
	// finds a blob with HEAD does not upload it, and the manifest PUT
	// accepts only what the repository (or the tree) holds; a deleted
	// well-known blob is gone too.
	if content, ok := wellKnownBlobs[d]; ok && s.push == nil {
		serveContent(w, r, d, bytes.NewReader(content))
		return nil
	}
	var size int64
	stored := true
	hv, ok, err := s.holder(r.Context(), name, repo, layout.BlobKind, string(d))
	if err != nil {
		return err
	}
	if ok {
		size, stored, ok = hv.Blob(d)
	}
	if !ok {
		// A manifest may be asked for as a blob.
		if hv, ok, err = s.holder(r.Context(), name, repo, layout.ManifestKind, string(d)); err != nil {
			return err
		}
		var m layout.ManifestInfo
		if ok {
			m, ok = hv.Manifest(d)
		}
		if !ok {
			return ErrBlobUnknown.WithDetail(map[string]string{"name": name, "digest": d.String()})
		}
		size, stored = m.Size, true
	}
	h := w.Header()
	h[contentDigestKey] = []string{d.String()}
	if !stored {
		// Listed by an on_demand publish but not fetched yet: its size is
		// known, its bytes are not here.
		if r.Method == http.MethodHead {
			h.Set("Content-Type", blobContentType)
			h.Set("Content-Length", strconv.FormatInt(size, 10))
			h.Set("Etag", etag(d))
			w.WriteHeader(http.StatusOK)
			return nil
		}
		if s.fill != nil {
			return s.serveOnDemand(w, r, name, repo, d, size)
		}
		s.log.WarnContext(r.Context(), "blob is listed but not stored, and this server fetches nothing (no filler)",
			"repository", name, "digest", d.String())
		return ErrBlobUnknown.WithDetail(map[string]string{"name": name, "digest": d.String()})
	}
	if err := s.blobRedirect(r.Context(), r.Method, name, repo, d); err != nil {
		return err
	}
	if r.Method == http.MethodHead && !conditional(r) {
		// What http.ServeContent answers, without opening the file:
		// a stat says it is there, whole.
		if err := s.files.statBlob(r.Context(), d, size); err != nil {
			return err
		}
		setBlobHeaders(h, d)
		h[acceptRangesKey] = acceptRangesValue
		h[contentLengthKey] = []string{strconv.FormatInt(size, 10)}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	return s.files.sendBlob(w, r, d, size)
}

// blobRedirect returns the redirect that answers a request (of method) for
// blob d of repo instead of its bytes, or nil when the server sends them:
// to the repository's blob base URL, else the server's (WithRedirectBase),
// else, for a store that signs URLs, to a presigned URL of the store
// (unless WithServeBlobs). Every redirect of a blob is decided here, so
// that what applies to all of them (a signature of the URL) is applied in
// one place.
func (s *Server) blobRedirect(ctx context.Context, method, name string, repo layout.RepositoryView, d digest.Digest) error {
	if base := s.blobBase(name, repo); base != "" {
		return s.redirectTo(base, d)
	}
	if s.presign != nil {
		return s.presign.redirect(ctx, method, d)
	}
	return nil
}

// conditional reports whether r has a header that http.ServeContent
// answers with another status than 200 (a range, a precondition).
func conditional(r *http.Request) bool {
	for _, k := range [...]string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if _, ok := r.Header[k]; ok {
			return true
		}
	}
	return false
}

// setBlobHeaders sets the headers of every answer with the bytes of blob d.
func setBlobHeaders(h http.Header, d digest.Digest) {
	h[contentTypeKey] = blobContentTypeValue
	h[contentDigestKey] = []string{d.String()}
	h[etagKey] = []string{etag(d)}
	h[cacheControlKey] = blobCacheControlValue
}

// serveContent sends content with the blob headers; http.ServeContent
// handles HEAD, Range (206, 416) and If-None-Match (304).
func serveContent(w http.ResponseWriter, r *http.Request, d digest.Digest, content io.ReadSeeker) {
	setBlobHeaders(w.Header(), d)
	if _, ok := r.Header["Range"]; ok {
		r = rangesFor(r, content)
	}
	// No modification time: the digest is the validator.
	http.ServeContent(w, r, "", time.Time{}, content)
}

// writeJSON sends v as a JSON body with its length.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the server's own types are written here; they marshal.
		panic(err)
	}
	writeBody(w, status, "application/json", body)
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
