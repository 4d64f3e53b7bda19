// Package identity allocates security identities: numbers that stand for a
// set of labels. Endpoints with the same security-relevant labels share an
// identity; policy is written against labels and enforced by identity.
//
// Numbers follow Cilium: reserved identities 1-8, cluster identities from
// 256 to 65535 (allocated from label sets), and node-local identities with
// bit 24 set for CIDR prefixes named by policy.
package identity

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/ciliaproject/cilia/agent/labels"
)

// NumericIdentity is the number the datapath sees.
type NumericIdentity uint32

// Reserved identities (Cilium's numbers).
const (
	Unknown       NumericIdentity = 0
	Host          NumericIdentity = 1
	World         NumericIdentity = 2
	Unmanaged     NumericIdentity = 3
	Health        NumericIdentity = 4
	Init          NumericIdentity = 5
	RemoteNode    NumericIdentity = 6
	KubeAPIServer NumericIdentity = 7
	Ingress       NumericIdentity = 8
)

// Ranges of allocated identities.
const (
	MinCluster NumericIdentity = 256
	MaxCluster NumericIdentity = 65535
	// LocalFlag marks node-local identities (CIDR identities).
	LocalFlag NumericIdentity = 1 << 24
	maxLocal  NumericIdentity = LocalFlag | 0xffffff
)

// ErrExhausted is returned when no identity number is free.
var ErrExhausted = fmt.Errorf("identity space exhausted")

// reservedNames maps reserved identities to their entity names (the label
// "reserved:<name>").
var reservedNames = map[NumericIdentity]string{
	Host: "host", World: "world", Unmanaged: "unmanaged", Health: "health", Init: "init",
	RemoteNode: "remote-node", KubeAPIServer: "kube-apiserver", Ingress: "ingress",
}

// ReservedByName returns the reserved identity of an entity name.
func ReservedByName(name string) (NumericIdentity, bool) {
	for id, n := range reservedNames {
		if n == name {
			return id, true
		}
	}
	return 0, false
}

// IsReserved reports whether id is a reserved identity.
func (id NumericIdentity) IsReserved() bool { return id > 0 && id < MinCluster }

// IsLocal reports whether id is a node-local (CIDR) identity.
func (id NumericIdentity) IsLocal() bool { return id&LocalFlag != 0 }

// String formats the identity as its number, with the reserved name.
func (id NumericIdentity) String() string {
	if n, ok := reservedNames[id]; ok {
		return fmt.Sprintf("%d (reserved:%s)", uint32(id), n)
	}
	return fmt.Sprintf("%d", uint32(id))
}

// Identity is an allocated identity.
type Identity struct {
	ID     NumericIdentity
	Labels labels.Labels
	// Prefix is set for CIDR identities: the prefix it stands for.
	Prefix netip.Prefix
}

// IsCIDR reports whether the identity stands for a CIDR prefix.
func (i *Identity) IsCIDR() bool { return i.Prefix.IsValid() }

// Observer is told about identities as they come and go, synchronously,
// under no lock of the allocator's.
type Observer interface {
	IdentitiesAdded(ids []*Identity)
	IdentitiesRemoved(ids []*Identity)
}

type entry struct {
	id   *Identity
	refs int
}

// Allocator hands out identities for label sets and CIDR prefixes, with
// reference counts: an identity is released when its last user releases
// it. It is safe for concurrent use.
type Allocator struct {
	mu        sync.Mutex
	byKey     map[string]*entry
	byID      map[NumericIdentity]*entry
	nextGlob  NumericIdentity
	nextLocal NumericIdentity
	observers []Observer
}

// NewAllocator returns an allocator holding the reserved identities.
func NewAllocator() *Allocator {
	a := &Allocator{
		byKey: map[string]*entry{}, byID: map[NumericIdentity]*entry{},
		nextGlob: MinCluster, nextLocal: LocalFlag | 1,
	}
	for id, name := range reservedNames {
		e := &entry{id: &Identity{ID: id, Labels: labels.Reserved(name)}, refs: 1}
		a.byKey[e.id.Labels.String()] = e
		a.byID[id] = e
	}
	return a
}

