package suite

import (
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

func TestCheckRelations(t *testing.T) {
	named := map[string]string{"before": "x/b1", "empty": ""}
	for _, tc := range []struct {
		name     string
		expect   scenario.Expectation
		backends []string
		want     []string // substrings, one per expected mismatch
	}{
		{"same backend holds", scenario.Expectation{SameBackend: true}, []string{"x/b1", "x/b1", "x/b1"}, nil},
		{"same backend broken", scenario.Expectation{SameBackend: true}, []string{"x/b1", "x/b2", "x/b1"},
			[]string{"sameBackend: the 3 repetitions were served by x/b1 (2), x/b2 (1)"}},
		{"same backend with a missing one", scenario.Expectation{SameBackend: true}, []string{"x/b1", ""},
			[]string{"served by none (1), x/b1 (1)"}},
		{"spread reached", scenario.Expectation{DistinctBackends: 2}, []string{"x/b1", "x/b2", "x/b1"}, nil},
		{"spread missed", scenario.Expectation{DistinctBackends: 3}, []string{"x/b1", "x/b2", "x/b1"},
			[]string{"distinctBackends: expected at least 3 backends over 3 repetitions, observed x/b1 (2), x/b2 (1)"}},
		{"same as earlier", scenario.Expectation{SameBackendAs: "before"}, []string{"x/b1"}, nil},
		{"not same as earlier", scenario.Expectation{SameBackendAs: "before"}, []string{"x/b2"},
			[]string{`sameBackendAs: expected x/b1 (the backend of probe "before"), repetition 1 observed x/b2`}},
		{"earlier had none", scenario.Expectation{SameBackendAs: "empty"}, []string{"x/b2"},
			[]string{`sameBackendAs: probe "empty" observed no backend`}},
		{"earlier did not run", scenario.Expectation{SameBackendAs: "later"}, []string{"x/b2"},
			[]string{`sameBackendAs: probe "later" did not run`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &scenarioRun{named: named}
			got := r.checkRelations(scenario.Probe{Expect: tc.expect, Repeat: len(tc.backends)}, tc.backends)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d mismatches %q, want %d %q", len(got), got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("mismatch %d = %q, want it to contain %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckReplyNotVia(t *testing.T) {
	exp := scenario.Expectation{Verdict: scenario.Allow, ReplyNotVia: []string{"node-1"}}
	for _, tc := range []struct {
		name string
		via  []string
		want string
	}{
		{"avoided", []string{"node-2", "node-3"}, ""},
		{"crossed", []string{"node-1", "node-2"}, "replyNotVia: the reply passed node node-1 (reply path: node-1, node-2)"},
		{"not reported", nil, "the target did not report the reply's path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(exp, target.Observation{Verdict: target.Allowed, ReplyVia: tc.via}, true, Addresses{})
			switch {
			case tc.want == "" && len(got) > 0:
				t.Fatalf("got %q, want no mismatch", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Fatalf("got %q, want one mismatch containing %q", got, tc.want)
			}
		})
	}
}
