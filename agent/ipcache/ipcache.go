// Package ipcache is the reference agent's ipcache: the map from every
// endpoint address, node address and CIDR prefix to its security
// identity, as one node's datapath sees it. It keeps what was programmed
// and writes only differences to the datapath.
package ipcache

import (
	"net/netip"
	"sort"

	"github.com/ciliaproject/cilia/agent/identity"
)

// Entry is what a prefix maps to: its identity and, for an address
// reached through the overlay (a pod on another node in tunnel mode), the
// tunnel endpoint: the IPv4 address of the node that hosts it.
type Entry struct {
	Identity       identity.NumericIdentity
	TunnelEndpoint netip.Addr // invalid: not behind a tunnel
}

// Writer programs ipcache entries into a datapath.
type Writer interface {
	UpsertIPCache(prefix netip.Prefix, e Entry) error
	DeleteIPCache(prefix netip.Prefix) error
}

// IPCache is one node's ipcache. The zero value is not usable; use New.
// It is not safe for concurrent use (the agent serializes its updates).
type IPCache struct {
	entries map[netip.Prefix]Entry
}

// New returns an empty ipcache.
func New() *IPCache {
	return &IPCache{entries: map[netip.Prefix]Entry{}}
}

// Len returns the number of entries.
func (c *IPCache) Len() int { return len(c.entries) }

// Lookup returns the identity of addr as the datapath resolves it: the
// longest prefix containing addr (an exact /32 or /128 entry first), or
// world when none does.
func (c *IPCache) Lookup(addr netip.Addr) (id identity.NumericIdentity, prefix netip.Prefix, found bool) {
	addr = addr.Unmap()
	for bits := addr.BitLen(); bits >= 0; bits-- {
		p, err := addr.Prefix(bits)
		if err != nil {
			break
		}
		if e, ok := c.entries[p]; ok {
			return e.Identity, p, true
		}
	}
	return identity.World, netip.Prefix{}, false
}

// Entry returns the entry of exactly prefix.
func (c *IPCache) Entry(prefix netip.Prefix) (Entry, bool) {
	e, ok := c.entries[prefix]
	return e, ok
}

// Prefixes returns every prefix, sorted by address then length.
func (c *IPCache) Prefixes() []netip.Prefix { return sortedPrefixes(c.entries) }

// Sync makes the ipcache equal to want and writes the difference to w
// (nil: keep it in memory only): upserts first and deletes last, so an
// address moving between prefixes or identities is never missing in
// between (make before break). It returns the number of writes. On an
// error the entries written so far are kept and the rest is left for the
// next Sync.
func (c *IPCache) Sync(want map[netip.Prefix]Entry, w Writer) (int, error) {
	writes := 0
	for _, p := range sortedPrefixes(want) {
		e := want[p]
		if cur, ok := c.entries[p]; ok && cur == e {
			continue
		}
		if w != nil {
			if err := w.UpsertIPCache(p, e); err != nil {
				return writes, err
			}
		}
		c.entries[p] = e
		writes++
	}
	for _, p := range c.Prefixes() {
		if _, keep := want[p]; keep {
			continue
		}
		if w != nil {
			if err := w.DeleteIPCache(p); err != nil {
				return writes, err
			}
		}
		delete(c.entries, p)
		writes++
	}
	return writes, nil
}

// sortedPrefixes returns the keys of m sorted by address then length.
func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Addr() != out[j].Addr() {
			return out[i].Addr().Less(out[j].Addr())
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}
