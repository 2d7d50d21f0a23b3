//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The chart TestHelm pushes: `helm create` of chartName, packaged as
// chartName-<version>.tgz.
const (
	chartName           = "heron-chart"
	helmConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
	helmChartMediaType  = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// helmCall is a call of helm whose registry credentials, cache, data and
// configuration are folders of its own (HELM_REGISTRY_CONFIG and the
// others), so that nothing touches the user's ~/.config or ~/.cache, and
// two helmCalls are two users.
type helmCall struct{ *call }

func needHelm(t *testing.T, md *mode) *helmCall {
	t.Helper()
	return &helmCall{need(t, md, "helm")}
}

func (h *helmCall) env() []string {
	return []string{
		"HELM_REGISTRY_CONFIG=" + filepath.Join(h.home, "registry", "config.json"),
		"HELM_CACHE_HOME=" + filepath.Join(h.home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(h.home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(h.home, "data"),
	}
}

// exec runs helm with args and stdin; it returns its standard output and
// error together (helm prints "Pushed:" and "Digest:" to either, by
// version) and whether it succeeded.
func (h *helmCall) exec(stdin string, args ...string) (string, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := h.command(ctx, args...)
	cmd.Env = append(cmd.Env, h.env()...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ok runs helm, which must succeed, and returns what it printed.
func (h *helmCall) ok(stdin string, args ...string) string {
	h.t.Helper()
	out, err := h.exec(stdin, args...)
	h.t.Logf("$ helm %s", strings.Join(args, " "))
	if err != nil {
		h.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// refused runs helm, which must fail, and returns what it printed.
func (h *helmCall) refused(stdin string, args ...string) string {
	h.t.Helper()
	out, err := h.exec(stdin, args...)
	h.t.Logf("$ helm %s  (must fail: %v; %s)", strings.Join(args, " "), err, strings.TrimSpace(lastLine(out)))
	if err == nil {
		h.t.Errorf("helm %s succeeded; it must fail\n%s", strings.Join(args, " "), out)
	}
	return out
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// login logs h in to host as cred, the password on standard input.
func (h *helmCall) login(host string, cred *creds) {
	h.t.Helper()
	h.ok(cred.pass, "registry", "login", host, "--plain-http", "-u", cred.user, "--password-stdin")
}

var helmDigestRE = regexp.MustCompile(`(?m)^Digest: (sha256:[0-9a-f]{64})$`)

// printedDigest is the manifest digest helm printed ("Digest: …").
func printedDigest(t *testing.T, what, out string) digest.Digest {
	t.Helper()
	m := helmDigestRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s printed no Digest line:\n%s", what, out)
	}
	return digest.Digest(m[1])
}

// helmCharts creates a chart with helm create and packages it twice, as
// versions 0.1.0 and 0.2.0 into dir; it returns the path of each package.
func helmCharts(t *testing.T, h *helmCall, dir string) map[string]string {
	t.Helper()
	h.ok("", "create", h.path(chartName))
	pkgs := map[string]string{}
	for _, v := range []string{"0.1.0", "0.2.0"} {
		h.ok("", "package", h.path(chartName), "--version", v, "--destination", dir)
		p := filepath.Join(dir, chartName+"-"+v+".tgz")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("helm package --version %s: %v", v, err)
		}
		pkgs[v] = p
	}
	return pkgs
}

// TestHelm pushes a chart with helm (v4, OCI) into heron serve --push
// --delete with --htpasswd and an access file, with basic credentials and
// with tokens (--token-key): helm registry login (password on standard
// input), helm push, the digest helm prints is the one the server
// answers; helm pull (by version and by digest) gives the pushed
// package's bytes back; helm show chart reads it, by version and the
// latest (helm lists the tags), and helm template renders it. A
// chart in a public repository is pulled anonymously; pushes without
// credentials, with a wrong password and by users without push rights
// are refused and write nothing.
func TestHelm(t *testing.T) {
	htpasswd, access, key := authFiles(t, t.TempDir())
	var pkgs map[string]string
	packages := t.TempDir()
	if !t.Run("helm create, package", func(t *testing.T) {
		countResult(t)
		pkgs = helmCharts(t, needHelm(t, nil), packages)
	}) {
		t.Fatal("no chart to push")
	}
	if pkgs == nil {
		t.Skip("helm is not installed (make tools installs it)")
	}
	for _, am := range []struct {
		name  string
		extra []string
	}{
		{"basic", nil},
		{"token", []string{"--token-key", key}},
	} {
		t.Run(am.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "tree")
			args := append([]string{"--push", "--delete", "--htpasswd", htpasswd, "--access", access}, am.extra...)
			ps := &pushServer{md: startTappedMode(t, "helm-"+am.name, root, args...), root: root, cred: alice}
			helmPushPull(t, ps, pkgs)
			helmRefusals(t, ps, pkgs)
			t.Run("heron verify", func(t *testing.T) {
				ps.watch(t, true)
				verifyTree(t, root)
				got := heronLs(t, root)
				want := []string{helmRepo("private/charts"), helmRepo("public/charts"), helmRepo("shared/charts")}
				if !slices.Equal(got, want) {
					t.Errorf("heron ls: %q, want %q", got, want)
				}
			})
		})
	}
}

// helmRepo is the repository helm pushes chartName into under
// oci://HOST/base.
func helmRepo(base string) string { return base + "/" + chartName }

// helmPushPull: alice logs in, pushes both versions into private/charts
// and public/charts, pulls them back and shows them; anyone pulls the
// public one.
func helmPushPull(t *testing.T, ps *pushServer, pkgs map[string]string) {
	t.Run("helm push, pull, show", func(t *testing.T) {
		ps.watch(t, true)
		h := needHelm(t, ps.md)
		h.login(ps.host(), alice)
		for _, base := range []string{"private/charts", "public/charts"} {
			ref := "oci://" + ps.host() + "/" + base
			for _, v := range []string{"0.1.0", "0.2.0"} {
				out := h.ok("", "push", pkgs[v], ref, "--plain-http")
				d := printedDigest(t, "helm push", out)
				ps.wantManifest(t, helmRepo(base), v, d)
				checkHelmManifest(t, ps, helmRepo(base), d, pkgs[v])

				dir := h.path("pull-" + strings.ReplaceAll(base, "/", "-") + "-" + v)
				mkdir(t, dir) // helm pull does not make it
				out = h.ok("", "pull", ref+"/"+chartName, "--version", v, "--plain-http", "--destination", dir)
				if got := printedDigest(t, "helm pull", out); got != d {
					t.Errorf("helm pull %s/%s --version %s: digest %s, helm push printed %s", ref, chartName, v, got, d)
				}
				sameFile(t, filepath.Join(dir, chartName+"-"+v+".tgz"), pkgs[v])

				out = h.ok("", "show", "chart", ref+"/"+chartName, "--version", v, "--plain-http")
				checkChartYAML(t, "helm show chart --version "+v, out, v)

				// By digest, and rendered as helm install would.
				dir = h.path("pull-digest-" + strings.ReplaceAll(base, "/", "-") + "-" + v)
				mkdir(t, dir)
				out = h.ok("", "pull", ref+"/"+chartName+"@"+d.String(), "--plain-http", "--destination", dir)
				if got := printedDigest(t, "helm pull @digest", out); got != d {
					t.Errorf("helm pull %s/%s@%s: digest %s", ref, chartName, d, got)
				}
				// helm names the file after the reference: NAME@sha256-HEX.tgz.
				sameFile(t, filepath.Join(dir, chartName+"@"+d.Algorithm().String()+"-"+d.Encoded()+".tgz"), pkgs[v])
				out = h.ok("", "template", "e2e", ref+"/"+chartName, "--version", v, "--plain-http")
				if !strings.Contains(out, "helm.sh/chart: "+chartName+"-"+v) {
					t.Errorf("helm template %s/%s --version %s: no label helm.sh/chart: %s-%s in\n%s", ref, chartName, v, chartName, v, out)
				}
			}
			// Without --version, helm lists the tags and takes the latest.
			out := h.ok("", "show", "chart", ref+"/"+chartName, "--plain-http")
			checkChartYAML(t, "helm show chart (latest)", out, "0.2.0")
		}
	})
	t.Run("helm pull, anonymous, public chart", func(t *testing.T) {
		ps.watch(t, true)
		h := needHelm(t, ps.md)
		ref := "oci://" + ps.host() + "/public/charts/" + chartName
		dir := h.path("pulled")
		mkdir(t, dir)
		h.ok("", "pull", ref, "--version", "0.1.0", "--plain-http", "--destination", dir)
		sameFile(t, filepath.Join(dir, chartName+"-0.1.0.tgz"), pkgs["0.1.0"])
		checkChartYAML(t, "anonymous helm show chart", h.ok("", "show", "chart", ref, "--plain-http"), "0.2.0")
		// The private one is not for anyone.
		h.refused("", "pull", "oci://"+ps.host()+"/private/charts/"+chartName, "--version", "0.1.0", "--plain-http", "--destination", dir)
		h.refused("", "show", "chart", "oci://"+ps.host()+"/private/charts/"+chartName, "--version", "0.1.0", "--plain-http")
	})
}

// helmRefusals: pushes without credentials, with a wrong password, and by
// users the access file gives no push right (bob on shared/**, where he
// may only pull, and on private/**; mallory anywhere) fail and write
// nothing; a wrong password fails helm registry login too.
func helmRefusals(t *testing.T, ps *pushServer, pkgs map[string]string) {
	t.Run("helm push refused", func(t *testing.T) {
		ps.watch(t, true)
		// alice puts 0.1.0 into shared/charts, which bob may pull.
		a := needHelm(t, ps.md)
		a.login(ps.host(), alice)
		d := printedDigest(t, "helm push", a.ok("", "push", pkgs["0.1.0"], "oci://"+ps.host()+"/shared/charts", "--plain-http"))

		anon := needHelm(t, ps.md)
		out := anon.refused("", "push", pkgs["0.1.0"], "oci://"+ps.host()+"/private/refused", "--plain-http")
		// With basic authentication helm (oras-go) stops at the first 401
		// Basic challenge, having no credentials: "basic credential not
		// found"; with tokens, the token endpoint's 401.
		if !strings.Contains(out, "401") && !strings.Contains(out, "basic credential not found") {
			t.Errorf("anonymous helm push: the error says neither 401 nor basic credential not found:\n%s", out)
		}

		wrong := needHelm(t, ps.md)
		wrong.refused("wrong", "registry", "login", ps.host(), "--plain-http", "-u", alice.user, "--password-stdin")
		wrong.refused("", "push", pkgs["0.1.0"], "oci://"+ps.host()+"/private/refused", "--plain-http", "--username", alice.user, "--password", "wrong")
		wrong.refused("", "pull", "oci://"+ps.host()+"/private/charts/"+chartName, "--version", "0.1.0", "--plain-http",
			"--username", alice.user, "--password", "wrong", "--destination", wrong.path("pulled"))

		b := needHelm(t, ps.md)
		b.login(ps.host(), bob)
		dir := b.path("pulled")
		mkdir(t, dir)
		b.ok("", "pull", "oci://"+ps.host()+"/shared/charts/"+chartName, "--version", "0.1.0", "--plain-http", "--destination", dir)
		sameFile(t, filepath.Join(dir, chartName+"-0.1.0.tgz"), pkgs["0.1.0"])
		b.refused("", "push", pkgs["0.2.0"], "oci://"+ps.host()+"/shared/charts", "--plain-http")
		b.refused("", "push", pkgs["0.2.0"], "oci://"+ps.host()+"/private/charts", "--plain-http")

		m := needHelm(t, ps.md)
		m.login(ps.host(), mallory)
		m.refused("", "push", pkgs["0.1.0"], "oci://"+ps.host()+"/private/refused", "--plain-http")

		if b := repositoryFile(t, ps.root, helmRepo("private/refused")); b != nil {
			t.Errorf("refused pushes left a repository file for %s:\n%s", helmRepo("private/refused"), b)
		}
		ps.wantManifest(t, helmRepo("shared/charts"), "0.1.0", d)
		if st, d := ps.manifestDigest(t, helmRepo("shared/charts"), "0.2.0"); st != http.StatusNotFound {
			t.Errorf("%s:0.2.0 after bob's refused push: %d %s, want 404", helmRepo("shared/charts"), st, d)
		}
		// 0.2.0 in private/charts is alice's, untouched by bob.
		if st, _ := ps.manifestDigest(t, helmRepo("private/charts"), "0.2.0"); st != http.StatusOK {
			t.Errorf("%s:0.2.0 after bob's refused push: %d, want 200", helmRepo("private/charts"), st)
		}
	})
}

// checkHelmManifest gets the manifest d of repo as alice and checks what
// helm pushed: an OCI image manifest (Content-Type too) with the helm
// config and one layer, the package itself.
func checkHelmManifest(t *testing.T, ps *pushServer, repo string, d digest.Digest, pkg string) {
	t.Helper()
	resp, body := send(t, http.MethodGet, ps.url("/v2/"+repo+"/manifests/"+d.String()), nil, append([]string{"Accept", manifestAccept}, ps.cred.authHeader()...)...)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s@%s: %d\n%s", repo, d, resp.StatusCode, body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageManifest {
		t.Errorf("GET %s@%s: Content-Type %q, want %s", repo, d, ct, ocispec.MediaTypeImageManifest)
	}
	if got := digest.FromBytes(body); got != d {
		t.Errorf("GET %s@%s: the body's digest is %s", repo, d, got)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("manifest %s@%s: %v", repo, d, err)
	}
	b, err := os.ReadFile(pkg)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != helmConfigMediaType || len(m.Layers) != 1 || m.Layers[0].MediaType != helmChartMediaType ||
		m.Layers[0].Digest != digest.FromBytes(b) || m.Layers[0].Size != int64(len(b)) {
		t.Errorf("manifest %s@%s: config %s, layers %+v; want the helm config and the package %s (%d bytes)",
			repo, d, m.Config.MediaType, m.Layers, digest.FromBytes(b), len(b))
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// sameFile fails the test unless the files at got and want hold the same
// bytes.
func sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Errorf("pulled chart: %v", err)
		return
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s (%d bytes, %s) differs from the pushed %s (%d bytes, %s)",
			got, len(g), digest.FromBytes(g), filepath.Base(want), len(w), digest.FromBytes(w))
	}
}

// checkChartYAML checks helm show chart's output: the chart's name and
// version.
func checkChartYAML(t *testing.T, what, out, version string) {
	t.Helper()
	for _, line := range []string{"name: " + chartName, "version: " + version} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(out) {
			t.Errorf("%s: no line %q in\n%s", what, line, out)
		}
	}
}
