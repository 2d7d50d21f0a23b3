package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/redirector"
	"github.com/opencontainers/go-digest"
)

// pullerAdapter is a publish.Puller as the redirector.Puller that heron
// serve's pull-through caches call (package redirector does not import
// package publish).
type pullerAdapter struct{ p *publish.Puller }

var _ redirector.Puller = pullerAdapter{}

func (a pullerAdapter) PullTag(ctx context.Context, up redirector.PullThrough, upstream, name, tag string) error {
	return upstreamError(a.p.PullTag(ctx, up.URL, upstream, name, tag))
}

func (a pullerAdapter) PullDigest(ctx context.Context, up redirector.PullThrough, upstream, name string, d digest.Digest) error {
	return upstreamError(a.p.PullDigest(ctx, up.URL, upstream, name, d))
}

// upstreamError adds redirector.ErrUpstreamUnknown to an error that is
// publish.ErrUpstreamUnknown.
func upstreamError(err error) error {
	if errors.Is(err, publish.ErrUpstreamUnknown) {
		return fmt.Errorf("%w (%w)", err, redirector.ErrUpstreamUnknown)
	}
	return err
}

// parsePullThrough parses the values of --pull-through, PREFIX=URL: PREFIX
// is the first component(s) of a repository name (docker.io, mirror/ghcr),
// URL the registry's https://HOST[:PORT] (or http:// for plain HTTP). Two
// caches may not have the same prefix, nor one inside the other's.
func parsePullThrough(specs []string) ([]redirector.PullThrough, error) {
	var caches []redirector.PullThrough
	for _, spec := range specs {
		prefix, u, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("--pull-through %q: want PREFIX=URL, such as mirror=https://HOST", spec)
		}
		prefix = strings.TrimSuffix(prefix, "/")
		if err := layout.ValidateRepository(prefix); err != nil {
			return nil, fmt.Errorf("--pull-through %q: PREFIX %q is not the start of a repository name: %w", spec, prefix, err)
		}
		host, insecure, err := publish.ParseRegistryURL(u)
		if err != nil {
			return nil, fmt.Errorf("--pull-through %q: %w", spec, err)
		}
		scheme := "https://"
		if insecure {
			scheme = "http://"
		}
		for _, c := range caches {
			if c.Prefix == prefix || strings.HasPrefix(prefix, c.Prefix+"/") || strings.HasPrefix(c.Prefix, prefix+"/") {
				return nil, fmt.Errorf("--pull-through %q: PREFIX %q overlaps %q (%s): give each cache names of its own", spec, prefix, c.Prefix, c.URL)
			}
		}
		caches = append(caches, redirector.PullThrough{Prefix: prefix, URL: scheme + host})
	}
	return caches, nil
}
