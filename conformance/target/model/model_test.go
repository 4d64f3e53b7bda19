package model

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/features"
	specmodel "github.com/ciliaproject/cilia/conformance/model"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/suite"
	"github.com/ciliaproject/cilia/conformance/target"
)

// TestFixtures runs every probe of every scenario under fixtures/scenarios
// through the model target, as the suite does (Setup, Step for every step
// after the first and for the first when it has mutations, Probe once per
// repetition), and checks the verdict and, when given, the drop reason,
// the backend, the source address, the reply path and the expectations
// that relate repetitions and probes (sameBackend, distinctBackends,
// sameBackendAs). Probes the model does not evaluate
// (target.ErrUnsupported) are counted as skipped, as the suite does.
func TestFixtures(t *testing.T) {
	checkScenarios(t, "../../../fixtures/scenarios")
}

// TestLBScenarios runs testdata's scenarios, which use every feature of
// the loadbalancing profile, as TestFixtures does. Its one probe from a
// node to a service is not modelled: exactly one probe is skipped.
func TestLBScenarios(t *testing.T) {
	if skipped := checkScenarios(t, "testdata"); skipped != 1 {
		t.Errorf("%d probes skipped, want 1 (the node client of a service)", skipped)
	}
}

// checkScenarios runs and checks the scenarios under dir; it returns the
// number of probes skipped as not modelled.
func checkScenarios(t *testing.T, dir string) int {
	t.Helper()
	scs, err := scenario.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) == 0 {
		t.Fatalf("no scenarios under %s", dir)
	}
	ctx := context.Background()
	var scenarios, probes, failed, skipped int
	for _, sc := range scs {
		tg := New()
		if err := tg.Setup(ctx, sc); err != nil {
			t.Errorf("%s: setup: %v", sc.File, err)
			continue
		}
		scenarios++
		named := map[string]string{}
		for i, st := range sc.Steps {
			if i > 0 || hasMutations(st) {
				if err := tg.Step(ctx, st); err != nil {
					t.Errorf("%s: step %d: %v", sc.File, i, err)
					break
				}
			}
		probes:
			for _, p := range st.Probes {
				probes++
				var msgs, backends []string
				for k := 0; k < max(p.Repeat, 1); k++ {
					obs, err := tg.Probe(ctx, p)
					if errors.Is(err, target.ErrUnsupported) {
						skipped++
						t.Logf("%s:%d: %s: skipped: %v", sc.File, p.Line, p.ID, err)
						continue probes
					}
					if err != nil {
						failed++
						t.Errorf("%s:%d: %s: probe error: %v", sc.File, p.Line, p.ID, err)
						continue probes
					}
					if msg := mismatch(sc, p, obs); msg != "" && len(msgs) == 0 {
						msgs = append(msgs, msg)
					}
					backends = append(backends, obs.Backend)
				}
				exists := func(pod string) bool { _, ok := sc.StateAt(p.Step).Pod(pod); return ok }
				msgs = append(msgs, suite.CheckRelations(p, backends, named, exists)...)
				if p.Name != "" {
					named[p.Name] = backends[0]
				}
				if len(msgs) > 0 {
					failed++
					a, _ := explain(sc, p)
					t.Errorf("%s:%d: %s: %s (model: %s)", sc.File, p.Line, p.ID, strings.Join(msgs, "; "), a)
				}
			}
		}
	}
	t.Logf("%d scenarios, %d probes, %d not as expected, %d skipped as not modelled", scenarios, probes, failed, skipped)
	return skipped
}

func hasMutations(st scenario.Step) bool {
	return len(st.Apply)+len(st.Delete)+len(st.SetLabels)+len(st.AddPods)+len(st.DeletePods)+len(st.TerminatePods)+len(st.AddNamespaces) > 0
}

