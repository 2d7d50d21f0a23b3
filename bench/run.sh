#!/usr/bin/env bash
# run.sh runs heron's benchmark against its peers (make bench): it builds
# heron and the benchmark tools, then runs bench/peers, which generates (or
# reuses) the trees under $HERON_CACHE/bench/trees (HERON_CACHE defaults to
# .cache), starts nginx, registry:2, versitygw (a bucket) and
# heron on free loopback ports, measures them one after another with the
# same load generator, and writes the report to $HERON_CACHE/bench/results.md.
# Extra arguments go to bench/peers (go run ./bench/peers -h lists them):
# -tags-only, -s3-only, -s3=false, -ondemand-only, -push-only, … (docs/benchmarks.md).
# It installs nothing: bench/install.sh installs nginx, docker-registry,
# versitygw and crane.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench: missing ${missing[*]}; run bench/install.sh (apt-get install nginx docker-registry)" >&2
	exit 1
fi

out="${HERON_CACHE:-.cache}/bench"
mkdir -p "$out"
go build -o "$out/heron" ./cmd/heron
go build -o "$out/heronprof" ./bench/heronprof
go build -o "$out/peers" ./bench/peers
go build -o "$out/s3upload" ./bench/s3upload
go build -o "$out/imagegen" ./bench/publish/gen
exec "$out/peers" -heron "$out/heron" -heronprof "$out/heronprof" -s3upload "$out/s3upload" -imagegen "$out/imagegen" -cache "$out" "$@"
