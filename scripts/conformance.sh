#!/usr/bin/env bash
# conformance.sh runs the OCI distribution-spec conformance suite against
# `heron serve` four times: read-only, serving a tree on the file system,
# then a tree in an S3-compatible bucket (versitygw); and with pushes
# (`heron serve --push --delete`, every category the suite runs by default
# for spec 1.1, sha512 included) into a fresh tree on the file system with
# HTTP basic credentials (an htpasswd file), then into the bucket with
# tokens (the Docker token flow, heron's token endpoint).
#
# Usage:
#
#   scripts/conformance.sh
#
# What it does:
#   1. builds the suite (Go module github.com/opencontainers/distribution-spec/conformance
#      at CONFORMANCE_VERSION below) in a scratch module under $HERON_CACHE and keeps the
#      binary in $HERON_CACHE/bin (default <repo>/.cache, ignored by git); a second run
#      reuses it;
#   2. builds heron (go build ./cmd/heron) and the fixtures helper into a temporary folder;
#   3. publishes the fixtures (testdata/fixtures, or $HERON_FIXTURES: a folder written by
#      `go run ./internal/fixtures/gen -out DIR`) with `heron publish` into a fresh tree:
#      repository conformance/test, one tag per fixture (see PLAN), so that the suite sees
#      OCI and Docker images, an OCI index, a Docker manifest list and their children,
#      an OCI 1.1 artifact and a referrer (signature) of oci-image; then adds
#      $CONFORMANCE_BULK_TAGS (100000) more tags, bulk-000000, bulk-000001, ..., all naming
#      oci-image, with `heron tag` (5,000 a run), so that the repository keeps its tags in
#      shards (docs/layout.md, "Large repositories") and the suite's tags/list tests, and its
#      pulls by tag (the fixtures' tags and a few bulk tags: the first, the 1,000th and
#      1,001st, the middle one and the last), run against a sharded repository; it checks
#      that the repository file names tag shards;
#   4. starts `heron serve --root TREE --addr 127.0.0.1:PORT` on a free port, waits for
#      /v2/, runs the suite with push and every write API off and the read-only data
#      (OCI_RO_DATA_TAGS, _MANIFESTS, _BLOBS, _REFERRERS) pointing at what it published,
#      and stops the server (by its PID);
#   5. the same against a bucket: starts versitygw (scripts/install-tools.sh puts it in
#      $HERON_CACHE/bin) on a free port with its posix back end in the temporary folder
#      and random credentials, creates a bucket with a signed PUT (curl --aws-sigv4),
#      publishes the same fixtures and the same bulk tags into s3://BUCKET/tree (heron
#      gets the credentials, region and endpoint from the AWS SDK's environment:
#      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3; the
#      caller's own AWS_ variables are unset), serves it with `heron serve --root
#      s3://BUCKET/tree`, which redirects blobs (307) to URLs the bucket presigns, which
#      the suite follows, and runs the suite and the checks again. versitygw and every
#      server are stopped by their PID when the script exits, whatever happens.
#
# Output: the suite's log goes to $HERON_CACHE/conformance/suite.log (the other runs' to
# $HERON_CACHE/conformance-s3, conformance-push and conformance-push-s3), its reports to
# results/ and the server's log to serve.log beside it; the script prints the failing
# tests, if any, and one line per run:
#
#   conformance: N passed, N failed, N skipped
#   conformance (push): N passed, N failed, N skipped
#   conformance (s3): N passed, N failed, N skipped
#   conformance (push, s3, tokens): N passed, N failed, N skipped
#
# (passed = Pass, failed = FAIL + Error, skipped = Skip + Disabled: the suite's own
# counts, plus two tests of this script's, each counted as one more passed or failed
# test: in read-only mode the suite is given only the subjects of referrers, so the
# script checks itself that GET /v2/<name>/referrers/<digest> of oci-image lists the
# signature fixture's descriptor (media type, size, artifactType, annotations), also with
# ?artifactType=, with `query check-referrers`; and the suite asks tags/list whole and
# with last only, so the script walks it itself with `query check-tags`: whole, then page
# by page with n=1000, 777 and 100 following the Link headers, and with n and last
# together, each walk listing exactly the fixtures' tags and the bulk tags, in order).
# It exits 0 only when, in both runs, nothing failed, something passed and the suite
# printed its counts (a bucket run that cannot start versitygw prints
# "conformance (s3): 0 passed, 1 failed, 0 skipped"). This suite version exits 0 on a configuration error and panics while
# writing its reports when push is off, after printing its counts: its exit status is
# therefore ignored and the counts decide.
#
# Environment: HERON_CACHE (cache folder), HERON_FIXTURES (fixtures folder; when it
# holds large-image, from `gen -large`, that is published and tested too),
# CONFORMANCE_BULK_TAGS (the bulk tags added, 100000; 0 for none: the repository is then
# not sharded), CONFORMANCE_KEEP=1 (keep the temporary folder: tree, server log), GOPROXY and the
# other Go variables as the environment has them.
set -euo pipefail

