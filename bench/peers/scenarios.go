package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/heron-registry/heron/bench/load"
	"github.com/heron-registry/heron/bench/treegen"
	"github.com/opencontainers/go-digest"
)

// acceptManifests is the Accept header real clients send to resolve a tag:
// the four manifest types.
const acceptManifests = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// fixture is what every server holds: the tree's image in repository repo
// (tagged latest) and in tagsRepo (tagged with tagsCount tags).
type fixture struct {
	img       *treegen.Image
	repo      string
	tagsRepo  string
	tagsCount int
}

func (f *fixture) manifestType() string { return treegen.ManifestMediaType }

func (f *fixture) manifestPath(repo, ref string) string {
	return "/v2/" + repo + "/manifests/" + ref
}

func (f *fixture) blobPath(repo string, d digest.Digest) string {
	return "/v2/" + repo + "/blobs/" + string(d)
}

func (f *fixture) tags() []string {
	tags := make([]string, f.tagsCount)
	for k := range tags {
		tags[k] = treegen.TagName(k)
	}
	return tags
}

// Target names: the servers compared. nginx answers the redirect scenario
// under its own path prefix; heron answers it from a second instance
// started with --blob-base-url. A third heron runs without its caches, to
// show what a request costs when it reads the files.
const (
	tNginx         = "nginx"
	tNginxUntuned  = "nginx, no open_file_cache"
	tNginxRedirect = "nginx (return 307)"
	tRegistry      = "registry:2"
	tHeron         = "heron"
	tHeronRedirect = "heron --blob-base-url"
	tHeronNoCache  = "heron --cache-size 0"
	// The same two herons with every request on Go's net/http instead of
	// heron's HTTP/1.1 loop (redirector/h1), to show what the loop is worth.
	tHeronNetHTTP         = "heron --fast-path=false"
	tHeronRedirectNetHTTP = "heron --blob-base-url --fast-path=false"
	// The floors of the 307 (floor.go): Go servers that answer it and do
	// nothing else.
	tFloorNetHTTP = "Go net/http, empty handler"
	tFloorLoop    = "Go minimal loop"
)

// target is one server as a scenario sees it.
type target struct {
	name   string
	addr   string
	prefix string // prepended to every path
}

// scenario is one kind of request, sent the same way to every target that
// takes part.
type scenario struct {
	id         string
	title      string
	method     string
	accept     bool // send the four-type Accept header
	path       func(f *fixture) string
	status     int
	bodySize   func(f *fixture) int64 // checked on every GET; nil: any
	throughput bool                   // report MiB/s
	targets    []string
	// check verifies one answer before the load runs, so that every
	// server is measured giving the same, right answer.
	check func(f *fixture, resp *http.Response, body []byte) error
}

func scenarios() []scenario {
	manifestBody := func(f *fixture) int64 { return int64(len(f.img.Manifest)) }
	layerBody := func(f *fixture) int64 { return int64(len(f.img.Layer)) }
	peers := []string{tNginx, tNginxUntuned, tRegistry, tHeron, tHeronNetHTTP, tHeronNoCache}
	return []scenario{
		{id: "manifest-get-tag", title: "GET manifest by tag", method: http.MethodGet, accept: true,
			path:   func(f *fixture) string { return f.manifestPath(f.repo, "latest") },
			status: 200, bodySize: manifestBody, targets: peers, check: checkManifest},
		{id: "manifest-head-tag", title: "HEAD manifest by tag", method: http.MethodHead, accept: true,
			path:   func(f *fixture) string { return f.manifestPath(f.repo, "latest") },
			status: 200, targets: peers, check: checkManifest},
		{id: "manifest-get-digest", title: "GET manifest by digest", method: http.MethodGet, accept: true,
			path:   func(f *fixture) string { return f.manifestPath(f.repo, string(f.img.ManifestDigest)) },
			status: 200, bodySize: manifestBody, targets: peers, check: checkManifest},
		{id: "blob-head", title: "HEAD blob (1 MiB)", method: http.MethodHead,
			path:   func(f *fixture) string { return f.blobPath(f.repo, f.img.LayerDigest) },
			status: 200, targets: peers, check: checkLayer},
		{id: "blob-get", title: "GET blob (1 MiB)", method: http.MethodGet,
			path:   func(f *fixture) string { return f.blobPath(f.repo, f.img.LayerDigest) },
			status: 200, bodySize: layerBody, throughput: true, targets: peers, check: checkLayer},
		{id: "blob-307", title: "GET blob, answered 307", method: http.MethodGet,
			path:    func(f *fixture) string { return f.blobPath(f.repo, f.img.LayerDigest) },
			status:  307,
			targets: []string{tNginxRedirect, tHeronRedirect, tHeronRedirectNetHTTP, tFloorNetHTTP, tFloorLoop}, check: checkRedirect},
		{id: "tags-list", title: "GET tags/list (100 tags)", method: http.MethodGet,
			path:   func(f *fixture) string { return "/v2/" + f.tagsRepo + "/tags/list" },
			status: 200, targets: peers, check: checkTags},
	}
}

