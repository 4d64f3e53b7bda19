package policy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	ciliumapi "github.com/cilium/cilium/pkg/policy/api"

	"github.com/ciliaproject/cilia/agent/policy/load"
)

// ruleIDs returns the rule IDs of rules and their terms.
func ruleIDs(rules []*Rule) []uint32 {
	var out []uint32
	for _, r := range rules {
		out = append(out, r.Origin.RuleID)
		for _, sec := range []*Section{&r.Ingress, &r.Egress} {
			for _, t := range sec.Rules {
				out = append(out, t.Origin.RuleID)
			}
		}
	}
	return out
}

func TestRepositoryUpsertAndDelete(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	v1 := loadPolicy(t, cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`))
	v2 := loadPolicy(t, cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`))
	sameNameOtherNS := loadPolicy(t, strings.Replace(cnp(`
  endpointSelector: {}
  egress: [{toEntities: [world]}]
`), "namespace: x", `namespace: "y"`, 1))
	sameNameKNP := loadPolicy(t, knp(`
  podSelector: {}
`))
	sameNameCCNP := loadPolicy(t, ccnp(`
  endpointSelector: {}
  egress: [{toEntities: [host]}]
`))

	old, added, err := e.repo.Upsert(v1)
	if err != nil || old != nil || len(added) != 1 {
		t.Fatalf("Upsert(new) = %v, %d rules, %v; want no old rules and 1 new", old, len(added), err)
	}
	v1Rules := added
	for _, p := range []*load.Policy{sameNameOtherNS, sameNameKNP, sameNameCCNP} {
		if old, _, err := e.repo.Upsert(p); err != nil || old != nil {
			t.Fatalf("Upsert(%s) replaced %v, %v; want a new policy", p.Ref(), old, err)
		}
	}
	if n := len(e.repo.Rules()); n != 4 {
		t.Fatalf("Rules() has %d rules, want 4", n)
	}
	var refs []string
	for _, p := range e.repo.Policies() {
		refs = append(refs, p.Ref())
	}
	wantRefs := []string{"CiliumClusterwideNetworkPolicy p", "CiliumNetworkPolicy x/p", "CiliumNetworkPolicy y/p", "NetworkPolicy x/p"}
	if !slices.Equal(refs, wantRefs) {
		t.Errorf("Policies() = %v, want %v", refs, wantRefs)
	}

	// Replacing v1 by v2 returns v1's rules; v1's selector leaves the cache.
	dbPeer := v1Rules[0].Ingress.Rules[0].Peers[0]
	if !e.cache.Selects(dbPeer, e.id("x/b")) {
		t.Fatal("v1's peer selector is not in the cache")
	}
	old, added, err = e.repo.Upsert(v2)
	if err != nil || len(old) != 1 || old[0] != v1Rules[0] || len(added) != 1 {
		t.Fatalf("Upsert(replacement) = old %v, %d new, %v; want v1's rule", old, len(added), err)
	}
	if e.cache.Selects(dbPeer, e.id("x/b")) || e.cache.Selections(dbPeer) != nil {
		t.Error("the replaced policy's peer selector is still cached")
	}
	if !e.cache.Selects(added[0].Ingress.Rules[0].Peers[0], e.id("x/c")) {
		t.Error("the new policy's peer selector is not cached")
	}
	if !e.cache.Selects(added[0].Subject, e.id("x/a")) {
		t.Error("the subject shared by v1 and v2 left the cache with v1")
	}
	rules := e.repo.Rules()
	if len(rules) != 4 || slices.Contains(rules, v1Rules[0]) || !slices.Contains(rules, added[0]) {
		t.Errorf("Rules() after replacement holds the old rule or lacks the new one")
	}
	for _, id := range ruleIDs(v1Rules) {
		if _, ok := e.repo.Origin(id); ok {
			t.Errorf("Origin(%d) of a replaced rule still known", id)
		}
	}
	ep := e.resolve("x/a", nil, nil)
	if got := e.summary(ep.MapState()); diffSummary(got, map[string]string{"in host ANY": "allow", "in x/c ANY": "allow",
		"eg host ANY": "allow"}) != "" {
		t.Errorf("policy after replacement: %v", got)
	}

	// Delete.
	ref := RefOf(v2)
	if ref != (PolicyRef{Kind: load.KindCNP, Namespace: "x", Name: "p"}) || ref.String() != "CiliumNetworkPolicy x/p" {
		t.Errorf("RefOf = %+v (%s)", ref, ref)
	}
	gone, ok := e.repo.Delete(ref)
	if !ok || len(gone) != 1 || gone[0] != added[0] {
		t.Fatalf("Delete = %v, %v; want v2's rule", gone, ok)
	}
	if e.cache.Selections(added[0].Ingress.Rules[0].Peers[0]) != nil {
		t.Error("the deleted policy's peer selector is still cached")
	}
	for _, id := range ruleIDs(gone) {
		if _, ok := e.repo.Origin(id); ok {
			t.Errorf("Origin(%d) of a deleted rule still known", id)
		}
	}
	if gone, ok := e.repo.Delete(ref); ok || gone != nil {
		t.Errorf("second Delete = %v, %v; want nothing", gone, ok)
	}
	if gone, ok := e.repo.Delete(PolicyRef{Kind: load.KindKNP, Namespace: "y", Name: "p"}); ok || gone != nil {
		t.Errorf("Delete of an absent NetworkPolicy = %v, %v", gone, ok)
	}
	if n := len(e.repo.Rules()); n != 3 {
		t.Errorf("Rules() after Delete has %d rules, want 3", n)
	}
	if ccnpRef := (PolicyRef{Kind: load.KindCCNP, Name: "p"}); ccnpRef.String() != "CiliumClusterwideNetworkPolicy p" {
		t.Errorf("clusterwide ref String() = %q", ccnpRef.String())
	}
}

