package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cilium/cilium/pkg/policy/api"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Drop reasons the model reports (docs/drop-reasons.md, Cilium's names).
const (
	// DropPolicyDeny: an explicit deny rule matched (Cilium 181).
	DropPolicyDeny = "POLICY_DENY"
	// DropPolicyDenied: the direction is enforced and nothing allowed the
	// connection (Cilium 133).
	DropPolicyDenied = "POLICY_DENIED"
)

// Answer is the model's answer to a probe.
type Answer struct {
	// Verdict is allow when the connection completes, replies included.
	Verdict scenario.Verdict
	// DropReason is DropPolicyDeny, DropPolicyDenied or DropNoService for
	// a deny.
	DropReason string
	// SourceSeen is the address the server sees: the client's own (no NAT
	// on pod, node or external traffic without services); through a
	// service, the entry node's when the connection is source NATed, the
	// frontend address for a pod reaching itself (hairpin).
	SourceSeen netip.Addr
	// Backend is the pod that serves an allowed connection, "" when the
	// destination is not a pod (or for a deny). Through a service it is
	// the chosen backend (Why names it for a deny too).
	Backend string
	// ReplyVia are the names of the nodes whose datapath handles the reply
	// packets of an allowed connection, sorted (not nil): the nodes of
	// the pod and node ends; through a service, the backend's
	// node, the client pod's node, and the entry node when source NATed
	// (see probeService). Empty for a deny.
	ReplyVia []string
	// Why explains the verdict in words: the direction that decided and
	// the policies that did.
	Why string
}

// Model answers probes for one state of a scenario.
type Model struct {
	state    *scenario.State
	policies []*policy
}

// New decodes the policies of a state. A policy that does not decode is an
// error naming its file and line.
func New(st *scenario.State) (*Model, error) {
	m := &Model{state: st}
	for _, obj := range st.Policies {
		p, err := decodePolicy(obj)
		if err != nil {
			return nil, err
		}
		m.policies = append(m.policies, p)
	}
	return m, nil
}

// direction is ingress (into the subject pod) or egress (out of it).
type direction string

const (
	ingress direction = "ingress"
	egress  direction = "egress"
)

// policy is one decoded policy object.
type policy struct {
	obj scenario.Object
	// rules of a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy
	// (spec and specs together).
	rules []api.Rule
	// knp is a Kubernetes NetworkPolicy.
	knp *networkingv1.NetworkPolicy
}

func (p *policy) clusterwide() bool { return p.obj.Kind == "CiliumClusterwideNetworkPolicy" }

func (p *policy) String() string {
	if p.obj.Namespace == "" {
		return p.obj.Kind + " " + p.obj.Name
	}
	return p.obj.Kind + " " + p.obj.Namespace + "/" + p.obj.Name
}

// decodePolicy reads a policy object's YAML through JSON into the
// upstream types: Cilium's api.Rule for the Cilium kinds (spec and specs),
// Kubernetes' networking/v1 NetworkPolicy.
func decodePolicy(obj scenario.Object) (*policy, error) {
	fail := func(err error) error {
		return fmt.Errorf("%s:%d: %s %s: %w", obj.File, obj.Line, obj.Kind, objName(obj), err)
	}
	if obj.Node == nil {
		return nil, fail(fmt.Errorf("no YAML node"))
	}
	var v any
	if err := obj.Node.Decode(&v); err != nil {
		return nil, fail(err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fail(fmt.Errorf("convert to JSON: %w", err))
	}
	p := &policy{obj: obj}
	switch obj.Kind {
	case "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy":
		var doc struct {
			Spec  *api.Rule `json:"spec"`
			Specs api.Rules `json:"specs"`
		}
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
			return nil, fail(err)
		}
		if doc.Spec != nil {
			p.rules = append(p.rules, *doc.Spec)
		}
		for _, r := range doc.Specs {
			if r != nil {
				p.rules = append(p.rules, *r)
			}
		}
	case "NetworkPolicy":
		var np networkingv1.NetworkPolicy
		if err := json.Unmarshal(data, &np); err != nil {
			return nil, fail(err)
		}
		if np.Namespace == "" {
			np.Namespace = obj.Namespace
		}
		p.knp = &np
	default:
		return nil, fail(fmt.Errorf("unknown policy kind"))
	}
	return p, nil
}

func objName(obj scenario.Object) string {
	if obj.Namespace == "" {
		return obj.Name
	}
	return obj.Namespace + "/" + obj.Name
}

// opinion is what one policy (or one rule of it) says about a connection
// in one direction for the pod it may select.
type opinion struct {
	// selects: the policy selects the pod and governs this direction.
	selects bool
	// defaultDeny: and it turns default deny on.
	defaultDeny bool
	// allows, denies: one of its allow (deny) terms covers the connection.
	allows, denies bool
}

// directionVerdict gathers the opinions of every policy for one pod and
// one direction.
type directionVerdict struct {
	dir                             direction
	enforced, defaultDeny           bool
	allowedBy, deniedBy, enforcedBy []string
}

