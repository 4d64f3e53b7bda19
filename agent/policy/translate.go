package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	ciliumapi "github.com/cilium/cilium/pkg/policy/api"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ciliaproject/cilia/agent/labels"
	"github.com/ciliaproject/cilia/agent/policy/load"
)

// translator turns one loaded policy into rules.
type translator struct {
	p      *load.Policy
	nextID func() uint32
	rules  []*Rule
}

// Translate turns a loaded policy into rules; nextID numbers each allow
// and deny term (the rule ID the datapath reports). Parts cilia does not
// enforce yet (L7 rules, FQDNs, services, groups, node selectors; the load
// package notes each) are left out: an L7 rule allows its ports at L4.
func Translate(p *load.Policy, nextID func() uint32) ([]*Rule, error) {
	t := &translator{p: p, nextID: nextID}
	var err error
	switch p.Kind {
	case load.KindCNP, load.KindCCNP:
		for i := range p.Rules {
			path := "spec"
			if i < len(p.RulePaths) {
				path = p.RulePaths[i]
			}
			if err = t.ciliumRule(p.Rules[i], path); err != nil {
				break
			}
		}
	case load.KindKNP:
		err = t.networkPolicy(p.KNP)
	default:
		err = fmt.Errorf("translate policy %s: unknown kind %q", p.Ref(), p.Kind)
	}
	return t.rules, err
}

func (t *translator) origin(path string) *Origin {
	pos := t.p.Position(path)
	return &Origin{Policy: t.p.Ref(), Path: path, File: t.p.File, Line: pos.Line, RuleID: t.nextID()}
}

// errorf formats an error located at path.
func (t *translator) errorf(path, format string, args ...any) error {
	pos := t.p.Position(path)
	return fmt.Errorf("%s:%d: %s: %s", t.p.File, pos.Line, path, fmt.Sprintf(format, args...))
}

// ciliumRule translates one rule of a CNP or CCNP.
func (t *translator) ciliumRule(r *ciliumapi.Rule, path string) error {
	if r.EndpointSelector.LabelSelector == nil {
		return nil // a host policy (nodeSelector): not enforced yet
	}
	subject, err := t.subjectSelector(r.EndpointSelector.LabelSelector, path+".endpointSelector")
	if err != nil {
		return err
	}
	rule := &Rule{Origin: t.origin(path), Subject: subject}
	rule.Ingress.Present = len(r.Ingress) > 0 || len(r.IngressDeny) > 0
	rule.Ingress.DefaultDeny = r.EnableDefaultDeny.Ingress == nil || *r.EnableDefaultDeny.Ingress
	rule.Egress.Present = len(r.Egress) > 0 || len(r.EgressDeny) > 0
	rule.Egress.DefaultDeny = r.EnableDefaultDeny.Egress == nil || *r.EnableDefaultDeny.Egress
	for i, in := range r.Ingress {
		p := fmt.Sprintf("%s.ingress[%d]", path, i)
		pr, err := t.ciliumTerm(p, false, ingressPeers(in.IngressCommonRule), portRules(in.ToPorts), in.ICMPs)
		if err != nil {
			return err
		}
		rule.Ingress.Rules = append(rule.Ingress.Rules, pr)
	}
	for i, in := range r.IngressDeny {
		p := fmt.Sprintf("%s.ingressDeny[%d]", path, i)
		pr, err := t.ciliumTerm(p, true, ingressPeers(in.IngressCommonRule), portDenyRules(in.ToPorts), in.ICMPs)
		if err != nil {
			return err
		}
		rule.Ingress.Rules = append(rule.Ingress.Rules, pr)
	}
	for i, eg := range r.Egress {
		p := fmt.Sprintf("%s.egress[%d]", path, i)
		pf := egressPeers(eg.EgressCommonRule)
		pf.other = pf.other || len(eg.ToFQDNs) > 0
		pr, err := t.ciliumTerm(p, false, pf, portRules(eg.ToPorts), eg.ICMPs)
		if err != nil {
			return err
		}
		rule.Egress.Rules = append(rule.Egress.Rules, pr)
	}
	for i, eg := range r.EgressDeny {
		p := fmt.Sprintf("%s.egressDeny[%d]", path, i)
		pr, err := t.ciliumTerm(p, true, egressPeers(eg.EgressCommonRule), portDenyRules(eg.ToPorts), eg.ICMPs)
		if err != nil {
			return err
		}
		rule.Egress.Rules = append(rule.Egress.Rules, pr)
	}
	t.rules = append(t.rules, rule)
	return nil
}

