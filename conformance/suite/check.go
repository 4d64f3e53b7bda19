package suite

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Addresses are what the suite knows of a scenario's addresses, to check
// sourceSeen. Targets may assign their own addresses to pods and nodes the
// scenario leaves without one; those are simply not known here.
type Addresses struct {
	// Client is the probe client's address in the probe's family, invalid
	// when the scenario does not give one.
	Client netip.Addr
	// Nodes are the addresses of every node in the probe's family.
	Nodes []netip.Addr
}

// Check compares an observation with an expectation and returns one line
// per mismatch, nil when the probe passed. dropReasons says whether the
// target is held to dropReason expectations (it supports
// features.DropReasons and the run did not filter it out).
func Check(exp scenario.Expectation, obs target.Observation, dropReasons bool, addrs Addresses) []string {
	var wrong []string
	switch {
	case obs.Verdict != target.Allowed && obs.Verdict != target.Denied:
		wrong = append(wrong, fmt.Sprintf("verdict: expected %s, target returned unknown verdict %q", exp.Verdict, obs.Verdict))
	case verdictOf(obs.Verdict) != exp.Verdict:
		wrong = append(wrong, fmt.Sprintf("verdict: expected %s, observed %s", exp.Verdict, obs.Verdict))
	}
	if exp.DropReason != "" && dropReasons && obs.DropReason != exp.DropReason {
		wrong = append(wrong, fmt.Sprintf("dropReason: expected %s, observed %s", exp.DropReason, orNone(obs.DropReason)))
	}
	if exp.HTTPStatus != 0 && obs.HTTPStatus != exp.HTTPStatus {
		observed := "none"
		if obs.HTTPStatus != 0 {
			observed = fmt.Sprint(obs.HTTPStatus)
		}
		wrong = append(wrong, fmt.Sprintf("httpStatus: expected %d, observed %s", exp.HTTPStatus, observed))
	}
	if len(exp.BackendIn) > 0 && !slices.Contains(exp.BackendIn, obs.Backend) {
		wrong = append(wrong, fmt.Sprintf("backend: expected one of [%s], observed %s",
			strings.Join(exp.BackendIn, ", "), orNone(obs.Backend)))
	}
	if exp.SourceSeen != "" {
		if msg := checkSourceSeen(exp.SourceSeen, obs.SourceSeen, addrs); msg != "" {
			wrong = append(wrong, "sourceSeen: "+msg)
		}
	}
	if len(exp.ReplyNotVia) > 0 {
		if obs.ReplyVia == nil {
			wrong = append(wrong, fmt.Sprintf("replyNotVia: expected the reply not to pass %s, the target did not report the reply's path",
				strings.Join(exp.ReplyNotVia, ", ")))
		}
		for _, n := range exp.ReplyNotVia {
			if slices.Contains(obs.ReplyVia, n) {
				wrong = append(wrong, fmt.Sprintf("replyNotVia: the reply passed node %s (reply path: %s)", n, strings.Join(obs.ReplyVia, ", ")))
			}
		}
	}
	return wrong
}

// checkSourceSeen checks sourceSeen: client, node or a literal address.
// When the scenario leaves the client's address to the target, "client"
// only requires a source that is not a node's, and "node" one that is a
// node's; docs/conformance.md says so.
func checkSourceSeen(want string, seen netip.Addr, addrs Addresses) string {
	if !seen.IsValid() {
		return fmt.Sprintf("expected %s, the target did not report the source address", describeSourceSeen(want, addrs))
	}
	seen = seen.Unmap()
	switch want {
	case "client":
		if addrs.Client.IsValid() {
			if seen != addrs.Client {
				return fmt.Sprintf("expected the client's address %s, observed %s", addrs.Client, seen)
			}
			return ""
		}
		if slices.Contains(addrs.Nodes, seen) {
			return fmt.Sprintf("expected the client's address, observed node address %s", seen)
		}
	case "node":
		if !slices.Contains(addrs.Nodes, seen) {
			return fmt.Sprintf("expected a node address %s, observed %s", listAddrs(addrs.Nodes), seen)
		}
	default:
		ip, err := netip.ParseAddr(want)
		if err != nil {
			return fmt.Sprintf("expectation %q is neither client, node nor an address", want)
		}
		if seen != ip.Unmap() {
			return fmt.Sprintf("expected %s, observed %s", ip, seen)
		}
	}
	return ""
}