func (v *directionVerdict) add(by string, op opinion) {
	if !op.selects {
		return
	}
	v.enforced = true
	v.enforcedBy = appendOnce(v.enforcedBy, by)
	v.defaultDeny = v.defaultDeny || op.defaultDeny
	if op.allows {
		v.allowedBy = appendOnce(v.allowedBy, by)
	}
	if op.denies {
		v.deniedBy = appendOnce(v.deniedBy, by)
	}
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// decide turns the gathered opinions into allowed or a drop reason, with
// an explanation:
//
//  1. a deny term that matches wins over everything (POLICY_DENY);
//  2. a direction no policy governs allows everything;
//  3. ingress from the pod's own node is always allowed (allow-localhost);
//  4. a direction whose policies all turned default deny off allows what
//     is not denied;
//  5. otherwise an allow term must match (else POLICY_DENIED).
//
// https://docs.cilium.io/en/stable/security/policy/language/#deny-policies
// https://docs.cilium.io/en/stable/security/policy/intro/#policy-enforcement-modes
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#the-two-sorts-of-pod-isolation
func (v *directionVerdict) decide(fromOwnNode bool) (bool, string, string) {
	switch {
	case len(v.deniedBy) > 0:
		return false, DropPolicyDeny, fmt.Sprintf("%s denied by %s", v.dir, strings.Join(v.deniedBy, ", "))
	case !v.enforced:
		return true, "", fmt.Sprintf("%s not enforced", v.dir)
	case v.dir == ingress && fromOwnNode:
		return true, "", "ingress from the pod's own node (allow-localhost)"
	case !v.defaultDeny:
		return true, "", fmt.Sprintf("%s enforced without default deny by %s", v.dir, strings.Join(v.enforcedBy, ", "))
	case len(v.allowedBy) > 0:
		return true, "", fmt.Sprintf("%s allowed by %s", v.dir, strings.Join(v.allowedBy, ", "))
	}
	return false, DropPolicyDenied, fmt.Sprintf("%s: nothing allows it (enforced by %s)", v.dir, strings.Join(v.enforcedBy, ", "))
}

// allowLocalhost reports whether the peer is the subject pod's own node:
// such ingress is always allowed. Other nodes are subject to policy like
// any peer.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#networkpolicy-resource
// ("traffic to and from the node where a Pod is running is always allowed")
// https://docs.cilium.io/en/stable/security/policy/language/#access-to-from-local-host
// (Cilium's allow-localhost default)
func allowLocalhost(subject, peer endpoint) bool {
	return peer.kind == kindNode && peer.node == subject.pod.Node
}

// verdictFor asks every policy about the connection in one direction,
// subject being the pod whose policy is consulted and peer the other end.
func (m *Model) verdictFor(dir direction, subject, peer endpoint, c connection) *directionVerdict {
	v := &directionVerdict{dir: dir}
	for _, p := range m.policies {
		if p.knp != nil {
			v.add(p.String(), knpOpinion(p.knp, dir, subject, peer, c))
			continue
		}
		for i := range p.rules {
			v.add(p.String(), ciliumOpinion(p, &p.rules[i], dir, subject, peer, c))
		}
	}
	return v
}

// Probe answers a probe: the client's egress policy and the server's
// ingress policy must both allow the connection; the egress side is
// checked first, as the packet leaves the client before it reaches the
// server. Replies of an allowed connection are allowed.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#the-two-sorts-of-pod-isolation
// ("for a connection from a source pod to a destination pod to be allowed,
// both the egress policy on the source pod and the ingress policy on the
// destination pod need to allow the connection"; "when a connection is
// allowed, reply traffic for that connection is implicitly allowed")
//
// A probe to a service frontend (service:ns/name, a node port on a node, an
// external IP or load-balancer IP) is answered by probeService, for the
// client source port p.SourcePort: the model target gives every probe a
// fresh one unless the probe fixes it.
func (m *Model) Probe(p scenario.Probe) (Answer, error) {
	if p.HTTP != nil || p.Kafka != nil {
		return Answer{}, fmt.Errorf("probe %s: L7 requests: %w", p.ID, ErrNotModelled)
	}
	f, isFrontend, err := findFrontend(m.state, p)
	if err != nil {
		return Answer{}, fmt.Errorf("probe %s: to: %w", p.ID, err)
	}
	if isFrontend {
		return m.probeService(p, f)
	}
	from, err := resolveEndpoint(m.state, p.From, p.Family)
	if err != nil {
		return Answer{}, fmt.Errorf("probe %s: from: %w", p.ID, err)
	}
	to, err := resolveEndpoint(m.state, p.To, p.Family)
	if err != nil {
		return Answer{}, fmt.Errorf("probe %s: to: %w", p.ID, err)
	}
	c := connection{from: from, to: to, protocol: p.Protocol, port: p.Port, family: p.Family}
	if c.protocol == "" {
		c.protocol = scenario.TCP
	}
	var why []string
	if from.kind == kindPod {
		ok, reason, w := m.verdictFor(egress, from, to, c).decide(false)
		why = append(why, from.name+" "+w)
		if !ok {
			return Answer{Verdict: scenario.Deny, DropReason: reason, Why: strings.Join(why, "; ")}, nil
		}
	}
	if to.kind == kindPod {
		ok, reason, w := m.verdictFor(ingress, to, from, c).decide(allowLocalhost(to, from))
		why = append(why, to.name+" "+w)
		if !ok {
			return Answer{Verdict: scenario.Deny, DropReason: reason, Why: strings.Join(why, "; ")}, nil
		}
	}
	a := Answer{Verdict: scenario.Allow, SourceSeen: from.addr, Why: strings.Join(why, "; ")}
	if to.kind == kindPod {
		a.Backend = to.pod.Key()
	}
	a.ReplyVia = sortedNodes([]string{from.nodeName(), to.nodeName()})
	return a, nil
}
