package policy

import (
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/labels"
)

func TestSelectorMatchesLabels(t *testing.T) {
	web := labels.ForPod("x", map[string]string{"app": "web", "tier": "front"}, map[string]string{"team": "blue"})
	// A label of another source than k8s, with the same key as a pod label.
	container := labels.New(labels.Label{Source: "container", Key: "app", Value: "web"})
	host := labels.Reserved("host")
	world := labels.Reserved("world")
	k8sHost := labels.New(labels.Label{Source: labels.SourceK8s, Key: "host", Value: "h1"})

	req := func(src, key string, op Operator, values ...string) Requirement {
		return Requirement{Source: src, Key: key, Op: op, Values: values}
	}
	tests := []struct {
		name   string
		reqs   []Requirement
		labels labels.Labels
		want   bool
	}{
		{"k8s In matches a k8s label", []Requirement{req("k8s", "app", OpIn, "web")}, web, true},
		{"k8s In with another value", []Requirement{req("k8s", "app", OpIn, "db")}, web, false},
		{"k8s In of several values", []Requirement{req("k8s", "app", OpIn, "db", "web")}, web, true},
		{"k8s In does not match another source", []Requirement{req("k8s", "app", OpIn, "web")}, container, false},
		{"any In matches a k8s label", []Requirement{req("any", "app", OpIn, "web")}, web, true},
		{"any In matches a label of another source", []Requirement{req("any", "app", OpIn, "web")}, container, true},
		{"In on an absent label", []Requirement{req("k8s", "missing", OpIn, "web")}, web, false},
		{"NotIn with the value", []Requirement{req("k8s", "app", OpNotIn, "web")}, web, false},
		{"NotIn with another value", []Requirement{req("k8s", "app", OpNotIn, "db")}, web, true},
		{"NotIn of several values, one present", []Requirement{req("k8s", "app", OpNotIn, "db", "web")}, web, false},
		{"NotIn holds on an absent label", []Requirement{req("k8s", "missing", OpNotIn, "web")}, web, true},
		{"NotIn holds when only another source has the key", []Requirement{req("k8s", "app", OpNotIn, "web")}, container, true},
		{"Exists on a present label", []Requirement{req("k8s", "tier", OpExists)}, web, true},
		{"Exists on an absent label", []Requirement{req("k8s", "missing", OpExists)}, web, false},
		{"DoesNotExist on an absent label", []Requirement{req("k8s", "missing", OpDoesNotExist)}, web, true},
		{"DoesNotExist on a present label", []Requirement{req("k8s", "tier", OpDoesNotExist)}, web, false},
		{"any DoesNotExist sees other sources", []Requirement{req("any", "app", OpDoesNotExist)}, container, false},
		{"k8s DoesNotExist ignores other sources", []Requirement{req("k8s", "app", OpDoesNotExist)}, container, true},
		{"reserved Exists on the reserved identity", []Requirement{req("reserved", "host", OpExists)}, host, true},
		{"reserved Exists on another reserved identity", []Requirement{req("reserved", "host", OpExists)}, world, false},
		{"reserved does not match a k8s label of that key", []Requirement{req("reserved", "host", OpExists)}, k8sHost, false},
		{"any matches a reserved label", []Requirement{req("any", "host", OpExists)}, host, true},
		{"k8s does not match a reserved label", []Requirement{req("k8s", "host", OpExists)}, host, false},
		{"reserved In with the empty value", []Requirement{req("reserved", "host", OpIn, "")}, host, true},
		{"namespace label of a pod", []Requirement{req("k8s", labels.PodNamespace, OpIn, "x")}, web, true},
		{"namespace labels of a pod", []Requirement{req("k8s", labels.NamespaceLabelsPrefix+"team", OpIn, "blue")}, web, true},
		{"cluster label of a pod", []Requirement{req("k8s", labels.PolicyCluster, OpIn, "default")}, web, true},
		{"all requirements must hold", []Requirement{req("k8s", "app", OpIn, "web"), req("k8s", "tier", OpIn, "back")}, web, false},
		{"all requirements hold", []Requirement{req("k8s", "app", OpIn, "web"), req("k8s", "tier", OpNotIn, "back")}, web, true},
		{"empty selector selects a pod", nil, web, true},
		{"empty selector selects a reserved identity", nil, world, true},
		{"unknown operator selects nothing", []Requirement{req("k8s", "app", Operator("Bogus"), "web")}, web, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewLabelSelector(tt.reqs...)
			if got := s.MatchesLabels(tt.labels); got != tt.want {
				t.Errorf("%s.MatchesLabels(%s) = %v, want %v", s, tt.labels, got, tt.want)
			}
			if got := s.Matches(&identity.Identity{ID: 300, Labels: tt.labels}); got != tt.want {
				t.Errorf("%s.Matches(%s) = %v, want %v", s, tt.labels, got, tt.want)
			}
		})
	}
}

