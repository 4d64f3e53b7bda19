package testrun

import (
	"fmt"
	"net/netip"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// Service is one frontend of a service as the agent writes it into the
// load-balancing maps (lb.h), for tests.
type Service struct {
	Frontend netip.AddrPort
	Proto    uint8
	Scope    uint8 // maps.LBScopeInternal or maps.LBScopeExternal
	Flags    uint8 // maps.LBFlag*
	RevNatID uint32
	// AffinityTimeout is the session affinity timeout in seconds
	// (maps.LBFlagAffinity).
	AffinityTimeout uint32
	// Active and Terminating are the backends in their slot order.
	Active, Terminating []ServiceBackend
}

// ServiceBackend is a backend of a Service.
type ServiceBackend struct {
	ID   uint32
	Addr netip.AddrPort
}

// lbKey returns the key of slot of s.
func (s Service) lbKey(slot uint16) maps.LBKey {
	fam, addr := maps.AddrBytes(s.Frontend.Addr())
	return maps.LBKey{Addr: addr, DPortNet: maps.HostToNet16(s.Frontend.Port()), Proto: s.Proto, Family: fam,
		Slot: slot, Scope: s.Scope}
}

// PutService writes s make-before-break, as the agent does: its backends,
// its reverse-NAT entry, its backend slots, its service entry (slot 0),
// then removes up to 64 slots left over from a larger earlier version.
// Backends it no longer has stay in the backends map (DeleteBackend).
func (h *Harness) PutService(s Service) error {
	all := append(append([]ServiceBackend(nil), s.Active...), s.Terminating...)
	for i, b := range all {
		fam, addr := maps.AddrBytes(b.Addr.Addr())
		v := maps.LBBackend{Addr: addr, PortNet: maps.HostToNet16(b.Addr.Port()), Proto: s.Proto, Family: fam}
		if i >= len(s.Active) {
			v.Flags = maps.LBBackendFlagTerminating
		}
		if err := h.Node.PutLBBackend(b.ID, v); err != nil {
			return fmt.Errorf("put service %s: %w", s.Frontend, err)
		}
	}
	fam, addr := maps.AddrBytes(s.Frontend.Addr())
	if err := h.Node.PutLBRevNat(s.RevNatID, maps.LBRevNat{Addr: addr, PortNet: maps.HostToNet16(s.Frontend.Port()), Family: fam}); err != nil {
		return fmt.Errorf("put service %s: %w", s.Frontend, err)
	}
	for i, b := range all {
		if err := h.Node.PutLBService(s.lbKey(uint16(i+1)), maps.LBService{BackendID: b.ID}); err != nil {
			return fmt.Errorf("put service %s: %w", s.Frontend, err)
		}
	}
	entry := maps.LBService{Count: uint16(len(s.Active)), Terminating: uint16(len(s.Terminating)),
		RevNatID: s.RevNatID, Flags: s.Flags, AffinityTimeout: s.AffinityTimeout}
	if err := h.Node.PutLBService(s.lbKey(0), entry); err != nil {
		return fmt.Errorf("put service %s: %w", s.Frontend, err)
	}
	for slot := len(all) + 1; slot <= len(all)+64; slot++ {
		if err := h.Node.DeleteLBService(s.lbKey(uint16(slot))); err != nil {
			return fmt.Errorf("put service %s: %w", s.Frontend, err)
		}
	}
	return nil
}

// DeleteBackend removes backend id from the backends map.
func (h *Harness) DeleteBackend(id uint32) error {
	return h.Node.DeleteLBBackend(id)
}

// ServiceCT returns the service conntrack entry (maps.DirService) of the
// connection from client to frontend over proto, and whether there is one.
func (h *Harness) ServiceCT(client, frontend netip.AddrPort, proto uint8) (maps.CTEntry, bool, error) {
	return h.Node.LookupCT(maps.NewTuple(client, frontend, proto, maps.DirService))
}
