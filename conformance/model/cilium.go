package model

import (
	"github.com/cilium/cilium/pkg/policy/api"
)

// This file is CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy:
// https://docs.cilium.io/en/stable/security/policy/language/ and
// https://docs.cilium.io/en/stable/network/kubernetes/policy/#ciliumnetworkpolicy

// ciliumSubjectSelects reports whether a Cilium rule applies to the pod:
// its endpointSelector matches the pod's labels and, for a namespaced
// CiliumNetworkPolicy, the pod is in the policy's namespace (Cilium
// replaces any k8s:io.kubernetes.pod.namespace written in the selector by
// the policy's own; a CiliumClusterwideNetworkPolicy selects in every
// namespace). A rule with a nodeSelector is a host policy and selects no
// pod.
// https://docs.cilium.io/en/stable/network/kubernetes/policy/#ciliumnetworkpolicy
// ("namespaced ... the endpointSelector only selects pods of its namespace")
// https://docs.cilium.io/en/stable/network/kubernetes/policy/#ciliumclusterwidenetworkpolicy
func ciliumSubjectSelects(pol *policy, rule *api.Rule, pod endpoint) bool {
	if rule.NodeSelector.LabelSelector != nil || rule.EndpointSelector.LabelSelector == nil {
		return false
	}
	sel := fromCiliumSelector(rule.EndpointSelector.LabelSelector)
	if !pol.clusterwide() {
		var kept selector
		for _, r := range sel {
			if !(r.source == sourceK8s && r.key == keyPodNamespace && r.op == "In" && len(r.values) == 1) {
				kept = append(kept, r)
			}
		}
		sel = append(kept, requirement{sourceK8s, keyPodNamespace, "In", []string{pol.obj.Namespace}})
	}
	return labelSelectorMatches(sel, pod.ciliumLabels(pod.pod.Node))
}

// ciliumSectionPresent reports whether a rule has a say in a direction:
// it has at least one ingress or ingressDeny term (egress, egressDeny).
// Such a rule puts the pods it selects in default deny for that direction
// unless enableDefaultDeny turns it off (ciliumDefaultDeny).
// https://docs.cilium.io/en/stable/security/policy/intro/#policy-enforcement-modes
// ("default ... an endpoint ... selected by a rule with an ingress section
// ... goes into default deny for ingress")
func ciliumSectionPresent(rule *api.Rule, dir direction) bool {
	if dir == ingress {
		return len(rule.Ingress) > 0 || len(rule.IngressDeny) > 0
	}
	return len(rule.Egress) > 0 || len(rule.EgressDeny) > 0
}

// defaultDenyApplies reports whether a rule that has a say in a direction
// turns default deny on for the pods it selects: yes, unless
// enableDefaultDeny sets the direction to false (then only its allow and
// deny terms count, added to whatever other policies do).
// https://docs.cilium.io/en/stable/security/policy/intro/#endpoint-default-policy
func defaultDenyApplies(rule *api.Rule, dir direction) bool {
	v := rule.EnableDefaultDeny.Ingress
	if dir == egress {
		v = rule.EnableDefaultDeny.Egress
	}
	return v == nil || *v
}

// ciliumTerm is one ingress, ingressDeny, egress or egressDeny entry of a
// rule in a form both directions share: the L3 part (who the peer may be)
// and the L4 part (ports and ICMP types).
type ciliumTerm struct {
	endpoints []api.EndpointSelector
	cidrs     []api.CIDR
	cidrSets  []api.CIDRRule
	entities  []api.Entity
	// unenforced is set when the term names an L3 peer kind the model (like
	// the reference agent) does not enforce: fromRequires, fromGroups,
	// fromNodes, toServices, toFQDNs, toGroups, toNodes, toRequires.
	unenforced bool
	ports      []api.PortProtocol
	hasToPorts bool
	icmps      api.ICMPRules
	// emptyList is set when an L3 field is written as an empty list
	// (fromEndpoints: []): see ciliumL3Matches.
	emptyList bool
}

// ciliumTermMatches reports whether a term covers the connection with peer
// as the other end: both its L3 and its L4 part must.
func ciliumTermMatches(pol *policy, t ciliumTerm, peer endpoint, c connection, subjectNode string) bool {
	return ciliumL3Matches(pol, t, peer, subjectNode) && ciliumL4Matches(t, c)
}

