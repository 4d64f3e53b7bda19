package faketarget

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

func testScenario() *scenario.Scenario {
	a := scenario.Peer{Kind: scenario.PeerPod, Name: "x/a"}
	b := scenario.Peer{Kind: scenario.PeerPod, Name: "x/b"}
	return &scenario.Scenario{
		Metadata: scenario.Metadata{Name: "s"},
		Cluster: scenario.Cluster{
			Nodes: []scenario.Node{{Name: "node-1", IPv4: netip.MustParseAddr("192.168.0.11")}},
			Pods: []scenario.Pod{
				{Namespace: "x", Name: "a", IPv4: netip.MustParseAddr("10.0.0.1")},
				{Namespace: "x", Name: "b"},
			},
		},
		Steps: []scenario.Step{
			{Index: 0, Probes: []scenario.Probe{
				{ID: "allow", From: a, To: b, Port: 80, Protocol: scenario.TCP, Expect: scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "node"}},
				{ID: "deny", From: a, To: b, Port: 81, Protocol: scenario.TCP, Expect: scenario.Expectation{Verdict: scenario.Deny, DropReason: "POLICY_DENIED"}},
			}},
			{Index: 1},
		},
	}
}

func TestProbe(t *testing.T) {
	sc := testScenario()
	allow, deny := sc.Steps[0].Probes[0], sc.Steps[0].Probes[1]
	tests := []struct {
		name    string
		cfg     Config
		probe   scenario.Probe
		want    target.Observation
		wantErr string
	}{
		{
			name:  "answers the expectation",
			probe: allow,
			want:  target.Observation{Verdict: target.Allowed, SourceSeen: netip.MustParseAddr("192.168.0.11")},
		},
		{
			name:  "deny with its drop reason",
			probe: deny,
			want:  target.Observation{Verdict: target.Denied, DropReason: "POLICY_DENIED", SourceSeen: netip.MustParseAddr("10.0.0.1")},
		},
		{
			name:  "override",
			cfg:   Config{Overrides: []Override{{Scenario: "s", Probe: "deny", Verdict: target.Allowed, SourceSeen: "10.9.9.9"}}},
			probe: deny,
			want:  target.Observation{Verdict: target.Allowed, DropReason: "POLICY_DENIED", SourceSeen: netip.MustParseAddr("10.9.9.9")},
		},
		{
			name:    "error",
			cfg:     Config{Overrides: []Override{{Scenario: "s", Probe: "allow", Error: "unreachable"}}},
			probe:   allow,
			wantErr: "unreachable",
		},
		{
			name:  "override of another scenario",
			cfg:   Config{Overrides: []Override{{Scenario: "other", Probe: "allow", Error: "unreachable"}}},
			probe: allow,
			want:  target.Observation{Verdict: target.Allowed, SourceSeen: netip.MustParseAddr("192.168.0.11")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt := New(tt.cfg)
			if err := tgt.Setup(context.Background(), sc); err != nil {
				t.Fatal(err)
			}
			obs, err := tgt.Probe(context.Background(), tt.probe)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Probe error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(obs.Flows) != 1 {
				t.Errorf("%d flows, want 1", len(obs.Flows))
			}
			obs.Flows = nil
			if !reflect.DeepEqual(obs, tt.want) {
				t.Errorf("Probe = %+v, want %+v", obs, tt.want)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	ctx := context.Background()
	tgt := New(Config{FailSetup: []string{"s"}})
	if err := tgt.Setup(ctx, testScenario()); err == nil {
		t.Error("Setup succeeded, want the configured failure")
	}
	tgt = New(Config{FailSteps: []StepRef{{Scenario: "s", Step: 1}}})
	sc := testScenario()
	if err := tgt.Setup(ctx, sc); err != nil {
		t.Fatal(err)
	}
	if err := tgt.Step(ctx, sc.Steps[1]); err == nil {
		t.Error("Step 1 succeeded, want the configured failure")
	}
	if err := tgt.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"setup s", "step 1", "close"}; !reflect.DeepEqual(tgt.Calls, want) {
		t.Errorf("calls = %q, want %q", tgt.Calls, want)
	}
}

func TestRegistered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fake.yaml")
	if err := os.WriteFile(path, []byte("features: [policy-l3]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sel  string
		want features.Set
	}{
		{"fake", nil},
		{"fake:" + path, features.NewSet(features.PolicyL3)},
	}
	for _, tt := range tests {
		tgt, err := target.New(tt.sel)
		if err != nil {
			t.Fatal(err)
		}
		got := tgt.Features()
		if tt.want == nil {
			if !got.Has(features.LBDSR) || !got.Has(features.PolicyL3) {
				t.Errorf("%s: features %v, want all", tt.sel, got.Sorted())
			}
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: features %v, want %v", tt.sel, got.Sorted(), tt.want.Sorted())
		}
	}
	if _, err := target.New("fake:" + path + ".missing"); err == nil {
		t.Error("missing config file accepted")
	}
	if err := os.WriteFile(path, []byte("featurez: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := target.New("fake:" + path); err == nil {
		t.Error("unknown config field accepted")
	}
}