// peerFields are the L3 fields of an ingress or egress term, named by
// direction ("fromEndpoints" or "toEndpoints").
type peerFields struct {
	prefix    string // "from" or "to"
	endpoints []ciliumapi.EndpointSelector
	cidrs     ciliumapi.CIDRSlice
	cidrSets  ciliumapi.CIDRRuleSlice
	entities  ciliumapi.EntitySlice
	// other is true when an L3 field cilia does not enforce yet is set
	// (requires, groups, nodes, FQDNs, services): the term then selects
	// nothing instead of everything.
	other bool
	// emptyList is true when an L3 field is written as an empty list
	// (fromEndpoints: []): Cilium then selects no peer at all ("explicitly
	// check for empty non-nil slices", pkg/policy/utils/parserules.go).
	emptyList bool
}

// explicitlyEmpty reports whether a list field was written as [] (an
// empty, non-nil slice), as opposed to left out.
func explicitlyEmpty[T any](list []T) bool { return list != nil && len(list) == 0 }

func ingressPeers(c ciliumapi.IngressCommonRule) peerFields {
	return peerFields{prefix: "from", endpoints: c.FromEndpoints, cidrs: c.FromCIDR, cidrSets: c.FromCIDRSet,
		entities: c.FromEntities, other: len(c.FromGroups) > 0 || len(c.FromNodes) > 0,
		emptyList: explicitlyEmpty(c.FromEndpoints) || explicitlyEmpty(c.FromNodes) || explicitlyEmpty(c.FromEntities) ||
			explicitlyEmpty(c.FromCIDR) || explicitlyEmpty(c.FromCIDRSet)}
}

func egressPeers(c ciliumapi.EgressCommonRule) peerFields {
	return peerFields{prefix: "to", endpoints: c.ToEndpoints, cidrs: c.ToCIDR, cidrSets: c.ToCIDRSet,
		entities: c.ToEntities, other: len(c.ToGroups) > 0 || len(c.ToNodes) > 0 || len(c.ToServices) > 0,
		emptyList: explicitlyEmpty(c.ToEndpoints) || explicitlyEmpty(c.ToNodes) || explicitlyEmpty(c.ToEntities) ||
			explicitlyEmpty(c.ToCIDR) || explicitlyEmpty(c.ToCIDRSet)}
}

// portRules flattens the ports of allow port rules (their L7 parts are
// not enforced yet: the ports are allowed at L4).
func portRules(prs ciliumapi.PortRules) [][]ciliumapi.PortProtocol {
	out := make([][]ciliumapi.PortProtocol, len(prs))
	for i, pr := range prs {
		out[i] = pr.Ports
	}
	return out
}

func portDenyRules(prs ciliumapi.PortDenyRules) [][]ciliumapi.PortProtocol {
	out := make([][]ciliumapi.PortProtocol, len(prs))
	for i, pr := range prs {
		out[i] = pr.Ports
	}
	return out
}