// ciliumL3Matches is the L3 part of a term: the peer must be selected by
// one of its endpoint selectors, CIDRs or entities. A term with no L3 part
// is L4-only and applies to every peer, but only when it has an L4 part: an
// empty rule {} selects nothing at all. A term whose only L3 fields are
// ones not enforced selects nothing (never everything).
// https://docs.cilium.io/en/stable/security/policy/language/#layer-4-examples
// ("Limit ingress/egress ports": without an L3 part, the ports apply to
// every peer); https://docs.cilium.io/en/stable/security/policy/intro/#rule-basics
//
// An L3 field written as an empty list (fromEndpoints: [], toEntities: [])
// selects no peer at all, whatever else the term says: Cilium checks
// "explicitly for empty non-nil slices, it should not result in any
// identity being selected" (pkg/policy/utils/parserules.go,
// mergeEndpointSelectors, Cilium 1.20).
func ciliumL3Matches(pol *policy, t ciliumTerm, peer endpoint, subjectNode string) bool {
	if t.emptyList {
		return false
	}
	hasL3 := len(t.endpoints) > 0 || len(t.cidrs) > 0 || len(t.cidrSets) > 0 || len(t.entities) > 0
	if !hasL3 {
		return !t.unenforced && (t.hasToPorts || len(t.icmps) > 0)
	}
	for _, es := range t.endpoints {
		if endpointSelectorSelects(pol, es, peer, subjectNode) {
			return true
		}
	}
	for _, cidr := range t.cidrs {
		if cidrSetAllows(string(cidr), nil, peer) {
			return true
		}
	}
	for _, cs := range t.cidrSets {
		if cs.Cidr == "" { // cidrGroupRef / cidrGroupSelector: not modelled
			continue
		}
		except := make([]string, len(cs.ExceptCIDRs))
		for i, e := range cs.ExceptCIDRs {
			except[i] = string(e)
		}
		if cidrSetAllows(string(cs.Cidr), except, peer) {
			return true
		}
	}
	for _, e := range t.entities {
		if entitySelects(string(e), peer, subjectNode) {
			return true
		}
	}
	return false
}

// ciliumL4Matches is the L4 part of a term: with neither toPorts nor icmps
// every protocol and port (ICMP included) is covered; otherwise one of the
// ports or one of the ICMP fields must match. A toPorts entry that lists
// no ports covers nothing: Cilium adds the any-port filter only to a rule
// with no L4 part at all, and a port rule contributes one filter per
// listed port (pkg/policy/rule.go, mergeL4Filter, Cilium 1.20). L7 rules
// are enforced at L4 only.
// https://docs.cilium.io/en/stable/security/policy/language/#layer-4-examples
// https://docs.cilium.io/en/stable/security/policy/language/#icmp-icmpv6
func ciliumL4Matches(t ciliumTerm, c connection) bool {
	if !t.hasToPorts && len(t.icmps) == 0 {
		return true
	}
	for _, pp := range t.ports {
		number, name := parsePortNumber(pp.Port)
		ps := portSpec{protocol: string(pp.Protocol), number: number, name: name}
		if pp.EndPort > 0 && pp.EndPort <= 65535 {
			ps.endPort = uint16(pp.EndPort)
		}
		if portMatches(ps, c) {
			return true
		}
	}
	for _, rule := range t.icmps {
		for _, f := range rule.Fields {
			if f.Type == nil {
				continue
			}
			if icmpMatches(f.Family, f.PortProtocol().Port, c) {
				return true
			}
		}
	}
	return false
}

// endpointSelectorSelects reports whether a fromEndpoints/toEndpoints
// selector selects the peer, with Cilium's implicit limits:
//
//   - a selector naming a reserved label (reserved:host, reserved:world...)
//     selects those entities, as written;
//   - otherwise it selects only pods of this cluster (the implicit
//     io.cilium.k8s.policy.cluster filter, unless the selector names the
//     cluster itself);
//   - and, unless it constrains the namespace (io.kubernetes.pod.namespace),
//     in a CiliumNetworkPolicy only pods of the policy's namespace (unless
//     it selects on namespace labels, io.cilium.k8s.namespace.labels.*,
//     which span namespaces), and in a CiliumClusterwideNetworkPolicy only
//     pods (the namespace label must exist): {} is "every pod of the
//     namespace" in a CNP and "every pod" in a CCNP.
//
// https://docs.cilium.io/en/stable/security/policy/kubernetes/#namespaces
// ("by default, endpoint selectors of a CiliumNetworkPolicy only match pods
// of the policy's namespace"; namespace labels select across namespaces)
// https://docs.cilium.io/en/stable/network/clustermesh/policy/ (the
// local-cluster default of policy selectors)
// https://docs.cilium.io/en/stable/security/policy/language/#endpoints-based
func endpointSelectorSelects(pol *policy, es api.EndpointSelector, peer endpoint, subjectNode string) bool {
	sel := fromCiliumSelector(es.LabelSelector)
	if !sel.namesReserved() {
		if !sel.names(keyPolicyCluster) && peer.kind != kindPod {
			return false
		}
		if !sel.names(keyPodNamespace) {
			switch {
			case pol.clusterwide():
				sel = append(sel, requirement{sourceK8s, keyPodNamespace, "Exists", nil})
			case !sel.namesPrefix(keyNamespaceLabels):
				sel = append(sel, requirement{sourceK8s, keyPodNamespace, "In", []string{pol.obj.Namespace}})
			}
		}
	}
	return labelSelectorMatches(sel, peer.ciliumLabels(subjectNode))
}

