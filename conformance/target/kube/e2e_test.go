//go:build e2e

package kube

// The integration test of the kube target against a real cluster. It runs
// only with the build tag e2e and a kubeconfig in CILIA_KUBE_E2E_KUBECONFIG
// (the probe image must be loadable by the cluster: `make probe-image`,
// then `kind load docker-image cilia-probe:dev`):
//
//	CILIA_KUBE_E2E_KUBECONFIG=$HOME/.kube/config go test -tags e2e -run E2E -v ./conformance/target/kube/
//
// CILIA_KUBE_E2E_ENFORCES=1 also checks that the cluster's CNI denies what
// a NetworkPolicy denies (leave it unset for a CNI that enforces nothing,
// such as the ptp baseline).

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

const e2eScenario = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: kube-e2e, features: [policy-knp, policy-l3]}
cluster:
  nodes: [{name: node-1}, {name: node-2}]
  namespaces: [{name: x, labels: {ns: x}}, {name: default}]
  pods:
    - {name: x/a, labels: {pod: a}, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
    - {name: x/b, labels: {pod: b}, node: node-2}
    - {name: default/c, labels: {pod: c}}
  services:
    - {name: x/web, selector: {pod: a}, clusterIP: 10.96.0.10, ports: [{port: 8080, targetPort: http}]}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: a-from-x, namespace: x}
    spec:
      podSelector: {matchLabels: {pod: a}}
      ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}}]}]
probes:
  - {from: x/b, to: x/a, port: http, expect: {verdict: allow, backendIn: [x/a], sourceSeen: client}}
  - {from: x/b, to: x/a, port: dns, expect: {verdict: allow, backendIn: [x/a], sourceSeen: client}}
  - {from: x/b, to: x/a, port: http, http: {method: POST, path: /v1}, expect: {verdict: allow, httpStatus: 200}}
  - {from: x/b, to: x/a, protocol: ICMP, expect: allow}
  - {from: x/b, to: service:x/web, port: 8080, expect: {verdict: allow, backendIn: [x/a]}}
  - {from: x/a, to: default/c, port: 81, expect: allow}
  - {from: default/c, to: x/a, port: http, expect: deny}
steps:
  - setLabels: [{namespace: default, labels: {team: c}}]
    delete: [{kind: NetworkPolicy, name: x/a-from-x}]
    probes:
      - {from: default/c, to: x/a, port: http, expect: allow}
`

func e2eTarget(t *testing.T) *Target {
	t.Helper()
	kc := os.Getenv("CILIA_KUBE_E2E_KUBECONFIG")
	if kc == "" {
		t.Fatal("CILIA_KUBE_E2E_KUBECONFIG is not set: the e2e test needs a cluster")
	}
	cfg, err := ConfigFromEnv(kc)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// waitGone waits until nothing labelled with the run is left.
func waitGone(t *testing.T, tg *Target) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sel := metav1.ListOptions{LabelSelector: RunLabel + "=" + tg.RunID()}
	for {
		var left []string
		for _, gvr := range []struct {
			res  string
			list func() ([]string, error)
		}{
			{"namespaces", func() ([]string, error) { return names(tg.dyn.Resource(gvrNamespace).List(ctx, sel)) }},
			{"pods", func() ([]string, error) { return names(tg.dyn.Resource(gvrPod).List(ctx, sel)) }},
			{"ccnp", func() ([]string, error) { return names(tg.dyn.Resource(gvrCCNP).List(ctx, sel)) }},
		} {
			l, err := gvr.list()
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatalf("list %s: %v", gvr.res, err)
			}
			left = append(left, l...)
		}
		if len(left) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("left 3 minutes after Close: %v", left)
		}
		time.Sleep(time.Second)
	}
}

// names returns the names of a list's items.
func names(l *unstructured.UnstructuredList, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range l.Items {
		out = append(out, u.GetNamespace()+"/"+u.GetName())
	}
	return out, nil
}

func TestE2ERun(t *testing.T) {
	tg := e2eTarget(t)
	sc, err := scenario.Parse("e2e.yaml", []byte(e2eScenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	closed := false
	t.Cleanup(func() {
		if !closed {
			tg.Close()
		}
	})
	start := time.Now()
	if err := tg.Setup(ctx, sc); err != nil {
		t.Fatalf("setup: %v", err)
	}
	t.Logf("setup in %v (run %s)", time.Since(start), tg.RunID())
	enforces := os.Getenv("CILIA_KUBE_E2E_ENFORCES") == "1"
	state := sc.StateAt(0)
	b, _ := state.Addr(scenario.Peer{Kind: scenario.PeerPod, Name: "x/b"}, scenario.IPv4)
	for _, st := range sc.Steps {
		if st.Index > 0 {
			if err := tg.Step(ctx, st); err != nil {
				t.Fatalf("step %d: %v", st.Index, err)
			}
		}
		for _, p := range st.Probes {
			start := time.Now()
			obs, err := tg.Probe(ctx, p)
			if err != nil {
				t.Errorf("%s: %v", p.ID, err)
				continue
			}
			t.Logf("%s: %+v in %v", p.ID, obs, time.Since(start))
			want := target.Allowed
			if p.Expect.Verdict == scenario.Deny && enforces {
				want = target.Denied
			}
			if p.Expect.Verdict == scenario.Deny && !enforces {
				continue // a CNI that enforces nothing allows it
			}
			if obs.Verdict != want {
				t.Errorf("%s: verdict %s, want %s", p.ID, obs.Verdict, want)
			}
			if len(p.Expect.BackendIn) > 0 && obs.Backend != p.Expect.BackendIn[0] {
				t.Errorf("%s: backend %q, want %s", p.ID, obs.Backend, p.Expect.BackendIn[0])
			}
			if p.Expect.SourceSeen == "client" && obs.SourceSeen != b {
				t.Errorf("%s: source seen %s, want x/b's scenario address %s", p.ID, obs.SourceSeen, b)
			}
			if p.Expect.HTTPStatus != 0 && obs.HTTPStatus != p.Expect.HTTPStatus {
				t.Errorf("%s: status %d, want %d", p.ID, obs.HTTPStatus, p.Expect.HTTPStatus)
			}
		}
	}
	if err := tg.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	waitGone(t, tg)
}

// TestE2ECloseAfterFailure makes Setup fail after it created namespaces
// and pods (the API server refuses an invalid NetworkPolicy) and checks
// that Close removes everything.
func TestE2ECloseAfterFailure(t *testing.T) {
	tg := e2eTarget(t)
	sc, err := scenario.Parse("e2e-bad.yaml", []byte(`
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: kube-e2e-bad, features: [policy-knp]}
cluster:
  pods: [{name: x/a, labels: {pod: a}}]
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: bad, namespace: x}
    spec:
      podSelector: {matchLabels: {pod: a}}
      ingress: [{ports: [{port: 70000}]}]
probes:
  - {from: x/a, to: x/a, port: 80, expect: allow}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = tg.Setup(context.Background(), sc)
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) {
		t.Fatalf("setup: %v, want the API server's refusal", err)
	}
	t.Logf("setup failed as intended: %v", err)
	if err := tg.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitGone(t, tg)
}