// ciliumTerm translates one ingress/egress (deny) term: L3 peers times
// L4 ports. No L3 field means any peer; no toPorts and no icmps mean any
// protocol and port.
func (t *translator) ciliumTerm(path string, deny bool, pf peerFields, toPorts [][]ciliumapi.PortProtocol, icmps ciliumapi.ICMPRules) (*PeerRule, error) {
	pr := &PeerRule{Origin: t.origin(path), Deny: deny}
	hasL3 := false
	for i, es := range pf.endpoints {
		hasL3 = true
		sel, err := t.peerSelector(es.LabelSelector, fmt.Sprintf("%s.%sEndpoints[%d]", path, pf.prefix, i))
		if err != nil {
			return nil, err
		}
		pr.Peers = append(pr.Peers, sel)
	}
	for i, c := range pf.cidrs {
		hasL3 = true
		prefix, err := parseCIDR(string(c))
		if err != nil {
			return nil, t.errorf(fmt.Sprintf("%s.%sCIDR[%d]", path, pf.prefix, i), "%v", err)
		}
		pr.Peers = append(pr.Peers, NewCIDRSelector(prefix, nil))
	}
	for i, c := range pf.cidrSets {
		hasL3 = true
		p := fmt.Sprintf("%s.%sCIDRSet[%d]", path, pf.prefix, i)
		if c.Cidr == "" {
			continue // a CIDR group reference: not enforced yet
		}
		prefix, err := parseCIDR(string(c.Cidr))
		if err != nil {
			return nil, t.errorf(p+".cidr", "%v", err)
		}
		var except []netip.Prefix
		for j, e := range c.ExceptCIDRs {
			ep, err := parseCIDR(string(e))
			if err != nil {
				return nil, t.errorf(fmt.Sprintf("%s.except[%d]", p, j), "%v", err)
			}
			except = append(except, ep)
		}
		pr.Peers = append(pr.Peers, NewCIDRSelector(prefix, except))
	}
	for _, e := range pf.entities {
		hasL3 = true
		pr.Peers = append(pr.Peers, EntitySelectors(string(e))...)
	}
	if pf.other {
		hasL3 = true
	}
	switch {
	case pf.emptyList:
		pr.Peers = []*Selector{}
	case !hasL3 && len(toPorts) == 0 && len(icmps) == 0:
		// The empty rule {}: it selects the endpoint (enforcing the
		// direction) but allows nothing (Cilium's documented default
		// deny: "ingress: [{}]").
		pr.Peers = []*Selector{}
	case !hasL3:
		pr.Peers = nil // L4-only: any peer
	case pr.Peers == nil:
		pr.Peers = []*Selector{} // selects nothing we enforce
	}
	for i, ports := range toPorts {
		for j, pp := range ports {
			pps, err := ciliumPorts(pp)
			if err != nil {
				return nil, t.errorf(fmt.Sprintf("%s.toPorts[%d].ports[%d]", path, i, j), "%v", err)
			}
			pr.Ports = append(pr.Ports, pps...)
		}
	}
	for i, ir := range icmps {
		for j, f := range ir.Fields {
			pp := f.PortProtocol()
			p := fmt.Sprintf("%s.icmps[%d].fields[%d]", path, i, j)
			typ, err := strconv.ParseUint(pp.Port, 10, 8)
			if err != nil {
				return nil, t.errorf(p+".type", "ICMP type %q is not a number or a known name", pp.Port)
			}
			proto := protoICMP
			if pp.Protocol == ciliumapi.ProtoICMPv6 {
				proto = protoICMPv6
			}
			pr.Ports = append(pr.Ports, PortProto{Proto: proto, Lo: uint16(typ), Hi: uint16(typ)})
		}
	}
	if len(toPorts) > 0 || len(icmps) > 0 {
		if pr.Ports == nil {
			pr.Ports = []PortProto{} // toPorts with no ports: nothing
		}
	}
	return pr, nil
}

// ciliumPorts translates a Cilium port and protocol. ANY (or no protocol)
// stands for TCP, UDP and SCTP; port "" or "0" for any port.
func ciliumPorts(pp ciliumapi.PortProtocol) ([]PortProto, error) {
	protos := []uint8{protoTCP, protoUDP, protoSCTP}
	switch strings.ToUpper(string(pp.Protocol)) {
	case "", "ANY":
	default:
		n, ok := ProtoNumber(string(pp.Protocol))
		if !ok {
			return nil, fmt.Errorf("unknown protocol %q", pp.Protocol)
		}
		protos = []uint8{n}
	}
	lo, hi, name, err := parsePort(pp.Port, pp.EndPort)
	if err != nil {
		return nil, err
	}
	if name != "" && len(protos) > 1 {
		return []PortProto{{Name: name}}, nil // the pod's port decides the protocol
	}
	out := make([]PortProto, len(protos))
	for i, p := range protos {
		out[i] = PortProto{Proto: p, Lo: lo, Hi: hi, Name: name}
	}
	return out, nil
}

