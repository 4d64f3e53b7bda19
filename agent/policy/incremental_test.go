package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/labels"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// incrementalPolicies exercise every kind of peer selector the
// incremental path must keep up to date: label selectors (In, NotIn,
// namespace labels, another namespace, CCNP scoping, KNP namespace and
// pod selectors), entities, CIDRs with excepts (IPv4, IPv6, /0), deny
// terms, ranges, ICMP and named ports on ingress (the subject's) and on
// egress to selected peers.
const incrementalPolicies = cnpHeader + `  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": red}}]
    toPorts: [{ports: [{port: http, protocol: TCP}]}]
  - fromEntities: [world]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]
  - fromEndpoints: [{matchExpressions: [{key: tier, operator: NotIn, values: [frontend]}]}]
    toPorts: [{ports: [{port: "5000", endPort: 5010, protocol: UDP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {role: bad}}]
  - fromCIDR: [10.1.2.0/24]
  egress:
  - toEndpoints: [{matchLabels: {role: api}}]
    toPorts: [{ports: [{port: grpc, protocol: TCP}, {port: "8443", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": "y"}}]
  - toCIDR: [0.0.0.0/0]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  egressDeny:
  - toEntities: [cluster]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {role: bad}}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {tier: backend}}]
    icmps: [{fields: [{type: 8}]}]
  egress:
  - toEndpoints: [{}]
    toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - toEntities: [all]
    toPorts: [{ports: [{port: "123", protocol: UDP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: k, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {tier: backend}}}]
    ports: [{port: 9000}]
  - from: [{ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}}]
`

// normalState is a MapState in comparable form: key → verdict, prefix
// length, rule ID and origin paths.
func (e *testEnv) normalState(ms map[maps.PolicyKey]MapValue) map[string]string {
	out := map[string]string{}
	for k, v := range ms {
		var paths []string
		for _, o := range v.Origins {
			paths = append(paths, o.Policy+" "+o.Path)
		}
		out[e.keyString(k)] = fmt.Sprintf("flags=%d prefixlen=%d rule=%d origins=%s",
			v.Entry.Flags, v.Entry.Prefixlen, v.Entry.RuleID, strings.Join(paths, "; "))
	}
	return out
}

// TestIncrementalMatchesFreshResolve checks, over random identity
// changes with fixed seeds, that IdentitiesAdded and IdentitiesRemoved
// leave an endpoint's policy exactly as a fresh Resolve after the same
// change would compute it.
func TestIncrementalMatchesFreshResolve(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			runIncremental(t, seed, 60)
		})
	}
}

func runIncremental(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	e := newTestEnv(t)
	e.apply(incrementalPolicies)
	subject := e.pod("x/subject", "app", "web")
	own := []NamedPort{{"http", 8080, pTCP}}
	pp := fakePeerPorts{}
	ep := e.repo.Resolve(Subject{Identity: subject, Ports: own}, pp)
	if !ep.Ingress.Enforced || !ep.Egress.Enforced {
		t.Fatalf("subject not under policy: ingress %v egress %v", ep.Ingress.Enforced, ep.Egress.Enforced)
	}

	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	cidrs := []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.2.3.0/24", "192.168.1.0/24", "0.0.0.0/0",
		"2001:db8::/32", "2001:db8:1::/48", "2001:db8:2::/64", "::/0"}
	var live []*identity.Identity
	covered := map[string]bool{} // kinds of identities seen with entries, to check the test's reach

	for step := 0; step < steps; step++ {
		var what string
		if len(live) > 0 && rng.IntN(100) < 35 {
			// Remove an identity.
			i := rng.IntN(len(live))
			id := live[i]
			live = slices.Delete(live, i, i+1)
			had := len(ep.MapStateOf([]identity.NumericIdentity{id.ID})) > 0
			if !e.alloc.Release(id.ID) {
				t.Fatalf("step %d: Release(%d) did not remove it", step, id.ID)
			}
			delete(pp, id.ID)
			what = "remove " + e.names[id.ID]
			changed := ep.IdentitiesRemoved([]identity.NumericIdentity{id.ID})
			if had != slices.Contains(changed, id.ID) {
				t.Errorf("step %d (%s): had entries %v, IdentitiesRemoved returned %v", step, what, had, changed)
			}
			if len(ep.MapStateOf([]identity.NumericIdentity{id.ID})) != 0 {
				t.Errorf("step %d (%s): entries left for the removed identity", step, what)
			}
		} else {
			// Add an identity: a pod of random labels or a CIDR.
			var id *identity.Identity
			var added bool
			var err error
			if rng.IntN(100) < 25 {
				prefix := pick(cidrs...)
				id, added, err = e.alloc.AllocateCIDR(netip.MustParsePrefix(prefix))
				what = "cidr:" + prefix
			} else {
				ns := pick("x", "y", "z")
				m := map[string]string{}
				for _, kv := range [][]string{{"app", pick("client", "db", "web", "other", "")},
					{"role", pick("bad", "api", "", "")}, {"tier", pick("frontend", "backend", "")}} {
					if kv[1] != "" {
						m[kv[0]] = kv[1]
					}
				}
				id, added, err = e.alloc.Allocate(labels.ForPod(ns, m, e.nsLabels[ns]))
				what = fmt.Sprintf("%s/%v", ns, m)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !added {
				e.alloc.Release(id.ID) // already live: keep one reference
				continue
			}
			e.names[id.ID] = fmt.Sprintf("%s#%d", what, id.ID)
			what = "add " + e.names[id.ID]
			if m := id.Labels; m.Has(labels.SourceK8s, "role") {
				if v, _ := m.Get(labels.SourceK8s, "role"); v == "api" {
					pp[id.ID] = []NamedPort{{"grpc", 9000 + uint16(id.ID%5), pTCP}}
				}
			}
			live = append(live, id)
			changed := ep.IdentitiesAdded([]identity.NumericIdentity{id.ID})
			for _, n := range changed {
				if n != id.ID {
					t.Errorf("step %d (%s): IdentitiesAdded reported another identity %d", step, what, n)
				}
			}
			fresh := e.repo.Resolve(Subject{Identity: subject, Ports: own}, pp)
			if len(fresh.MapStateOf([]identity.NumericIdentity{id.ID})) > 0 {
				covered[strings.SplitN(e.names[id.ID], "/", 2)[0]] = true
				if !slices.Contains(changed, id.ID) {
					t.Errorf("step %d (%s): the identity has entries but IdentitiesAdded returned %v", step, what, changed)
				}
			}
		}
		fresh := e.repo.Resolve(Subject{Identity: subject, Ports: own}, pp)
		if d := diffSummary(e.normalState(ep.MapState()), e.normalState(fresh.MapState())); d != "" {
			t.Fatalf("step %d (%s): incremental MapState differs from a fresh Resolve (got vs want):\n%s", step, what, d)
		}
	}
	if len(covered) < 3 {
		t.Errorf("the random identities reached too few kinds of entries: %v", covered)
	}
}

