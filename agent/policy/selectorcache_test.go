package policy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/labels"
)

func appSelector(app string) *Selector {
	return NewLabelSelector(Requirement{Source: labels.SourceAny, Key: "app", Op: OpIn, Values: []string{app}})
}

// selectionNames returns the names of the identities the cache says s
// selects, in the cache's order.
func (e *testEnv) selectionNames(s *Selector) []string {
	var out []string
	for _, n := range e.cache.Selections(s) {
		out = append(out, e.names[n])
	}
	return out
}

func TestSelectorCacheInternSharesAndRefcounts(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	a := NewLabelSelector(
		Requirement{Source: labels.SourceAny, Key: "app", Op: OpIn, Values: []string{"web"}},
		Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{"x"}})
	b := NewLabelSelector( // equal, written in the other order
		Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{"x"}},
		Requirement{Source: labels.SourceAny, Key: "app", Op: OpIn, Values: []string{"web"}})

	ia := e.cache.Intern(a)
	if ia != a {
		t.Fatal("Intern of a new selector did not return it")
	}
	ib := e.cache.Intern(b)
	if ib != a {
		t.Fatal("Intern of an equal selector did not return the cached copy")
	}
	if got := e.selectionNames(b); !slices.Equal(got, []string{"x/a"}) {
		t.Fatalf("Selections = %v, want [x/a]", got)
	}
	e.cache.Release(a)
	if got := e.selectionNames(a); !slices.Equal(got, []string{"x/a"}) {
		t.Fatalf("after one of two releases: Selections = %v, want [x/a]", got)
	}
	if !e.cache.Selects(a, e.id("x/a")) {
		t.Fatal("after one of two releases: Selects(x/a) = false")
	}
	e.cache.Release(b)
	if got := e.cache.Selections(a); got != nil {
		t.Fatalf("after the last release: Selections = %v, want nil", got)
	}
	if e.cache.Selects(a, e.id("x/a")) {
		t.Fatal("after the last release: Selects(x/a) = true")
	}
	// A third release of an absent selector is harmless.
	e.cache.Release(a)
	// Interned again, the selector is new: its selections are computed
	// against the identities known now, including one that appeared while
	// it was not cached.
	e.pod("x/d", "app", "web")
	c := NewLabelSelector(
		Requirement{Source: labels.SourceAny, Key: "app", Op: OpIn, Values: []string{"web"}},
		Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{"x"}})
	if e.cache.Intern(c) != c {
		t.Fatal("Intern after the last release returned the old copy")
	}
	if got := e.selectionNames(c); !equalSets(got, []string{"x/a", "x/d"}) {
		t.Fatalf("re-interned: Selections = %v, want [x/a x/d]", got)
	}
}

func TestSelectorCacheSelections(t *testing.T) {
	tests := []struct {
		name   string
		sel    *Selector
		before []string // selections right after Intern (standard pods, 10.0.0.0/8)
		after  []string // after x/d (app=web), y/c (app=db), 10.1.0.0/16 appear
		gone   []string // after x/a and 10.0.0.0/8 are released
	}{
		{"app=web", appSelector("web"), []string{"x/a", "y/a"}, []string{"x/a", "x/d", "y/a"}, []string{"x/d", "y/a"}},
		{"app=db", appSelector("db"), []string{"x/b", "y/b"}, []string{"x/b", "y/b", "y/c"}, []string{"x/b", "y/b", "y/c"}},
		{"namespace y", NewLabelSelector(Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{"y"}}),
			[]string{"y/a", "y/b"}, []string{"y/a", "y/b", "y/c"}, []string{"y/a", "y/b", "y/c"}},
		{"world entity", EntitySelectors("world")[0],
			[]string{"world", "cidr:10.0.0.0/8"}, []string{"world", "cidr:10.0.0.0/8", "cidr:10.1.0.0/16"}, []string{"world", "cidr:10.1.0.0/16"}},
		{"CIDR", NewCIDRSelector(netip.MustParsePrefix("10.0.0.0/8"), nil),
			[]string{"cidr:10.0.0.0/8"}, []string{"cidr:10.0.0.0/8", "cidr:10.1.0.0/16"}, []string{"cidr:10.1.0.0/16"}},
		{"nothing yet", appSelector("new"), nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.standardPods()
			e.cidr("10.0.0.0/8")
			s := e.cache.Intern(tt.sel)
			check := func(stage string, want []string) {
				t.Helper()
				got := e.selectionNames(s)
				if !equalSets(got, want) {
					t.Errorf("%s: Selections = %v, want %v", stage, got, want)
				}
				if !slices.IsSorted(e.cache.Selections(s)) {
					t.Errorf("%s: Selections %v not sorted", stage, e.cache.Selections(s))
				}
				for _, id := range e.alloc.All() {
					if got, want := e.cache.Selects(s, id.ID), slices.Contains(want, e.names[id.ID]); got != want {
						t.Errorf("%s: Selects(%s) = %v, want %v", stage, e.names[id.ID], got, want)
					}
				}
			}
			check("on Intern", tt.before)
			e.pod("x/d", "app", "web")
			e.pod("y/c", "app", "db")
			e.cidr("10.1.0.0/16")
			check("after IdentitiesAdded", tt.after)
			xa, cidr8 := e.id("x/a"), e.id("cidr:10.0.0.0/8")
			if !e.alloc.Release(xa) || !e.alloc.Release(cidr8) {
				t.Fatal("Release did not remove the identities")
			}
			check("after IdentitiesRemoved", tt.gone)
			for _, n := range []identity.NumericIdentity{xa, cidr8} {
				if e.cache.Selects(s, n) {
					t.Errorf("a removed identity %d is still selected", n)
				}
				if _, ok := e.cache.Identity(n); ok {
					t.Errorf("a removed identity %d is still known", n)
				}
			}
		})
	}
}

func TestSelectorCacheWildcardAndIdentity(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	w := e.cache.Intern(WildcardSelector())
	if got := e.cache.Selections(w); !slices.Equal(got, []identity.NumericIdentity{0}) {
		t.Errorf("wildcard Selections = %v, want [0]", got)
	}
	// A wildcard that was never interned still selects everything.
	if got := e.cache.Selections(WildcardSelector()); !slices.Equal(got, []identity.NumericIdentity{0}) {
		t.Errorf("uninterned wildcard Selections = %v, want [0]", got)
	}
	for _, n := range []identity.NumericIdentity{0, identity.Host, identity.World, e.id("x/a")} {
		if !e.cache.Selects(w, n) {
			t.Errorf("wildcard does not select %d", n)
		}
	}
	// An uninterned label selector selects nothing.
	if e.cache.Selects(appSelector("web"), e.id("x/a")) || e.cache.Selections(appSelector("web")) != nil {
		t.Error("an uninterned selector has selections")
	}
	id, ok := e.cache.Identity(e.id("x/b"))
	if !ok || id.Labels.String() != e.ids["x/b"].Labels.String() {
		t.Errorf("Identity(x/b) = %v, %v", id, ok)
	}
	if _, ok := e.cache.Identity(identity.World); !ok {
		t.Error("reserved identities are not known to the cache")
	}
	if _, ok := e.cache.Identity(60000); ok {
		t.Error("Identity of an unknown number")
	}
}