// parsePort reads a port ("" / "0" any, a number, or a name) and an
// optional end port.
func parsePort(port string, endPort int32) (lo, hi uint16, name string, err error) {
	if port == "" || port == "0" {
		return 0, 0, "", nil
	}
	n, convErr := strconv.ParseUint(port, 10, 16)
	if convErr != nil {
		if endPort != 0 {
			return 0, 0, "", fmt.Errorf("named port %q cannot have an endPort", port)
		}
		return 0, 0, port, nil
	}
	lo, hi = uint16(n), uint16(n)
	if endPort != 0 {
		if endPort < int32(n) || endPort > 65535 {
			return 0, 0, "", fmt.Errorf("endPort %d is not in %d-65535", endPort, n)
		}
		hi = uint16(endPort)
	}
	return lo, hi, "", nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
}

// EntitySelectors returns the selectors an entity stands for (Cilium's
// entity definitions: api/v1 entity.go). "all" is the wildcard; "none"
// selects nothing; "cluster" is every reserved in-cluster identity plus
// every pod of the cluster.
func EntitySelectors(entity string) []*Selector {
	reserved := func(name string) *Selector {
		return NewLabelSelector(Requirement{Source: labels.SourceReserved, Key: name, Op: OpExists})
	}
	switch entity {
	case "all":
		return []*Selector{WildcardSelector()}
	case "none":
		return []*Selector{}
	case "world", "world-ipv4", "world-ipv6":
		return []*Selector{reserved("world")}
	case "cluster":
		return []*Selector{reserved("host"), reserved("remote-node"), reserved("health"), reserved("init"),
			reserved("unmanaged"), reserved("ingress"), reserved("kube-apiserver"),
			NewLabelSelector(Requirement{Source: labels.SourceK8s, Key: labels.PolicyCluster, Op: OpIn,
				Values: []string{labels.ClusterName}})}
	default:
		return []*Selector{reserved(entity)}
	}
}

// requirementsFromSlim converts a Cilium (slim) label selector, keys
// written without a source selecting any source.
func requirementsFromSlim(ls *slimv1.LabelSelector, defaultSource string) []Requirement {
	var reqs []Requirement
	if ls == nil {
		return nil
	}
	for k, v := range ls.MatchLabels {
		src, key := splitSelectorKey(k, defaultSource)
		reqs = append(reqs, Requirement{Source: src, Key: key, Op: OpIn, Values: []string{v}})
	}
	for _, e := range ls.MatchExpressions {
		src, key := splitSelectorKey(e.Key, defaultSource)
		reqs = append(reqs, Requirement{Source: src, Key: key, Op: Operator(e.Operator), Values: append([]string(nil), e.Values...)})
	}
	return reqs
}

// requirementsFromK8s converts a Kubernetes label selector; keys get
// prefix (with source k8s).
func requirementsFromK8s(ls *metav1.LabelSelector, prefix string) []Requirement {
	var reqs []Requirement
	if ls == nil {
		return nil
	}
	for k, v := range ls.MatchLabels {
		reqs = append(reqs, Requirement{Source: labels.SourceK8s, Key: prefix + k, Op: OpIn, Values: []string{v}})
	}
	for _, e := range ls.MatchExpressions {
		reqs = append(reqs, Requirement{Source: labels.SourceK8s, Key: prefix + e.Key, Op: Operator(e.Operator),
			Values: append([]string(nil), e.Values...)})
	}
	return reqs
}

func splitSelectorKey(k, defaultSource string) (string, string) {
	src, key := labels.SplitKey(k)
	if !strings.Contains(k, ":") && !strings.HasPrefix(k, "$") {
		src = defaultSource
	}
	return src, key
}

func validOperator(op Operator) bool {
	switch op {
	case OpIn, OpNotIn, OpExists, OpDoesNotExist:
		return true
	}
	return false
}

func (t *translator) checkOperators(reqs []Requirement, path string) error {
	for _, r := range reqs {
		if !validOperator(r.Op) {
			return t.errorf(path, "unknown operator %q", r.Op)
		}
	}
	return nil
}

