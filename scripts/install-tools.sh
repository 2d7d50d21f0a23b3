#!/usr/bin/env bash
# install-tools.sh installs the real clients the end-to-end suite (e2e/)
# drives against heron serve, and the S3-compatible server (versitygw) that
# the tests of a tree in a bucket start (internal/s3test):
#
#   skopeo, podman   Debian packages, with apt-get (needs root, or sudo)
#   nginx            a Debian package too: the static host of the
#                    one-machine layout of docs/deploy.md, which
#                    e2e/signedurl_test.go runs with signed redirects
#   apache2-utils, openssl
#                    Debian packages: htpasswd -B and openssl genpkey,
#                    whose files redirector/auth's tests load
#   crane, oras, regctl, helm, versitygw
#                    `go install` at the pinned versions below, into
#                    $HERON_CACHE/bin (default: <repo>/.cache/bin, ignored by git);
#                    helm (v4, which pushes and pulls charts as OCI
#                    artifacts) is the longest to build: about 5 minutes
#                    on a fresh 2-core machine (9 minutes of CPU, the
#                    Kubernetes modules it brings), then cached like the rest
#
# It is idempotent: a Debian package that is installed is not installed
# again, and a Go tool whose binary in the cache was built from the pinned
# module version is not rebuilt, so a second run (CI on a machine it has
# used before) costs a few milliseconds. The Go module and build caches stay
# where `go env` puts them (GOMODCACHE, GOCACHE), which a machine keeps
# between runs anyway.
#
# Any failure is fatal: in CI a client that cannot be installed is a failed
# run, never a skipped test.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HERON_CACHE:-$REPO/.cache}
BIN=$CACHE/bin

# Pinned versions. Change them here only; docs/clients.md names them too.
CRANE_MODULE=github.com/google/go-containerregistry
CRANE_VERSION=v0.22.1
ORAS_MODULE=oras.land/oras
ORAS_VERSION=v1.3.6
REGCTL_MODULE=github.com/regclient/regclient
REGCTL_VERSION=v0.11.7
HELM_MODULE=helm.sh/helm/v4
HELM_VERSION=v4.3.2
VERSITYGW_MODULE=github.com/versity/versitygw
VERSITYGW_VERSION=v1.8.0

export PATH=$PATH:/usr/local/go/bin

log() { printf 'install-tools: %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------
#
# podman pulls as root with `--storage-driver vfs` and its own --root, so it
# needs neither fuse-overlayfs nor uidmap (those are for overlay storage and
# rootless use); --no-install-recommends keeps them, and the rest of what
# podman recommends for running containers, out. containers-common (a
# dependency) ships /etc/containers/policy.json and registries.conf; the suite
# does not rely on them and passes its own policy file to skopeo and podman.
apt_pkgs=()
command -v skopeo >/dev/null 2>&1 || apt_pkgs+=(skopeo)
command -v podman >/dev/null 2>&1 || apt_pkgs+=(podman)
# Debian installs nginx in /usr/sbin, which a user's PATH may lack.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_pkgs+=(nginx)
# The access tests check files made by the tools operators use: Apache's
# htpasswd -B and openssl's Ed25519 keys.
command -v htpasswd >/dev/null 2>&1 || apt_pkgs+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || apt_pkgs+=(openssl)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	log "apt-get install ${apt_pkgs[*]}"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" </dev/null
	# Debian starts the packaged nginx on port 80; the suite runs its own
	# on a free port, so stop the system one.
	if [[ " ${apt_pkgs[*]} " == *" nginx "* ]] && command -v service >/dev/null 2>&1; then
		$SUDO service nginx stop >/dev/null 2>&1 || true
	fi
fi
for t in skopeo podman htpasswd openssl; do
	command -v "$t" >/dev/null 2>&1 || { log "$t is not on PATH after apt-get install"; exit 1; }
done
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { log "nginx is not installed after apt-get install"; exit 1; }

# --- Go tools ----------------------------------------------------------------

# installed BIN MODULE VERSION reports whether BIN was built from MODULE at
# VERSION (go version -m reads the build information of the binary itself).
installed() {
	[ -x "$1" ] || return 1
	go version -m "$1" 2>/dev/null | awk -v m="$2" -v v="$3" '
		($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { found = 1 }
		END { exit !found }'
}

# goinstall NAME PACKAGE MODULE VERSION
goinstall() {
	local name=$1 pkg=$2 module=$3 version=$4
	if installed "$BIN/$name" "$module" "$version"; then
		return 0
	fi
	log "go install $pkg@$version"
	mkdir -p "$BIN"
	# GOTOOLCHAIN=local: build with the Go that is here, never download one.
	GOBIN=$BIN GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go install "$pkg@$version"
	installed "$BIN/$name" "$module" "$version" || {
		log "$BIN/$name is not $module $version after go install"
		exit 1
	}
}

goinstall crane "$CRANE_MODULE/cmd/crane" "$CRANE_MODULE" "$CRANE_VERSION"
goinstall oras "$ORAS_MODULE/cmd/oras" "$ORAS_MODULE" "$ORAS_VERSION"
goinstall regctl "$REGCTL_MODULE/cmd/regctl" "$REGCTL_MODULE" "$REGCTL_VERSION"
goinstall helm "$HELM_MODULE/cmd/helm" "$HELM_MODULE" "$HELM_VERSION"
goinstall versitygw "$VERSITYGW_MODULE/cmd/versitygw" "$VERSITYGW_MODULE" "$VERSITYGW_VERSION"

log "ready: skopeo $(skopeo --version | awk '{print $3}'), podman $(podman --version | awk '{print $3}'), nginx, crane $CRANE_VERSION, oras $ORAS_VERSION, regctl $REGCTL_VERSION, helm $HELM_VERSION, versitygw $VERSITYGW_VERSION in $BIN"
