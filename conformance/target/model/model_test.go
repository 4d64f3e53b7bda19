package model

import (
	"context"
	"strings"
	"testing"

	specmodel "github.com/ciliaproject/cilia/conformance/model"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// TestFixtures runs every probe of every scenario under fixtures/scenarios
// through the model target, as the suite does (Setup, Step for every step
// after the first and for the first when it has mutations, Probe), and
// checks the verdict and, when given, the drop reason, the backend and the
// source address.
func TestFixtures(t *testing.T) {
	scs, err := scenario.LoadDir("../../../fixtures/scenarios")
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) == 0 {
		t.Fatal("no scenarios under fixtures/scenarios")
	}
	ctx := context.Background()
	var scenarios, probes, failed int
	for _, sc := range scs {
		tg := New()
		if err := tg.Setup(ctx, sc); err != nil {
			t.Errorf("%s: setup: %v", sc.File, err)
			continue
		}
		scenarios++
		for i, st := range sc.Steps {
			if i > 0 || hasMutations(st) {
				if err := tg.Step(ctx, st); err != nil {
					t.Errorf("%s: step %d: %v", sc.File, i, err)
					break
				}
			}
			for _, p := range st.Probes {
				probes++
				obs, err := tg.Probe(ctx, p)
				if err != nil {
					failed++
					t.Errorf("%s:%d: %s: probe error: %v", sc.File, p.Line, p.ID, err)
					continue
				}
				if msg := mismatch(sc, p, obs); msg != "" {
					failed++
					a, _ := explain(sc, p)
					t.Errorf("%s:%d: %s: %s (model: %s)", sc.File, p.Line, p.ID, msg, a)
				}
			}
		}
	}
	t.Logf("%d scenarios, %d probes, %d not as expected", scenarios, probes, failed)
}

func hasMutations(st scenario.Step) bool {
	return len(st.Apply)+len(st.Delete)+len(st.SetLabels)+len(st.AddPods)+len(st.DeletePods)+len(st.AddNamespaces) > 0
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
