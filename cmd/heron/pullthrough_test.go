package main

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/heron-registry/heron/internal/servetest"
	"github.com/heron-registry/heron/layout"
	"github.com/heron-registry/heron/publish"
	"github.com/heron-registry/heron/redirector"
)

func TestParsePullThrough(t *testing.T) {
	for _, tc := range []struct {
		Description string
		Specs       []string
		Want        []redirector.PullThrough
		Err         string
	}{
		{Description: "none"},
		{Description: "two",
			Specs: []string{"mirror=https://registry.example", "local/dev=http://127.0.0.1:5000/"},
			Want:  []redirector.PullThrough{{Prefix: "mirror", URL: "https://registry.example"}, {Prefix: "local/dev", URL: "http://127.0.0.1:5000"}}},
		{Description: "final slash of the prefix", Specs: []string{"mirror/=HTTPS://registry.example:443"},
			Want: []redirector.PullThrough{{Prefix: "mirror", URL: "https://registry.example:443"}}},
		{Description: "no =", Specs: []string{"mirror"}, Err: `--pull-through "mirror": want PREFIX=URL`},
		{Description: "empty prefix", Specs: []string{"=https://registry.example"}, Err: `PREFIX "" is not the start of a repository name`},
		{Description: "upper case prefix", Specs: []string{"Mirror=https://registry.example"}, Err: `PREFIX "Mirror"`},
		{Description: "prefix with a port", Specs: []string{"host:5000=https://registry.example"}, Err: `PREFIX "host:5000"`},
		{Description: "prefix with ..", Specs: []string{"a/../b=https://registry.example"}, Err: `PREFIX "a/../b"`},
		{Description: "no scheme", Specs: []string{"mirror=registry.example"}, Err: "no scheme"},
		{Description: "a path", Specs: []string{"mirror=https://registry.example/v2/"}, Err: "a path"},
		{Description: "another scheme", Specs: []string{"mirror=oci://registry.example"}, Err: "scheme oci"},
		{Description: "bad port", Specs: []string{"mirror=http://127.0.0.1:70000"}, Err: "port 70000"},
		{Description: "same prefix twice", Specs: []string{"mirror=https://a.example", "mirror=https://b.example"}, Err: `PREFIX "mirror" overlaps "mirror"`},
		{Description: "nested prefixes", Specs: []string{"mirror/b=https://a.example", "mirror=https://b.example"}, Err: `PREFIX "mirror" overlaps "mirror/b"`},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			got, err := parsePullThrough(tc.Specs)
			if tc.Err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.Err) {
					t.Fatalf("error %v, want one containing %q", err, tc.Err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.Want) {
				t.Fatalf("= %+v, %v; want %+v", got, err, tc.Want)
			}
		})
	}
}

// TestPullThroughConfig: --pull-through from the command line (repeated),
// the environment (comma-separated) and the file (a list).
func TestPullThroughConfig(t *testing.T) {
	for _, tc := range []struct {
		Description string
		Args        []string
		Env         map[string]string
		File        string
		Want        []string
		Err         string
	}{
		{Description: "command line",
			Args: []string{"--pull-through", "a=https://a.example", "--pull-through", "b=http://b.example"},
			Want: []string{"a=https://a.example", "b=http://b.example"}},
		{Description: "environment",
			Env:  map[string]string{"HERON_PULL_THROUGH": "a=https://a.example,b=http://b.example"},
			Want: []string{"a=https://a.example", "b=http://b.example"}},
		{Description: "file list", File: "pull-through:\n  - a=https://a.example\n  - b=http://b.example\n",
			Want: []string{"a=https://a.example", "b=http://b.example"}},
		{Description: "file scalar", File: "pull-through: a=https://a.example\n",
			Want: []string{"a=https://a.example"}},
		{Description: "file empty list", File: "pull-through: []\n", Want: []string{}},
		{Description: "environment over file", File: "pull-through:\n  - a=https://a.example\n",
			Env:  map[string]string{"HERON_PULL_THROUGH": "b=http://b.example"},
			Want: []string{"b=http://b.example"}},
		{Description: "command line over file", File: "pull-through:\n  - a=https://a.example\n",
			Args: []string{"--pull-through", "b=http://b.example"},
			Want: []string{"b=http://b.example"}},
		{Description: "list of lists", File: "pull-through:\n  - [a]\n", Err: "serve.yaml:2: pull-through: want a list of single values"},
		{Description: "list for a single value", File: "addr: [a]\n", Err: "addr: want a single value"},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			fs := testFlags()
			pt := fs.StringSlice("pull-through", nil, "")
			args := tc.Args
			if tc.File != "" {
				args = append(args, "--config", writeConfig(t, tc.File))
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			err := applyConfig(fs, fakeEnv(tc.Env))
			if tc.Err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.Err) {
					t.Fatalf("error %v, want one containing %q", err, tc.Err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(*pt, tc.Want) {
				t.Errorf("pull-through = %q, want %q", *pt, tc.Want)
			}
		})
	}
}

