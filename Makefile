# cilia — run `make help` for the targets.

GO ?= go
GOFMT ?= gofmt
# The BPF compiler; install-deps installs clang-N/llvm-N to match. The
# //go:generate directives in datapath/generate.go name it too.
CLANG ?= clang-19
# Extra flags for go test, e.g. TESTFLAGS='-run TestX -v'.
TESTFLAGS ?=
PKGS ?= ./...

# Go may not be on PATH (fresh machine, sudo): fall back to /usr/local/go/bin
# and GOPATH/bin.
export PATH := $(PATH):/usr/local/go/bin
export PATH := $(PATH):$(shell PATH='$(PATH)' $(GO) env GOPATH 2>/dev/null)/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@echo 'Usage: make <target> [GO=go] [CLANG=clang-19] [TESTFLAGS=...]'
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_.-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install every system dependency that is missing (clang-19, libbpf-dev, iproute2, bpffs mount)
	CLANG=$(CLANG) bash hack/install-deps.sh

.PHONY: generate
generate: ## Recompile bpf/ into datapath/*_bpfel.{go,o} with bpf2go (installs clang-19 when missing)
	CLANG=$(CLANG) bash hack/install-deps.sh --generate-only
	$(GO) generate ./datapath/...

.PHONY: check-generated
check-generated: ## Fail if the committed datapath/*_bpfel.{go,o} differ from what bpf/ compiles to (works on a copy)
	CLANG=$(CLANG) bash hack/install-deps.sh --generate-only
	GO=$(GO) bash hack/check-generated.sh

.PHONY: build
build: ## Build all packages and bin/cilia
	$(GO) build ./...
	$(GO) build -o bin/cilia ./cmd/cilia

.PHONY: test
test: ## Run go vet and all tests, then the policy profile on the testrun and netns targets (as root; CILIA_SKIP_PRIVILEGED=1 skips the privileged ones)
	bash hack/install-deps.sh --test-only
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(TESTFLAGS) $(PKGS)
	$(MAKE) --no-print-directory profile-targets

# The policy profile passes on both targets of the simulator: testrun (the
# walker over BPF_PROG_TEST_RUN) and netns (attached programs, real
# sockets). Reports go to reports/conformance-<target>.yaml.
PROFILE_TARGETS ?= testrun netns

.PHONY: profile-targets
profile-targets: ## Run the policy profile on each of PROFILE_TARGETS (default: testrun netns; as root), reports in reports/
	@if [ "$$CILIA_SKIP_PRIVILEGED" = 1 ]; then \
		echo "profile-targets: CILIA_SKIP_PRIVILEGED=1: skipping the policy profile on $(PROFILE_TARGETS) (needs root)"; exit 0; \
	fi; \
	mkdir -p reports; \
	for t in $(PROFILE_TARGETS); do \
		echo "=== policy profile on the $$t target"; \
		$(MAKE) --no-print-directory conformance TARGET=$$t FEATURES=policy \
			CONFORMANCE_REPORT=reports/conformance-$$t.yaml CONFORMANCE_JUNIT=reports/conformance-$$t-junit.xml \
			CONFORMANCE_JSON=reports/conformance-$$t-ginkgo.json GINKGOFLAGS='-ginkgo.no-color' || exit 1; \
	done

# make conformance: TARGET selects the implementation (testrun | model | netns |
# kube | exec:PATH), FOCUS is a regexp over spec names ("<scenario> <probe
# ID>"), FEATURES a comma-separated list of features and profiles to restrict
# the run to, SCENARIOS the folder of scenario files. GINKGOFLAGS passes more
# Ginkgo flags, e.g. GINKGOFLAGS='-ginkgo.v -ginkgo.no-color'. See
# docs/conformance.md.
TARGET ?= testrun
FOCUS ?=
FEATURES ?=
SCENARIOS ?= fixtures/scenarios
IMPLEMENTATION_NAME ?= cilia
IMPLEMENTATION_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
CONFORMANCE_REPORT ?= conformance-report.yaml
CONFORMANCE_JUNIT ?= conformance-junit.xml
CONFORMANCE_JSON ?= conformance-ginkgo.json
GINKGOFLAGS ?=

.PHONY: conformance
conformance: ## Run the scenarios against TARGET=testrun [FOCUS=regexp FEATURES=list SCENARIOS=dir]; writes conformance-report.yaml and conformance-junit.xml
	bash hack/install-deps.sh --test-only
	$(GO) test ./conformance/ -count=1 -timeout 60m -v -args \
		-target='$(TARGET)' \
		-scenarios='$(abspath $(SCENARIOS))' \
		-features='$(FEATURES)' \
		-report='$(abspath $(CONFORMANCE_REPORT))' \
		-implementation-name='$(IMPLEMENTATION_NAME)' \
		-implementation-version='$(IMPLEMENTATION_VERSION)' \
		-cilia-version='$(IMPLEMENTATION_VERSION)' \
		-ginkgo.junit-report='$(abspath $(CONFORMANCE_JUNIT))' \
		-ginkgo.json-report='$(abspath $(CONFORMANCE_JSON))' \
		$(if $(FOCUS),-ginkgo.focus='$(FOCUS)') \
		$(GINKGOFLAGS)

# make fuzz: differential fuzzing (docs in conformance/differential): generated
# scenarios through the model and testrun for FUZZTIME; a disagreement is
# shrunk to a regression scenario whose path and content the failure prints.
FUZZTIME ?= 2m

.PHONY: fuzz
fuzz: ## Fuzz the model against testrun on generated scenarios for FUZZTIME (default 2m; as root); prints a shrunk regression scenario on a disagreement
	bash hack/install-deps.sh --test-only
	$(GO) test ./conformance/differential/ -run '^$$' -fuzz '^FuzzDifferential$$' -fuzztime $(FUZZTIME) $(TESTFLAGS)

.PHONY: bench
bench: ## Print the datapath benchmark table (ns/packet per program path), then the Go benchmarks of the datapath, the policy engine and cilia replay (as root)
	bash hack/install-deps.sh --test-only
	$(GO) run ./cmd/cilia bench datapath
	$(GO) test -run '^$$' -bench . $(TESTFLAGS) ./datapath/... ./agent/...
	$(GO) test -run '^$$' -bench . -benchtime 1x $(TESTFLAGS) ./sim/cluster/

.PHONY: lint
lint: ## Check formatting (gofmt -l must print nothing) and run go vet
	@files="$$($(GOFMT) -l .)"; \
	if [ -n "$$files" ]; then \
		echo "lint: these files need gofmt -w:"; echo "$$files" | sed 's/^/    /'; exit 1; \
	fi
	$(GO) vet $(PKGS)

.PHONY: clean
clean: ## Remove build outputs (bin/, the conformance report, JUnit and JSON)
	rm -rf bin/ conformance-report.yaml conformance-junit.xml conformance-ginkgo.json
