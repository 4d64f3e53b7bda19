package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/agent"
	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/policy"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/scenarioagent"
	"github.com/ciliaproject/cilia/datapath/maps"
)

func newPolicyTraceCmd() *cobra.Command {
	var (
		scenarioPath, from, to, port, family string
		step                                 int
	)
	cmd := &cobra.Command{
		Use:   "trace --scenario FILE --from PEER --to PEER --port PORT/PROTO",
		Short: "Explain the policy verdict for a connection in a scenario",
		Long: `Trace resolves the policies of a scenario with the reference agent (no kernel
needed) and explains the verdict for one connection: which policies select the
source and the destination, which rule matched at egress and at ingress, and
why the result is allow or deny.

PEER is a pod (namespace/name), an external's name, node:<name> or ip:<addr>.
PORT/PROTO is e.g. 80/TCP, 53/UDP, 132/SCTP, or ICMP (an echo request), or a
named port of the destination pod (http).`,
		Example: `  cilia policy trace --scenario fixtures/scenarios/policy/demo-deathstar-l3-l4.yaml \
      --from default/xwing --to default/deathstar --port 80/TCP
  cilia policy trace --scenario s.yaml --from x/a --to x/b --port 81/UDP --step 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := scenario.Load(scenarioPath)
			if err != nil {
				return err
			}
			tr, err := newTracer(sc, step)
			if err != nil {
				return err
			}
			_, err = tr.trace(cmd.OutOrStdout(), from, to, port, scenario.Family(family))
			return err
		},
	}
	cmd.Flags().StringVar(&scenarioPath, "scenario", "", "scenario file (required)")
	cmd.Flags().StringVar(&from, "from", "", "source peer (required)")
	cmd.Flags().StringVar(&to, "to", "", "destination peer (required)")
	cmd.Flags().StringVar(&port, "port", "", "destination port and protocol, e.g. 80/TCP (required)")
	cmd.Flags().StringVar(&family, "family", "ipv4", "address family: ipv4 or ipv6")
	cmd.Flags().IntVar(&step, "step", 0, "trace in the state step N probes (its mutations and every earlier step's applied)")
	for _, f := range []string{"scenario", "from", "to", "port"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}

// tracer holds a scenario's cluster as the agent resolved it.
type tracer struct {
	agent *agent.Agent
	// state is the cluster as of the traced step.
	state *scenario.State
}

func newTracer(sc *scenario.Scenario, step int) (*tracer, error) {
	t := &tracer{agent: agent.New()}
	if err := scenarioagent.InMemoryAt(t.agent, sc, step); err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	t.state = sc.StateAt(step)
	return t, nil
}

// tracePeer is one end of the traced connection.
type tracePeer struct {
	name string
	pod  *scenario.Pod
	node string // the node whose datapath it meets ("" for externals)
	addr netip.Addr
}

func (t *tracer) peer(s string, fam scenario.Family) (tracePeer, error) {
	pick := func(v4, v6 netip.Addr) netip.Addr {
		if fam == scenario.IPv6 {
			return v6
		}
		return v4
	}
	if p, ok := t.state.Pod(s); ok {
		return tracePeer{name: s, pod: &p, node: p.Node, addr: pick(p.IPv4, p.IPv6)}, nil
	}
	if name, ok := strings.CutPrefix(s, "node:"); ok {
		n, found := t.state.Node(name)
		if !found {
			return tracePeer{}, fmt.Errorf("trace: no node %q", name)
		}
		return tracePeer{name: s, node: name, addr: pick(n.IPv4, n.IPv6)}, nil
	}
	if a, ok := strings.CutPrefix(s, "ip:"); ok {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return tracePeer{}, fmt.Errorf("trace: %q: %w", s, err)
		}
		return tracePeer{name: s, addr: addr}, nil
	}
	if e, ok := t.state.External(s); ok {
		return tracePeer{name: s, addr: pick(e.IPv4, e.IPv6)}, nil
	}
	return tracePeer{}, fmt.Errorf("trace: %q is no pod, external, node:<name> or ip:<addr> of the scenario", s)
}

// parsePortProto reads "80/TCP", "ICMP" or a named port of dst.
func parsePortProto(s string, dst tracePeer, fam scenario.Family) (uint8, uint16, string, error) {
	if strings.EqualFold(s, "ICMP") {
		if fam == scenario.IPv6 {
			return 58, 128, "ICMPv6 echo request", nil
		}
		return 1, 8, "ICMP echo request", nil
	}
	num, protoName, hasProto := strings.Cut(s, "/")
	if !hasProto {
		protoName = "TCP"
	}
	proto, ok := policy.ProtoNumber(protoName)
	if !ok {
		return 0, 0, "", fmt.Errorf("trace: unknown protocol %q", protoName)
	}
	if n, err := strconv.ParseUint(num, 10, 16); err == nil {
		return proto, uint16(n), fmt.Sprintf("%d/%s", n, policy.ProtoName(proto)), nil
	}
	if dst.pod != nil {
		for _, p := range dst.pod.Ports {
			if p.Name == num && (!hasProto || strings.EqualFold(string(p.Protocol), protoName)) {
				pn, _ := policy.ProtoNumber(string(p.Protocol))
				return pn, p.Port, fmt.Sprintf("%d/%s (named port %s)", p.Port, p.Protocol, num), nil
			}
		}
	}
	return 0, 0, "", fmt.Errorf("trace: %q is no port number and no named port of %s", num, dst.name)
}

// trace explains the verdict and reports whether the connection is
// allowed.
func (t *tracer) trace(w io.Writer, from, to, port string, fam scenario.Family) (bool, error) {
	src, err := t.peer(from, fam)
	if err != nil {
		return false, err
	}
	dst, err := t.peer(to, fam)
	if err != nil {
		return false, err
	}
	if !src.addr.IsValid() || !dst.addr.IsValid() {
		return false, fmt.Errorf("trace: %s or %s has no %s address", src.name, dst.name, fam)
	}
	proto, portNum, portDesc, err := parsePortProto(port, dst, fam)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(w, "Tracing %s (%s) -> %s (%s) %s\n", src.name, src.addr, dst.name, dst.addr, portDesc)
	for _, p := range []tracePeer{src, dst} {
		if p.pod != nil {
			id, err := t.agent.PodIdentity(p.name)
			if err != nil {
				return false, err
			}
			fmt.Fprintf(w, "  %s: identity %d on %s, labels %s\n", p.name, id.ID, p.node, id.Labels)
		}
	}
	allowed := true
	if src.pod != nil {
		ok, err := t.explain(w, src, dst, maps.Egress, proto, portNum)
		if err != nil {
			return false, err
		}
		allowed = allowed && ok
	} else {
		fmt.Fprintf(w, "\nEgress: %s is not a pod; no egress policy applies\n", src.name)
	}
	if dst.pod != nil {
		ok, err := t.explain(w, dst, src, maps.Ingress, proto, portNum)
		if err != nil {
			return false, err
		}
		allowed = allowed && ok
	} else {
		fmt.Fprintf(w, "\nIngress: %s is not a pod; no ingress policy applies\n", dst.name)
	}
	verdict := "ALLOWED"
	if !allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(w, "\nVerdict: %s\n", verdict)
	return allowed, nil
}

// explain prints the decision of ep's policy in dir for traffic with peer.
func (t *tracer) explain(w io.Writer, ep, peer tracePeer, dir maps.Direction, proto uint8, port uint16) (bool, error) {
	pol, err := t.agent.EndpointPolicy(ep.name)
	if err != nil {
		return false, err
	}
	peerID, err := t.agent.IdentityOfAddr(ep.node, peer.addr)
	if err != nil {
		return false, err
	}
	name, dp := "Ingress", pol.Ingress
	if dir == maps.Egress {
		name, dp = "Egress", pol.Egress
	}
	fmt.Fprintf(w, "\n%s at %s (peer %s is identity %s)\n", name, ep.name, peer.name, describeIdentity(t.agent, peerID))
	if !dp.Enforced {
		fmt.Fprintf(w, "  no policy selects %s for %s: not enforced, allowed\n", ep.name, strings.ToLower(name))
		return true, nil
	}
	fmt.Fprintf(w, "  selected by:\n")
	for _, r := range dp.Selecting {
		fmt.Fprintf(w, "    %s\n", r.Origin)
	}
	dec := pol.Lookup(dir, peerID, proto, port)
	switch {
	case !dec.Matched:
		fmt.Fprintf(w, "  no rule allows identity %d to %d/%s: DENIED (%s, default deny)\n", peerID, port, policy.ProtoName(proto), dec.DropReason)
	case dec.Allowed:
		fmt.Fprintf(w, "  allowed by entry %s:\n", describeKey(dec.Key))
		for _, o := range dec.Value.Origins {
			fmt.Fprintf(w, "    %s\n", o)
		}
	default:
		fmt.Fprintf(w, "  denied by entry %s (%s: deny rules win over allows):\n", describeKey(dec.Key), dec.DropReason)
		for _, o := range dec.Value.Origins {
			fmt.Fprintf(w, "    %s\n", o)
		}
	}
	return dec.Allowed, nil
}

func describeIdentity(a *agent.Agent, n identity.NumericIdentity) string {
	if id, ok := a.Identity(n); ok {
		return fmt.Sprintf("%d (%s)", n, id.Labels)
	}
	return n.String()
}

func describeKey(k maps.PolicyKey) string {
	who := "any identity"
	if k.Identity != 0 {
		who = "identity " + strconv.Itoa(int(k.Identity))
	}
	switch {
	case k.Prefixlen <= maps.PolicyPrefixL3:
		return who + ", any protocol"
	case k.Prefixlen == maps.PolicyPrefixProto:
		return fmt.Sprintf("%s, %s any port", who, policy.ProtoName(k.Protocol))
	}
	lo := maps.NetToHost16(k.DPortNet)
	size := uint32(1) << (maps.PolicyPrefixFull - k.Prefixlen)
	if size == 1 {
		return fmt.Sprintf("%s, %d/%s", who, lo, policy.ProtoName(k.Protocol))
	}
	return fmt.Sprintf("%s, %d-%d/%s", who, lo, uint32(lo)+size-1, policy.ProtoName(k.Protocol))
}
