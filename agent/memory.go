package agent

import (
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/ipcache"
	"github.com/ciliaproject/cilia/agent/service"
	lbmaps "github.com/ciliaproject/cilia/datapath/maps"
)

// MemoryDatapath is a Datapath that keeps the maps in memory: for policy
// traces, tests and anything that needs the agent without a kernel.
type MemoryDatapath struct {
	mu      sync.Mutex
	IPCache map[netip.Prefix]identity.NumericIdentity
	// Tunnels holds the tunnel endpoint of the prefixes that have one.
	Tunnels   map[netip.Prefix]netip.Addr
	Endpoints map[uint16]*MemoryEndpoint
	// LB holds the load-balancing maps (service.Datapath); read them
	// with LBTables while the agent may write.
	LB service.Tables
}

// NewMemoryDatapath returns an empty in-memory datapath.
func NewMemoryDatapath() *MemoryDatapath {
	return &MemoryDatapath{IPCache: map[netip.Prefix]identity.NumericIdentity{}, Tunnels: map[netip.Prefix]netip.Addr{}, Endpoints: map[uint16]*MemoryEndpoint{},
		LB: service.Tables{Services: map[lbmaps.LBKey]lbmaps.LBService{}, Backends: map[uint32]lbmaps.LBBackend{},
			RevNat: map[uint32]lbmaps.LBRevNat{}, Maglev: map[uint32][]uint32{}}}
}

var (
	_ Datapath            = (*MemoryDatapath)(nil)
	_ service.TableReader = (*MemoryDatapath)(nil)
)

// PutLBBackend implements service.Datapath.
func (m *MemoryDatapath) PutLBBackend(id uint32, b lbmaps.LBBackend) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.LB.Backends[id] = b
	return nil
}

// DeleteLBBackend implements service.Datapath.
func (m *MemoryDatapath) DeleteLBBackend(id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.LB.Backends, id)
	return nil
}

// PutLBService implements service.Datapath.
func (m *MemoryDatapath) PutLBService(k lbmaps.LBKey, v lbmaps.LBService) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.LB.Services[k] = v
	return nil
}

// DeleteLBService implements service.Datapath.
func (m *MemoryDatapath) DeleteLBService(k lbmaps.LBKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.LB.Services, k)
	return nil
}

// PutLBRevNat implements service.Datapath.
func (m *MemoryDatapath) PutLBRevNat(id uint32, v lbmaps.LBRevNat) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.LB.RevNat[id] = v
	return nil
}

// DeleteLBRevNat implements service.Datapath.
func (m *MemoryDatapath) DeleteLBRevNat(id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.LB.RevNat, id)
	return nil
}

// PutLBMaglev implements service.Datapath (it keeps a copy of table).
func (m *MemoryDatapath) PutLBMaglev(id uint32, table []uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.LB.Maglev[id] = slices.Clone(table)
	return nil
}

// DeleteLBMaglev implements service.Datapath.
func (m *MemoryDatapath) DeleteLBMaglev(id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.LB.Maglev, id)
	return nil
}

// LBTables implements service.TableReader: a copy of the load-balancing
// maps.
func (m *MemoryDatapath) LBTables() (service.Tables, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return service.Tables{Services: maps.Clone(m.LB.Services), Backends: maps.Clone(m.LB.Backends),
		RevNat: maps.Clone(m.LB.RevNat), Maglev: maps.Clone(m.LB.Maglev)}, nil
}

// UpsertIPCache implements Datapath (the tunnel endpoint goes to
// Tunnels).
func (m *MemoryDatapath) UpsertIPCache(p netip.Prefix, e ipcache.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.IPCache[p] = e.Identity
	if e.TunnelEndpoint.IsValid() {
		m.Tunnels[p] = e.TunnelEndpoint
	} else {
		delete(m.Tunnels, p)
	}
	return nil
}

// DeleteIPCache implements Datapath.
func (m *MemoryDatapath) DeleteIPCache(p netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.IPCache, p)
	delete(m.Tunnels, p)
	return nil
}

// AddEndpoint implements Datapath.
func (m *MemoryDatapath) AddEndpoint(spec EndpointSpec) (EndpointDatapath, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ep := &MemoryEndpoint{Spec: spec, Policy: map[lbmaps.PolicyKey]lbmaps.PolicyEntry{}, dp: m}
	m.Endpoints[spec.ID] = ep
	return ep, nil
}

// MemoryEndpoint is an endpoint of a MemoryDatapath.
type MemoryEndpoint struct {
	Spec            EndpointSpec
	Policy          map[lbmaps.PolicyKey]lbmaps.PolicyEntry
	Ingress, Egress bool
	Revision        uint32
	Puts, Deletes   int
	dp              *MemoryDatapath
}

// PutPolicy implements EndpointDatapath.
func (e *MemoryEndpoint) PutPolicy(k lbmaps.PolicyKey, v lbmaps.PolicyEntry) error {
	e.Policy[k] = v
	e.Puts++
	return nil
}

// DeletePolicy implements EndpointDatapath.
func (e *MemoryEndpoint) DeletePolicy(k lbmaps.PolicyKey) error {
	delete(e.Policy, k)
	e.Deletes++
	return nil
}

// SetEnforcement implements EndpointDatapath.
func (e *MemoryEndpoint) SetEnforcement(ingress, egress bool) error {
	e.Ingress, e.Egress = ingress, egress
	return nil
}

// BumpPolicyRevision implements EndpointDatapath.
func (e *MemoryEndpoint) BumpPolicyRevision() error {
	e.Revision++
	return nil
}

// Close implements EndpointDatapath.
func (e *MemoryEndpoint) Close() error {
	e.dp.mu.Lock()
	defer e.dp.mu.Unlock()
	delete(e.dp.Endpoints, e.Spec.ID)
	return nil
}
