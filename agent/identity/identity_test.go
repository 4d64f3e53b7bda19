package identity

import (
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/agent/labels"
)

type recorder struct{ added, removed []NumericIdentity }

func (r *recorder) IdentitiesAdded(ids []*Identity) {
	for _, i := range ids {
		r.added = append(r.added, i.ID)
	}
}

func (r *recorder) IdentitiesRemoved(ids []*Identity) {
	for _, i := range ids {
		r.removed = append(r.removed, i.ID)
	}
}

func TestReservedNumbers(t *testing.T) {
	a := NewAllocator()
	for name, want := range map[string]NumericIdentity{
		"host": 1, "world": 2, "unmanaged": 3, "health": 4, "init": 5, "remote-node": 6, "kube-apiserver": 7,
	} {
		got, ok := ReservedByName(name)
		if !ok || got != want {
			t.Errorf("ReservedByName(%q) = %d %v, want %d", name, got, ok, want)
		}
		id, ok := a.Lookup(want)
		if !ok || !id.Labels.Has(labels.SourceReserved, name) {
			t.Errorf("reserved identity %d missing or without reserved:%s", want, name)
		}
	}
}

func TestAllocateSameLabelsSameIdentity(t *testing.T) {
	a := NewAllocator()
	rec := &recorder{}
	a.Observe(rec)
	rec.added = nil
	l1 := labels.ForPod("x", map[string]string{"app": "a"}, nil)
	l2 := labels.ForPod("x", map[string]string{"app": "a"}, nil)
	l3 := labels.ForPod("y", map[string]string{"app": "a"}, nil)
	i1, added, err := a.Allocate(l1)
	if err != nil || !added || i1.ID < MinCluster {
		t.Fatalf("first allocation: %v %v %v", i1, added, err)
	}
	i2, added, _ := a.Allocate(l2)
	if added || i2.ID != i1.ID {
		t.Fatalf("same labels: got %d (added %v), want %d", i2.ID, added, i1.ID)
	}
	i3, _, _ := a.Allocate(l3)
	if i3.ID == i1.ID {
		t.Fatal("different labels share an identity")
	}
	if len(rec.added) != 2 {
		t.Fatalf("observer saw %v added, want 2", rec.added)
	}
	if a.Release(i1.ID) {
		t.Fatal("released with a reference left")
	}
	if !a.Release(i1.ID) {
		t.Fatal("not released with the last reference")
	}
	if _, ok := a.Lookup(i1.ID); ok {
		t.Fatal("released identity still found")
	}
	if len(rec.removed) != 1 || rec.removed[0] != i1.ID {
		t.Fatalf("observer saw %v removed", rec.removed)
	}
	if a.Release(Host) {
		t.Fatal("reserved identity released")
	}
}

func TestAllocateCIDR(t *testing.T) {
	a := NewAllocator()
	p := netip.MustParsePrefix("10.1.2.3/8")
	i, added, err := a.AllocateCIDR(p)
	if err != nil || !added {
		t.Fatal(err)
	}
	if !i.ID.IsLocal() || i.Prefix.String() != "10.0.0.0/8" || !i.Labels.Has(labels.SourceReserved, "world") {
		t.Fatalf("CIDR identity %+v", i)
	}
	j, added, _ := a.AllocateCIDR(netip.MustParsePrefix("10.0.0.0/8"))
	if added || j.ID != i.ID {
		t.Fatal("same prefix, new identity")
	}
}
