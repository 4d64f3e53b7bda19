package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// policyState is the Go side of an endpoint's cilia_ep_policy entry: the
// revision and enforcement flags the control plane sets, and how many
// policy map keys use each prefix length (for the PrefixLengths bitmap the
// datapath probes).
type policyState struct {
	revision uint32
	flags    uint32
	lenCount [maps.PolicyPrefixFull - maps.PolicyPrefixL3 + 1]int
}

func (s *policyState) value() maps.EndpointPolicyState {
	st := maps.EndpointPolicyState{Revision: s.revision, Flags: s.flags}
	for i, n := range s.lenCount {
		if n > 0 {
			st.PrefixLengths |= 1 << i
		}
	}
	return st
}

// loadPolicyState reads the endpoint's state and recounts the prefix
// lengths of its policy map (which may have been pinned by an earlier run).
func (e *Endpoint) loadPolicyState() error {
	key := uint32(e.Config.ID)
	var st maps.EndpointPolicyState
	if err := e.node.Maps[MapEndpointPolicy].Lookup(&key, &st); err != nil {
		return fmt.Errorf("read policy state of endpoint %d: %w", e.Config.ID, err)
	}
	e.policy = policyState{revision: st.Revision, flags: st.Flags}
	var (
		k maps.PolicyKey
		v maps.PolicyEntry
	)
	it := e.Policy.Iterate()
	for it.Next(&k, &v) {
		if i, ok := prefixIndex(k); ok {
			e.policy.lenCount[i]++
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read policy map of endpoint %d: %w", e.Config.ID, err)
	}
	return e.writePolicyState()
}

func prefixIndex(k maps.PolicyKey) (int, bool) {
	if k.Prefixlen < maps.PolicyPrefixL3 || k.Prefixlen > maps.PolicyPrefixFull {
		return 0, false
	}
	return int(k.Prefixlen - maps.PolicyPrefixL3), true
}

func (e *Endpoint) writePolicyState() error {
	key := uint32(e.Config.ID)
	st := e.policy.value()
	return maps.WrapUpdateError("endpoint policy state", e.node.Maps[MapEndpointPolicy].Put(&key, &st))
}

// PutPolicy writes one policy map entry. The key must come from
// maps.PolicyKeys (masked, prefix length 40..64). The caller bumps the
// revision (BumpPolicyRevision) once its change is complete, so that
// conntrack re-checks tracked connections.
func (e *Endpoint) PutPolicy(k maps.PolicyKey, v maps.PolicyEntry) error {
	i, ok := prefixIndex(k)
	if !ok {
		return fmt.Errorf("put policy entry: prefix length %d outside %d..%d", k.Prefixlen, maps.PolicyPrefixL3, maps.PolicyPrefixFull)
	}
	var old maps.PolicyEntry
	err := e.Policy.Lookup(&k, &old)
	exists := err == nil
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("look up policy entry: %w", err)
	}
	if err := e.Policy.Put(&k, &v); err != nil {
		return maps.WrapUpdateError("policy", err)
	}
	if exists {
		return nil
	}
	e.policy.lenCount[i]++
	if e.policy.lenCount[i] == 1 { // a new prefix length: probe it from now on
		return e.writePolicyState()
	}
	return nil
}

// DeletePolicy removes one policy map entry (see PutPolicy).
func (e *Endpoint) DeletePolicy(k maps.PolicyKey) error {
	i, ok := prefixIndex(k)
	if !ok {
		return fmt.Errorf("delete policy entry: prefix length %d outside %d..%d", k.Prefixlen, maps.PolicyPrefixL3, maps.PolicyPrefixFull)
	}
	if err := e.Policy.Delete(&k); err != nil {
		return fmt.Errorf("delete policy entry %+v: %w", k, err)
	}
	e.policy.lenCount[i]--
	if e.policy.lenCount[i] == 0 {
		return e.writePolicyState()
	}
	return nil
}

// SetEnforcement turns policy enforcement on or off per direction (a
// direction without enforcement allows everything) and bumps the revision.
func (e *Endpoint) SetEnforcement(ingress, egress bool) error {
	e.policy.flags = 0
	if ingress {
		e.policy.flags |= maps.PolicyIngressEnforced
	}
	if egress {
		e.policy.flags |= maps.PolicyEgressEnforced
	}
	return e.BumpPolicyRevision()
}

// BumpPolicyRevision increments the endpoint's policy revision, which makes
// conntrack re-check tracked connections against the current policy.
func (e *Endpoint) BumpPolicyRevision() error {
	e.policy.revision++
	return e.writePolicyState()
}

// PolicyState returns the endpoint's policy state as last written.
func (e *Endpoint) PolicyState() maps.EndpointPolicyState {
	return e.policy.value()
}
