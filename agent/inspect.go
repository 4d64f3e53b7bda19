package agent

import (
	"fmt"
	"net/netip"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/policy"
)

// PodIdentity returns the identity of a pod.
func (a *Agent) PodIdentity(key string) (*identity.Identity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps, ok := a.pods[key]
	if !ok {
		return nil, fmt.Errorf("pod %s: %w", key, ErrNotFound)
	}
	return ps.id, nil
}

// EndpointPolicy returns the resolved policy of a pod's endpoint (the pod
// must be on a node the agent programs).
func (a *Agent) EndpointPolicy(key string) (*policy.EndpointPolicy, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps, ok := a.pods[key]
	if !ok {
		return nil, fmt.Errorf("endpoint policy of %s: %w", key, ErrNotFound)
	}
	ns := a.nodes[ps.pod.Node]
	if ns == nil || ns.endpoints[key] == nil || ns.endpoints[key].policy == nil {
		return nil, fmt.Errorf("endpoint policy of %s: no endpoint on node %s: %w", key, ps.pod.Node, ErrNotFound)
	}
	return ns.endpoints[key].policy, nil
}

// IdentityOfAddr returns the identity node's ipcache gives addr: the
// longest prefix that contains it, or world.
func (a *Agent) IdentityOfAddr(node string, addr netip.Addr) (identity.NumericIdentity, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ns, ok := a.nodes[node]
	if !ok {
		return 0, fmt.Errorf("identity of %s: node %q: %w", addr, node, ErrNotFound)
	}
	id, _, _ := ns.ipcache.Lookup(addr)
	return id, nil
}

// Identity returns an identity by number.
func (a *Agent) Identity(n identity.NumericIdentity) (*identity.Identity, bool) {
	return a.alloc.Lookup(n)
}
