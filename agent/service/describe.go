package service

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// FrontendStatus is one frontend scope entry as a node's maps hold it,
// annotated with the manager's names.
type FrontendStatus struct {
	Service  string         `json:"service,omitempty"` // namespace/name; "" when unknown to the manager
	Port     string         `json:"port,omitempty"`    // the service port's name
	Kind     FrontendKind   `json:"kind,omitempty"`
	Address  netip.AddrPort `json:"address"`
	Protocol string         `json:"protocol"`
	Scope    string         `json:"scope"` // internal | external
	// Flags names the LB_F_* flags: nodeport, external, local, affinity,
	// maglev, dsr.
	Flags           []string        `json:"flags"`
	RevNatID        uint32          `json:"revNatID"`
	AffinityTimeout uint32          `json:"affinityTimeout,omitempty"` // seconds
	Backends        []BackendStatus `json:"backends"`
	// MaglevSize is the length of the frontend's Maglev table (0: none).
	MaglevSize int `json:"maglevSize,omitempty"`
	// Problems lists inconsistencies found in the maps (a missing slot,
	// backend, rev-NAT entry or Maglev table).
	Problems []string `json:"problems,omitempty"`
}

// BackendStatus is one backend slot of a frontend.
type BackendStatus struct {
	Slot        int            `json:"slot"`
	ID          uint32         `json:"id"`
	Address     netip.AddrPort `json:"address"`
	Pod         string         `json:"pod,omitempty"`
	Node        string         `json:"node,omitempty"`
	Terminating bool           `json:"terminating,omitempty"`
	// MaglevEntries is how many entries of the frontend's Maglev table
	// name it, MaglevShare that as a percentage of the table.
	MaglevEntries int     `json:"maglevEntries,omitempty"`
	MaglevShare   float64 `json:"maglevShare,omitempty"`
}

// FlagNames names LB_F_* flags.
func FlagNames(f uint8) []string {
	out := []string{}
	for _, n := range []struct {
		bit  uint8
		name string
	}{
		{maps.LBFlagNodePort, "nodeport"}, {maps.LBFlagExternal, "external"}, {maps.LBFlagLocal, "local"},
		{maps.LBFlagAffinity, "affinity"}, {maps.LBFlagMaglev, "maglev"}, {maps.LBFlagDSR, "dsr"},
	} {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// Describe decodes a node's load-balancing maps (t, e.g. read back with
// TableReader) into its frontends, in key order, naming services, pods
// and nodes from the manager's state.
func (m *Manager) Describe(t Tables) []FrontendStatus {
	m.mu.Lock()
	type feName struct {
		svc, port string
		kind      FrontendKind
	}
	type beName struct{ pod, node string }
	fes, bes := map[frontendKey]feName{}, map[backendKey]beName{}
	for key, fs := range m.fronts {
		for _, f := range fs {
			fes[f.key()] = feName{key, f.Port, f.Kind}
			for _, b := range f.Backends {
				bes[b.key()] = beName{b.Pod, b.Node}
			}
		}
	}
	m.mu.Unlock()

	var out []FrontendStatus
	for _, k := range sortedLBKeys(t.Services) {
		if k.Slot != 0 {
			continue
		}
		v := t.Services[k]
		addr := netip.AddrPortFrom(maps.AddrFromBytes(k.Family, k.Addr), maps.NetToHost16(k.DPortNet))
		fs := FrontendStatus{Address: addr, Protocol: ProtoName(k.Proto), Scope: "internal",
			Flags: FlagNames(v.Flags), RevNatID: v.RevNatID, Backends: []BackendStatus{}}
		if k.Scope == maps.LBScopeExternal {
			fs.Scope = "external"
		}
		if v.Flags&maps.LBFlagAffinity != 0 {
			fs.AffinityTimeout = v.AffinityTimeout
		}
		if n, ok := fes[frontendKey{addr, k.Proto}]; ok {
			fs.Service, fs.Port, fs.Kind = n.svc, n.port, n.kind
		}
		if _, ok := t.RevNat[v.RevNatID]; !ok {
			fs.Problems = append(fs.Problems, fmt.Sprintf("no rev-nat entry %d", v.RevNatID))
		}
		var table []uint32
		if v.Flags&maps.LBFlagMaglev != 0 {
			table = t.Maglev[v.RevNatID]
			fs.MaglevSize = len(table)
			if table == nil && int(v.Count)+int(v.Terminating) > 0 {
				fs.Problems = append(fs.Problems, fmt.Sprintf("no maglev table %d", v.RevNatID))
			}
		}
		shares := MaglevShares(table)
		inSlots := map[uint32]bool{}
		for slot := 1; slot <= int(v.Count)+int(v.Terminating); slot++ {
			sk := k
			sk.Slot = uint16(slot)
			sv, ok := t.Services[sk]
			if !ok {
				fs.Problems = append(fs.Problems, fmt.Sprintf("slot %d missing", slot))
				continue
			}
			bs := BackendStatus{Slot: slot, ID: sv.BackendID, Terminating: slot > int(v.Count)}
			be, ok := t.Backends[sv.BackendID]
			if !ok {
				fs.Problems = append(fs.Problems, fmt.Sprintf("slot %d: no backend %d", slot, sv.BackendID))
			} else {
				bs.Address = netip.AddrPortFrom(maps.AddrFromBytes(be.Family, be.Addr), maps.NetToHost16(be.PortNet))
				if n, ok := bes[backendKey{bs.Address, be.Proto}]; ok {
					bs.Pod, bs.Node = n.pod, n.node
				}
			}
			if table != nil {
				bs.MaglevEntries = shares[sv.BackendID]
				bs.MaglevShare = 100 * float64(bs.MaglevEntries) / float64(len(table))
			}
			inSlots[sv.BackendID] = true
			fs.Backends = append(fs.Backends, bs)
		}
		if table != nil {
			var others []uint32
			for id := range shares {
				if !inSlots[id] {
					others = append(others, id)
				}
			}
			slices.Sort(others)
			for _, id := range others {
				fs.Problems = append(fs.Problems, fmt.Sprintf("maglev table names backend %d (%d entries), which is in no slot", id, shares[id]))
			}
		}
		out = append(out, fs)
	}
	return out
}