CONFORMANCE_MODULE=github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${HERON_CACHE:-$REPO/.cache}
FIXTURES=${HERON_FIXTURES:-$REPO/testdata/fixtures}
REPOSITORY=conformance/test
BULK_TAGS=${CONFORMANCE_BULK_TAGS:-100000}
[[ $BULK_TAGS =~ ^[0-9]+$ && $BULK_TAGS -le 1000000 ]] || {
	echo "conformance: CONFORMANCE_BULK_TAGS=$BULK_TAGS: want a number from 0 to 1000000" >&2
	exit 1
}

# PLAN: fixture name -> tags in $REPOSITORY. Every fixture that is a subject
# of another must be published with its referrers for the referrers test.
PLAN=(
	"oci-image oci-image latest"
	"docker-image docker-image"
	"oci-index oci-index"
	"docker-list docker-list"
	"artifact artifact"
	"signature signature"
	"docker-archive-image docker-archive"
	"docker-archive-image-2 docker-archive-2"
	"oci-archive-index oci-archive"
)

say() { echo "conformance: $*" >&2; }
die() {
	say "$*"
	exit 1
}

mkdir -p "$CACHE/bin"
CACHE=$(cd "$CACHE" && pwd)
SUITE=$CACHE/bin/oci-conformance-$CONFORMANCE_VERSION

# 1. The suite, built once per version.
if [[ ! -x $SUITE ]]; then
	say "building $CONFORMANCE_MODULE@$CONFORMANCE_VERSION"
	build=$CACHE/conformance-build
	rm -rf "$build"
	mkdir -p "$build"
	cat >"$build/go.mod" <<EOF
module heron.local/conformance-build

go 1.24

