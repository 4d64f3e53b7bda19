package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// Names of the node-wide load-balancing maps (bpf/lib/lb.h).
const (
	// MapLBServices is struct lb_key -> struct lb_service: the frontends'
	// service entries (slot 0) and backend slots.
	MapLBServices = "cilia_lb_services"
	// MapLBBackends is backend id -> struct lb_backend.
	MapLBBackends = "cilia_lb_backends"
	// MapLBRevNat is rev_nat_id -> struct lb_revnat.
	MapLBRevNat = "cilia_lb_revnat"
	// MapLBMaglev is rev_nat_id -> struct lb_maglev.
	MapLBMaglev = "cilia_lb_maglev"
	// MapLBAffinity is struct lb_affinity_key -> struct lb_affinity_val
	// (LRU).
	MapLBAffinity = "cilia_lb_affinity"
)

// DefaultMaglevSize is the Maglev table size M when NodeConfig.MaglevSize
// is 0 (Cilium's default).
const DefaultMaglevSize = 16381

// ErrInvalidMaglevSize is returned (wrapped) for a Maglev table size that
// is not a prime <= maps.LBMaglevMax.
var ErrInvalidMaglevSize = errors.New("invalid maglev table size")

// maglevSize returns the Maglev table size M of c: its MaglevSize, or
// DefaultMaglevSize for 0. It fails unless M is a prime <= maps.LBMaglevMax.
func (c NodeConfig) maglevSize() (uint32, error) {
	m := c.MaglevSize
	if m == 0 {
		m = DefaultMaglevSize
	}
	if m > maps.LBMaglevMax || !isPrime(m) {
		return 0, fmt.Errorf("check maglev size %d: %w (want a prime <= %d)", m, ErrInvalidMaglevSize, maps.LBMaglevMax)
	}
	return m, nil
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for d := uint32(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// MaglevSize returns the Maglev table size M the node's programs use.
func (n *Node) MaglevSize() uint32 {
	m, _ := n.opts.Config.maglevSize() // validated by NewNode
	return m
}

// PutLBBackend writes backend id.
func (n *Node) PutLBBackend(id uint32, b maps.LBBackend) error {
	return maps.WrapUpdateError("lb backend", n.Maps[MapLBBackends].Put(&id, &b))
}

// DeleteLBBackend removes backend id; a missing one is no error.
func (n *Node) DeleteLBBackend(id uint32) error {
	return deleteKey(n.Maps[MapLBBackends], &id, "lb backend")
}

// PutLBService writes the service entry or backend slot k.
func (n *Node) PutLBService(k maps.LBKey, v maps.LBService) error {
	return maps.WrapUpdateError("lb service", n.Maps[MapLBServices].Put(&k, &v))
}

// DeleteLBService removes the service entry or backend slot k; a missing
// one is no error.
func (n *Node) DeleteLBService(k maps.LBKey) error {
	return deleteKey(n.Maps[MapLBServices], &k, "lb service")
}

// PutLBRevNat writes the frontend of rev_nat_id id.
func (n *Node) PutLBRevNat(id uint32, v maps.LBRevNat) error {
	return maps.WrapUpdateError("lb rev nat", n.Maps[MapLBRevNat].Put(&id, &v))
}

// DeleteLBRevNat removes rev_nat_id id; a missing one is no error.
func (n *Node) DeleteLBRevNat(id uint32) error {
	return deleteKey(n.Maps[MapLBRevNat], &id, "lb rev nat")
}

// PutLBMaglev writes the Maglev table of frontend id (its rev_nat_id);
// table must hold exactly MaglevSize() backend ids.
func (n *Node) PutLBMaglev(id uint32, table []uint32) error {
	if m := n.MaglevSize(); uint32(len(table)) != m {
		return fmt.Errorf("put maglev table %d: %d entries, the node's table size is %d", id, len(table), m)
	}
	v := new(maps.LBMaglev)
	copy(v.BackendIDs[:], table)
	return maps.WrapUpdateError("lb maglev", n.Maps[MapLBMaglev].Put(&id, v))
}

// DeleteLBMaglev removes the Maglev table of frontend id; a missing one is
// no error.
func (n *Node) DeleteLBMaglev(id uint32) error {
	return deleteKey(n.Maps[MapLBMaglev], &id, "lb maglev")
}

// LBMaglev returns the first MaglevSize() entries of the Maglev table of
// frontend id, and whether it has one.
func (n *Node) LBMaglev(id uint32) ([]uint32, bool, error) {
	v := new(maps.LBMaglev)
	err := n.Maps[MapLBMaglev].Lookup(&id, v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("look up maglev table %d: %w", id, err)
	}
	return append([]uint32(nil), v.BackendIDs[:n.MaglevSize()]...), true, nil
}

// LBServices returns every service entry and backend slot.
func (n *Node) LBServices() (map[maps.LBKey]maps.LBService, error) {
	return dumpMap[maps.LBKey, maps.LBService](n.Maps[MapLBServices], "lb services")
}

// LBBackends returns every backend by id.
func (n *Node) LBBackends() (map[uint32]maps.LBBackend, error) {
	return dumpMap[uint32, maps.LBBackend](n.Maps[MapLBBackends], "lb backends")
}

// LBRevNats returns every frontend by rev_nat_id.
func (n *Node) LBRevNats() (map[uint32]maps.LBRevNat, error) {
	return dumpMap[uint32, maps.LBRevNat](n.Maps[MapLBRevNat], "lb rev nat")
}

// LBAffinities returns every session affinity entry.
func (n *Node) LBAffinities() (map[maps.LBAffinityKey]maps.LBAffinityValue, error) {
	return dumpMap[maps.LBAffinityKey, maps.LBAffinityValue](n.Maps[MapLBAffinity], "lb affinity")
}

// PutLBAffinity writes a session affinity entry (tests age them with it).
func (n *Node) PutLBAffinity(k maps.LBAffinityKey, v maps.LBAffinityValue) error {
	return maps.WrapUpdateError("lb affinity", n.Maps[MapLBAffinity].Put(&k, &v))
}

// deleteKey deletes k from m, ignoring a missing key.
func deleteKey(m *ebpf.Map, k any, what string) error {
	if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	return nil
}

// dumpMap returns every entry of m.
func dumpMap[K comparable, V any](m *ebpf.Map, what string) (map[K]V, error) {
	out := map[K]V{}
	var (
		k K
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate %s: %w", what, err)
	}
	return out, nil
}
