#!/usr/bin/env bash
# install.sh installs the peers the benchmark compares heron with: nginx
# (the limit for serving files on this machine) and distribution's registry
# (Debian's docker-registry package, what most people run). Idempotent: it
# does nothing when both are installed. Needs root (apt-get).
set -euo pipefail

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