func (s *scenario) request(f *fixture, t target) load.Request {
	r := load.Request{Method: s.method, Path: t.prefix + s.path(f)}
	if s.accept {
		r.Header = http.Header{"Accept": {acceptManifests}}
	}
	return r
}

// preflight sends the scenario's request once to t with net/http and
// checks the answer.
func (s *scenario) preflight(f *fixture, t target) error {
	r := s.request(f, t)
	req, err := http.NewRequest(r.Method, "http://"+t.addr+r.Path, nil)
	if err != nil {
		return err
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: noRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != s.status {
		return fmt.Errorf("%s %s: status %d, want %d: %.200s", r.Method, r.Path, resp.StatusCode, s.status, body)
	}
	if s.check != nil {
		if err := s.check(f, resp, body); err != nil {
			return fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
		}
	}
	return nil
}

func checkManifest(f *fixture, resp *http.Response, body []byte) error {
	if ct := resp.Header.Get("Content-Type"); ct != f.manifestType() {
		return fmt.Errorf("Content-Type %q, want %q", ct, f.manifestType())
	}
	if dg := resp.Header.Get("Docker-Content-Digest"); dg != string(f.img.ManifestDigest) {
		return fmt.Errorf("Docker-Content-Digest %q, want %s", dg, f.img.ManifestDigest)
	}
	if resp.ContentLength != int64(len(f.img.Manifest)) {
		return fmt.Errorf("Content-Length %d, want %d", resp.ContentLength, len(f.img.Manifest))
	}
	if resp.Request.Method == http.MethodGet && !bytes.Equal(body, f.img.Manifest) {
		return fmt.Errorf("the body is not the manifest")
	}
	return nil
}

func checkLayer(f *fixture, resp *http.Response, body []byte) error {
	if resp.ContentLength != int64(len(f.img.Layer)) {
		return fmt.Errorf("Content-Length %d, want %d", resp.ContentLength, len(f.img.Layer))
	}
	if resp.Request.Method == http.MethodGet && digest.FromBytes(body) != f.img.LayerDigest {
		return fmt.Errorf("the body is not the layer")
	}
	return nil
}

func checkRedirect(f *fixture, resp *http.Response, _ []byte) error {
	hex := f.img.LayerDigest.Encoded()
	if loc := resp.Header.Get("Location"); !strings.HasSuffix(loc, "/blobs/sha256/"+hex) {
		return fmt.Errorf("Location %q does not name the blob", loc)
	}
	return nil
}

func checkTags(f *fixture, _ *http.Response, body []byte) error {
	var tl struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &tl); err != nil {
		return err
	}
	if tl.Name != f.tagsRepo || len(tl.Tags) != f.tagsCount {
		return fmt.Errorf("tags/list of %q with %d tags, want %q with %d", tl.Name, len(tl.Tags), f.tagsRepo, f.tagsCount)
	}
	return nil
}
