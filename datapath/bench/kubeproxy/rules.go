// Package kubeproxy compares cilia's eBPF service load balancing with what
// users would run instead: kube-proxy in iptables mode. It writes
// ClusterIP services as the rules kube-proxy writes (the KUBE-SERVICES
// chain, one KUBE-SVC-* chain per service port choosing an endpoint with
// statistic-mode-random, one KUBE-SEP-* chain per endpoint doing the
// DNAT), loads them with iptables-restore in a node's network namespace,
// and measures the first-packet latency of real TCP connections from a pod
// to service addresses: through those rules on one simulated node, and
// through cilia's programs (attached with tcx) on another, in the same
// run. docs/benchmarks.md ("Load balancing") describes the method.
package kubeproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"github.com/ciliaproject/cilia/sim/topology"
)

// Chain names and marks kube-proxy uses (pkg/proxy/iptables/proxier.go).
const (
	ChainServices    = "KUBE-SERVICES"
	ChainNodePorts   = "KUBE-NODEPORTS"
	ChainPostrouting = "KUBE-POSTROUTING"
	ChainMarkMasq    = "KUBE-MARK-MASQ"
	// MasqueradeMark is kube-proxy's default --iptables-masquerade-bit 14.
	MasqueradeMark = "0x4000"
)

// ErrIPTables is returned (wrapped, with iptables-restore's output) when
// iptables-restore fails.
var ErrIPTables = errors.New("iptables-restore failed")

// Service is one port of a ClusterIP service with its ready endpoints, as
// kube-proxy sees it.
type Service struct {
	Namespace, Name string
	// PortName is the service port's name ("" for an unnamed port).
	PortName string
	// ClusterIP and Port are the frontend.
	ClusterIP netip.Addr
	Port      uint16
	// Endpoints are the backends (address and target port), in order.
	Endpoints []netip.AddrPort
}

// portName returns kube-proxy's name of the service port,
// "namespace/name:port" (ServicePortName.String()).
func (s Service) portName() string {
	return fmt.Sprintf("%s/%s:%s", s.Namespace, s.Name, s.PortName)
}

// portProtoHash is kube-proxy's portProtoHash: the first 16 characters of
// the base32 SHA-256 of the service port name and protocol (and endpoint,
// for endpoint chains).
func portProtoHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "")))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

// SVCChain returns the name of a service port's chain, KUBE-SVC-<hash>
// (kube-proxy's servicePortChainName; the protocol in lower case).
func SVCChain(s Service) string {
	return "KUBE-SVC-" + portProtoHash(s.portName(), "tcp")
}

// SEPChain returns the name of a service port's endpoint chain,
// KUBE-SEP-<hash> (kube-proxy's servicePortEndpointChainName).
func SEPChain(s Service, ep netip.AddrPort) string {
	return "KUBE-SEP-" + portProtoHash(s.portName(), "tcp", ep.String())
}

// probability is kube-proxy's: the chance of picking the first of n
// remaining endpoints, with ten decimals.
func probability(n int) string {
	return fmt.Sprintf("%0.10f", 1.0/float64(n))
}

