package model

import (
	"strconv"
	"strings"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// connection is what a probe asks about: a new connection from one
// endpoint to another, on a protocol and destination port (0 for ICMP,
// which is an echo request).
type connection struct {
	from, to endpoint
	protocol scenario.Protocol
	port     uint16
	family   scenario.Family
}

// portSpec is one port term of a rule, in the form both policy kinds
// share: a protocol ("" or ANY for every one of TCP, UDP and SCTP), and a
// number (0: every port), a range up to endPort, or a name.
type portSpec struct {
	protocol string
	number   uint16
	endPort  uint16
	name     string
}

// protocolCovers reports whether a rule's protocol covers the probe's:
// Cilium's ANY (or no protocol) means TCP, UDP and SCTP, never ICMP.
// https://docs.cilium.io/en/stable/security/policy/language/#layer-4-examples
// ("protocol ... if omitted or set to ANY, all of TCP, UDP and SCTP")
func protocolCovers(ruleProtocol string, p scenario.Protocol) bool {
	switch strings.ToUpper(ruleProtocol) {
	case "", "ANY":
		return p == scenario.TCP || p == scenario.UDP || p == scenario.SCTP
	}
	return strings.EqualFold(ruleProtocol, string(p))
}

// portMatches reports whether one port term allows the connection's
// protocol and destination port: the protocol must be covered; then port
// 0 (or none) is every port, endPort makes a range, and a name is looked up
// on the destination pod.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#targeting-a-range-of-ports
// https://docs.cilium.io/en/stable/security/policy/language/#limit-ingress-egress-ports
func portMatches(ps portSpec, c connection) bool {
	if c.protocol == scenario.ICMP || !protocolCovers(ps.protocol, c.protocol) {
		return false
	}
	if ps.name != "" {
		return namedPortResolves(ps.name, ps.protocol, c)
	}
	if ps.number == 0 {
		return true
	}
	if ps.endPort > ps.number {
		return c.port >= ps.number && c.port <= ps.endPort
	}
	return c.port == ps.number
}

// namedPortResolves reports whether a named port of a rule means the
// connection's port: names are resolved on the destination pod (the
// policy's pod for ingress, each peer pod for egress), so pods may map one
// name to different numbers; the pod's port of that name must have the
// connection's number and protocol (and the rule's protocol, when it gives
// one). A destination that is not a pod has no named ports.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#networkpolicy-resource
// ("port ... can be either a numerical or named port on a pod")
func namedPortResolves(name, ruleProtocol string, c connection) bool {
	if c.to.kind != kindPod {
		return false
	}
	for _, p := range c.to.pod.Ports {
		if p.Name == name && p.Port == c.port && p.Protocol == c.protocol && protocolCovers(ruleProtocol, p.Protocol) {
			return true
		}
	}
	return false
}

// icmpEchoRequest is the ICMP type of a probe: an echo request.
func icmpEchoRequest(f scenario.Family) string {
	if f == scenario.IPv6 {
		return "128"
	}
	return "8"
}

// icmpMatches reports whether one ICMP field of a Cilium rule (family,
// default IPv4, and type, a number or a name of Cilium's tables) allows the
// probe's echo request.
// https://docs.cilium.io/en/stable/security/policy/language/#icmp-icmpv6
func icmpMatches(family string, icmpType string, c connection) bool {
	if c.protocol != scenario.ICMP {
		return false
	}
	want := "IPv4"
	if c.family == scenario.IPv6 {
		want = "IPv6"
	}
	if family == "" {
		family = "IPv4"
	}
	if !strings.EqualFold(family, want) {
		return false
	}
	return icmpType == icmpEchoRequest(c.family)
}

// parsePortNumber reads a port written as a string ("80", "" or "0" for
// every port); anything that is not a number is a name.
func parsePortNumber(s string) (number uint16, name string) {
	if s == "" {
		return 0, ""
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, s
	}
	return uint16(n), ""
}