// ingressTerms and egressTerms turn a rule's entries into ciliumTerms.
func ingressTerms(rule *api.Rule) (allow, deny []ciliumTerm) {
	for _, r := range rule.Ingress {
		allow = append(allow, withL4(ingressCommon(r.IngressCommonRule), r.ToPorts, r.ICMPs))
	}
	for _, r := range rule.IngressDeny {
		deny = append(deny, withL4(ingressCommon(r.IngressCommonRule), r.ToPorts, r.ICMPs))
	}
	return allow, deny
}

// withL4 adds a term's L4 part: the ports of its toPorts entries and its
// icmps.
func withL4[P interface{ GetPortProtocols() []api.PortProtocol }](t ciliumTerm, toPorts []P, icmps api.ICMPRules) ciliumTerm {
	for _, pr := range toPorts {
		t.ports = append(t.ports, pr.GetPortProtocols()...)
	}
	t.hasToPorts, t.icmps = len(toPorts) > 0, icmps
	return t
}

func ingressCommon(r api.IngressCommonRule) ciliumTerm {
	return ciliumTerm{
		emptyList: explicitlyEmpty(r.FromEndpoints) || explicitlyEmpty(r.FromNodes) || explicitlyEmpty(r.FromEntities) ||
			explicitlyEmpty(r.FromCIDR) || explicitlyEmpty(r.FromCIDRSet),
		endpoints:  r.FromEndpoints,
		cidrs:      r.FromCIDR,
		cidrSets:   r.FromCIDRSet,
		entities:   r.FromEntities,
		unenforced: len(r.FromRequires) > 0 || len(r.FromGroups) > 0 || len(r.FromNodes) > 0,
	}
}

func egressTerms(rule *api.Rule) (allow, deny []ciliumTerm) {
	for _, r := range rule.Egress {
		t := withL4(egressCommon(r.EgressCommonRule), r.ToPorts, r.ICMPs)
		t.unenforced = t.unenforced || len(r.ToFQDNs) > 0
		allow = append(allow, t)
	}
	for _, r := range rule.EgressDeny {
		deny = append(deny, withL4(egressCommon(r.EgressCommonRule), r.ToPorts, r.ICMPs))
	}
	return allow, deny
}

func egressCommon(r api.EgressCommonRule) ciliumTerm {
	return ciliumTerm{
		emptyList: explicitlyEmpty(r.ToEndpoints) || explicitlyEmpty(r.ToNodes) || explicitlyEmpty(r.ToEntities) ||
			explicitlyEmpty(r.ToCIDR) || explicitlyEmpty(r.ToCIDRSet),
		endpoints: r.ToEndpoints,
		cidrs:     r.ToCIDR,
		cidrSets:  r.ToCIDRSet,
		entities:  r.ToEntities,
		unenforced: len(r.ToRequires) > 0 || len(r.ToServices) > 0 || len(r.ToGroups) > 0 ||
			len(r.ToNodes) > 0,
	}
}

// ciliumOpinion is what one Cilium rule says about a connection in one
// direction, for the subject pod, with peer the other end.
func ciliumOpinion(pol *policy, rule *api.Rule, dir direction, subject, peer endpoint, c connection) opinion {
	if !ciliumSubjectSelects(pol, rule, subject) || !ciliumSectionPresent(rule, dir) {
		return opinion{}
	}
	op := opinion{selects: true, defaultDeny: defaultDenyApplies(rule, dir)}
	var allow, deny []ciliumTerm
	if dir == ingress {
		allow, deny = ingressTerms(rule)
	} else {
		allow, deny = egressTerms(rule)
	}
	for _, t := range allow {
		if ciliumTermMatches(pol, t, peer, c, subject.pod.Node) {
			op.allows = true
		}
	}
	for _, t := range deny {
		if denyApplies(pol, t, peer, c, subject.pod.Node) {
			op.denies = true
		}
	}
	return op
}

// denyApplies reports whether a deny term (ingressDeny, egressDeny) covers
// the connection. Deny terms select peers and ports exactly as allow terms
// do, and take precedence over every allow, whatever policy wrote it and
// however specific it is.
// https://docs.cilium.io/en/stable/security/policy/language/#deny-policies
// ("Deny policies ... take precedence over allow policies")
func denyApplies(pol *policy, t ciliumTerm, peer endpoint, c connection, subjectNode string) bool {
	return ciliumTermMatches(pol, t, peer, c, subjectNode)
}

// explicitlyEmpty reports whether a list field was written as [] (decoded
// as an empty, non-nil slice), as opposed to left out.
func explicitlyEmpty[T any](list []T) bool { return list != nil && len(list) == 0 }
