#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (10s unless
# set), one after the other: go test -fuzz takes one target of one package
# at a time. Prints one line per target and a summary,
#
#   fuzz: 9 targets, 1234567 execs, 0 failures
#
# and fails if any target failed. A failing input is written by go test
# to <package>/testdata/fuzz/<target>/; commit it with the fix, and it runs
# with the unit tests from then on. See docs/reliability.md, "Bad input".
#
#   FUZZTIME  how long each target runs (a duration such as 10s or 5m, or
#             Nx for N executions)
#   FUZZ      a regular expression: only the targets whose name matches
#   TMPDIR    where the targets' temporary trees go; /dev/shm when unset
#             and writable, because publish syncs every file it writes
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=$PATH:/usr/local/go/bin
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10s}
FUZZ=${FUZZ:-.}
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]]; then
	export TMPDIR=/dev/shm
fi

# Every fuzz target, as "package name": the Fuzz functions of the test
# files go test builds by default (read from the sources, so that no test
# binary, and no TestMain, has to run to list them).
targets=()
while read -r dir pkg files; do
	for f in $files; do
		while read -r name; do
			[[ $name =~ $FUZZ ]] && targets+=("$pkg $name")
		done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$dir/$f")
	done
done < <($GO list -f '{{.Dir}} {{.ImportPath}} {{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}' ./...)
if ((${#targets[@]} == 0)); then
	echo "fuzz: no target matches $FUZZ" >&2
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
total=0 failures=0 failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	short=${pkg#github.com/heron-registry/heron/}
	start=$SECONDS
	status=FAIL
	for try in 1 2; do
		if $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
			status=ok
			break
		fi
		# Go 1.26's fuzz coordinator can report a bare "context deadline
		# exceeded" when -fuzztime ends while a worker is mid-input
		# (golang/go#75804, fixed in Go 1.27): no input failed and none
		# was written. That, and only that, is run once more; a real
		# finding writes "Failing input written to ...".
		if ((try == 1)) && grep -q 'context deadline exceeded' "$log" &&
			! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
			echo "fuzz: $short.$name: the fuzzing engine's deadline race (golang/go#75804), no failing input; running it again" >&2
			continue
		fi
		break
	done
	if [[ $status == FAIL ]]; then
		failures=$((failures + 1))
		failed+=("$short.$name")
	fi
	# The last progress line says how many inputs were run.
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
	total=$((total + execs))
	printf 'fuzz: %-4s %-40s %10s execs in %ds\n' "$status" "$short.$name" "$execs" $((SECONDS - start))
	if [[ $status == FAIL ]]; then
		grep -v '^fuzz: elapsed' "$log" | sed 's/^/    /' | tail -40
	fi
done
echo "fuzz: ${#targets[@]} targets, $total execs, $failures failures"
if ((failures > 0)); then
	echo "fuzz: failed: ${failed[*]}" >&2
	exit 1
fi