// Rules returns the input of iptables-restore that installs the
// TCP services as kube-proxy (iptables mode, v1.28 and later) does: the
// jumps from PREROUTING and OUTPUT to KUBE-SERVICES and from POSTROUTING
// to KUBE-POSTROUTING (kube-proxy inserts those with iptables; here they
// are part of the restore, the built-in chains being empty), the
// masquerade chains, then per service port a rule in KUBE-SERVICES
// matching the cluster IP and port, a KUBE-SVC chain that marks traffic
// from outside clusterCIDR for masquerading and picks an endpoint
// (statistic --mode random, probability 1/n, 1/(n-1), ..., the last one
// unconditionally), and per endpoint a KUBE-SEP chain that marks hairpin
// traffic and DNATs to the endpoint. KUBE-SERVICES ends with the NodePort
// rule (addrtype LOCAL), as kube-proxy's does. Rules for the same input
// are the same bytes.
func Rules(services []Service, clusterCIDR netip.Prefix) []byte {
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, c := range []string{ChainServices, ChainPostrouting, ChainMarkMasq, ChainNodePorts} {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, s := range services {
		fmt.Fprintf(&b, ":%s - [0:0]\n", SVCChain(s))
		for _, ep := range s.Endpoints {
			fmt.Fprintf(&b, ":%s - [0:0]\n", SEPChain(s, ep))
		}
	}
	fmt.Fprintf(&b, "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j %s\n", ChainServices)
	fmt.Fprintf(&b, "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j %s\n", ChainServices)
	fmt.Fprintf(&b, "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j %s\n", ChainPostrouting)
	fmt.Fprintf(&b, "-A %s -m mark ! --mark %s/%s -j RETURN\n", ChainPostrouting, MasqueradeMark, MasqueradeMark)
	fmt.Fprintf(&b, "-A %s -j MARK --xor-mark %s\n", ChainPostrouting, MasqueradeMark)
	fmt.Fprintf(&b, "-A %s -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
		ChainPostrouting)
	fmt.Fprintf(&b, "-A %s -j MARK --or-mark %s\n", ChainMarkMasq, MasqueradeMark)
	for _, s := range services {
		name, svc := s.portName(), SVCChain(s)
		vip, port := s.ClusterIP.String()+"/32", strconv.Itoa(int(s.Port))
		fmt.Fprintf(&b, "-A %s -m comment --comment \"%s cluster IP\" -m tcp -p tcp -d %s --dport %s -j %s\n",
			ChainServices, name, vip, port, svc)
		fmt.Fprintf(&b, "-A %s -m comment --comment \"%s cluster IP\" -m tcp -p tcp -d %s --dport %s ! -s %s -j %s\n",
			svc, name, vip, port, clusterCIDR.Masked(), ChainMarkMasq)
		for i, ep := range s.Endpoints {
			fmt.Fprintf(&b, "-A %s -m comment --comment \"%s -> %s\"", svc, name, ep)
			if n := len(s.Endpoints) - i; n > 1 {
				fmt.Fprintf(&b, " -m statistic --mode random --probability %s", probability(n))
			}
			fmt.Fprintf(&b, " -j %s\n", SEPChain(s, ep))
		}
		for _, ep := range s.Endpoints {
			sep := SEPChain(s, ep)
			fmt.Fprintf(&b, "-A %s -m comment --comment %s -s %s/32 -j %s\n", sep, name, ep.Addr(), ChainMarkMasq)
			fmt.Fprintf(&b, "-A %s -m comment --comment %s -m tcp -p tcp -j DNAT --to-destination %s\n", sep, name, ep)
		}
	}
	fmt.Fprintf(&b, "-A %s -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j %s\n",
		ChainServices, ChainNodePorts)
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// Restore runs iptables-restore with input in the named netns netnsName
// (-w: wait for the xtables lock). With noflush (kube-proxy's way) the
// tables' other rules stay; without, every table in input is replaced.
func Restore(netnsName string, input []byte, noflush bool) error {
	args := []string{"-w"}
	if noflush {
		args = append(args, "--noflush")
	}
	return topology.Do(netnsName, func() error {
		// The child inherits the locked thread's netns.
		cmd := exec.Command("iptables-restore", args...)
		cmd.Stdin = bytes.NewReader(input)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("restore rules in %s: %w: %v: %s", netnsName, ErrIPTables, err,
				strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// Flush empties the nat table of the named netns: every rule goes and
// every chain kube-proxy made is deleted (iptables-restore without
// --noflush replaces the table).
func Flush(netnsName string) error {
	return Restore(netnsName, []byte("*nat\nCOMMIT\n"), false)
}

// Save returns iptables-save's output for the nat table of the named
// netns.
func Save(netnsName string) (string, error) {
	var out []byte
	err := topology.Do(netnsName, func() error {
		var err error
		out, err = exec.Command("iptables-save", "-t", "nat").CombinedOutput()
		if err != nil {
			return fmt.Errorf("save rules in %s: %w: %s", netnsName, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	return string(out), err
}
