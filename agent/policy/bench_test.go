package policy

import (
	"fmt"
	"strconv"
	"testing"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	ciliumapi "github.com/cilium/cilium/pkg/policy/api"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/labels"
	"github.com/ciliaproject/cilia/agent/policy/load"
)

// benchShape is DESIGN.md's control-plane bar: 3000 rules x 1000
// identities, resolved for one endpoint. Every rule selects the endpoint
// and allows one port from one of 50 teams (20 identities each), so the
// endpoint ends up with 60k entries.
const (
	benchRules      = 3000
	benchIdentities = 1000
	benchTeams      = 50
)

func selectorOf(kv ...string) ciliumapi.EndpointSelector {
	ml := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		ml[kv[i]] = kv[i+1]
	}
	return ciliumapi.EndpointSelector{LabelSelector: &slimv1.LabelSelector{MatchLabels: ml}}
}

// benchRepository returns a repository holding the bench rules, an
// allocator holding the bench identities, and the subject.
func benchRepository(tb testing.TB) (*Repository, *identity.Allocator, Subject) {
	tb.Helper()
	cache := NewSelectorCache()
	alloc := identity.NewAllocator()
	alloc.Observe(cache)
	repo := NewRepository(cache)
	for i := 0; i < benchIdentities; i++ {
		ls := labels.ForPod("bench", map[string]string{"app": "app-" + strconv.Itoa(i), "team": "team-" + strconv.Itoa(i%benchTeams)}, nil)
		if _, _, err := alloc.Allocate(ls); err != nil {
			tb.Fatal(err)
		}
	}
	subject, _, err := alloc.Allocate(labels.ForPod("bench", map[string]string{"app": "target"}, nil))
	if err != nil {
		tb.Fatal(err)
	}
	for j := 0; j < benchRules; j++ {
		rule := &ciliumapi.Rule{
			EndpointSelector: selectorOf("app", "target"),
			Ingress: []ciliumapi.IngressRule{{
				IngressCommonRule: ciliumapi.IngressCommonRule{FromEndpoints: []ciliumapi.EndpointSelector{
					selectorOf("team", "team-"+strconv.Itoa(j%benchTeams), "k8s:io.kubernetes.pod.namespace", "bench")}},
				ToPorts: ciliumapi.PortRules{{Ports: []ciliumapi.PortProtocol{{Port: strconv.Itoa(1000 + j), Protocol: ciliumapi.ProtoTCP}}}},
			}},
		}
		p := &load.Policy{Kind: load.KindCNP, Namespace: "bench", Name: fmt.Sprintf("rule-%d", j),
			Rules: ciliumapi.Rules{rule}, RulePaths: []string{"spec"}}
		if _, _, err := repo.Upsert(p); err != nil {
			tb.Fatal(err)
		}
	}
	return repo, alloc, Subject{Identity: subject}
}

// BenchmarkResolve3000Rules1000Identities measures resolving one
// endpoint's policy into its map entries (bar: 200 ms; Cilium publishes
// 1.35 s for this shape).
func BenchmarkResolve3000Rules1000Identities(b *testing.B) {
	repo, _, subject := benchRepository(b)
	b.ResetTimer()
	var entries int
	for b.Loop() {
		ep := repo.Resolve(subject, nil)
		entries = len(ep.MapState())
	}
	b.ReportMetric(float64(entries), "entries")
}

// BenchmarkIdentityAdded3000Rules measures the incremental work when one
// identity appears at that size: the selector cache update, the
// endpoint's new entries and their map state (bar: 1 ms).
func BenchmarkIdentityAdded3000Rules(b *testing.B) {
	repo, alloc, subject := benchRepository(b)
	ep := repo.Resolve(subject, nil)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ls := labels.ForPod("bench", map[string]string{"app": "new-" + strconv.Itoa(i), "team": "team-7"}, nil)
		i++
		id, _, err := alloc.Allocate(ls) // the selector cache observes the allocator
		if err != nil {
			b.Fatal(err)
		}
		changed := ep.IdentitiesAdded([]identity.NumericIdentity{id.ID})
		if got := len(ep.MapStateOf(changed)); got != benchRules/benchTeams {
			b.Fatalf("new identity got %d entries, want %d", got, benchRules/benchTeams)
		}
		b.StopTimer()
		alloc.Release(id.ID)
		ep.IdentitiesRemoved([]identity.NumericIdentity{id.ID})
		b.StartTimer()
	}
}
