package bench

import (
	"fmt"
	"net/netip"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// LBWriter is the part of the agent's load-balancing interface
// (agent/service.Datapath, implemented by *datapath.Node) the benchmarks
// use to program services.
type LBWriter interface {
	PutLBBackend(id uint32, b maps.LBBackend) error
	PutLBService(k maps.LBKey, v maps.LBService) error
	PutLBRevNat(id uint32, v maps.LBRevNat) error
}

// ClusterIP is a TCP ClusterIP frontend and its backends, with the ids the
// agent would allocate for them (rev_nat_id, one backend id per backend).
type ClusterIP struct {
	Frontend   netip.AddrPort
	RevNatID   uint32
	BackendIDs []uint32
	Backends   []netip.AddrPort
}

// PutClusterIP writes s into the load-balancing maps as the agent does,
// make-before-break: the backends, the reverse-NAT entry, the backend
// slots, then the service entry (slot 0, scope internal, random
// selection).
func PutClusterIP(w LBWriter, s ClusterIP) error {
	if len(s.BackendIDs) != len(s.Backends) {
		return fmt.Errorf("put service %s: %d backend ids for %d backends", s.Frontend, len(s.BackendIDs), len(s.Backends))
	}
	for i, b := range s.Backends {
		fam, addr := maps.AddrBytes(b.Addr())
		v := maps.LBBackend{Addr: addr, PortNet: maps.HostToNet16(b.Port()), Proto: protoTCP, Family: fam}
		if err := w.PutLBBackend(s.BackendIDs[i], v); err != nil {
			return fmt.Errorf("put service %s: %w", s.Frontend, err)
		}
	}
	fam, addr := maps.AddrBytes(s.Frontend.Addr())
	port := maps.HostToNet16(s.Frontend.Port())
	if err := w.PutLBRevNat(s.RevNatID, maps.LBRevNat{Addr: addr, PortNet: port, Family: fam}); err != nil {
		return fmt.Errorf("put service %s: %w", s.Frontend, err)
	}
	key := maps.LBKey{Addr: addr, DPortNet: port, Proto: protoTCP, Family: fam, Scope: maps.LBScopeInternal}
	for i, id := range s.BackendIDs {
		key.Slot = uint16(i + 1)
		if err := w.PutLBService(key, maps.LBService{BackendID: id}); err != nil {
			return fmt.Errorf("put service %s: %w", s.Frontend, err)
		}
	}
	key.Slot = 0
	if err := w.PutLBService(key, maps.LBService{Count: uint16(len(s.Backends)), RevNatID: s.RevNatID}); err != nil {
		return fmt.Errorf("put service %s: %w", s.Frontend, err)
	}
	return nil
}

// protoTCP is IPPROTO_TCP.
const protoTCP = 6
