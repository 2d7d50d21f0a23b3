package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heron-registry/heron/bench/treegen"
)

func TestMemory(t *testing.T) {
	peak, cur, err := memory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if peak < cur || cur < 1<<20 {
		t.Fatalf("peak %d, current %d", peak, cur)
	}
	if _, _, err := memory(-1); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

func TestNum(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{{0, "0"}, {999.4, "999"}, {1000, "1,000"}, {1234567.8, "1,234,568"}} {
		if got := num(tc.f); got != tc.want {
			t.Errorf("num(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
	if got := dur(1500 * time.Microsecond); got != "1.50 ms" {
		t.Errorf("dur = %q", got)
	}
}

// TestNginx serves a generated tree with the benchmark's nginx
// configuration and checks every scenario's answer, as the driver's
// preflight does. It needs nginx (bench/install.sh).
func TestNginx(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			t.Skip("nginx is not installed (bench/install.sh)")
		}
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	st, err := treegen.Generate(context.Background(), treegen.Options{Root: tree, Repos: 20, Tags: 2,
		Extra: []treegen.Extra{{Name: tagsRepo, Tags: tagsRepoTags}}})
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{img: st.Image, repo: treegen.RepositoryName(1), tagsRepo: tagsRepo, tagsCount: tagsRepoTags}
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var tags strings.Builder
	tags.WriteString(`{"name":"` + tagsRepo + `","tags":[`)
	for i, tag := range fx.tags() {
		if i > 0 {
			tags.WriteByte(',')
		}
		tags.WriteString(`"` + tag + `"`)
	}
	tags.WriteString("]}\n")
	prefix := filepath.Join(dir, "nginx")
	os.MkdirAll(prefix, 0o755)
	p, err := startNginx(&nginxSite{addr: addr, prefix: prefix, tree: tree, fx: fx, tagsList: []byte(tags.String()), tuned: true}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if err := p.waitReady(context.Background(), "http://"+addr+fx.manifestPath(fx.repo, "latest"), 200, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	targets := map[string]target{
		tNginx:         {name: tNginx, addr: addr},
		tNginxRedirect: {name: tNginxRedirect, addr: addr, prefix: nginxRedirectPrefix},
	}
	for _, s := range scenarios() {
		for _, tn := range s.targets {
			tg, ok := targets[tn]
			if !ok {
				continue
			}
			if err := s.preflight(fx, tg); err != nil {
				t.Errorf("%s: %v", s.title, err)
			}
		}
	}
	// The redirect target, nginx's /blobs/, serves the layer.
	body, err := get("http://" + addr + "/blobs/sha256/" + fx.img.LayerDigest.Encoded())
	if err != nil || len(body) != len(fx.img.Layer) {
		t.Fatalf("redirect target: %d bytes, %v", len(body), err)
	}
}

// TestFloors checks that both floors give the 307 scenario's answer (the
// preflight every server passes before it is measured).
func TestFloors(t *testing.T) {
	fx := &fixture{repo: "library/app"}
	img, err := treegen.NewImage(2048)
	if err != nil {
		t.Fatal(err)
	}
	fx.img = img
	var sc scenario
	for _, s := range scenarios() {
		if s.id == "blob-307" {
			sc = s
		}
	}
	for _, mode := range []string{floorNetHTTP, floorLoop} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- floorServe(mode, ln, "http://127.0.0.1:1/blobs/sha256/"+img.LayerDigest.Encoded(), img.LayerDigest.String())
		}()
		if err := sc.preflight(fx, target{name: mode, addr: ln.Addr().String()}); err != nil {
			t.Errorf("%s: %v", mode, err)
		}
		ln.Close()
		<-done
	}
}
