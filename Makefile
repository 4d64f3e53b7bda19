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
test: ## Run go vet and all tests, then the policy and loadbalancing profiles on the testrun, netns and model targets (as root; CILIA_SKIP_PRIVILEGED=1 skips the privileged ones)
	bash hack/install-deps.sh --test-only
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(TESTFLAGS) $(PKGS)
	$(MAKE) --no-print-directory profile-targets

# The policy and loadbalancing profiles pass on both targets of the
# simulator, testrun (the walker over BPF_PROG_TEST_RUN) and netns
# (attached programs, real sockets), and on the model (the executable
# spec). Reports go to reports/conformance-<target>.yaml.
PROFILE_TARGETS ?= testrun netns model
PROFILES ?= policy,loadbalancing

.PHONY: profile-targets
profile-targets: ## Run the PROFILES (default: policy,loadbalancing) on each of PROFILE_TARGETS (default: testrun netns model; as root), reports in reports/
	@if [ "$$CILIA_SKIP_PRIVILEGED" = 1 ]; then \
		echo "profile-targets: CILIA_SKIP_PRIVILEGED=1: skipping the $(PROFILES) profiles on $(PROFILE_TARGETS) (needs root)"; exit 0; \
	fi; \
	mkdir -p reports; \
	for t in $(PROFILE_TARGETS); do \
		echo "=== $(PROFILES) on the $$t target"; \
		$(MAKE) --no-print-directory conformance TARGET=$$t FEATURES=$(PROFILES) \
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
CILIA_VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
IMPLEMENTATION_VERSION ?= $(CILIA_VERSION)
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
		-cilia-version='$(CILIA_VERSION)' \
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
bench: ## Print the datapath benchmark table (ns/packet per program path, service curves), the kube-proxy comparison, then the Go benchmarks of the datapath, the policy engine, the Maglev table and cilia replay (as root)
	bash hack/install-deps.sh --test-only
	$(GO) run ./cmd/cilia bench datapath
	$(GO) run ./cmd/cilia bench services
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

# make probe-image: the probe image of the kube conformance target
# (cmd/cilia-probe): one static binary in a FROM-scratch image, built with the
# legacy builder (no registry, no BuildKit needed). kind clusters load it with
# `kind load docker-image $(PROBE_IMAGE)`.
PROBE_IMAGE ?= cilia-probe:dev

.PHONY: probe-image
probe-image: ## Build bin/cilia-probe (static) and the FROM-scratch image PROBE_IMAGE (default cilia-probe:dev)
	mkdir -p bin/probe-image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/probe-image/cilia-probe ./cmd/cilia-probe
	cp bin/probe-image/cilia-probe bin/cilia-probe
	printf 'FROM scratch\nCOPY cilia-probe /cilia-probe\nENTRYPOINT ["/cilia-probe"]\nCMD ["serve"]\n' > bin/probe-image/Dockerfile
	DOCKER_BUILDKIT=0 docker build -q -t $(PROBE_IMAGE) bin/probe-image
	@echo "probe-image: $(PROBE_IMAGE) ($$(docker image inspect -f '{{.Size}}' $(PROBE_IMAGE)) bytes)"

# make kind-image / kind-up / kind-down: kind clusters for the end-to-end
# tests (e2e/kind, docs/e2e.md). The node image is kind's stock image on a host
# that reaches a registry, else built offline by hack/kind-image/build.sh from
# Debian's packages and the Go module proxy, cached under CILIA_CACHE
# (CILIA_KIND_ONLINE=1 or 0 forces either). KIND_CLUSTER names the cluster and
# its docker network; its kubeconfig is KIND_KUBECONFIG.
CILIA_CACHE ?= /var/cache/cilia
KIND_CLUSTER ?= cilia-e2e
KIND_WORKERS ?= 0
KIND_KUBECONFIG ?= $(CILIA_CACHE)/kind/$(KIND_CLUSTER)/kubeconfig
KIND_FLAGS ?=
CILIA_KIND = CILIA_CACHE='$(CILIA_CACHE)' $(GO) run ./e2e/kind/cmd/cilia-kind

.PHONY: kind-image
kind-image: ## Print the kind node image, building it offline (cached in CILIA_CACHE) when no registry is reachable
	$(CILIA_KIND) image $(KIND_FLAGS)

.PHONY: kind-up
kind-up: ## Create (or reuse) the kind cluster KIND_CLUSTER [KIND_WORKERS=n] with the ptp CNI; wait for Ready; kubeconfig at KIND_KUBECONFIG
	$(CILIA_KIND) up -name '$(KIND_CLUSTER)' -workers $(KIND_WORKERS) -kubeconfig '$(KIND_KUBECONFIG)' $(KIND_FLAGS)

.PHONY: kind-down
kind-down: ## Delete the kind cluster KIND_CLUSTER and check no container, network or netns is left
	$(CILIA_KIND) down -name '$(KIND_CLUSTER)' -kubeconfig '$(KIND_KUBECONFIG)' $(KIND_FLAGS)

# make e2e: offline (or online) kind cluster with the plain ptp CNI, the
# policy profile through the kube target, and a check that every allow
# passed and every deny failed; writes e2e/reports/baseline-ptp.yaml and
# deletes the cluster. E2E_FEATURES, E2E_FOCUS narrow the run; E2E_KEEP=1
# keeps the cluster. docs/e2e.md.
E2E_FEATURES ?= policy
E2E_FOCUS ?=
E2E_WORKERS ?= 2

.PHONY: e2e
e2e: ## kind cluster (ptp CNI, offline image when no registry) + the policy profile through the kube target; report in e2e/reports/baseline-ptp.yaml
	KIND_WORKERS='$(E2E_WORKERS)' CILIA_CACHE='$(CILIA_CACHE)' PROBE_IMAGE='$(PROBE_IMAGE)' \
		E2E_FEATURES='$(E2E_FEATURES)' E2E_FOCUS='$(E2E_FOCUS)' GO='$(GO)' bash hack/e2e.sh
