package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/heron-registry/heron/layout"
)

// nginxSite is what nginx serves: the same bytes heron serves, as static
// files with the same Content-Type and Docker-Content-Digest, at the same
// URL paths, plus a 307 like heron's blob redirect and the tree's blobs/
// folder as the redirect target.
type nginxSite struct {
	addr   string // 127.0.0.1:port
	prefix string // nginx's prefix folder (config, pid, temp files)
	// tuned adds the open file cache production nginx uses for static
	// files (nginxTuning): file descriptors and their stat results are
	// kept, so that a request costs no open.
	tuned    bool
	tree     string
	fx       *fixture
	tagsList []byte // heron's answer to tags/list, served as a file
}

// nginxTuning is what production nginx sets for static files, and what the
// reference nginx of the benchmark runs with.
const nginxTuning = "open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;"

// tuning is the site's line of nginxTuning, if it has one.
func (s *nginxSite) tuning() string {
	if s.tuned {
		return nginxTuning
	}
	return "# no open_file_cache"
}

// nginxRedirectPrefix is the path prefix under which nginx answers blob
// requests with a 307, like heron serve --blob-base-url.
const nginxRedirectPrefix = "/redirect"

func (s *nginxSite) config() (string, error) {
	fx := s.fx
	manifestFile, err := treeFile(s.tree, string(fx.img.ManifestDigest))
	if err != nil {
		return "", err
	}
	layerFile, err := treeFile(s.tree, string(fx.img.LayerDigest))
	if err != nil {
		return "", err
	}
	layerKey, err := layout.BlobKey(fx.img.LayerDigest)
	if err != nil {
		return "", err
	}
	tagsFile := filepath.Join(s.prefix, "tags-list.json")
	if err := os.WriteFile(tagsFile, s.tagsList, 0o644); err != nil {
		return "", err
	}

	var b strings.Builder
	if os.Geteuid() == 0 {
		// Workers would otherwise run as nobody, who cannot read a tree
		// under a private temporary folder.
		b.WriteString("user root;\n")
	}
	fmt.Fprintf(&b, `worker_processes 2;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    %[3]s
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
`, s.prefix, s.addr, s.tuning())
	manifest := func(path string) {
		fmt.Fprintf(&b, `        location = %s {
            alias %s;
            types { } default_type %s;
            add_header Docker-Content-Digest %s;
            add_header Docker-Distribution-API-Version registry/2.0;
        }
`, path, manifestFile, fx.manifestType(), fx.img.ManifestDigest)
	}
	manifest(fx.manifestPath(fx.repo, "latest"))
	manifest(fx.manifestPath(fx.repo, string(fx.img.ManifestDigest)))
	fmt.Fprintf(&b, `        location = %[1]s {
            alias %[2]s;
            types { } default_type application/octet-stream;
            add_header Docker-Content-Digest %[3]s;
            add_header Docker-Distribution-API-Version registry/2.0;
        }
        location = %[4]s%[1]s {
            add_header Docker-Content-Digest %[3]s;
            add_header Docker-Distribution-API-Version registry/2.0;
            return 307 http://%[5]s/%[6]s;
        }
        location = /v2/%[7]s/tags/list {
            alias %[8]s;
            types { } default_type application/json;
            add_header Docker-Distribution-API-Version registry/2.0;
        }
        location /blobs/ {
            root %[9]s;
            types { } default_type application/octet-stream;
        }
    }
}
`, fx.blobPath(fx.repo, fx.img.LayerDigest), layerFile, fx.img.LayerDigest, nginxRedirectPrefix,
		s.addr, layerKey, fx.tagsRepo, tagsFile, s.tree)
	return b.String(), nil
}

// startNginx writes the configuration and starts nginx in the foreground.
func startNginx(s *nginxSite, logDir string) (*proc, error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return nil, fmt.Errorf("nginx is not installed (run bench/install.sh): %w", err)
		}
		bin = "/usr/sbin/nginx"
	}
	conf, err := s.config()
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(s.prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return start("nginx", s.addr, logDir, bin, "-p", s.prefix, "-c", confPath, "-e", "stderr")
}

// treeFile is the file-system path of a blob of the tree.
func treeFile(tree, d string) (string, error) {
	dg, err := layout.ParseDigest(d)
	if err != nil {
		return "", err
	}
	key, err := layout.BlobKey(dg)
	if err != nil {
		return "", err
	}
	return layout.Root(tree).Path(key), nil
}
