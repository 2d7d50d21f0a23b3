#!/usr/bin/env bash
# bench/publish/run.sh measures heron publish on a large image next to cp of
# the same bytes. It is not part of make test: run it by hand.
#
# It writes an OCI image layout of SIZE bytes (default 1 GiB) in LAYERS
# random layers (default 4) under $HERON_CACHE/bench/publish (HERON_CACHE
# defaults to .cache, so that source and trees share the repository's file
# system), then times, RUNS times each (default 3), with a warm page cache:
#
#   cp -r            the source's blobs/ folder (GNU cp: reflink or
#                    copy_file_range where it can; no verification)
#   publish oci:     into a new tree on the same file system (heron's
#                    reflink / copy_file_range path, verified)
#   re-publish oci:  into that tree again (nothing to copy)
#   publish docker:// from a registry:2 (docker-registry) on 127.0.0.1, pushed
#                    there with skopeo first; skipped when either is missing
#   on_demand docker:// the same, manifests only
#
# and prints a markdown table: the fastest and the median wall time, the
# throughput of the fastest, and the largest maximum resident set size.
set -euo pipefail
cd "$(dirname "$0")/../.."

size=${SIZE:-$((1 << 30))}
layers=${LAYERS:-4}
runs=${RUNS:-3}
work="${HERON_CACHE:-.cache}/bench/publish"
mkdir -p "$work"
work=$(cd "$work" && pwd)

go build -o "$work/heron" ./cmd/heron
go build -o "$work/gen" ./bench/publish/gen
src="$work/src-$size-$layers"
if [ ! -f "$src/index.json" ]; then
	rm -rf "$src"
	"$work/gen" -dir "$src" -size "$size" -layers "$layers"
fi
# Warm the page cache, as for every measurement below.
cat "$src"/blobs/sha256/* >/dev/null

export DOCKER_CONFIG="$work/docker" # no credentials needed, none read
mkdir -p "$DOCKER_CONFIG"

results="$work/results.md"
{
	echo "| what | fastest (s) | median (s) | MiB/s (fastest) | max RSS (MiB) |"
	echo "| --- | ---: | ---: | ---: | ---: |"
} >"$results"

# measure NAME BYTES PREPARE COMMAND...: runs PREPARE (untimed) then
# COMMAND, $runs times, with /usr/bin/time; BYTES is what COMMAND copies.
measure() {
	local name=$1 bytes=$2 prepare=$3
	shift 3
	local times=() rss=0
	for _ in $(seq "$runs"); do
		eval "$prepare"
		local out
		out=$(/usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1)
		times+=("${out% *}")
		local m=${out#* }
		[ "$m" -gt "$rss" ] && rss=$m
	done
	local sorted
	sorted=$(printf '%s\n' "${times[@]}" | sort -n)
	local fastest median
	fastest=$(echo "$sorted" | head -1)
	median=$(echo "$sorted" | sed -n "$(((runs + 1) / 2))p")
	local mibs
	mibs=$(awk -v b="$bytes" -v t="$fastest" 'BEGIN { if (t > 0 && b > 0) printf "%.0f", b / 1048576 / t; else print "-" }')
	printf '| %s | %s | %s | %s | %.0f |\n' "$name" "$fastest" "$median" "$mibs" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" | tee -a "$results"
}

tree="$work/tree"
measure "cp -r blobs/" "$size" "rm -rf '$work/cp'" cp -r "$src/blobs" "$work/cp"
rm -rf "$work/cp"
measure "heron publish oci: (new tree)" "$size" "rm -rf '$tree'" "$work/heron" publish "oci:$src" --root "$tree" --to bench:1 -q
measure "heron publish oci: again (no-op)" 0 ":" "$work/heron" publish "oci:$src" --root "$tree" --to bench:1 -q

if command -v skopeo >/dev/null && [ -x /usr/bin/docker-registry ]; then
	port=$((20000 + RANDOM % 20000))
	mkdir -p "$work/registry"
	cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
	/usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
	reg=$!
	trap 'kill $reg 2>/dev/null || true' EXIT
	for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
	skopeo copy -q --dest-tls-verify=false "oci:$src:bench" "docker://127.0.0.1:$port/bench:1"
	measure "heron publish docker:// (registry:2 on loopback)" "$size" "rm -rf '$tree'" \
		"$work/heron" publish "docker://127.0.0.1:$port/bench:1" --insecure --root "$tree" --to bench:1 -q
	measure "heron publish docker:// --policy on_demand" 0 "rm -rf '$tree'" \
		"$work/heron" publish "docker://127.0.0.1:$port/bench:1" --insecure --policy on_demand --root "$tree" --to bench:1 -q
	kill $reg
	rm -rf "$work/registry"
else
	echo "bench/publish: skopeo or /usr/bin/docker-registry missing: no docker:// figures (bench/install.sh installs docker-registry)" >&2
fi
rm -rf "$tree"
echo "$((size / 1048576)) MiB in $layers layers, $runs runs each, warm page cache; $(nproc) CPUs; $(df -T "$work" | awk 'NR == 2 { print $2 }') file system" | tee -a "$results"