func TestSelectorKeyCanonical(t *testing.T) {
	r := func(src, key string, op Operator, values ...string) Requirement {
		return Requirement{Source: src, Key: key, Op: op, Values: values}
	}
	p := netip.MustParsePrefix
	tests := []struct {
		name  string
		a, b  *Selector
		equal bool
	}{
		{"requirement order",
			NewLabelSelector(r("k8s", "app", OpIn, "web"), r("any", "tier", OpExists), r("k8s", "x", OpNotIn, "1", "2")),
			NewLabelSelector(r("k8s", "x", OpNotIn, "1", "2"), r("k8s", "app", OpIn, "web"), r("any", "tier", OpExists)),
			true},
		{"value order",
			NewLabelSelector(r("k8s", "app", OpIn, "web", "db", "api")),
			NewLabelSelector(r("k8s", "app", OpIn, "api", "web", "db")),
			true},
		{"value order of NotIn",
			NewLabelSelector(r("k8s", "app", OpNotIn, "b", "a")),
			NewLabelSelector(r("k8s", "app", OpNotIn, "a", "b")),
			true},
		{"different values",
			NewLabelSelector(r("k8s", "app", OpIn, "web")),
			NewLabelSelector(r("k8s", "app", OpIn, "db")), false},
		{"different sources",
			NewLabelSelector(r("k8s", "app", OpIn, "web")),
			NewLabelSelector(r("any", "app", OpIn, "web")), false},
		{"In and NotIn",
			NewLabelSelector(r("k8s", "app", OpIn, "web")),
			NewLabelSelector(r("k8s", "app", OpNotIn, "web")), false},
		{"In and NotIn of several values",
			NewLabelSelector(r("k8s", "app", OpIn, "a", "b")),
			NewLabelSelector(r("k8s", "app", OpNotIn, "a", "b")), false},
		{"Exists and DoesNotExist",
			NewLabelSelector(r("k8s", "app", OpExists)),
			NewLabelSelector(r("k8s", "app", OpDoesNotExist)), false},
		{"Exists and In the empty value",
			NewLabelSelector(r("k8s", "app", OpExists)),
			NewLabelSelector(r("k8s", "app", OpIn, "")), false},
		{"one value and two",
			NewLabelSelector(r("k8s", "app", OpIn, "a")),
			NewLabelSelector(r("k8s", "app", OpIn, "a", "b")), false},
		{"a requirement more",
			NewLabelSelector(r("k8s", "app", OpIn, "a")),
			NewLabelSelector(r("k8s", "app", OpIn, "a"), r("k8s", "b", OpExists)), false},
		{"empty label selector is not the wildcard",
			NewLabelSelector(), WildcardSelector(), false},
		{"wildcards are equal", WildcardSelector(), WildcardSelector(), true},
		{"except order",
			NewCIDRSelector(p("10.0.0.0/8"), []netip.Prefix{p("10.2.0.0/16"), p("10.1.0.0/16")}),
			NewCIDRSelector(p("10.0.0.0/8"), []netip.Prefix{p("10.1.0.0/16"), p("10.2.0.0/16")}), true},
		{"host bits are masked",
			NewCIDRSelector(p("10.1.2.3/8"), []netip.Prefix{p("10.1.2.3/16")}),
			NewCIDRSelector(p("10.0.0.0/8"), []netip.Prefix{p("10.1.0.0/16")}), true},
		{"CIDR with and without except",
			NewCIDRSelector(p("10.0.0.0/8"), nil),
			NewCIDRSelector(p("10.0.0.0/8"), []netip.Prefix{p("10.1.0.0/16")}), false},
		{"different prefix lengths",
			NewCIDRSelector(p("10.0.0.0/8"), nil),
			NewCIDRSelector(p("10.0.0.0/16"), nil), false},
		{"IPv4 and IPv6 /0",
			NewCIDRSelector(p("0.0.0.0/0"), nil),
			NewCIDRSelector(p("::/0"), nil), false},
		{"CIDR and the label selector of its label",
			NewCIDRSelector(p("10.0.0.0/8"), nil),
			NewLabelSelector(r("cidr", "10.0.0.0/8", OpExists)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Key() == tt.b.Key(); got != tt.equal {
				t.Errorf("keys %q and %q: equal = %v, want %v", tt.a.Key(), tt.b.Key(), got, tt.equal)
			}
			if tt.a.String() != tt.a.Key() {
				t.Errorf("String() = %q, Key() = %q", tt.a.String(), tt.a.Key())
			}
		})
	}
}

