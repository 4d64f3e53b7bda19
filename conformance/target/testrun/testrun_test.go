package testrun

import (
	"context"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
)

// TestTargetProbes runs every probe of testdata/mixed.yaml through the
// target and checks each observation against its expectation, with the
// details the suite does not check: the source the server saw, the
// backend, and the flows.
func TestTargetProbes(t *testing.T) {
	dptestrun.RequirePrivileges(t)
	sc, err := scenario.Load("testdata/mixed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tg, err := target.New(Name)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Close (and the netns check) run even when Setup fails half-way.
	t.Cleanup(func() {
		nsNames := tg.(*Target).namespaces()
		if err := tg.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		for _, name := range nsNames {
			if h, err := netns.GetFromName(name); err == nil {
				h.Close()
				t.Errorf("netns %s left after Close", name)
			}
		}
	})
	if err := tg.Setup(ctx, sc); err != nil {
		t.Fatalf("setup: %v", err)
	}
	for _, st := range sc.Steps {
		if err := tg.Step(ctx, st); err != nil {
			t.Fatalf("step %d: %v", st.Index, err)
		}
		for _, p := range st.Probes {
			obs, err := tg.Probe(ctx, p)
			if err != nil {
				t.Fatalf("%s: %v", p.ID, err)
			}
			want := target.Allowed
			if p.Expect.Verdict == scenario.Deny {
				want = target.Denied
			}
			if obs.Verdict != want {
				t.Errorf("%s: verdict %s, want %s (flows %d)", p.ID, obs.Verdict, want, len(obs.Flows))
				continue
			}
			if p.Expect.DropReason != "" && obs.DropReason != p.Expect.DropReason {
				t.Errorf("%s: drop reason %q, want %q", p.ID, obs.DropReason, p.Expect.DropReason)
			}
			if len(obs.Flows) == 0 {
				t.Errorf("%s: no flows reported", p.ID)
			}
			if want == target.Allowed && p.To.Kind == scenario.PeerPod {
				if obs.Backend != p.To.Name {
					t.Errorf("%s: backend %q, want %q", p.ID, obs.Backend, p.To.Name)
				}
				state := sc.StateAt(st.Index)
				if from, ok := state.Addr(p.From, p.Family); ok && obs.SourceSeen != from {
					t.Errorf("%s: source seen %s, want %s", p.ID, obs.SourceSeen, from)
				}
			}
		}
	}
}