require $CONFORMANCE_MODULE $CONFORMANCE_VERSION
EOF
	(cd "$build" && GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=mod" go build -o "$SUITE.tmp" "$CONFORMANCE_MODULE") ||
		die "cannot build the conformance suite"
	mv "$SUITE.tmp" "$SUITE"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/heron-conformance.XXXXXX")
SERVER_PID=
SERVE_LOG=
RESULTS=
VGW_PID=
# stop_serve stops heron serve (by its PID) and keeps its log with the
# results.
stop_serve() {
	if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=
	if [[ -n $RESULTS && -d $RESULTS && -n $SERVE_LOG && -f $SERVE_LOG ]]; then
		cp "$SERVE_LOG" "$RESULTS/serve.log" || true
	fi
}
cleanup() {
	stop_serve
	if [[ -n $VGW_PID ]] && kill -0 "$VGW_PID" 2>/dev/null; then
		kill "$VGW_PID" 2>/dev/null || true
		wait "$VGW_PID" 2>/dev/null || true
	fi
	if [[ ${CONFORMANCE_KEEP:-} == 1 ]]; then
		say "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

# 2. heron and the fixtures helper.
(cd "$REPO" && go build -o "$WORK/heron" ./cmd/heron) || die "cannot build heron (go build ./cmd/heron)"
(cd "$REPO" && go build -o "$WORK/query" ./internal/fixtures/query) || die "cannot build internal/fixtures/query"
[[ -f $FIXTURES/expected.json ]] || die "$FIXTURES/expected.json is missing (go run ./internal/fixtures/gen -out DIR)"
q() { "$WORK/query" -dir "$FIXTURES" "$@"; }

# 3. What is published, and what the suite is told: the same for both
# runs. Fixtures generated with -large add large-image.
if [[ " $(q names) " == *" large-image "* ]]; then
	PLAN+=("large-image large-image")
fi
TAGS=()
NAMES=()
for entry in "${PLAN[@]}"; do
	read -r -a words <<<"$entry"
	NAMES+=("${words[0]}")
	TAGS+=("${words[@]:1}")
done
# The bulk tags: bulk-000000 ... in one file.
BULK_FILE=$WORK/bulk-tags
if ((BULK_TAGS > 0)); then
	seq -f 'bulk-%06g' 0 $((BULK_TAGS - 1)) >"$BULK_FILE"
	# A few of them for the suite to pull by tag, and to find in its listings.
	for i in 0 999 1000 $((BULK_TAGS / 2)) $((BULK_TAGS - 1)); do
		if ((i < BULK_TAGS)); then
			TAGS+=("$(printf 'bulk-%06d' "$i")")
		fi
	done
else
	: >"$BULK_FILE"
fi
mapfile -t TAGS < <(printf '%s\n' "${TAGS[@]}" | sort -u)
RO_TAGS="${TAGS[*]}"
RO_MANIFESTS=$(q manifests "${NAMES[@]}")
RO_BLOBS=$(q blobs "${NAMES[@]}")
RO_REFERRERS=$(q subjects "${NAMES[@]}")
[[ -n $RO_REFERRERS ]] || die "no fixture has referrers: the referrers API would go untested"
{
	printf '%s\n' "${TAGS[@]}"
	cat "$BULK_FILE"
} | sort -u >"$WORK/all-tags"

# HERON is the heron command line of the run: the binary, and for the
# bucket run the environment that points the AWS SDK at versitygw.
HERON=("$WORK/heron")

# publish_tree ROOT REPOFILE publishes every fixture of PLAN into the tree
# at ROOT, then the bulk tags (5,000 a run of heron tag: one edit of the
# repository each, well under ARG_MAX); REPOFILE is where the repository
# file can be read on this machine, to check that it names tag shards.
publish_tree() {
	local root=$1 repofile=$2 entry name src want to tag
	for entry in "${PLAN[@]}"; do
		read -r -a words <<<"$entry"
		name=${words[0]}
		to=()
		for tag in "${words[@]:1}"; do
			to+=(--to "$REPOSITORY:$tag")
		done
		src=$(q source "$name") || die "fixture $name is not in $FIXTURES/expected.json"
		"${HERON[@]}" publish "$src" --root "$root" "${to[@]}" >"$WORK/publish-$name.out" 2>"$WORK/publish-$name.err" ||
			die "heron publish $src --root $root failed: $(cat "$WORK/publish-$name.err")"
		# heron publish prints NAME:TAG@DIGEST per target: the digest must be the
		# one expected.json records (for docker-archive, the one ggcr computes).
		want=$(q digest "$name")
		grep -q "@$want\$" "$WORK/publish-$name.out" ||
			die "heron publish $src: expected digest $want, printed: $(cat "$WORK/publish-$name.out")"
	done
	((BULK_TAGS > 0)) || return 0
	local started took shards
	started=$(date +%s%N)
	xargs -n 5000 "${HERON[@]}" tag --root "$root" "$REPOSITORY:oci-image" <"$BULK_FILE" >/dev/null 2>"$WORK/tag.err" ||
		die "heron tag --root $root $REPOSITORY:oci-image bulk-...: $(tail -n 5 "$WORK/tag.err")"
	took=$((($(date +%s%N) - started) / 1000000))
	shards=$(grep -o '"id"' "$repofile" | wc -l)
	if ((BULK_TAGS > 1000)); then
		grep -q '"tagShards"' "$repofile" ||
			die "$REPOSITORY has $BULK_TAGS tags, and its repository file $repofile names no tag shard"
	fi
	say "added $BULK_TAGS tags to $REPOSITORY in $root in ${took} ms ($(((BULK_TAGS + 4999) / 5000)) runs of heron tag); its repository file names $shards shards"
}

# Free ports, and what answers on them.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ping_v2() (
	exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
	printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	IFS= read -r -t 2 status <&3 || exit 1
	# 401: a server with authentication challenges anonymous callers.
	[[ $status =~ ^HTTP/1\.[01]\ (200|401) ]]
)

# start_serve ROOT LOG [FLAG...] starts heron serve of ROOT on a free port,
# sets PORT and SERVER_PID, and waits for GET /v2/ to answer (200, or 401
# with authentication).
start_serve() {
	local root=$1 port
	SERVE_LOG=$2
	shift 2
	PORT=
	for _ in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		port_in_use "$port" && continue
		"${HERON[@]}" serve --root "$root" --addr "127.0.0.1:$port" "$@" >"$SERVE_LOG" 2>&1 &
		SERVER_PID=$!
		for _ in $(seq 1 100); do # up to 10 s
			if ping_v2 "$port" 2>/dev/null; then
				PORT=$port
				break
			fi
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		[[ -n $PORT ]] && break
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
		SERVER_PID=
	done
	[[ -n $PORT ]] || die "heron serve --root $root did not answer GET /v2/: $(tail -n 20 "$SERVE_LOG")"
	say "heron serve --root $root $* is at 127.0.0.1:$PORT (pid $SERVER_PID)"
}

# run_suite LABEL runs the suite, read-only, against heron serve on PORT,
# then the two checks of this script's own, writes the logs into RESULTS
# and prints the run's summary line, "conformance: …" (or "conformance
# (LABEL): …"). It returns non-zero when something failed.
run_suite() {
	local label=$1 mode=${2:-read-only} prefix=conformance
	[[ -n $label ]] && prefix="conformance ($label)"
	rm -rf "$RESULTS"
	mkdir -p "$RESULTS/results"
	local log=$RESULTS/suite.log suite_status
	# Only our OCI_* variables reach the suite.
	local env_args=() v
	while IFS= read -r v; do env_args+=(-u "$v"); done < <(compgen -e | grep '^OCI_' || true)
	if [[ $mode == push ]]; then
		# Every category the suite runs by default for spec 1.1 (push,
		# mounts, uploads, deletes, referrers, sha512 and the other data
		# kinds), as the user PUSH_USER, whose password PUSH_PASS is in
		# the server's htpasswd file.
		set +e
		(
			cd "$WORK" && env "${env_args[@]}" \
				OCI_REGISTRY="127.0.0.1:$PORT" \
				OCI_TLS=disabled \
				OCI_VERSION=1.1 \
				OCI_REPO1=conformance/push-1 \
				OCI_REPO2=conformance/push-2 \
				OCI_USERNAME="$PUSH_USER" \
				OCI_PASSWORD="$PUSH_PASS" \
				OCI_LOG=warn \
				OCI_RESULTS_DIR="$RESULTS/results" \
				"$SUITE"
		) >"$log" 2>&1
		suite_status=$?
		set -e
		summarize "$prefix" "$log" "$suite_status" 0 0
		return
	fi
	set +e
	(
		cd "$WORK" && env "${env_args[@]}" \
			OCI_REGISTRY="127.0.0.1:$PORT" \
			OCI_TLS=disabled \
			OCI_VERSION=1.1 \
			OCI_REPO1="$REPOSITORY" \
			OCI_REPO2="$REPOSITORY-2" \
			OCI_LOG=warn \
			OCI_RESULTS_DIR="$RESULTS/results" \
			OCI_API_PING=true \
			OCI_API_PULL=true \
			OCI_API_PUSH=false \
			OCI_API_BLOBS_ATOMIC=false \
			OCI_API_BLOBS_DELETE=false \
			OCI_API_BLOBS_MOUNT_ANONYMOUS=false \
			OCI_API_BLOBS_UPLOAD_CANCEL=false \
			OCI_API_MANIFESTS_ATOMIC=false \
			OCI_API_MANIFESTS_DELETE=false \
			OCI_API_MANIFESTS_TAG_PARAM=false \
			OCI_API_TAGS_ATOMIC=false \
			OCI_API_TAGS_DELETE=false \
			OCI_API_TAGS_LIST=true \
			OCI_API_REFERRER=true \
			OCI_RO_DATA_TAGS="$RO_TAGS" \
			OCI_RO_DATA_MANIFESTS="$RO_MANIFESTS" \
			OCI_RO_DATA_BLOBS="$RO_BLOBS" \
			OCI_RO_DATA_REFERRERS="$RO_REFERRERS" \
			"$SUITE"
	) >"$log" 2>&1
	suite_status=$?
	set -e

	# The suite cannot check the content of read-only referrers (it is given
	# subjects, not the descriptors that should refer to them): check it here.
	local extra_failed=0
	if ! q check-referrers "http://127.0.0.1:$PORT" "$REPOSITORY" "${NAMES[@]}" >"$RESULTS/referrers.log" 2>&1; then
		extra_failed=1
	fi

	# The suite asks tags/list whole, and with last alone: walk it here with n
	# too, following the Link headers, and check every tag is listed once, in
	# order.
	local tags_failed=0
	if ! q check-tags "http://127.0.0.1:$PORT" "$REPOSITORY" "$WORK/all-tags" 1000 777 100 >"$RESULTS/tags.log" 2>&1; then
		tags_failed=1
	else
		say "tags/list of $REPOSITORY ($(wc -l <"$WORK/all-tags") tags), walked with n and last:"
		sed 's/^/  /' "$RESULTS/tags.log" >&2
	fi

	summarize "$prefix" "$log" "$suite_status" "$extra_failed" "$tags_failed"
}

# summarize PREFIX LOG STATUS EXTRA_FAILED TAGS_FAILED prints a run's
# summary line from the suite's counts and this script's two checks (0:
# passed, 1: failed, with their logs in RESULTS; both 0 for a push run,
# which does not run them and does not count them), and returns non-zero
# when something failed.
summarize() {
	local prefix=$1 log=$2 suite_status=$3 extra_failed=$4 tags_failed=$5 mode=read-only
	[[ $prefix == *push* ]] && mode=push
	# The counts block of the suite's summary:
	#   "  Pass..........................:         42"
	count() { awk -v s="$1" '$0 ~ "^  " s "\\.+: +[0-9]+$" { n = $NF } END { print n }' "$log"; }
	local pass fail errs skip disabled suite_pass failed
	pass=$(count Pass) fail=$(count FAIL) errs=$(count Error) skip=$(count Skip) disabled=$(count Disabled)
	if [[ -z $pass || -z $fail || -z $errs || -z $skip || -z $disabled ]]; then
		tail -n 40 "$log" >&2
		say "the suite printed no results (exit status $suite_status, log $log)"
		echo "$prefix: 0 passed, 1 failed, 0 skipped"
		return 1
	fi
	suite_pass=$pass
	failed=$((fail + errs))
	if ((fail + errs > 0)); then
		say "failing tests (suite log: $log, server log: $RESULTS/serve.log):"
		# The result tree: failing nodes and the errors of failing leaves.
		awk '/^Test results/ { on = 1; next } /^Configuration:/ { on = 0 } on && (/: (FAIL|Error)$/ || /^ *- /)' "$log" >&2
	fi
	if [[ $mode == read-only ]]; then
		if ((extra_failed)); then
			say "referrers content check failed: $(cat "$RESULTS/referrers.log")"
			failed=$((failed + 1))
		else
			pass=$((pass + 1))
		fi
		if ((tags_failed)); then
			say "tags/list pagination check failed: $(cat "$RESULTS/tags.log")"
			failed=$((failed + 1))
		else
			pass=$((pass + 1))
		fi
	fi
	echo "$prefix: $pass passed, $failed failed, $((skip + disabled)) skipped"
	((failed == 0 && suite_pass > 0))
}

# 4. The tree on the file system.
started=$(date +%s)
TREE=$WORK/tree
publish_tree "$TREE" "$TREE/repositories/$REPOSITORY.json"
start_serve "$TREE" "$WORK/serve.log"
RESULTS=$CACHE/conformance
status=0
run_suite "" || status=1
stop_serve
say "file system run: $(($(date +%s) - started)) s"

# 4b. Pushes: heron serve --push --delete on a fresh tree, with a user of
# an htpasswd file (bcrypt) that the suite logs in as (HTTP basic).
started=$(date +%s)
PUSH_USER=conformance
PUSH_PASS=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
"$WORK/query" htpasswd "$PUSH_USER" "$PUSH_PASS" >"$WORK/htpasswd" || die "cannot write an htpasswd file"
"$WORK/query" token-key >"$WORK/token-key.pem" || die "cannot make a token key"
chmod 600 "$WORK/htpasswd" "$WORK/token-key.pem"
start_serve "$WORK/push-tree" "$WORK/serve-push.log" --push --delete --htpasswd "$WORK/htpasswd"
RESULTS=$CACHE/conformance-push
run_suite push push || status=1
stop_serve
say "push run: $(($(date +%s) - started)) s"

# 5. The tree in a bucket: versitygw on a free port, a bucket made with a
# signed PUT (curl --aws-sigv4), the same fixtures published into
# s3://BUCKET/tree, heron serve redirecting blobs to presigned URLs.
started=$(date +%s)
RESULTS=$CACHE/conformance-s3
rm -rf "$RESULTS"
s3_fail() {
	say "$*"
	echo "conformance (s3): 0 passed, 1 failed, 0 skipped"
	exit 1
}
VGW=$(command -v versitygw || true)
[[ -n $VGW ]] || VGW=$CACHE/bin/versitygw
[[ -x $VGW ]] || s3_fail "versitygw is not on PATH nor in $CACHE/bin (make tools installs it)"
command -v curl >/dev/null 2>&1 || s3_fail "curl is needed to create the bucket (apt-get install curl)"
S3_DIR=$WORK/s3
mkdir -p "$S3_DIR"
S3_ACCESS=heron$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
S3_SECRET=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
BUCKET=heron-conformance
S3_PORT=
for _ in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 40000))
	port_in_use "$port" && continue
	# Only PATH and HOME: versitygw must not read the developer's AWS settings.
	env -i PATH="$PATH" HOME="$S3_DIR" "$VGW" --access "$S3_ACCESS" --secret "$S3_SECRET" \
		--port "127.0.0.1:$port" --quiet posix "$S3_DIR" >"$WORK/versitygw.log" 2>&1 &
	VGW_PID=$!
	for _ in $(seq 1 100); do # up to 10 s
		if port_in_use "$port"; then
			S3_PORT=$port
			break
		fi
		kill -0 "$VGW_PID" 2>/dev/null || break
		sleep 0.1
	done
	[[ -n $S3_PORT ]] && break
	kill "$VGW_PID" 2>/dev/null || true
	wait "$VGW_PID" 2>/dev/null || true
	VGW_PID=