func TestCIDRSelectorMatches(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	for _, c := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.2.0.0/16",
		"11.0.0.0/8", "1.2.3.4/32", "::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:2::/48", "2001:db9::/32"} {
		e.cidr(c)
	}
	tests := []struct {
		prefix string
		except []string
		want   []string // every identity the selector selects
	}{
		{"10.0.0.0/8", nil, []string{"cidr:10.0.0.0/8", "cidr:10.1.0.0/16", "cidr:10.1.2.0/24", "cidr:10.2.0.0/16"}},
		{"10.0.0.0/8", []string{"10.1.0.0/16"}, []string{"cidr:10.0.0.0/8", "cidr:10.2.0.0/16"}},
		{"10.0.0.0/8", []string{"10.1.2.0/24", "10.2.0.0/16"}, []string{"cidr:10.0.0.0/8", "cidr:10.1.0.0/16"}},
		{"10.1.2.0/24", nil, []string{"cidr:10.1.2.0/24"}},
		{"10.1.2.3/32", nil, nil},
		{"1.2.3.4/32", nil, []string{"cidr:1.2.3.4/32"}},
		// A /0 is an ordinary IPv4 prefix: no IPv6 identity, not world.
		{"0.0.0.0/0", nil, []string{"cidr:0.0.0.0/0", "cidr:1.2.3.4/32", "cidr:10.0.0.0/8", "cidr:10.1.0.0/16",
			"cidr:10.1.2.0/24", "cidr:10.2.0.0/16", "cidr:11.0.0.0/8"}},
		{"0.0.0.0/0", []string{"10.0.0.0/8"}, []string{"cidr:0.0.0.0/0", "cidr:1.2.3.4/32", "cidr:11.0.0.0/8"}},
		{"::/0", nil, []string{"cidr:2001:db8:1::/48", "cidr:2001:db8:2::/48", "cidr:2001:db8::/32", "cidr:2001:db9::/32", "cidr:::/0"}},
		{"2001:db8::/32", nil, []string{"cidr:2001:db8:1::/48", "cidr:2001:db8:2::/48", "cidr:2001:db8::/32"}},
		{"2001:db8::/32", []string{"2001:db8:1::/48"}, []string{"cidr:2001:db8:2::/48", "cidr:2001:db8::/32"}},
		{"2001:db8:1::/48", nil, []string{"cidr:2001:db8:1::/48"}},
	}
	for _, tt := range tests {
		var except []netip.Prefix
		for _, x := range tt.except {
			except = append(except, netip.MustParsePrefix(x))
		}
		s := NewCIDRSelector(netip.MustParsePrefix(tt.prefix), except)
		t.Run(s.Key(), func(t *testing.T) {
			var got []string
			for _, id := range e.alloc.All() {
				if s.Matches(id) {
					got = append(got, e.names[id.ID])
				}
			}
			if !equalSets(got, tt.want) {
				t.Errorf("selects %v, want %v", got, tt.want)
			}
			for _, ls := range []labels.Labels{labels.Reserved("world"), e.ids["x/a"].Labels} {
				if s.MatchesLabels(ls) {
					t.Errorf("MatchesLabels(%s) = true for a CIDR selector", ls)
				}
			}
			wantPrefixes := append([]netip.Prefix{netip.MustParsePrefix(tt.prefix)}, except...)
			if got := s.Prefixes(); len(got) != len(wantPrefixes) {
				t.Errorf("Prefixes() = %v, want %v (any order)", got, wantPrefixes)
			}
		})
	}
}

func TestWildcardSelector(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	e.cidr("10.0.0.0/8")
	w := WildcardSelector()
	for _, id := range e.alloc.All() {
		if !w.Matches(id) {
			t.Errorf("wildcard does not select %s", e.names[id.ID])
		}
	}
	if !w.MatchesLabels(labels.Labels{}) {
		t.Error("wildcard does not match empty labels")
	}
	if w.Prefixes() != nil {
		t.Errorf("wildcard Prefixes() = %v, want nil", w.Prefixes())
	}
	if NewLabelSelector().Prefixes() != nil {
		t.Error("label selector has prefixes")
	}
}

// equalSets reports whether a and b hold the same strings (any order).
func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s]--; m[s] < 0 {
			return false
		}
	}
	return true
}
