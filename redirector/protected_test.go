package redirector

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/heron-registry/heron/layout"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestProtectedIsUnknown: until heron serve has authentication, a protected
// repository is answered exactly as one that does not exist (status,
// fields, body), for manifests, blobs (redirected or served), tags/list and
// referrers, and the catalog leaves it out; the first request for one is
// logged, once.
func TestProtectedIsUnknown(t *testing.T) {
	var targets []string
	build := func(protectedExists bool) *testTree {
		tt := newTestTree(t)
		config := tt.blob(v1.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux"}`))
		layer := tt.blob(v1.MediaTypeImageLayerGzip, []byte("layer bytes"))
		m := v1.Manifest{Config: config, Layers: []v1.Descriptor{layer}}
		desc, _ := tt.manifest(m)
		sig := v1.Manifest{ArtifactType: "application/vnd.example.sig", Config: v1.DescriptorEmptyJSON, Layers: []v1.Descriptor{layer}, Subject: &desc}
		sigDesc, _ := tt.manifest(sig)
		tt.write("blobs/sha256/"+v1.DescriptorEmptyJSON.Digest.Encoded(), v1.DescriptorEmptyJSON.Data)
		for _, name := range []string{"pub/app", "sec/app"} {
			if name == "sec/app" && !protectedExists {
				continue
			}
			r := layout.NewRepository(name)
			r.Protected = name == "sec/app"
			addImage(r, desc, m)
			addImage(r, sigDesc, sig)
			r.Tags["v1"] = desc.Digest
			tt.repository(r)
		}
		names := []string{"a/1", "pub/app", "sec/app", "sec/b", "sec/c", "z/1"}
		protected := []string{"sec/app", "sec/b", "sec/c"}
		if !protectedExists {
			names = []string{"a/1", "pub/app", "z/1"}
			protected = nil
		}
		tt.catalog(names, 2, protected...)
		targets = []string{"/manifests/v1", "/manifests/" + desc.Digest.String(), "/manifests/" + sigDesc.Digest.String(),
			"/tags/list", "/tags/list?n=1",
			"/referrers/" + desc.Digest.String(), "/referrers/" + desc.Digest.String() + "?artifactType=application/vnd.example.sig",
			"/blobs/" + emptyLayerDigest.String(), "/blobs/" + emptyJSONDigest.String(), "/blobs/" + desc.Digest.String(),
			"/blobs/" + config.Digest.String(), "/blobs/" + layer.Digest.String()}
		return tt
	}
	withRepo, without := build(true), build(false)

	for _, redirect := range []bool{false, true} {
		for _, m := range cacheModes {
			t.Run(fmt.Sprintf("%s/redirect=%v", m.name, redirect), func(t *testing.T) {
				opts := m.opts
				if redirect {
					opts = append(opts[:len(opts):len(opts)], WithRedirectBase("https://cdn.example.com/tree"))
				}
				protectedSrv, _, logs := newTestServer(t, withRepo.dir(), opts...)
				absentSrv, _, _ := newTestServer(t, without.dir(), opts...)
				for _, target := range targets {
					for _, method := range []string{http.MethodGet, http.MethodHead} {
						for range 2 { // the second time from the caches
							got, gotBody := fetch(t, protectedSrv, method, "/v2/sec/app"+target, nil)
							want, wantBody := fetch(t, absentSrv, method, "/v2/sec/app"+target, nil)
							if g, w := describeAnswer(got, gotBody), describeAnswer(want, wantBody); g != w {
								t.Errorf("%s %s:\nprotected:\n%s\nabsent:\n%s", method, target, g, w)
							}
							// Referrers of an unknown repository are an
							// empty list; everything else is a 404.
							if wantStatus := http.StatusNotFound; strings.HasPrefix(target, "/referrers/") && got.StatusCode != http.StatusOK ||
								!strings.HasPrefix(target, "/referrers/") && got.StatusCode != wantStatus {
								t.Errorf("%s %s: %d", method, target, got.StatusCode)
							}
							pub, _ := fetch(t, protectedSrv, method, "/v2/pub/app"+target, nil)
							if pub.StatusCode >= 400 {
								t.Errorf("%s %s of the public repository: %d", method, target, pub.StatusCode)
							}
						}
					}
				}
				if n := strings.Count(logs.take(), "a protected repository was asked for"); n != 1 {
					t.Errorf("logged %d warnings, want 1", n)
				}
				// The catalog: protected names are left out, from every
				// page, a shard of them only included.
				for _, n := range []string{"", "?n=1", "?n=2", "?n=3", "?n=1&last=pub/app", "?n=1&last=sec/app"} {
					got, gotBody := fetch(t, protectedSrv, http.MethodGet, "/v2/_catalog"+n, nil)
					want, wantBody := fetch(t, absentSrv, http.MethodGet, "/v2/_catalog"+n, nil)
					if g, w := describeAnswer(got, gotBody), describeAnswer(want, wantBody); g != w {
						t.Errorf("_catalog%s:\nwith protected names:\n%s\nwithout:\n%s", n, g, w)
					}
				}
			})
		}
	}
}

// describeAnswer is what a client sees of an answer: its status, its
// fields but Date, its body.
func describeAnswer(resp *http.Response, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", resp.StatusCode)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range resp.Header {
			if k != "Date" && !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s: %q\n", k, resp.Header[k])
	}
	b.Write(body)
	return b.String()
}