// Observe registers o and reports every existing identity to it.
func (a *Allocator) Observe(o Observer) {
	a.mu.Lock()
	a.observers = append(a.observers, o)
	all := a.allLocked()
	a.mu.Unlock()
	o.IdentitiesAdded(all)
}

// Allocate returns the identity of ls, allocating it when it is new, and
// takes a reference. added reports a new identity.
func (a *Allocator) Allocate(ls labels.Labels) (id *Identity, added bool, err error) {
	return a.allocate(ls.String(), func(n NumericIdentity) *Identity {
		return &Identity{ID: n, Labels: ls}
	}, false)
}

// AllocateCIDR returns the node-local identity of prefix (labels
// cidr:<prefix> and reserved:world), allocating it when new, and takes a
// reference.
func (a *Allocator) AllocateCIDR(prefix netip.Prefix) (id *Identity, added bool, err error) {
	prefix = prefix.Masked()
	ls := labels.New(labels.Label{Source: labels.SourceCIDR, Key: prefix.String()},
		labels.Label{Source: labels.SourceReserved, Key: "world"})
	return a.allocate(ls.String(), func(n NumericIdentity) *Identity {
		return &Identity{ID: n, Labels: ls, Prefix: prefix}
	}, true)
}

func (a *Allocator) allocate(key string, mk func(NumericIdentity) *Identity, local bool) (*Identity, bool, error) {
	a.mu.Lock()
	if e, ok := a.byKey[key]; ok {
		e.refs++
		a.mu.Unlock()
		return e.id, false, nil
	}
	n, err := a.freeNumber(local)
	if err != nil {
		a.mu.Unlock()
		return nil, false, err
	}
	e := &entry{id: mk(n), refs: 1}
	a.byKey[key], a.byID[n] = e, e
	obs := append([]Observer(nil), a.observers...)
	a.mu.Unlock()
	for _, o := range obs {
		o.IdentitiesAdded([]*Identity{e.id})
	}
	return e.id, true, nil
}

// freeNumber returns the next unused number of the cluster or local range.
func (a *Allocator) freeNumber(local bool) (NumericIdentity, error) {
	next, lo, hi := &a.nextGlob, MinCluster, MaxCluster
	if local {
		next, lo, hi = &a.nextLocal, LocalFlag|1, maxLocal
	}
	for range hi - lo + 1 {
		n := *next
		if *next++; *next > hi {
			*next = lo
		}
		if _, used := a.byID[n]; !used {
			return n, nil
		}
	}
	return 0, ErrExhausted
}

// Release drops a reference to id; the identity is removed with its last
// reference. Reserved identities are never removed. removed reports that
// the identity is gone.
func (a *Allocator) Release(id NumericIdentity) (removed bool) {
	a.mu.Lock()
	e, ok := a.byID[id]
	if !ok || id.IsReserved() {
		a.mu.Unlock()
		return false
	}
	if e.refs--; e.refs > 0 {
		a.mu.Unlock()
		return false
	}
	delete(a.byID, id)
	delete(a.byKey, e.id.Labels.String())
	obs := append([]Observer(nil), a.observers...)
	a.mu.Unlock()
	for _, o := range obs {
		o.IdentitiesRemoved([]*Identity{e.id})
	}
	return true
}

// Lookup returns the identity with number id.
func (a *Allocator) Lookup(id NumericIdentity) (*Identity, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.byID[id]
	if !ok {
		return nil, false
	}
	return e.id, true
}

// All returns every identity, sorted by number.
func (a *Allocator) All() []*Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.allLocked()
}

func (a *Allocator) allLocked() []*Identity {
	out := make([]*Identity, 0, len(a.byID))
	for _, e := range a.byID {
		out = append(out, e.id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
