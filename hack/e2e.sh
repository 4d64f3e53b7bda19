#!/usr/bin/env bash
# make e2e: the policy profile through the kube target on a kind cluster
# whose CNI is the plain ptp plugin (no policy enforcement), then a check
# that the run says exactly that: every probe expecting allow passes, every
# probe expecting deny fails. Builds (or reuses) the node image offline when
# no registry is reachable, the probe image, creates the cluster, runs,
# writes e2e/reports/baseline-ptp.yaml, and deletes the cluster (also on
# failure or Ctrl-C), checking nothing is left.
#
# Environment (the Makefile passes these): KIND_CLUSTER, KIND_WORKERS,
# KIND_KUBECONFIG, CILIA_CACHE, PROBE_IMAGE, E2E_FEATURES (default policy),
# E2E_FOCUS (a regexp, default all), E2E_KEEP=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${KIND_CLUSTER:=cilia-e2e-$$}"
: "${KIND_WORKERS:=2}"
: "${CILIA_CACHE:=/var/cache/cilia}"
: "${KIND_KUBECONFIG:=$CILIA_CACHE/kind/$KIND_CLUSTER/kubeconfig}"
: "${PROBE_IMAGE:=cilia-probe:dev}"
: "${E2E_FEATURES:=policy}"
: "${E2E_FOCUS:=}"
: "${GO:=go}"
export CILIA_CACHE

step() { echo; echo "=== e2e: $* ($(date -u +%H:%M:%S))"; }
kindctl() { "$GO" run ./e2e/kind/cmd/cilia-kind "$@"; }

start=$(date +%s)
step "node image (cached; offline when no registry answers)"
kindctl image
step "probe image $PROBE_IMAGE"
make --no-print-directory probe-image PROBE_IMAGE="$PROBE_IMAGE"

down() {
	local rc=$?
	if [[ "${E2E_KEEP:-}" == 1 ]]; then
		echo "e2e: E2E_KEEP=1: cluster $KIND_CLUSTER kept (KUBECONFIG=$KIND_KUBECONFIG)"
		return
	fi
	step "delete cluster $KIND_CLUSTER"
	kindctl down -name "$KIND_CLUSTER" -kubeconfig "$KIND_KUBECONFIG" || rc=1
	echo "e2e: done in $(( $(date +%s) - start )) s, exit $rc"
	exit $rc
}
trap down EXIT

step "cluster $KIND_CLUSTER ($((KIND_WORKERS + 1)) nodes, ptp CNI)"
kindctl up -name "$KIND_CLUSTER" -workers "$KIND_WORKERS" -kubeconfig "$KIND_KUBECONFIG"
kindctl load -name "$KIND_CLUSTER" -kubeconfig "$KIND_KUBECONFIG" "$PROBE_IMAGE"

step "policy profile through the kube target"
mkdir -p reports e2e/reports
version=$(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || echo unknown)
set +e
CILIA_KUBE_IMAGE="$PROBE_IMAGE" make --no-print-directory conformance \
	TARGET="kube:$KIND_KUBECONFIG" FEATURES="$E2E_FEATURES" FOCUS="$E2E_FOCUS" \
	IMPLEMENTATION_NAME="containernetworking-plugins ptp (no policy enforcement)" \
	IMPLEMENTATION_VERSION="$version" \
	CONFORMANCE_REPORT=e2e/reports/baseline-ptp.yaml \
	CONFORMANCE_JUNIT=reports/baseline-ptp-junit.xml \
	CONFORMANCE_JSON=reports/baseline-ptp-ginkgo.json \
	GINKGOFLAGS='-ginkgo.no-color'
suite_rc=$?
set -e
echo "e2e: the suite exited $suite_rc (failures are expected: ptp enforces no policy)"

step "the run against the expectations"
"$GO" run ./e2e/baseline/cmd/check-baseline -report reports/baseline-ptp-ginkgo.json -scenarios fixtures/scenarios
