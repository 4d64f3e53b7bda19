package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/labels"
	"github.com/ciliaproject/cilia/agent/policy/load"
	dpmaps "github.com/ciliaproject/cilia/datapath/maps"
)

// Shared helpers of the unit tests of this package. The semantics they
// check are those of docs/policy-engine.md.

// Requirements in the form reqString prints them, for expectations.
const (
	reqCluster  = `k8s:io.cilium.k8s.policy.cluster In ["default"]`
	reqNsX      = `k8s:io.kubernetes.pod.namespace In ["x"]`
	reqNsY      = `k8s:io.kubernetes.pod.namespace In ["y"]`
	reqNsExists = `k8s:io.kubernetes.pod.namespace Exists []`
)

// cnpHeader, cnpYHeader and ccnpHeader start policy documents; the spec
// follows on line 5 (4 for the CCNP).
const (
	cnpHeader = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
`
	ccnpHeader = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p}
spec:
`
	knpHeader = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
`
)

// cnp, ccnp and knp return a policy document with the given spec body
// (indented by two spaces, a leading newline is dropped).
func cnp(spec string) string  { return cnpHeader + strings.TrimPrefix(spec, "\n") }
func ccnp(spec string) string { return ccnpHeader + strings.TrimPrefix(spec, "\n") }
func knp(spec string) string  { return knpHeader + strings.TrimPrefix(spec, "\n") }

// loadPolicies loads every policy of doc (file "test.yaml") and fails
// the test on an error diagnostic.
func loadPolicies(t *testing.T, doc string) []*load.Policy {
	t.Helper()
	res := load.Bytes("test.yaml", []byte(doc))
	if res.HasErrors(false) || len(res.Policies) == 0 {
		t.Fatalf("load policy: %v\n%s", res.Diagnostics, doc)
	}
	return res.Policies
}

// loadPolicy loads the single policy of doc.
func loadPolicy(t *testing.T, doc string) *load.Policy {
	t.Helper()
	ps := loadPolicies(t, doc)
	if len(ps) != 1 {
		t.Fatalf("load policy: got %d policies, want 1", len(ps))
	}
	return ps[0]
}

// translateDoc translates the single policy of doc with rule IDs from 1.
func translateDoc(t *testing.T, doc string) []*Rule {
	t.Helper()
	var n uint32
	rules, err := Translate(loadPolicy(t, doc), func() uint32 { n++; return n })
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return rules
}

// lineOf returns the 1-based line of doc that contains marker (which
// must occur exactly once).
func lineOf(t *testing.T, doc, marker string) int {
	t.Helper()
	if strings.Count(doc, marker) != 1 {
		t.Fatalf("marker %q occurs %d times", marker, strings.Count(doc, marker))
	}
	return strings.Count(doc[:strings.Index(doc, marker)], "\n") + 1
}

// reqString formats a requirement independently of Requirement.String:
// `source:key Op ["values"]`.
func reqString(r Requirement) string {
	return fmt.Sprintf("%s:%s %s %q", r.Source, r.Key, r.Op, r.Values)
}

// describe is a readable, order-independent form of a selector: "*" for
// the wildcard, "cidr:<prefix> except ..." for a CIDR selector, or the
// sorted requirements in braces.
func describe(s *Selector) string {
	switch {
	case s == nil:
		return "<nil>"
	case s.Wildcard:
		return "*"
	case s.Prefix.IsValid():
		out := "cidr:" + s.Prefix.String()
		ex := make([]string, len(s.Except))
		for i, e := range s.Except {
			ex[i] = e.String()
		}
		sort.Strings(ex)
		for _, e := range ex {
			out += " except " + e
		}
		return out
	}
	parts := make([]string, len(s.Requirements))
	for i, r := range s.Requirements {
		parts[i] = reqString(r)
	}
	return sel(parts...)
}

// sel is the expected describe() form of a label selector of reqs (in
// reqString form, any order).
func sel(reqs ...string) string {
	s := slices.Clone(reqs)
	sort.Strings(s)
	return "{" + strings.Join(s, ", ") + "}"
}

func describeAll(ss []*Selector) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = describe(s)
	}
	sort.Strings(out)
	return out
}

// fakePeerPorts is a PeerPorts of fixed named ports per identity.
type fakePeerPorts map[identity.NumericIdentity][]NamedPort

func (f fakePeerPorts) PortsOf(n identity.NumericIdentity) []NamedPort { return f[n] }
func (f fakePeerPorts) PortOwners() map[identity.NumericIdentity][]NamedPort {
	return maps.Clone(map[identity.NumericIdentity][]NamedPort(f))
}

// testEnv is a repository over a selector cache that observes an
// identity allocator, with pods named "ns/name".
type testEnv struct {
	t        *testing.T
	cache    *SelectorCache
	alloc    *identity.Allocator
	repo     *Repository
	nsLabels map[string]map[string]string
	ids      map[string]*identity.Identity
	names    map[identity.NumericIdentity]string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	cache := NewSelectorCache()
	alloc := identity.NewAllocator()
	alloc.Observe(cache)
	e := &testEnv{t: t, cache: cache, alloc: alloc, repo: NewRepository(cache),
		nsLabels: map[string]map[string]string{
			"x": {"kubernetes.io/metadata.name": "x", "team": "blue"},
			"y": {"kubernetes.io/metadata.name": "y", "team": "red"},
			"z": {"kubernetes.io/metadata.name": "z"},
		},
		ids: map[string]*identity.Identity{}, names: map[identity.NumericIdentity]string{0: "any"}}
	for _, id := range alloc.All() {
		name := strings.TrimPrefix(id.Labels.Sorted()[0].String(), "reserved:")
		e.ids[name], e.names[id.ID] = id, name
	}
	return e
}

// standardPods allocates the pods most tests use: x/a and y/a (app=web),
// x/b (app=db), x/c (app=client), y/b (app=db).
func (e *testEnv) standardPods() {
	e.pod("x/a", "app", "web")
	e.pod("x/b", "app", "db")
	e.pod("x/c", "app", "client")
	e.pod("y/a", "app", "web", "extra", "y")
	e.pod("y/b", "app", "db")
}

// pod allocates the identity of a pod named "ns/name" with label pairs
// kv (plus pod=<name>).
func (e *testEnv) pod(name string, kv ...string) *identity.Identity {
	e.t.Helper()
	ns, pod, _ := strings.Cut(name, "/")
	m := map[string]string{"pod": pod}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	id, _, err := e.alloc.Allocate(labels.ForPod(ns, m, e.nsLabels[ns]))
	if err != nil {
		e.t.Fatal(err)
	}
	e.ids[name], e.names[id.ID] = id, name
	return id
}

// cidr allocates the CIDR identity of prefix s.
func (e *testEnv) cidr(s string) *identity.Identity {
	e.t.Helper()
	id, _, err := e.alloc.AllocateCIDR(netip.MustParsePrefix(s))
	if err != nil {
		e.t.Fatal(err)
	}
	name := "cidr:" + netip.MustParsePrefix(s).Masked().String()
	e.ids[name], e.names[id.ID] = id, name
	return id
}

// id returns the identity named name ("x/a", "host", "world",
// "cidr:10.0.0.0/8", or "any" for 0).
func (e *testEnv) id(name string) identity.NumericIdentity {
	e.t.Helper()
	if name == "any" {
		return 0
	}
	id, ok := e.ids[name]
	if !ok {
		e.t.Fatalf("no identity %q", name)
	}
	return id.ID
}

// apply loads doc and upserts every policy of it.
func (e *testEnv) apply(doc string) {
	e.t.Helper()
	for _, p := range loadPolicies(e.t, doc) {
		if _, _, err := e.repo.Upsert(p); err != nil {
			e.t.Fatalf("Upsert: %v", err)
		}
	}
}

// resolve resolves the policy of the pod named subject.
func (e *testEnv) resolve(subject string, own []NamedPort, pp PeerPorts) *EndpointPolicy {
	e.t.Helper()
	id, ok := e.ids[subject]
	if !ok {
		e.t.Fatalf("no pod %q", subject)
	}
	return e.repo.Resolve(Subject{Identity: id, Ports: own}, pp)
}

// keyString formats a policy key readably: "in x/b TCP/80",
// "eg any ANY", "in host TCP", "in x/b TCP/80-87".
func (e *testEnv) keyString(k dpmaps.PolicyKey) string {
	dir := "in"
	if k.Egress == 1 {
		dir = "eg"
	}
	name, ok := e.names[identity.NumericIdentity(k.Identity)]
	if !ok {
		name = fmt.Sprint(k.Identity)
	}
	return fmt.Sprintf("%s %s %s", dir, name, portSpec(k))
}

// portSpec is the protocol and ports part of keyString.
func portSpec(k dpmaps.PolicyKey) string {
	switch {
	case k.Prefixlen == dpmaps.PolicyPrefixL3:
		return "ANY"
	case k.Prefixlen == dpmaps.PolicyPrefixProto:
		return ProtoName(k.Protocol)
	}
	lo := uint32(dpmaps.NetToHost16(k.DPortNet))
	hi := lo + 1<<(dpmaps.PolicyPrefixFull-k.Prefixlen) - 1
	if lo == hi {
		return fmt.Sprintf("%s/%d", ProtoName(k.Protocol), lo)
	}
	return fmt.Sprintf("%s/%d-%d", ProtoName(k.Protocol), lo, hi)
}

// summary is a MapState as keyString → "allow" or "deny".
func (e *testEnv) summary(ms map[dpmaps.PolicyKey]MapValue) map[string]string {
	out := map[string]string{}
	for k, v := range ms {
		verdict := "allow"
		if v.Deny() {
			verdict = "deny"
		}
		out[e.keyString(k)] = verdict
	}
	return out
}

// diffSummary returns the differences of two summaries, one per line.
func diffSummary(got, want map[string]string) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, fmt.Sprintf("  missing %s: %s", k, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("  %s: got %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("  unexpected %s: %s", k, g))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// verdict looks a packet up and names the outcome: "allow",
// "unenforced" (allowed, no policy), POLICY_DENY or POLICY_DENIED.
func verdictOf(d Decision) string {
	switch {
	case !d.Enforced && d.Allowed:
		return "unenforced"
	case d.Allowed:
		return "allow"
	}
	return d.DropReason
}