done
[[ -n $S3_PORT ]] || s3_fail "versitygw did not start: $(tail -n 20 "$WORK/versitygw.log")"
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
curl -sS -f -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS:$S3_SECRET" \
	-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT "$S3_ENDPOINT/$BUCKET" ||
	s3_fail "cannot create bucket $BUCKET on versitygw at $S3_ENDPOINT"
say "versitygw is at $S3_ENDPOINT (pid $VGW_PID), bucket $BUCKET"
aws_unset=()
while IFS= read -r v; do aws_unset+=(-u "$v"); done < <(compgen -e | grep '^AWS_' || true)
HERON=(env "${aws_unset[@]}" AWS_ACCESS_KEY_ID="$S3_ACCESS" AWS_SECRET_ACCESS_KEY="$S3_SECRET"
	AWS_REGION=us-east-1 AWS_ENDPOINT_URL_S3="$S3_ENDPOINT" AWS_EC2_METADATA_DISABLED=true
	AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null "$WORK/heron")
S3_ROOT=s3://$BUCKET/tree
# versitygw's posix back end keeps each object as the file DIR/BUCKET/KEY.
publish_tree "$S3_ROOT" "$S3_DIR/$BUCKET/tree/repositories/$REPOSITORY.json"
start_serve "$S3_ROOT" "$WORK/serve-s3.log"
run_suite s3 || status=1
stop_serve
say "bucket run: $(($(date +%s) - started)) s"

# 5b. Pushes into the bucket, with tokens: the suite follows the Bearer
# challenge to heron's token endpoint with the same user.
started=$(date +%s)
RESULTS=$CACHE/conformance-push-s3
start_serve "s3://$BUCKET/push" "$WORK/serve-push-s3.log" --push --delete --htpasswd "$WORK/htpasswd" --token-key "$WORK/token-key.pem"
run_suite "push, s3, tokens" push || status=1
stop_serve
say "bucket push run: $(($(date +%s) - started)) s"
exit "$status"