// TestServePullThroughErrors: bad --pull-through values stop heron serve
// before it serves.
func TestServePullThroughErrors(t *testing.T) {
	good := t.TempDir()
	writeLayoutFile(t, good, layout.EncodeLayoutFile())
	for _, tc := range []struct {
		Description string
		Args        []string
		Env         map[string]string
		Want        string
	}{
		{Description: "bad prefix", Args: []string{"--pull-through", "UP=https://registry.example"}, Want: `--pull-through "UP=https://registry.example": PREFIX "UP"`},
		{Description: "bad URL", Args: []string{"--pull-through", "up=registry.example"}, Want: `--pull-through "up=registry.example": registry URL "registry.example": no scheme`},
		{Description: "bad URL in the environment", Env: map[string]string{"HERON_PULL_THROUGH": "up=https://registry.example/path"}, Want: "a path"},
		{Description: "bad URL in the file", Args: []string{"--config", writeConfig(t, "pull-through:\n  - up=ftp://x\n")}, Want: "scheme ftp"},
		{Description: "with --read-only", Args: []string{"--pull-through", "up=https://registry.example", "--read-only"}, Want: "cannot be used with --read-only"},
		{Description: "bad ttl", Args: []string{"--pull-through-ttl", "soon"}, Want: `invalid argument "soon"`},
	} {
		t.Run(tc.Description, func(t *testing.T) {
			for k, v := range tc.Env {
				t.Setenv(k, v)
			}
			cmd := newRootCmd()
			cmd.SetArgs(append([]string{"serve", "--root", good, "--addr", "127.0.0.1:0"}, tc.Args...))
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.Want) {
				t.Errorf("error = %v, want one containing %q", err, tc.Want)
			}
		})
	}
}

// TestPullerAdapter: an upstream's 404 is redirector.ErrUpstreamUnknown
// through the adapter, other errors are not.
func TestPullerAdapter(t *testing.T) {
	if err := upstreamError(errors.Join(errors.New("x"), publish.ErrUpstreamUnknown)); !errors.Is(err, redirector.ErrUpstreamUnknown) {
		t.Errorf("%v is not redirector.ErrUpstreamUnknown", err)
	}
	if err := upstreamError(errors.New("x")); errors.Is(err, redirector.ErrUpstreamUnknown) {
		t.Errorf("%v is redirector.ErrUpstreamUnknown", err)
	}
	if upstreamError(nil) != nil {
		t.Error("nil is an error")
	}
}

// TestServePullThrough runs heron serve with a pull-through cache of a
// registry on 127.0.0.1 and pulls a manifest through it, by tag and by
// digest, the second time from the tree.
func TestServePullThrough(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("HOME", dir)
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer up.Close()
	host := strings.TrimPrefix(up.URL, "http://")
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/library/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	// A cache starts from nothing: a root that does not exist yet.
	root := filepath.Join(t.TempDir(), "mirror")
	s := startServe(t, "--root", root, "--addr", "127.0.0.1:0", "--pull-through", "up="+up.URL)

	for _, u := range []string{
		"/v2/up/library/app/manifests/v1",
		"/v2/up/library/app/manifests/" + d.String(),
		"/v2/library/app/manifests/v1?ns=up",
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.Addr+u, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() {
			t.Errorf("GET %s = %d, digest %q; want 200, %s", u, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), d)
		}
	}
	if code, _ := servetest.Get(t, "http://"+s.Addr+"/v2/up/library/nope/manifests/v1"); code != http.StatusNotFound {
		t.Errorf("GET of a name the upstream does not know = %d, want 404", code)
	}
	r, err := publish.ReadRepository(context.Background(), publish.NewFSSink(layout.Root(root)), "up/library/app")
	if err != nil {
		t.Fatal(err)
	}
	if r.Tags["v1"].String() != d.String() || r.Upstream == nil || r.Upstream.Registry != host {
		t.Errorf("the tree's repository: tags %v, upstream %+v", r.Tags, r.Upstream)
	}
	if err := s.Stop(t, 15*time.Second); err != nil {
		t.Errorf("serve ended with %v", err)
	}
}
