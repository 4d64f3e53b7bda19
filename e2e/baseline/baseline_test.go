package baseline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/onsi/ginkgo/v2/types"
)

const testScenario = `apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: two, features: [policy-l3]}
cluster:
  pods:
    - {name: x/a, labels: {app: a}}
    - {name: x/b, labels: {app: b}}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny-b, namespace: x}
    spec: {podSelector: {matchLabels: {app: b}}, policyTypes: [Ingress]}
probes:
  - {from: x/b, to: x/a, port: 80, expect: allow}
  - {from: x/a, to: x/b, port: 80, expect: deny}
  - {from: x/a, to: x/b, port: 81, expect: deny}
`

func spec(probe string, state types.SpecState) types.SpecReport {
	return types.SpecReport{LeafNodeType: types.NodeTypeIt, ContainerHierarchyTexts: []string{"two"}, LeafNodeText: probe, State: state}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "two.yaml"), []byte(testScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	allow, deny80, deny81 := "step 0: x/b -> x/a 80/TCP", "step 0: x/a -> x/b 80/TCP", "step 0: x/a -> x/b 81/TCP"
	tests := []struct {
		name  string
		specs []types.SpecReport
		ok    bool
		want  Result
	}{
		{"no enforcement: allows pass, denies fail", []types.SpecReport{spec(allow, types.SpecStatePassed),
			spec(deny80, types.SpecStateFailed), spec(deny81, types.SpecStateFailed)}, true,
			Result{AllowPassed: 1, DenyFailed: 2}},
		{"a deny passed: the CNI enforces something", []types.SpecReport{spec(allow, types.SpecStatePassed),
			spec(deny80, types.SpecStatePassed), spec(deny81, types.SpecStateFailed)}, false,
			Result{AllowPassed: 1, DenyFailed: 1, DenyPassed: 1}},
		{"an allow failed", []types.SpecReport{spec(allow, types.SpecStateFailed),
			spec(deny80, types.SpecStateFailed), spec(deny81, types.SpecStateSkipped)}, false,
			Result{AllowFailed: 1, DenyFailed: 1, Skipped: 1}},
		{"a spec no scenario has", []types.SpecReport{spec("step 0: x/a -> x/b 82/TCP", types.SpecStatePassed)}, false, Result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, _ := json.Marshal([]types.Report{{SpecReports: tt.specs}})
			report := filepath.Join(t.TempDir(), "report.json")
			if err := os.WriteFile(report, data, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := Check(report, dir)
			if err != nil {
				t.Fatal(err)
			}
			if got.OK() != tt.ok {
				t.Errorf("OK() = %v, want %v (%s, %v, %v)", got.OK(), tt.ok, got, got.Mismatches, got.Unknown)
			}
			if got.AllowPassed != tt.want.AllowPassed || got.AllowFailed != tt.want.AllowFailed ||
				got.DenyPassed != tt.want.DenyPassed || got.DenyFailed != tt.want.DenyFailed || got.Skipped != tt.want.Skipped {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