// TestIdentitiesAddedEgressNamedPortAnyPeer: a named port of an egress
// term to any peer resolves per owning identity (docs/policy-engine.md,
// Resolution 4), so an identity that appears serving the name must get
// its entry from IdentitiesAdded, as a fresh Resolve gives it; and the
// entries it gets from other terms must not drop it.
func TestIdentitiesAddedEgressNamedPortAnyPeer(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // entries of the new identity x/d (http 8084)
	}{
		{"L4-only named port", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toPorts: [{ports: [{port: http, protocol: TCP}]}]}]
`), []string{"eg x/d TCP/8084"}},
		{"L4-only named port and a term selecting the identity", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toPorts: [{ports: [{port: http, protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
`), []string{"eg x/d TCP/8084", "eg x/d TCP/5432"}},
		{"entity all and a named port", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEntities: [all], toPorts: [{ports: [{port: http}]}]}]
`), []string{"eg x/d TCP/8084"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.standardPods()
			e.apply(tt.doc)
			pp := fakePeerPorts{e.id("x/b"): {{"http", 8081, pTCP}}}
			ep := e.resolve("x/a", nil, pp)
			if got := e.summary(ep.MapState()); got["eg x/b TCP/8081"] != "allow" {
				t.Fatalf("initial MapState %v lacks eg x/b TCP/8081", got)
			}

			d := e.pod("x/d", "app", "db")
			pp[d.ID] = []NamedPort{{"http", 8084, pTCP}}
			changed := ep.IdentitiesAdded([]identity.NumericIdentity{d.ID})
			fresh := e.resolve("x/a", nil, pp)
			want := e.summary(fresh.MapState())
			for _, k := range tt.want {
				if want[k] != "allow" {
					t.Fatalf("fresh Resolve lacks %s: %v", k, want)
				}
			}
			if diff := diffSummary(e.summary(ep.MapState()), want); diff != "" {
				t.Errorf("after IdentitiesAdded(x/d), MapState differs from a fresh Resolve:\n%s", diff)
			}
			if !slices.Contains(changed, d.ID) {
				t.Errorf("IdentitiesAdded returned %v, want x/d (%d) among them", changed, d.ID)
			}

			// Removal drops the identity's entries, as a fresh Resolve.
			e.alloc.Release(d.ID)
			delete(pp, d.ID)
			ep.IdentitiesRemoved([]identity.NumericIdentity{d.ID})
			if diff := diffSummary(e.summary(ep.MapState()), e.summary(e.resolve("x/a", nil, pp).MapState())); diff != "" {
				t.Errorf("after IdentitiesRemoved(x/d), MapState differs from a fresh Resolve:\n%s", diff)
			}
		})
	}
}

// TestIdentitiesAddedUnselected: an identity no term selects changes
// nothing; IdentitiesRemoved of an unknown identity or of 0 too.
func TestIdentitiesAddedUnselected(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	e.apply(cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}, {toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
  egress: [{toEntities: [all]}]
`))
	ep := e.resolve("x/a", nil, nil)
	before := e.normalState(ep.MapState())
	n := e.pod("y/c", "app", "db") // another namespace: not selected
	if got := ep.IdentitiesAdded([]identity.NumericIdentity{n.ID}); len(got) != 0 {
		t.Errorf("IdentitiesAdded of an unselected identity returned %v", got)
	}
	if got := ep.IdentitiesRemoved([]identity.NumericIdentity{0, 99999}); len(got) != 0 {
		t.Errorf("IdentitiesRemoved of 0 and an unknown identity returned %v", got)
	}
	if d := diffSummary(e.normalState(ep.MapState()), before); d != "" {
		t.Errorf("MapState changed:\n%s", d)
	}
	m := e.pod("x/d", "app", "db")
	if got := ep.IdentitiesAdded([]identity.NumericIdentity{m.ID}); !slices.Equal(got, []identity.NumericIdentity{m.ID}) {
		t.Errorf("IdentitiesAdded of a selected identity returned %v", got)
	}
	got := e.summary(ep.MapState())
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got["in x/d ANY"] != "allow" {
		t.Errorf("MapState %v lacks in x/d ANY", keys)
	}
}