// isNamespaceKey reports whether r constrains the pod namespace label.
func isNamespaceKey(r Requirement) bool {
	return r.Key == labels.PodNamespace && (r.Source == labels.SourceK8s || r.Source == labels.SourceAny)
}

// subjectSelector builds the selector of the endpoints a Cilium rule
// applies to: in a CNP always limited to the policy's namespace (a
// namespace match in the selector is replaced, as Cilium does).
func (t *translator) subjectSelector(ls *slimv1.LabelSelector, path string) (*Selector, error) {
	reqs := requirementsFromSlim(ls, labels.SourceAny)
	if err := t.checkOperators(reqs, path); err != nil {
		return nil, err
	}
	if t.p.Namespace != "" {
		kept := reqs[:0]
		for _, r := range reqs {
			if !(isNamespaceKey(r) && r.Source == labels.SourceK8s && r.Op == OpIn) {
				kept = append(kept, r)
			}
		}
		reqs = append(kept, Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{t.p.Namespace}})
	}
	return NewLabelSelector(reqs...), nil
}

// peerSelector builds a fromEndpoints/toEndpoints selector with Cilium's
// namespace scoping: a selector naming reserved labels is left alone; one
// that names no namespace is limited to the policy's namespace (a CNP) or
// to pods of any namespace (a CCNP), unless it selects on namespace
// labels (k8s:io.cilium.k8s.namespace.labels.*), which spans namespaces.
func (t *translator) peerSelector(ls *slimv1.LabelSelector, path string) (*Selector, error) {
	reqs := requirementsFromSlim(ls, labels.SourceAny)
	if err := t.checkOperators(reqs, path); err != nil {
		return nil, err
	}
	hasReserved, hasNamespace, hasNamespaceLabels := false, false, false
	for _, r := range reqs {
		switch {
		case r.Source == labels.SourceReserved:
			hasReserved = true
		case isNamespaceKey(r):
			hasNamespace = true
		case strings.HasPrefix(r.Key, labels.NamespaceLabelsPrefix) && (r.Source == labels.SourceK8s || r.Source == labels.SourceAny):
			hasNamespaceLabels = true
		}
	}
	if !hasReserved {
		reqs = withClusterFilter(reqs)
	}
	switch {
	case hasReserved || hasNamespace:
	case t.p.Namespace == "":
		reqs = append(reqs, Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpExists})
	case !hasNamespaceLabels:
		reqs = append(reqs, Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{t.p.Namespace}})
	}
	return NewLabelSelector(reqs...), nil
}

// withClusterFilter limits a peer selector to pods of this cluster (the
// label k8s:io.cilium.k8s.policy.cluster), unless it names the cluster
// itself, as Cilium's addClusterFilterByDefault does. Without it, a
// selector made only of NotIn or DoesNotExist terms would also select
// reserved identities such as world, which carry no pod labels.
func withClusterFilter(reqs []Requirement) []Requirement {
	for _, r := range reqs {
		if r.Key == labels.PolicyCluster && (r.Source == labels.SourceK8s || r.Source == labels.SourceAny) {
			return reqs
		}
	}
	return append(reqs, Requirement{Source: labels.SourceK8s, Key: labels.PolicyCluster, Op: OpIn, Values: []string{labels.ClusterName}})
}

