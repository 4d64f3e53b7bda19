// Package targettest checks a conformance target against a scenario in a
// Go test, with the details the suite does not check: the source address
// the server saw, the backend, the flows, and that the target leaves no
// network namespace behind.
package targettest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Options tune Probes for what a target cannot observe.
type Options struct {
	// NoSourceSeen says for which probes the target reports no source
	// address (nil: it reports one for every allowed probe to a pod).
	NoSourceSeen func(p scenario.Probe) bool
	// NetnsPrefix returns the prefix of the network namespaces the target
	// made (after Setup), so the test can check none is left after Close.
	NetnsPrefix func() string
}

// Probes runs every probe of the scenario file through tg and checks each
// observation against its expectation.
func Probes(t *testing.T, tg target.Target, file string, opts Options) {
	t.Helper()
	sc, err := scenario.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Close (and the netns check) run even when Setup fails half-way.
	t.Cleanup(func() {
		prefix := ""
		if opts.NetnsPrefix != nil {
			prefix = opts.NetnsPrefix()
		}
		if err := tg.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if prefix == "" {
			return
		}
		left, err := filepath.Glob("/var/run/netns/" + prefix + "-*")
		if err != nil || len(left) > 0 {
			t.Errorf("netns left after Close: %v %v", left, err)
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
			if want != target.Allowed || p.To.Kind != scenario.PeerPod {
				continue
			}
			if obs.Backend != p.To.Name {
				t.Errorf("%s: backend %q, want %q", p.ID, obs.Backend, p.To.Name)
			}
			if opts.NoSourceSeen != nil && opts.NoSourceSeen(p) {
				continue
			}
			if from, ok := sc.StateAt(st.Index).Addr(p.From, p.Family); ok && obs.SourceSeen != from {
				t.Errorf("%s: source seen %s, want %s", p.ID, obs.SourceSeen, from)
			}
		}
	}
}
