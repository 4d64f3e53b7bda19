package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath/maps"
)

func (n *Node) ctMap(key maps.Tuple) *ebpf.Map {
	if key.Family == maps.FamilyIPv4 {
		return n.Maps[MapCT4]
	}
	return n.Maps[MapCT6]
}

// LookupCT returns the conntrack entry of key (from its family's map), and
// whether there is one.
func (n *Node) LookupCT(key maps.Tuple) (maps.CTEntry, bool, error) {
	var e maps.CTEntry
	err := n.ctMap(key).Lookup(key.CTKey(), &e)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("look up conntrack %s: %w", key, err)
	}
	return e, true, nil
}

// UpdateCT writes the conntrack entry of key.
func (n *Node) UpdateCT(key maps.Tuple, e maps.CTEntry) error {
	return maps.WrapUpdateError("conntrack", n.ctMap(key).Put(key.CTKey(), &e))
}

// CTEntries returns every conntrack entry of both families, IPv4 keys in
// their family-independent form.
func (n *Node) CTEntries() (map[maps.Tuple]maps.CTEntry, error) {
	out := map[maps.Tuple]maps.CTEntry{}
	var (
		k4 maps.Tuple4
		k6 maps.Tuple
		v  maps.CTEntry
	)
	it := n.Maps[MapCT4].Iterate()
	for it.Next(&k4, &v) {
		out[k4.Tuple()] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate IPv4 conntrack: %w", err)
	}
	it = n.Maps[MapCT6].Iterate()
	for it.Next(&k6, &v) {
		out[k6] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate IPv6 conntrack: %w", err)
	}
	return out, nil
}