// TestRepositorySharedSelectors: a selector used by two policies stays
// cached until both are gone; re-upserting the same policy keeps it.
func TestRepositorySharedSelectors(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	doc := cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}, {matchLabels: {app: db}}]}]
`)
	e.apply(doc)
	e.apply(named("q", doc))
	peer := e.repo.Rules()[0].Ingress.Rules[0].Peers[0]
	if e.repo.Rules()[1].Ingress.Rules[0].Peers[1] != peer {
		t.Error("equal peer selectors of two policies are not shared")
	}
	e.apply(doc) // the same policy again
	if !e.cache.Selects(peer, e.id("x/b")) {
		t.Fatal("re-upserting a policy dropped its selectors")
	}
	if _, ok := e.repo.Delete(PolicyRef{Kind: load.KindCNP, Namespace: "x", Name: "p"}); !ok {
		t.Fatal("Delete p failed")
	}
	if !e.cache.Selects(peer, e.id("x/b")) {
		t.Fatal("deleting one of two policies dropped their shared selector")
	}
	if _, ok := e.repo.Delete(PolicyRef{Kind: load.KindCNP, Namespace: "x", Name: "q"}); !ok {
		t.Fatal("Delete q failed")
	}
	if e.cache.Selects(peer, e.id("x/b")) {
		t.Error("the selector is cached after its last policy is gone")
	}
	// The host selector of allow-localhost is the repository's own: a
	// policy using the host entity does not take it away when deleted.
	e.apply(named("h", cnp(`
  endpointSelector: {matchLabels: {app: db}}
  egress: [{toEntities: [host]}]
`)))
	e.repo.Delete(PolicyRef{Kind: load.KindCNP, Namespace: "x", Name: "h"})
	e.apply(doc)
	if ep := e.resolve("x/a", nil, nil); e.summary(ep.MapState())["in host ANY"] != "allow" {
		t.Error("allow-localhost lost after deleting every policy")
	}
}

func TestRepositoryUpsertError(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	good := loadPolicy(t, cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`))
	if _, _, err := e.repo.Upsert(good); err != nil {
		t.Fatal(err)
	}
	before := e.repo.Rules()
	bad := &load.Policy{Kind: load.KindCNP, Namespace: "x", Name: "p", File: "bad.yaml", RulePaths: []string{"spec"},
		Rules: ciliumapi.Rules{{EndpointSelector: ciliumapi.EndpointSelector{LabelSelector: &slimv1.LabelSelector{
			MatchExpressions: []slimv1.LabelSelectorRequirement{{Key: "app", Operator: "Bogus"}}}}}}}
	old, added, err := e.repo.Upsert(bad)
	if err == nil || old != nil || added != nil {
		t.Fatalf("Upsert(invalid) = %v, %v, %v; want an error only", old, added, err)
	}
	if !strings.Contains(err.Error(), "CiliumNetworkPolicy x/p") {
		t.Errorf("error %q does not name the policy", err)
	}
	if after := e.repo.Rules(); len(after) != 1 || after[0] != before[0] {
		t.Error("a failed Upsert changed the repository")
	}
	if !e.cache.Selects(before[0].Ingress.Rules[0].Peers[0], e.id("x/b")) {
		t.Error("a failed Upsert released the old policy's selectors")
	}
}

