package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// ipcacheMapFor returns the map a prefix lives in and its key: host
// prefixes (/32, /128) in the host hash, shorter ones in the LPM trie.
func (n *Node) ipcacheMapFor(prefix netip.Prefix) (*ebpf.Map, any) {
	prefix = prefix.Masked()
	if prefix.IsSingleIP() {
		k := maps.NewAddrKey(prefix.Addr())
		return n.Maps[MapIPCacheHosts], &k
	}
	k := maps.NewIPCacheKey(prefix)
	return n.Maps[MapIPCache], &k
}

// SetIPCache maps prefix to entry (identity, tunnel endpoint).
func (n *Node) SetIPCache(prefix netip.Prefix, entry maps.IPCacheEntry) error {
	m, k := n.ipcacheMapFor(prefix)
	return maps.WrapUpdateError("ipcache "+prefix.String(), m.Put(k, &entry))
}

// DeleteIPCache removes prefix from the ipcache.
func (n *Node) DeleteIPCache(prefix netip.Prefix) error {
	m, k := n.ipcacheMapFor(prefix)
	if err := m.Delete(k); err != nil {
		return fmt.Errorf("delete ipcache %s: %w", prefix, err)
	}
	return nil
}

// LookupIPCache returns the entry the datapath would find for addr (the
// host entry, else the longest prefix), and whether there is one.
func (n *Node) LookupIPCache(addr netip.Addr) (maps.IPCacheEntry, bool, error) {
	var e maps.IPCacheEntry
	hk := maps.NewAddrKey(addr)
	err := n.Maps[MapIPCacheHosts].Lookup(&hk, &e)
	if err == nil {
		return e, true, nil
	}
	if !errors.Is(err, ebpf.ErrKeyNotExist) {
		return e, false, fmt.Errorf("look up ipcache host %s: %w", addr, err)
	}
	tk := maps.NewIPCacheKey(netip.PrefixFrom(addr, addr.BitLen()))
	err = n.Maps[MapIPCache].Lookup(&tk, &e)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("look up ipcache %s: %w", addr, err)
	}
	return e, true, nil
}
