package model

import (
	"net/netip"
	"strings"
)

// parseCIDR reads a prefix as policies write it; a bare address is a
// prefix of its full length.
func parseCIDR(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// cidrSetAllows reports whether a CIDR with its exceptions (Cilium's
// fromCIDR/toCIDR and fromCIDRSet/toCIDRSet, Kubernetes' ipBlock) selects the
// peer: the peer is outside the cluster (CIDR rules never select pods or
// nodes, whatever their address), its address is inside the prefix and
// inside none of the exceptions. A prefix selects addresses of its own
// family only: 0.0.0.0/0 is every IPv4 address, no IPv6 one.
// https://docs.cilium.io/en/stable/security/policy/language/#ip-cidr-based
// ("CIDR rules do not apply to traffic where both sides of the connection
// are either managed by Cilium or use an IP belonging to a node")
func cidrSetAllows(cidr string, except []string, peer endpoint) bool {
	if peer.kind != kindWorld {
		return false
	}
	p, ok := parseCIDR(cidr)
	if !ok || !p.Contains(peer.addr) {
		return false
	}
	for _, e := range except {
		if ep, ok := parseCIDR(e); ok && ep.Contains(peer.addr) {
			return false
		}
	}
	return true
}

// ipBlockAllows is a NetworkPolicy ipBlock: cidr minus except, for
// addresses outside the cluster (Cilium implements ipBlock as a CIDR rule;
// see cidrSetAllows for why pods and nodes never match).
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#behavior-of-to-and-from-selectors
// ("ipBlock: ... cluster-external IPs")
func ipBlockAllows(cidr string, except []string, peer endpoint) bool {
	return cidrSetAllows(cidr, except, peer)
}

// entitySelects reports whether a Cilium entity selects the peer, seen
// from a pod on node subjectNode: all is everything; world everything
// outside the cluster (world-ipv4 and world-ipv6 one family of it); cluster
// every pod and every node; host the pod's own node; remote-node the other
// nodes. The other entities (init, health, unmanaged, ingress,
// kube-apiserver) name things scenarios do not have, and none selects
// nothing.
// https://docs.cilium.io/en/stable/security/policy/language/#entities-based
func entitySelects(entity string, peer endpoint, subjectNode string) bool {
	what := peer.entity(subjectNode)
	switch entity {
	case "all":
		return true
	case "world":
		return what == "world"
	case "world-ipv4":
		return what == "world" && peer.addr.Is4()
	case "world-ipv6":
		return what == "world" && peer.addr.Is6()
	case "cluster", "cluster-mesh":
		return what != "world"
	case "host":
		return what == "host"
	case "remote-node":
		return what == "remote-node"
	}
	return false
}