// mismatch compares an observation with a probe's expectation as the suite
// does, "" when it passes.
func mismatch(sc *scenario.Scenario, p scenario.Probe, obs target.Observation) string {
	var out []string
	e := p.Expect
	want := target.Denied
	if e.Verdict == scenario.Allow {
		want = target.Allowed
	}
	if obs.Verdict != want {
		out = append(out, "verdict: expected "+string(e.Verdict)+", observed "+string(obs.Verdict))
	}
	if e.DropReason != "" && obs.Verdict == target.Denied && obs.DropReason != e.DropReason {
		out = append(out, "dropReason: expected "+e.DropReason+", observed "+obs.DropReason)
	}
	if len(e.BackendIn) > 0 && obs.Verdict == target.Allowed {
		ok := false
		for _, b := range e.BackendIn {
			ok = ok || b == obs.Backend
		}
		if !ok {
			out = append(out, "backend: expected one of "+strings.Join(e.BackendIn, ",")+", observed "+obs.Backend)
		}
	}
	if e.SourceSeen == "client" && obs.Verdict == target.Allowed {
		st := sc.StateAt(p.Step)
		if a, ok := st.Addr(p.From, p.Family); !ok || a != obs.SourceSeen {
			out = append(out, "sourceSeen: expected the client's address, observed "+obs.SourceSeen.String())
		}
	}
	for _, n := range e.ReplyNotVia {
		if obs.Verdict == target.Allowed && (obs.ReplyVia == nil || slices.Contains(obs.ReplyVia, n)) {
			out = append(out, fmt.Sprintf("replyNotVia: the reply passed %v", obs.ReplyVia))
		}
	}
	return strings.Join(out, "; ")
}

// explain asks the model directly, for the reason it gives.
func explain(sc *scenario.Scenario, p scenario.Probe) (string, error) {
	m, err := specmodel.New(sc.StateAt(p.Step))
	if err != nil {
		return "", err
	}
	a, err := m.Probe(p)
	return a.Why, err
}

// lbScenario has a service with three backends, one without any, and a
// pod that reaches itself through its own service.
const lbScenario = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: lb, features: [lb-clusterip, lb-nodeport, lb-no-backends, lb-hairpin]}
cluster:
  nodes: [{name: node-1}, {name: node-2}]
  pods:
    - {name: default/web-1, labels: {app: web}, node: node-1}
    - {name: default/web-2, labels: {app: web}, node: node-2}
    - {name: default/web-3, labels: {app: web}, node: node-2}
    - {name: default/client, labels: {app: client}, node: node-1}
  services:
    - {name: default/web, type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}
    - {name: default/empty, selector: {app: none}, ports: [{port: 80}]}
probes:
  - {from: default/client, to: service:default/web, port: 80, repeat: 20, expect: {verdict: allow, distinctBackends: 3}}
  - {from: default/client, to: service:default/web, port: 80, sourcePort: 40000, expect: allow}
  - {from: default/client, to: service:default/empty, port: 80, expect: {verdict: deny, dropReason: NO_SERVICE}}
  - {from: "node:node-1", to: service:default/web, port: 80, expect: allow}
`

// TestProbeServices checks what the target adds to the model for
// services: a fresh source port per Probe call (repetitions spread over
// the backends), a fixed source port always gets one backend, the reply
// path and NO_SERVICE are passed on, and what the model does not evaluate
// is target.ErrUnsupported.
func TestProbeServices(t *testing.T) {
	sc, err := scenario.Parse("lb.yaml", []byte(lbScenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tg := New()
	if err := tg.Setup(ctx, sc); err != nil {
		t.Fatal(err)
	}
	for _, f := range []features.Feature{features.LBClusterIP, features.LBMaglev, features.LBHairpin, features.PolicyL3, features.DropReasons} {
		if !tg.Features().Has(f) {
			t.Errorf("features lack %s", f)
		}
	}
	ps := sc.Steps[0].Probes
	seen := map[string]bool{}
	for i := 0; i < ps[0].Repeat; i++ {
		obs, err := tg.Probe(ctx, ps[0])
		if err != nil {
			t.Fatal(err)
		}
		if obs.Verdict != target.Allowed || len(obs.ReplyVia) == 0 || !obs.SourceSeen.IsValid() {
			t.Errorf("%s: %+v, want allowed with a source and a reply path", ps[0].ID, obs)
		}
		seen[obs.Backend] = true
	}
	if len(seen) != 3 {
		t.Errorf("%s: %d repetitions reached %v, want all 3 backends", ps[0].ID, ps[0].Repeat, seen)
	}
	first, err := tg.Probe(ctx, ps[1])
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if obs, _ := tg.Probe(ctx, ps[1]); obs.Backend != first.Backend {
			t.Errorf("%s: backend %s, then %s", ps[1].ID, first.Backend, obs.Backend)
		}
	}
	obs, err := tg.Probe(ctx, ps[2])
	if err != nil || obs.Verdict != target.Denied || obs.DropReason != specmodel.DropNoService {
		t.Errorf("%s: %+v, %v; want denied NO_SERVICE", ps[2].ID, obs, err)
	}
	if _, err := tg.Probe(ctx, ps[3]); !errors.Is(err, target.ErrUnsupported) {
		t.Errorf("%s: error %v, want one wrapping target.ErrUnsupported", ps[3].ID, err)
	}
}
