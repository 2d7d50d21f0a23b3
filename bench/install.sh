#!/usr/bin/env bash
# install.sh installs the peers the benchmark compares heron with: nginx
# (the limit for serving files on this machine) and distribution's registry
# (Debian's docker-registry package, what most people run); and versitygw,
# the S3-compatible server of the bucket scenarios, and crane, the client
# of the push scenario, at the versions scripts/install-tools.sh pins, into
# $HERON_CACHE/bin (default <repo>/.cache/bin) as that script does. Idempotent: it does nothing when
# all are installed. Needs root (apt-get).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${HERON_CACHE:-$REPO/.cache}/bin
# The pinned module and version, read from the one place they are set.
eval "$(grep -E '^(VERSITYGW|CRANE)_(MODULE|VERSION)=' "$REPO/scripts/install-tools.sh")"
goinstall() { # name module version
	if ! command -v "$1" >/dev/null 2>&1 &&
		! go version -m "$BIN/$1" 2>/dev/null | grep -q "[[:space:]]$2[[:space:]]$3[[:space:]]"; then
		echo "bench: go install $2/cmd/$1@$3 into $BIN" >&2
		mkdir -p "$BIN"
		GOBIN=$BIN GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go install "$2/cmd/$1@$3"
	fi
}
goinstall versitygw "$VERSITYGW_MODULE" "$VERSITYGW_VERSION"
goinstall crane "$CRANE_MODULE" "$CRANE_VERSION"

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
# --no-install-recommends: no service is started or enabled that we do not
# need; the benchmark starts each peer itself with its own configuration.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
# Debian starts the packaged services on install; the benchmark runs its own
# instances on free ports, so stop the system ones if they are running.
for svc in nginx docker-registry; do
	if command -v service >/dev/null 2>&1; then
		$SUDO service "$svc" stop >/dev/null 2>&1 || true
	fi
done