func TestRepositoryOrigin(t *testing.T) {
	e := newTestEnv(t)
	doc := cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [world]
  egressDeny:
  - toEntities: [world]
`)
	_, rules, err := e.repo.Upsert(loadPolicy(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	_, rules2, err := e.repo.Upsert(loadPolicy(t, named("q", doc)))
	if err != nil {
		t.Fatal(err)
	}
	ids := append(ruleIDs(rules), ruleIDs(rules2)...)
	seen := map[uint32]bool{}
	for _, id := range ids {
		if id == 0 || seen[id] {
			t.Errorf("rule ID %d is zero or not unique among %v", id, ids)
		}
		seen[id] = true
	}
	tests := []struct {
		id           uint32
		policy, path string
	}{
		{rules[0].Origin.RuleID, "CiliumNetworkPolicy x/p", "spec"},
		{rules[0].Ingress.Rules[0].Origin.RuleID, "CiliumNetworkPolicy x/p", "spec.ingress[0]"},
		{rules[0].Egress.Rules[0].Origin.RuleID, "CiliumNetworkPolicy x/p", "spec.egressDeny[0]"},
		{rules2[0].Egress.Rules[0].Origin.RuleID, "CiliumNetworkPolicy x/q", "spec.egressDeny[0]"},
	}
	for _, tt := range tests {
		o, ok := e.repo.Origin(tt.id)
		if !ok || o.Policy != tt.policy || o.Path != tt.path {
			t.Errorf("Origin(%d) = %+v, %v; want %s %s", tt.id, o, ok, tt.policy, tt.path)
		}
	}
	if _, ok := e.repo.Origin(0); ok {
		t.Error("Origin(0) found")
	}
	if _, ok := e.repo.Origin(99999); ok {
		t.Error("Origin of an unknown ID found")
	}
}

func TestRepositoryPrefixes(t *testing.T) {
	e := newTestEnv(t)
	if got := e.repo.Prefixes(); len(got) != 0 {
		t.Fatalf("empty repository Prefixes() = %v", got)
	}
	e.apply(cnp(`
  endpointSelector: {}
  ingress:
  - fromCIDR: [10.0.0.0/8, 192.168.0.0/16]
  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.2.0.0/16]}]
  ingressDeny:
  - fromCIDR: ["2001:db8::/32", 10.1.0.0/16]
  egress:
  - toCIDRSet: [{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}]
  - toEndpoints: [{}]
  - toEntities: [world]
`) + "---\n" + knp(`
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 172.16.0.0/12, except: [172.16.1.0/24]}}, {ipBlock: {cidr: "2001:db8::/32"}}, {ipBlock: {cidr: "::/0"}}]
`))
	var got []string
	for _, p := range e.repo.Prefixes() {
		got = append(got, p.String())
	}
	want := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "172.16.0.0/12", "172.16.1.0/24",
		"192.168.0.0/16", "::/0", "2001:db8::/32"}
	if !slices.Equal(got, want) {
		t.Errorf("Prefixes() = %v\nwant %v", got, want)
	}
	// Same address, different lengths: shorter first.
	e2 := newTestEnv(t)
	e2.apply(cnp(`
  endpointSelector: {}
  egress: [{toCIDR: [10.0.0.0/16, 10.0.0.0/8, 10.0.0.0/24]}]
`))
	got = nil
	for _, p := range e2.repo.Prefixes() {
		got = append(got, p.String())
	}
	if want := []string{"10.0.0.0/8", "10.0.0.0/16", "10.0.0.0/24"}; !slices.Equal(got, want) {
		t.Errorf("Prefixes() = %v, want %v", got, want)
	}
	// Deleting a policy drops its prefixes.
	e.repo.Delete(PolicyRef{Kind: load.KindKNP, Namespace: "x", Name: "p"})
	for _, p := range e.repo.Prefixes() {
		if p == netip.MustParsePrefix("172.16.0.0/12") {
			t.Error("a deleted policy's prefix is still listed")
		}
	}
}