// networkPolicy translates a Kubernetes NetworkPolicy as Cilium does
// (pkg/k8s/network_policy.go): podSelector limited to the namespace,
// policyTypes deciding isolation, peers as pod/namespace selectors or
// ipBlocks, ports with TCP as the default protocol.
func (t *translator) networkPolicy(np *networkingv1.NetworkPolicy) error {
	if np == nil {
		return fmt.Errorf("translate policy %s: no NetworkPolicy object", t.p.Ref())
	}
	reqs := requirementsFromK8s(&np.Spec.PodSelector, "")
	if err := t.checkOperators(reqs, "spec.podSelector"); err != nil {
		return err
	}
	reqs = append(reqs, Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{t.p.Namespace}})
	rule := &Rule{Origin: t.origin("spec"), Subject: NewLabelSelector(reqs...)}
	ingress, egress := false, len(np.Spec.Egress) > 0
	if len(np.Spec.PolicyTypes) > 0 {
		egress = false
	}
	if len(np.Spec.PolicyTypes) == 0 {
		ingress = true
	}
	for _, pt := range np.Spec.PolicyTypes {
		switch pt {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	rule.Ingress = Section{Present: ingress, DefaultDeny: true}
	rule.Egress = Section{Present: egress, DefaultDeny: true}
	if ingress {
		for i, in := range np.Spec.Ingress {
			pr, err := t.knpTerm(fmt.Sprintf("spec.ingress[%d]", i), "from", in.From, in.Ports)
			if err != nil {
				return err
			}
			rule.Ingress.Rules = append(rule.Ingress.Rules, pr)
		}
	}
	if egress {
		for i, eg := range np.Spec.Egress {
			pr, err := t.knpTerm(fmt.Sprintf("spec.egress[%d]", i), "to", eg.To, eg.Ports)
			if err != nil {
				return err
			}
			rule.Egress.Rules = append(rule.Egress.Rules, pr)
		}
	}
	t.rules = append(t.rules, rule)
	return nil
}

// knpTerm translates one NetworkPolicy ingress/egress rule: an empty peer
// list means every source (or destination), an empty port list every
// port.
func (t *translator) knpTerm(path, field string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (*PeerRule, error) {
	pr := &PeerRule{Origin: t.origin(path)}
	if len(peers) > 0 {
		pr.Peers = []*Selector{}
	}
	for i, peer := range peers {
		p := fmt.Sprintf("%s.%s[%d]", path, field, i)
		switch {
		case peer.IPBlock != nil:
			prefix, err := parseCIDR(peer.IPBlock.CIDR)
			if err != nil {
				return nil, t.errorf(p+".ipBlock.cidr", "%v", err)
			}
			var except []netip.Prefix
			for j, e := range peer.IPBlock.Except {
				ep, err := parseCIDR(e)
				if err != nil {
					return nil, t.errorf(fmt.Sprintf("%s.ipBlock.except[%d]", p, j), "%v", err)
				}
				except = append(except, ep)
			}
			pr.Peers = append(pr.Peers, NewCIDRSelector(prefix, except))
		case peer.NamespaceSelector != nil:
			reqs := requirementsFromK8s(peer.NamespaceSelector, labels.NamespaceLabelsPrefix)
			if len(reqs) == 0 {
				reqs = []Requirement{{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpExists}}
			}
			reqs = withClusterFilter(append(reqs, requirementsFromK8s(peer.PodSelector, "")...))
			if err := t.checkOperators(reqs, p); err != nil {
				return nil, err
			}
			pr.Peers = append(pr.Peers, NewLabelSelector(reqs...))
		case peer.PodSelector != nil:
			reqs := requirementsFromK8s(peer.PodSelector, "")
			if err := t.checkOperators(reqs, p+".podSelector"); err != nil {
				return nil, err
			}
			reqs = append(reqs, Requirement{Source: labels.SourceK8s, Key: labels.PodNamespace, Op: OpIn, Values: []string{t.p.Namespace}})
			pr.Peers = append(pr.Peers, NewLabelSelector(withClusterFilter(reqs)...))
		}
	}
	for i, port := range ports {
		p := fmt.Sprintf("%s.ports[%d]", path, i)
		proto := protoTCP
		if port.Protocol != nil {
			n, ok := ProtoNumber(string(*port.Protocol))
			if !ok {
				return nil, t.errorf(p+".protocol", "unknown protocol %q", *port.Protocol)
			}
			proto = n
		}
		var lo, hi uint16
		var name string
		if port.Port != nil {
			var end int32
			if port.EndPort != nil {
				end = *port.EndPort
			}
			var err error
			lo, hi, name, err = parsePort(intOrStringPort(*port.Port), end)
			if err != nil {
				return nil, t.errorf(p, "%v", err)
			}
		}
		pr.Ports = append(pr.Ports, PortProto{Proto: proto, Lo: lo, Hi: hi, Name: name})
	}
	return pr, nil
}

func intOrStringPort(v intstr.IntOrString) string {
	if v.Type == intstr.Int {
		return strconv.Itoa(int(v.IntVal))
	}
	return v.StrVal
}
