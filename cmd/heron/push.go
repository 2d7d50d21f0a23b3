package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/redirector"
	"github.com/heron-registry/heron/redirector/httpd"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/pflag"
)

// pusherAdapter is a publish.Publisher as the redirector.Pusher of heron
// serve --push: it calls the publisher, and turns the publisher's errors
// that are a client's fault into the server's OCI errors (package
// redirector does not import package publish). Other errors pass as they
// are: the server answers them 500 and logs them.
type pusherAdapter struct{ p *publish.Publisher }

var _ redirector.Pusher = pusherAdapter{}

func (a pusherAdapter) StartUpload(ctx context.Context, name string) (string, error) {
	id, err := a.p.StartUpload(ctx, name)
	return id, pushError(err, nil)
}

func (a pusherAdapter) UploadStatus(ctx context.Context, name, id string) (int64, error) {
	n, err := a.p.UploadStatus(ctx, name, id)
	return n, pushError(err, nil)
}

func (a pusherAdapter) AppendUpload(ctx context.Context, name, id string, offset int64, r io.Reader, max int64) (int64, error) {
	n, err := a.p.AppendUpload(ctx, name, id, offset, r, max)
	return n, pushError(err, nil)
}

func (a pusherAdapter) FinishUpload(ctx context.Context, name, id string, d digest.Digest, last io.Reader, max int64) (int64, error) {
	n, err := a.p.FinishUpload(ctx, name, id, d, last, max)
	return n, pushError(err, redirector.ErrBlobUnknown)
}

func (a pusherAdapter) CancelUpload(ctx context.Context, name, id string) error {
	return pushError(a.p.CancelUpload(ctx, name, id), nil)
}

func (a pusherAdapter) PutBlob(ctx context.Context, name string, d digest.Digest, size int64, r io.Reader, max int64) error {
	return pushError(a.p.PutBlob(ctx, name, d, size, r, max), redirector.ErrBlobUnknown)
}

func (a pusherAdapter) MountBlob(ctx context.Context, name, from string, d digest.Digest) (bool, error) {
	_, ok, err := a.p.MountBlob(ctx, name, from, d)
	return ok, pushError(err, nil)
}

func (a pusherAdapter) PutManifest(ctx context.Context, name, reference, mediaType string, data []byte, tags []string, onlyListed bool) (digest.Digest, error) {
	d, err := a.p.PutManifestWith(ctx, name, reference, mediaType, data, publish.PushOptions{Tags: tags, OnlyListed: onlyListed})
	return d, pushError(err, nil)
}

func (a pusherAdapter) DeleteManifest(ctx context.Context, name, reference string) error {
	return pushError(a.p.DeleteManifest(ctx, name, reference), redirector.ErrManifestUnknown)
}

func (a pusherAdapter) DeleteBlob(ctx context.Context, name string, d digest.Digest) error {
	return pushError(a.p.UnlinkBlob(ctx, name, d), redirector.ErrBlobUnknown)
}

// pushError maps an error of the publisher to the server's answer;
// notFound is the answer to publish.ErrNotFound (nil: none, the error
// stays internal).
func pushError(err error, notFound *redirector.Error) error {
	if err == nil {
		return nil
	}
	detail := err.Error()
	var re *publish.ReferenceError
	switch {
	case errors.As(err, &re) && re.Manifest:
		return redirector.ErrManifestReferenceUnknown.WithDetail(detail)
	case errors.As(err, &re):
		return redirector.ErrManifestBlobUnknown.WithDetail(detail)
	case errors.Is(err, publish.ErrUploadUnknown):
		return redirector.ErrBlobUploadUnknown.WithDetail(detail)
	case errors.Is(err, publish.ErrUploadRange):
		return redirector.ErrUploadRange.WithDetail(detail)
	case errors.Is(err, publish.ErrUploadTooLarge), isMaxBytes(err):
		return redirector.ErrUploadTooLarge.WithDetail(detail)
	case errors.Is(err, publish.ErrDigestMismatch), errors.Is(err, publish.ErrManifestDigestMismatch):
		return redirector.ErrDigestInvalid.WithDetail(detail)
	case errors.Is(err, publish.ErrSizeMismatch):
		return redirector.ErrSizeInvalid.WithDetail(detail)
	case errors.Is(err, publish.ErrManifestInvalid):
		return redirector.ErrManifestInvalid.WithDetail(detail)
	case errors.Is(err, publish.ErrManifestInUse), errors.Is(err, publish.ErrBlobInUse):
		return redirector.ErrInUse.WithDetail(detail)
	case errors.Is(err, publish.ErrNameConflict):
		return redirector.ErrNameInvalid.WithDetail(detail)
	case errors.Is(err, publish.ErrNotFound) && notFound != nil:
		return notFound.WithDetail(detail)
	}
	return err
}

// isMaxBytes reports whether err is a body cut by http.MaxBytesReader
// (the server's --max-upload-size).
func isMaxBytes(err error) bool {
	var e *http.MaxBytesError
	return errors.As(err, &e)
}

// pushFlags are heron serve's flags for pushes.
type pushFlags struct {
	push, delete, insecureAnonymous bool
	maxUploadSize                   int64
}

func (f *pushFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&f.push, "push", false, "accept pushes (blob uploads, manifests) into the tree; needs authentication (--htpasswd, tokens or client certificates) unless --insecure-anonymous-push")
	fs.BoolVar(&f.delete, "delete", false, "with --push: accept DELETE of manifests, tags and blobs (their bytes are left for heron gc)")
	fs.Int64Var(&f.maxUploadSize, "max-upload-size", 0, "with --push: the largest blob accepted, in bytes (0: no limit)")
	fs.BoolVar(&f.insecureAnonymous, "insecure-anonymous-push", false, "with --push: let anyone push and delete, without credentials (for tests on a loopback address only)")
}

// configure sets c's Pusher and PushOptions from the flags, or refuses
// a combination that cannot work.
func (f *pushFlags) configure(c *httpd.Config, pub *publish.Publisher) error {
	if !f.push {
		switch {
		case f.delete:
			return errors.New("--delete needs --push")
		case f.insecureAnonymous:
			return errors.New("--insecure-anonymous-push needs --push")
		case f.maxUploadSize != 0:
			return errors.New("--max-upload-size needs --push")
		}
		return nil
	}
	if c.ReadOnly {
		return errors.New("--push writes into the tree: it cannot be used with --read-only")
	}
	if f.maxUploadSize < 0 {
		return fmt.Errorf("--max-upload-size %d: want 0 (no limit) or more", f.maxUploadSize)
	}
	if f.insecureAnonymous && c.AuthConfigured() {
		return errors.New("--insecure-anonymous-push lets anyone push without credentials: it cannot be combined with --htpasswd, --token-key or --tls-client-ca (who may push is then the access file's, docs/access.md)")
	}
	if !f.insecureAnonymous && !c.AuthConfigured() {
		return errors.New("--push needs authentication: give --htpasswd FILE (and optionally --token-key), or --tls-client-ca; --insecure-anonymous-push lets anyone push (tests on loopback only)")
	}
	c.Pusher = pusherAdapter{pub}
	c.Push = redirector.PushOptions{Delete: f.delete, MaxUploadSize: f.maxUploadSize}
	return nil
}
