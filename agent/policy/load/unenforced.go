package load

import (
	"fmt"
	"strings"

	ciliumapi "github.com/cilium/cilium/pkg/policy/api"
)

// cilia's reference agent enforces L3/L4 policy: endpoint selectors,
// namespaces, entities, CIDRs and CIDR sets with except, ports, port
// ranges, named ports, protocols, ICMP types, deny rules and
// enableDefaultDeny. unenforcedCilium names, one Note per field, every
// other feature a policy uses.

// unenforcedCilium returns the notes for the features of p's rules that
// cilia does not enforce yet, in rule order.
func unenforcedCilium(w *walker, p *Policy) []Diagnostic {
	u := &unenforced{w: w, policy: p}
	for i, r := range p.Rules {
		u.rule(p.RulePaths[i], r)
	}
	return sortDiagnostics(u.notes)
}

// unenforced collects notes.
type unenforced struct {
	w      *walker
	policy *Policy
	notes  []Diagnostic
}

// note records that the feature at path is not enforced.
func (u *unenforced) note(path, feature string) {
	d := Diagnostic{File: u.w.file, Path: path, Severity: Note, Message: "not enforced by cilia yet: " + feature}
	if pos, ok := u.w.position(path); ok {
		d.Line, d.Column = pos.Line, pos.Column
	}
	u.notes = append(u.notes, d)
}

// rule notes the features of one rule.
func (u *unenforced) rule(path string, r *ciliumapi.Rule) {
	if r.NodeSelector.LabelSelector != nil {
		u.note(path+".nodeSelector", "host policies (nodeSelector)")
	}
	if r.Log.Value != "" {
		u.note(path+".log", "policy verdict logging (log)")
	}
	for i := range r.Ingress {
		in := &r.Ingress[i]
		p := itemPath(path+".ingress", i)
		u.ingressPeers(p, &in.IngressCommonRule)
		u.authentication(p, in.Authentication)
		u.portRules(p, in.ToPorts)
	}
	for i := range r.IngressDeny {
		in := &r.IngressDeny[i]
		p := itemPath(path+".ingressDeny", i)
		u.ingressPeers(p, &in.IngressCommonRule)
		u.portDenyRules(p, in.ToPorts)
	}
	for i := range r.Egress {
		eg := &r.Egress[i]
		p := itemPath(path+".egress", i)
		u.egressPeers(p, &eg.EgressCommonRule)
		if len(eg.ToFQDNs) > 0 {
			u.note(p+".toFQDNs", "DNS-based egress rules (toFQDNs)")
		}
		u.authentication(p, eg.Authentication)
		u.portRules(p, eg.ToPorts)
	}
	for i := range r.EgressDeny {
		eg := &r.EgressDeny[i]
		p := itemPath(path+".egressDeny", i)
		u.egressPeers(p, &eg.EgressCommonRule)
		u.portDenyRules(p, eg.ToPorts)
	}
}

// ingressPeers notes the unenforced peers of an ingress rule.
func (u *unenforced) ingressPeers(path string, c *ciliumapi.IngressCommonRule) {
	if len(c.FromNodes) > 0 {
		u.note(path+".fromNodes", "node selectors (fromNodes)")
	}
	if len(c.FromGroups) > 0 {
		u.note(path+".fromGroups", "cloud provider groups (fromGroups)")
	}
	u.cidrGroups(path+".fromCIDRSet", c.FromCIDRSet)
}

// egressPeers notes the unenforced peers of an egress rule.
func (u *unenforced) egressPeers(path string, c *ciliumapi.EgressCommonRule) {
	if len(c.ToNodes) > 0 {
		u.note(path+".toNodes", "node selectors (toNodes)")
	}
	if len(c.ToGroups) > 0 {
		u.note(path+".toGroups", "cloud provider groups (toGroups)")
	}
	if len(c.ToServices) > 0 {
		u.note(path+".toServices", "service-based egress rules (toServices)")
	}
	u.cidrGroups(path+".toCIDRSet", c.ToCIDRSet)
}

// cidrGroups notes CIDR set entries that refer to CiliumCIDRGroups.
func (u *unenforced) cidrGroups(path string, set ciliumapi.CIDRRuleSlice) {
	for i, c := range set {
		p := itemPath(path, i)
		switch {
		case c.CIDRGroupRef != "":
			u.note(p+".cidrGroupRef", "CIDR groups (cidrGroupRef)")
		case c.CIDRGroupSelector.LabelSelector != nil:
			u.note(p+".cidrGroupSelector", "CIDR groups (cidrGroupSelector)")
		}
	}
}

// authentication notes mutual authentication.
func (u *unenforced) authentication(path string, a *ciliumapi.Authentication) {
	if a != nil {
		u.note(path+".authentication", "mutual authentication (authentication)")
	}
}

// portRules notes the L7 and TLS features of allow port rules.
func (u *unenforced) portRules(path string, prs ciliumapi.PortRules) {
	for i := range prs {
		pr := &prs[i]
		p := itemPath(path+".toPorts", i)
		u.protocols(p, pr.Ports)
		if pr.Rules != nil && len(pr.Rules.HTTP) > 0 {
			u.note(p+".rules.http", "L7 HTTP rules")
		}
		if pr.Rules != nil && len(pr.Rules.DNS) > 0 {
			u.note(p+".rules.dns", "L7 DNS rules")
		}
		if _, ok := u.policy.Kafka[p]; ok {
			u.note(p+".rules.kafka", "L7 Kafka rules")
		}
		if l7, ok := u.policy.L7Proto[p]; ok {
			u.note(p+".rules.l7proto", fmt.Sprintf("L7 rules for protocol %q (l7proto)", l7.Proto))
		}
		if len(pr.ServerNames) > 0 {
			u.note(p+".serverNames", "TLS server name (SNI) matching (serverNames)")
		}
		if pr.Listener != nil {
			u.note(p+".listener", "redirection to an Envoy listener (listener)")
		}
		if pr.TerminatingTLS != nil {
			u.note(p+".terminatingTLS", "TLS termination (terminatingTLS)")
		}
		if pr.OriginatingTLS != nil {
			u.note(p+".originatingTLS", "TLS origination (originatingTLS)")
		}
	}
}

// portDenyRules notes the protocols of deny port rules.
func (u *unenforced) portDenyRules(path string, prs ciliumapi.PortDenyRules) {
	for i := range prs {
		u.protocols(itemPath(path+".toPorts", i), prs[i].Ports)
	}
}

// protocols notes IP protocols without ports (VRRP, GRE, ...).
func (u *unenforced) protocols(path string, ports []ciliumapi.PortProtocol) {
	for i, pp := range ports {
		if proto := strings.ToUpper(string(pp.Protocol)); isExtendedProtocol(proto) {
			u.note(itemPath(path+".ports", i)+".protocol", "IP protocol "+proto+" (Cilium needs --enable-extended-ip-protocols)")
		}
	}
}
