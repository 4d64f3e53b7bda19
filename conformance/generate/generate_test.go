package generate

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// TestGenerateValid round-trips many seeds through the loader.
func TestGenerateValid(t *testing.T) {
	for seed := int64(0); seed < 1000; seed++ {
		data := Generate(seed, Options{})
		if _, err := scenario.Parse(fmt.Sprintf("seed-%d.yaml", seed), data); err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, data)
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	for seed := int64(0); seed < 50; seed++ {
		a, b := Generate(seed, Options{}), Generate(seed, Options{})
		if !bytes.Equal(a, b) {
			t.Fatalf("seed %d: two runs differ", seed)
		}
	}
	if bytes.Equal(Generate(1, Options{}), Generate(2, Options{})) {
		t.Fatal("seeds 1 and 2 give the same scenario")
	}
}

// TestGenerateCoverage checks that a few hundred seeds use every rule kind
// of the policy profile.
func TestGenerateCoverage(t *testing.T) {
	var all strings.Builder
	for seed := int64(0); seed < 300; seed++ {
		all.Write(Generate(seed, Options{}))
	}
	s := all.String()
	for _, want := range []string{
		"kind: NetworkPolicy", "kind: CiliumNetworkPolicy", "kind: CiliumClusterwideNetworkPolicy",
		"podSelector:", "namespaceSelector:", "ipBlock:", "except:", "endPort:", "policyTypes:",
		"protocol: SCTP", "protocol: UDP", "protocol: ANY", "port: http",
		"matchExpressions:", "operator: NotIn", "operator: DoesNotExist",
		"fromEndpoints:", "toEndpoints:", "fromEntities:", "toEntities:", "fromCIDR:", "toCIDRSet:",
		"ingressDeny:", "egressDeny:", "enableDefaultDeny:", "icmps:", "toPorts:",
		"k8s:io.kubernetes.pod.namespace", "io.cilium.k8s.namespace.labels.",
		"externals:", "node: node-2", "setLabels:", "delete:", "addPods:", "families:", "- ICMP",
		"- {}", "node:node-",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("300 seeds never generate %q", want)
		}
	}
}

// TestShrink shrinks a generated scenario against a predicate that holds
// while some policy has an ipBlock with an except.
func TestShrink(t *testing.T) {
	var data []byte
	for seed := int64(0); ; seed++ {
		data = Generate(seed, Options{})
		if bytes.Contains(data, []byte("ipBlock:")) && bytes.Contains(data, []byte("except:")) && bytes.Count(data, []byte("\n")) > 80 {
			break
		}
	}
	pred := func(b []byte) bool {
		sc, err := scenario.Parse("x.yaml", b)
		if err != nil {
			t.Fatalf("predicate called on an invalid file: %v", err)
		}
		if len(sc.Probes()) == 0 {
			return false
		}
		return bytes.Contains(b, []byte("ipBlock:")) && bytes.Contains(b, []byte("except:"))
	}
	out := Shrink(data, pred)
	if !pred(out) {
		t.Fatal("shrunk file does not fail")
	}
	if len(out) >= len(data)/2 {
		t.Errorf("shrunk from %d to only %d bytes:\n%s", len(data), len(out), out)
	}
	sc, _ := scenario.Parse("x.yaml", out)
	if n := len(sc.Policies); n != 1 {
		t.Errorf("%d policies left, want 1:\n%s", n, out)
	}
	t.Logf("shrunk %d -> %d bytes:\n%s", len(data), len(out), out)
}
