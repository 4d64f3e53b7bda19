package agent

import (
	"net/netip"
	"sync"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/ipcache"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// MemoryDatapath is a Datapath that keeps the maps in memory: for policy
// traces, tests and anything that needs the agent without a kernel.
type MemoryDatapath struct {
	mu      sync.Mutex
	IPCache map[netip.Prefix]identity.NumericIdentity
	// Tunnels holds the tunnel endpoint of the prefixes that have one.
	Tunnels   map[netip.Prefix]netip.Addr
	Endpoints map[uint16]*MemoryEndpoint
}

// NewMemoryDatapath returns an empty in-memory datapath.
func NewMemoryDatapath() *MemoryDatapath {
	return &MemoryDatapath{IPCache: map[netip.Prefix]identity.NumericIdentity{}, Tunnels: map[netip.Prefix]netip.Addr{}, Endpoints: map[uint16]*MemoryEndpoint{}}
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
	ep := &MemoryEndpoint{Spec: spec, Policy: map[maps.PolicyKey]maps.PolicyEntry{}, dp: m}
	m.Endpoints[spec.ID] = ep
	return ep, nil
}

// MemoryEndpoint is an endpoint of a MemoryDatapath.
type MemoryEndpoint struct {
	Spec            EndpointSpec
	Policy          map[maps.PolicyKey]maps.PolicyEntry
	Ingress, Egress bool
	Revision        uint32
	Puts, Deletes   int
	dp              *MemoryDatapath
}

// PutPolicy implements EndpointDatapath.
func (e *MemoryEndpoint) PutPolicy(k maps.PolicyKey, v maps.PolicyEntry) error {
	e.Policy[k] = v
	e.Puts++
	return nil
}

// DeletePolicy implements EndpointDatapath.
func (e *MemoryEndpoint) DeletePolicy(k maps.PolicyKey) error {
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
