# heron's build and test entry points. `make help` lists them.
#
# The real clients of the end-to-end suite (skopeo, podman, crane, oras,
# regctl) are installed by `make tools`, which `make test` and `make e2e`
# run first (a no-op when they are there); the Go ones live in
# $(HERON_CACHE)/bin, which is put first on PATH here.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

GO ?= go
HERON_CACHE ?= $(CURDIR)/.cache
export HERON_CACHE
export PATH := $(HERON_CACHE)/bin:$(PATH):/usr/local/go/bin

# make run: where the samples go, and the address it serves on.
RUN_DIR ?= $(CURDIR)/tmp
RUN_ADDR ?= 127.0.0.1:5000
# make e2e: the whole suite must finish within this (it takes a few minutes).
E2E_TIMEOUT ?= 25m
# make reliability: the crash and soak tests (about three minutes;
# HERON_CRASH_KILLS and HERON_SOAK_DURATION tune them, see docs/reliability.md).
RELIABILITY_TIMEOUT ?= 10m
# make fuzz: how long each fuzz target runs (scripts/fuzz.sh); make
# fuzz-long runs them for FUZZTIME_LONG. make test does not fuzz: it runs
# the committed corpora (testdata/fuzz) with the unit tests, so that its
# verdict depends on the code alone, not on which inputs a random search
# happened to try (docs/reliability.md).
FUZZTIME ?= 10s
FUZZTIME_LONG ?= 5m

.PHONY: help build run test vet unit conformance e2e reliability fuzz fuzz-long tools clean bench

help:
	@echo 'make build        build bin/heron'
	@echo 'make run          publish the sample images into $(RUN_DIR)/tree and serve them on $(RUN_ADDR)'
	@echo 'make test         install the clients (make tools), then vet, unit tests (-race), the OCI conformance suite, the end-to-end suite, the reliability tests (the fuzz corpora run with the unit tests)'
	@echo 'make unit         go test -race ./...'
	@echo 'make conformance  the OCI distribution conformance suite against heron serve'
	@echo 'make e2e          pull every fixture with skopeo, podman, crane, oras and regctl'
	@echo 'make reliability  kill heron publish at random moments; pull while tags move (docs/reliability.md)'
	@echo 'make fuzz         every fuzz target for $$FUZZTIME (10s) each; make fuzz-long: 5m each (docs/reliability.md)'
	@echo 'make tools        install those clients (apt-get, and go install into $(HERON_CACHE)/bin); make test and make e2e run it'
	@echo 'make bench        heron against nginx and registry:2, at 1k/100k/1M repositories, at 10/10k/100k tags, a tree in a bucket (versitygw), on-demand blobs through registry:2 and crane push into heron and registry:2 (docs/benchmarks.md; ~14 min)'

build:
	$(GO) build -o bin/heron ./cmd/heron

# The samples are the test fixtures (internal/fixtures), one repository each,
# from every kind of source heron publish reads.
run: build
	rm -rf $(RUN_DIR)/fixtures $(RUN_DIR)/tree
	$(GO) run ./internal/fixtures/gen -out $(RUN_DIR)/fixtures >/dev/null
	@set -e; f=$(RUN_DIR)/fixtures; t=$(RUN_DIR)/tree; \
	pub() { bin/heron publish "$$1" --root "$$t" --to "$$2"; }; \
	pub oci:$$f/oci:oci-image          samples/oci-image:latest; \
	pub oci:$$f/oci:signature          samples/oci-image:signature; \
	pub oci:$$f/oci:docker-image       samples/docker-image:latest; \
	pub oci:$$f/oci:oci-index          samples/oci-index:latest; \
	pub oci:$$f/oci:docker-list        samples/docker-list:latest; \
	pub oci:$$f/oci:artifact           samples/artifact:latest; \
	pub docker-archive:$$f/docker-archive.tar:heron/docker-image:latest   samples/docker-archive-image:latest; \
	pub docker-archive:$$f/docker-archive.tar:heron/docker-image-2:latest samples/docker-archive-image-2:latest; \
	pub oci-archive:$$f/oci-archive.tar:oci-index samples/oci-archive-index:latest
	@r=$(RUN_ADDR); echo; \
	echo "Published into $(RUN_DIR)/tree (bin/heron ls --root $(RUN_DIR)/tree). In another shell, try:"; \
	echo "  skopeo inspect --tls-verify=false docker://$$r/samples/oci-index:latest"; \
	echo "  skopeo copy --all --preserve-digests --src-tls-verify=false docker://$$r/samples/oci-index:latest dir:/tmp/heron-skopeo"; \
	echo "  podman pull --tls-verify=false $$r/samples/oci-image:latest"; \
	echo "  crane pull --insecure --format oci $$r/samples/oci-index:latest /tmp/heron-crane"; \
	echo "  crane digest --insecure $$r/samples/docker-list:latest"; \
	echo "  oras copy --from-plain-http $$r/samples/artifact:latest --to-oci-layout /tmp/heron-oras:artifact"; \
	echo "  oras discover --plain-http $$r/samples/oci-image:latest"; \
	echo "  regctl --host reg=$$r,tls=disabled image copy $$r/samples/oci-index:latest ocidir:///tmp/heron-regctl:latest"; \
	echo "(crane, oras and regctl: make tools puts them in $(HERON_CACHE)/bin; docs/clients.md has more.)"; \
	echo; echo "Serving on http://$$r (Ctrl-C stops)"
	bin/heron serve --root $(RUN_DIR)/tree --addr $(RUN_ADDR)

# test installs what the end-to-end suite needs (make tools: idempotent, a
# few milliseconds when everything is there), then runs every part even
# when one fails, so that one run reports them all, and fails if any
# failed.
test: tools
	@failed=; \
	for part in vet unit conformance e2e reliability; do \
		$(MAKE) --no-print-directory $$part || failed="$$failed $$part"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed" >&2; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GO) vet -tags reliability ./reliability/...

unit:
	$(GO) test -race ./...

conformance:
	bash scripts/conformance.sh

# The suite prints its summary line, "e2e: N passed, N failed, N skipped",
# from its TestMain. CI=true turns a missing client into a failure.
e2e: tools
	$(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./e2e/...

# The tests print their figures on lines starting "crash:", "crash-first:"
# and "soak:"; docs/reliability.md quotes them.
reliability:
	$(GO) test -tags reliability -count=1 -v -timeout $(RELIABILITY_TIMEOUT) ./reliability/...

# Each fuzz target of the module, one after the other (scripts/fuzz.sh).
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

fuzz-long:
	FUZZTIME=$(FUZZTIME_LONG) bash scripts/fuzz.sh

# Not part of make test. Installs nginx and docker-registry if missing;
# trees are cached in $(HERON_CACHE)/bench; the report goes to
# $(HERON_CACHE)/bench/results.md. BENCH_FLAGS go to bench/peers.
bench:
	bash bench/install.sh
	bash bench/run.sh $(BENCH_FLAGS)

tools:
	bash scripts/install-tools.sh

clean:
	rm -rf bin $(RUN_DIR)