func describeSourceSeen(want string, addrs Addresses) string {
	switch want {
	case "client":
		if addrs.Client.IsValid() {
			return fmt.Sprintf("the client's address %s", addrs.Client)
		}
		return "the client's address"
	case "node":
		return "a node address " + listAddrs(addrs.Nodes)
	}
	return want
}

func listAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "(none known)"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return "(" + strings.Join(s, ", ") + ")"
}

func verdictOf(v target.Verdict) scenario.Verdict {
	if v == target.Allowed {
		return scenario.Allow
	}
	return scenario.Deny
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// addressesFor resolves what the suite knows of the addresses a probe's
// sourceSeen is checked against. Pods added by steps count too.
func addressesFor(sc *scenario.Scenario, p scenario.Probe) Addresses {
	pick := func(v4, v6 netip.Addr) netip.Addr {
		if p.Family == scenario.IPv6 {
			return v6
		}
		return v4
	}
	var a Addresses
	for _, n := range sc.Cluster.Nodes {
		if ip := pick(n.IPv4, n.IPv6); ip.IsValid() {
			a.Nodes = append(a.Nodes, ip.Unmap())
		}
	}
	switch p.From.Kind {
	case scenario.PeerPod:
		pods := sc.Cluster.Pods
		for _, st := range sc.Steps {
			pods = append(pods[:len(pods):len(pods)], st.AddPods...)
		}
		for _, pod := range pods {
			if pod.Key() == p.From.Name {
				a.Client = pick(pod.IPv4, pod.IPv6)
			}
		}
	case scenario.PeerExternal:
		for _, e := range sc.Cluster.Externals {
			if e.Name == p.From.Name {
				a.Client = pick(e.IPv4, e.IPv6)
			}
		}
	case scenario.PeerNode:
		for _, n := range sc.Cluster.Nodes {
			if n.Name == p.From.Name {
				a.Client = pick(n.IPv4, n.IPv6)
			}
		}
	case scenario.PeerIP:
		a.Client = p.From.Addr
	}
	if a.Client.IsValid() {
		a.Client = a.Client.Unmap()
	}
	return a
}

// describeExpectation says in words what a probe must observe.
func describeExpectation(exp scenario.Expectation, dropReasons bool, addrs Addresses) string {
	parts := []string{string(exp.Verdict)}
	if exp.DropReason != "" {
		s := "dropReason " + exp.DropReason
		if !dropReasons {
			s += " (not checked: drop-reasons not tested)"
		}
		parts = append(parts, s)
	}
	if exp.HTTPStatus != 0 {
		parts = append(parts, fmt.Sprintf("httpStatus %d", exp.HTTPStatus))
	}
	if len(exp.BackendIn) > 0 {
		parts = append(parts, "backend in ["+strings.Join(exp.BackendIn, ", ")+"]")
	}
	if exp.SourceSeen != "" {
		parts = append(parts, "source seen "+describeSourceSeen(exp.SourceSeen, addrs))
	}
	if exp.SameBackend {
		parts = append(parts, "one backend for every repetition")
	}
	if exp.DistinctBackends > 0 {
		parts = append(parts, fmt.Sprintf("at least %d backends", exp.DistinctBackends))
	}
	if exp.SameBackendAs != "" {
		parts = append(parts, fmt.Sprintf("the backend of probe %q", exp.SameBackendAs))
	}
	if len(exp.ReplyNotVia) > 0 {
		parts = append(parts, "reply not via "+strings.Join(exp.ReplyNotVia, ", "))
	}
	return strings.Join(parts, ", ")
}

// describeObservation says in words what a probe observed.
func describeObservation(obs target.Observation) string {
	v := string(obs.Verdict)
	if v == "" {
		v = "no verdict"
	}
	parts := []string{v}
	if obs.DropReason != "" {
		parts = append(parts, "dropReason "+obs.DropReason)
	}
	if obs.HTTPStatus != 0 {
		parts = append(parts, fmt.Sprintf("httpStatus %d", obs.HTTPStatus))
	}
	if obs.Backend != "" {
		parts = append(parts, "backend "+obs.Backend)
	}
	if obs.SourceSeen.IsValid() {
		parts = append(parts, "source seen "+obs.SourceSeen.String())
	}
	if obs.ReplyVia != nil {
		parts = append(parts, "reply via ["+strings.Join(obs.ReplyVia, ", ")+"]")
	}
	return strings.Join(parts, ", ")
}
