package load

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/cilium/pkg/iana"
	ciliumapi "github.com/cilium/cilium/pkg/policy/api"
)

// The checks below reproduce Cilium's own validation of a rule
// (pkg/policy/api/rule_validation.go, Rule.Sanitize, and
// CiliumNetworkPolicy.Parse), each with the path of the field at fault.
// Checks that depend on agent flags assume Cilium's defaults
// (L7 proxy and ICMP rules enabled), except that fromNodes/toNodes
// (--enable-node-selector-labels) and extended IP protocols
// (--enable-extended-ip-protocols) are accepted and noted as not
// enforced. The CRD schema (types, enums, patterns, oneOf) was checked
// by the walker before.

// ruleChecker checks the rules of one CNP or CCNP.
type ruleChecker struct {
	w          *walker
	kind       Kind
	policy     *Policy
	hostPolicy bool // the rule being checked has a nodeSelector
}

// rule checks one rule at path ("spec" or "specs[i]").
func (c *ruleChecker) rule(path string, r *ciliumapi.Rule) {
	w := c.w
	if len(r.Ingress)+len(r.IngressDeny)+len(r.Egress)+len(r.EgressDeny) == 0 {
		w.diag(Error, path, nil, "must have at least one of ingress, ingressDeny, egress, egressDeny "+
			"(an empty list counts as none; to deny all ingress, write \"ingress: [{}]\")")
	}
	c.hostPolicy = r.NodeSelector.LabelSelector != nil
	if c.hostPolicy && c.kind == KindCNP {
		w.diag(Error, path+".nodeSelector", nil, "a CiliumNetworkPolicy cannot have nodeSelector: "+
			"host policies must be CiliumClusterwideNetworkPolicy")
	}
	ciliumSelector(w, path+".endpointSelector", r.EndpointSelector.LabelSelector)
	ciliumSelector(w, path+".nodeSelector", r.NodeSelector.LabelSelector)
	for i := range r.Ingress {
		c.ingress(itemPath(path+".ingress", i), &r.Ingress[i])
	}
	for i := range r.IngressDeny {
		c.ingressDeny(itemPath(path+".ingressDeny", i), &r.IngressDeny[i])
	}
	for i := range r.Egress {
		c.egress(itemPath(path+".egress", i), &r.Egress[i])
	}
	for i := range r.EgressDeny {
		c.egressDeny(itemPath(path+".egressDeny", i), &r.EgressDeny[i])
	}
}

// l3Member is one kind of L3 peer of a rule and how many it has.
type l3Member struct {
	field string
	n     int
}

// exclusiveL3 reports rules that combine kinds of L3 peers, which
// Cilium does not support yet ("combining FromEndpoints and FromCIDR is
// not supported yet"); the error is on the field written last.
func (c *ruleChecker) exclusiveL3(path string, members []l3Member) {
	var present []string
	for _, m := range members {
		if m.n > 0 {
			present = append(present, m.field)
		}
	}
	if len(present) < 2 {
		return
	}
	slices.SortFunc(present, func(a, b string) int {
		pa, pb := c.w.pos[path+"."+a], c.w.pos[path+"."+b]
		if pa.Line != pb.Line {
			return pa.Line - pb.Line
		}
		return pa.Column - pb.Column
	})
	last := present[len(present)-1]
	c.w.diag(Error, path+"."+last, nil, "cannot combine %s with %s in one rule (Cilium does not support it yet); "+
		"write a separate rule for each", last, strings.Join(present[:len(present)-1], " and "))
}

// ingressCommon checks the peers of an ingress or ingressDeny rule.
func (c *ruleChecker) ingressCommon(path string, r *ciliumapi.IngressCommonRule) {
	c.exclusiveL3(path, []l3Member{
		{"fromEndpoints", len(r.FromEndpoints)}, {"fromCIDR", len(r.FromCIDR)}, {"fromCIDRSet", len(r.FromCIDRSet)},
		{"fromEntities", len(r.FromEntities)}, {"fromNodes", len(r.FromNodes)}, {"fromGroups", len(r.FromGroups)},
	})
	c.peers(path, "from", r.FromEndpoints, r.FromNodes, r.FromCIDR, r.FromCIDRSet)
}

// egressCommon checks the peers of an egress or egressDeny rule; extra
// are the peer kinds only allow rules have (toFQDNs).
func (c *ruleChecker) egressCommon(path string, r *ciliumapi.EgressCommonRule, extra ...l3Member) {
	c.exclusiveL3(path, append([]l3Member{
		{"toEndpoints", len(r.ToEndpoints)}, {"toCIDR", len(r.ToCIDR)}, {"toCIDRSet", len(r.ToCIDRSet)},
		{"toEntities", len(r.ToEntities)}, {"toServices", len(r.ToServices)}, {"toGroups", len(r.ToGroups)},
		{"toNodes", len(r.ToNodes)},
	}, extra...))
	c.peers(path, "to", r.ToEndpoints, r.ToNodes, r.ToCIDR, r.ToCIDRSet)
	for i, s := range r.ToServices {
		if s.K8sServiceSelector != nil {
			ciliumSelector(c.w, itemPath(path+".toServices", i)+".k8sServiceSelector.selector", s.K8sServiceSelector.Selector.LabelSelector)
		}
	}
}

// peers checks endpoint and node selectors and CIDRs; dir is "from" or
// "to".
func (c *ruleChecker) peers(path, dir string, endpoints, nodes []ciliumapi.EndpointSelector,
	cidrs ciliumapi.CIDRSlice, cidrSets ciliumapi.CIDRRuleSlice) {
	for i, es := range endpoints {
		ciliumSelector(c.w, itemPath(path+"."+dir+"Endpoints", i), es.LabelSelector)
	}
	for i, es := range nodes {
		ciliumSelector(c.w, itemPath(path+"."+dir+"Nodes", i), es.LabelSelector)
	}
	for i, cidr := range cidrs {
		warnHostBits(c.w, itemPath(path+"."+dir+"CIDR", i), string(cidr))
	}
	for i := range cidrSets {
		c.cidrRule(itemPath(path+"."+dir+"CIDRSet", i), &cidrSets[i])
	}
}

// cidrRule checks a CIDR with exceptions: each exception must lie
// inside the CIDR (Cilium's CIDRRule.sanitize).
func (c *ruleChecker) cidrRule(path string, r *ciliumapi.CIDRRule) {
	ciliumSelector(c.w, path+".cidrGroupSelector", r.CIDRGroupSelector.LabelSelector)
	if r.Cidr == "" {
		if len(r.ExceptCIDRs) > 0 && r.CIDRGroupRef == "" && r.CIDRGroupSelector.LabelSelector == nil {
			c.w.diag(Error, path+".except", nil, "except needs a cidr")
		}
		return
	}
	prefix, err := netip.ParsePrefix(string(r.Cidr))
	if err != nil {
		return // reported by the schema check
	}
	warnHostBits(c.w, path+".cidr", string(r.Cidr))
	for i, e := range r.ExceptCIDRs {
		ep := itemPath(path+".except", i)
		except, err := netip.ParsePrefix(string(e))
		if err != nil {
			continue
		}
		warnHostBits(c.w, ep, string(e))
		if prefix.Bits() > except.Bits() || !prefix.Contains(except.Addr()) {
			msg := fmt.Sprintf("except %s is not inside cidr %s", e, r.Cidr)
			if prefix.Addr().Is4() != except.Addr().Is4() {
				msg += " (they are of different IP families)"
			}
			c.w.diag(Error, ep, nil, "%s", msg)
		}
	}
}

// warnHostBits warns about a CIDR whose address has bits set after the
// prefix ("10.0.0.1/8"): Cilium and Kubernetes mask them away, so the
// CIDR means something other than the address written.
func warnHostBits(w *walker, path, cidr string) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || p.Masked() == p {
		return
	}
	w.diag(Warning, path, nil, "%s has bits set after the /%d prefix, so it means %s", cidr, p.Bits(), p.Masked())
}

// ingress checks an ingress (allow) rule.
func (c *ruleChecker) ingress(path string, r *ciliumapi.IngressRule) {
	c.ingressCommon(path, &r.IngressCommonRule)
	c.icmpsAndPorts(path, len(r.ICMPs), len(r.ToPorts))
	for i := range r.ToPorts {
		c.portRule(itemPath(path+".toPorts", i), &r.ToPorts[i], true)
	}
}

// ingressDeny checks an ingressDeny rule.
func (c *ruleChecker) ingressDeny(path string, r *ciliumapi.IngressDenyRule) {
	c.ingressCommon(path, &r.IngressCommonRule)
	c.icmpsAndPorts(path, len(r.ICMPs), len(r.ToPorts))
	for i := range r.ToPorts {
		c.portDenyRule(itemPath(path+".toPorts", i), &r.ToPorts[i])
	}
}

// egress checks an egress (allow) rule.
func (c *ruleChecker) egress(path string, r *ciliumapi.EgressRule) {
	c.egressCommon(path, &r.EgressCommonRule, l3Member{"toFQDNs", len(r.ToFQDNs)})
	c.icmpsAndPorts(path, len(r.ICMPs), len(r.ToPorts))
	for i := range r.ToPorts {
		c.portRule(itemPath(path+".toPorts", i), &r.ToPorts[i], false)
	}
	for i, sel := range r.ToFQDNs {
		dns := ciliumapi.PortRuleDNS(sel)
		if err := dns.Sanitize(); err != nil {
			c.w.diag(Error, itemPath(path+".toFQDNs", i), nil, "invalid FQDN selector: %v", err)
		}
	}
}

// egressDeny checks an egressDeny rule.
func (c *ruleChecker) egressDeny(path string, r *ciliumapi.EgressDenyRule) {
	c.egressCommon(path, &r.EgressCommonRule)
	c.icmpsAndPorts(path, len(r.ICMPs), len(r.ToPorts))
	for i := range r.ToPorts {
		c.portDenyRule(itemPath(path+".toPorts", i), &r.ToPorts[i])
	}
}

// icmpsAndPorts reports a rule with both icmps and toPorts, which
// Cilium rejects.
func (c *ruleChecker) icmpsAndPorts(path string, icmps, toPorts int) {
	if icmps > 0 && toPorts > 0 {
		c.w.diag(Error, path+".icmps", nil, "icmps cannot be combined with toPorts in one rule; write a separate rule for each")
	}
}

// maxPorts is Cilium's limit of ports in one port rule.
const maxPorts = 40

// portRule checks an allow rule's toPorts entry (Cilium's
// PortRule.sanitize, with Kafka rules as Cilium 1.19 checked them).
func (c *ruleChecker) portRule(path string, pr *ciliumapi.PortRule, ingress bool) {
	w := c.w
	kafka := c.policy.Kafka[path]
	_, hasL7Proto := c.policy.L7Proto[path]
	hasDNS := pr.Rules != nil && len(pr.Rules.DNS) > 0
	hasHTTP := pr.Rules != nil && len(pr.Rules.HTTP) > 0
	hasL7 := !pr.Rules.IsEmpty() || len(kafka) > 0 || hasL7Proto
	l7NotDNS := hasL7 && !hasDNS
	switch {
	case ingress && hasDNS:
		w.diag(Error, path+".rules.dns", nil, "DNS rules are not allowed on ingress")
	case c.hostPolicy && ingress && hasL7:
		w.diag(Error, path+".rules", nil, "L7 rules are not supported on host ingress: this rule has a nodeSelector")
	case c.hostPolicy && hasL7 && !hasDNS:
		w.diag(Error, path+".rules", nil, "only DNS rules are supported on host egress: this rule has a nodeSelector")
	}
	if len(pr.ServerNames) > 0 && hasL7 && pr.TerminatingTLS == nil {
		w.diag(Error, path+".serverNames", nil, "serverNames cannot be combined with L7 rules unless terminatingTLS is set")
	}
	zeroPort := false
	for i, pp := range pr.Ports {
		if c.portProtocol(itemPath(path+".ports", i), pp, hasDNS, l7NotDNS) {
			zeroPort = true
		}
	}
	if pr.Listener != nil {
		switch {
		case ingress:
			w.diag(Error, path+".listener", nil, "listener is not allowed on ingress")
		case hasL7:
			w.diag(Error, path+".listener", nil, "listener cannot be combined with L7 rules")
		}
	}
	if hasL7 && zeroPort {
		w.diag(Error, path+".rules", nil, "L7 rules cannot be used when a port is 0")
	}
	if hasDNS && len(pr.Ports) == 0 {
		w.diag(Error, path+".rules.dns", nil, "DNS rules need the DNS port: add ports: [{port: \"53\", protocol: ANY}]")
	}
	if hasHTTP {
		for i := range pr.Rules.HTTP {
			checkHTTPRule(w, itemPath(path+".rules.http", i), &pr.Rules.HTTP[i])
		}
	}
	if hasDNS {
		for i := range pr.Rules.DNS {
			if err := pr.Rules.DNS[i].Sanitize(); err != nil {
				w.diag(Error, itemPath(path+".rules.dns", i), nil, "invalid DNS rule: %v", err)
			}
		}
	}
	for i, k := range kafka {
		checkKafkaRule(w, itemPath(path+".rules.kafka", i), k)
	}
}

// portDenyRule checks a deny rule's toPorts entry.
func (c *ruleChecker) portDenyRule(path string, pr *ciliumapi.PortDenyRule) {
	if len(pr.Ports) > maxPorts {
		c.w.diag(Error, path+".ports", nil, "too many ports: at most %d, not %d", maxPorts, len(pr.Ports))
	}
	for i, pp := range pr.Ports {
		c.portProtocol(itemPath(path+".ports", i), pp, false, false)
	}
}

// portProtocol checks one port (Cilium's PortProtocol.sanitize, plus the
// port range rules Kubernetes applies to endPort) and reports whether it
// is port 0.
func (c *ruleChecker) portProtocol(path string, pp ciliumapi.PortProtocol, hasDNS, l7NotDNS bool) bool {
	w := c.w
	proto := strings.ToUpper(string(pp.Protocol))
	if proto == "" {
		proto = string(ciliumapi.ProtoAny)
	}
	extended := isExtendedProtocol(proto)
	zero := false
	switch {
	case pp.Port == "":
		if !extended {
			w.diag(Error, path, nil, "port is required (write port: \"0\" to match every port)")
		}
		if pp.EndPort != 0 {
			w.diag(Error, path+".endPort", nil, "endPort needs a numeric port")
		}
	case iana.IsSvcName(pp.Port):
		if pp.EndPort != 0 {
			w.diag(Error, path+".endPort", nil, "endPort cannot be used with the named port %q: a port range needs a numeric port", pp.Port)
		}
	default:
		if extended && pp.Port != "0" {
			w.diag(Error, path+".port", nil, "%s has no ports: port must be empty or \"0\"", proto)
			break
		}
		p, err := strconv.ParseUint(pp.Port, 0, 16)
		if err != nil {
			w.diag(Error, path+".port", nil, "%s", invalidPortMessage(pp.Port))
			break
		}
		if len(pp.Port) > 1 && pp.Port[0] == '0' && strconv.FormatUint(p, 10) != pp.Port {
			w.diag(Warning, path+".port", nil, "port %q has a leading zero, so Cilium reads it as the octal number %d", pp.Port, p)
		}
		zero = p == 0
		if pp.EndPort != 0 && uint64(pp.EndPort) < p {
			w.diag(Error, path+".endPort", nil, "endPort %d is less than port %d", pp.EndPort, p)
		}
		if hasDNS && uint64(pp.EndPort) > p {
			w.diag(Error, path+".endPort", nil, "DNS rules do not support port ranges")
		}
	}
	if l7NotDNS && proto != string(ciliumapi.ProtoTCP) {
		if pp.Protocol == "" {
			w.diag(Error, path, nil, "L7 rules only apply to TCP: add protocol: TCP (no protocol means ANY)")
		} else {
			w.diag(Error, path+".protocol", nil, "L7 rules only apply to TCP, not %s", pp.Protocol)
		}
	}
	return zero
}

// invalidPortMessage explains a port that is neither a number nor a
// port name.
func invalidPortMessage(port string) string {
	if n, err := strconv.ParseInt(port, 10, 64); err == nil {
		return fmt.Sprintf("port %d is out of range 0-65535", n)
	}
	return fmt.Sprintf("invalid port %q: must be a number 0-65535 or a port name "+
		"(at most 15 letters, digits and '-', with at least one letter)", port)
}

// isExtendedProtocol reports whether proto is an IP protocol without
// ports (VRRP, IGMP, tunnels, IPsec).
func isExtendedProtocol(proto string) bool {
	switch ciliumapi.L4Proto(proto) {
	case ciliumapi.ProtoVRRP, ciliumapi.ProtoIGMP, ciliumapi.ProtoGRE, ciliumapi.ProtoIPIP,
		ciliumapi.ProtoIPv6, ciliumapi.ProtoESP, ciliumapi.ProtoAH:
		return true
	}
	return false
}

// checkHTTPRule checks that the regular expressions of an HTTP rule
// compile (Cilium's PortRuleHTTP.Sanitize, field by field).
func checkHTTPRule(w *walker, path string, h *ciliumapi.PortRuleHTTP) {
	for field, re := range map[string]string{"path": h.Path, "method": h.Method} {
		if re == "" {
			continue
		}
		if _, err := regexp.Compile(re); err != nil {
			w.diag(Error, path+"."+field, nil, "invalid regular expression %q: %v", re, err)
		}
	}
	if err := h.Sanitize(); err != nil && !strings.Contains(err.Error(), "error parsing regexp") {
		w.diag(Error, path, nil, "invalid HTTP rule: %v", err)
	}
}

// kafkaAPIKeys are the Kafka API keys Cilium 1.19 accepted.
var kafkaAPIKeys = map[string]bool{
	"produce": true, "fetch": true, "offsets": true, "metadata": true, "leaderandisr": true, "stopreplica": true,
	"updatemetadata": true, "controlledshutdown": true, "offsetcommit": true, "offsetfetch": true,
	"findcoordinator": true, "joingroup": true, "heartbeat": true, "leavegroup": true, "syncgroup": true,
	"describegroups": true, "listgroups": true, "saslhandshake": true, "apiversions": true, "createtopics": true,
	"deletetopics": true, "deleterecords": true, "initproducerid": true, "offsetforleaderepoch": true,
	"addpartitionstotxn": true, "addoffsetstotxn": true, "endtxn": true, "writetxnmarkers": true,
	"txnoffsetcommit": true, "describeacls": true, "createacls": true, "deleteacls": true,
	"describeconfigs": true, "alterconfigs": true,
}

// kafkaTopic is the syntax of a Kafka topic name.
var kafkaTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

// checkKafkaRule checks a Kafka rule as Cilium 1.19's
// kafka.PortRule.Sanitize did.
func checkKafkaRule(w *walker, path string, k KafkaRule) {
	if k.APIKey != "" && k.Role != "" {
		w.diag(Error, path, nil, "cannot set both role %q and apiKey %q", k.Role, k.APIKey)
	}
	if k.APIKey != "" && !kafkaAPIKeys[strings.ToLower(k.APIKey)] {
		w.diag(Error, path+".apiKey", nil, "unknown Kafka apiKey %q", k.APIKey)
	}
	if r := strings.ToLower(k.Role); k.Role != "" && r != "produce" && r != "consume" {
		w.diag(Error, path+".role", nil, "unsupported Kafka role %q: must be produce or consume", k.Role)
	}
	if k.APIVersion != "" {
		if n, err := strconv.ParseInt(k.APIVersion, 10, 16); err != nil || n < 0 {
			w.diag(Error, path+".apiVersion", nil, "invalid Kafka apiVersion %q: must be a number 0-%d", k.APIVersion, math.MaxInt16)
		}
	}
	switch {
	case len(k.Topic) > 255:
		w.diag(Error, path+".topic", nil, "Kafka topic is too long: at most 255 characters")
	case k.Topic != "" && !kafkaTopic.MatchString(k.Topic):
		w.diag(Error, path+".topic", nil, "invalid Kafka topic %q: letters, digits, '.', '_' and '-' only", k.Topic)
	}
}

// ruleSections are the sections of a rule whose items have toPorts and
// icmps.
var ruleSections = []string{"ingress", "ingressDeny", "egress", "egressDeny"}

// forEachRule calls f with every rule of a CNP/CCNP tree and its path.
func forEachRule(obj map[string]any, f func(path string, rule map[string]any)) {
	if r, ok := obj["spec"].(map[string]any); ok {
		f("spec", r)
	}
	specs, _ := obj["specs"].([]any)
	for i, s := range specs {
		if r, ok := s.(map[string]any); ok {
			f(itemPath("specs", i), r)
		}
	}
}

// forEachSectionItem calls f with every item of the sections of a rule.
func forEachSectionItem(rule map[string]any, path string, f func(section, path string, item map[string]any)) {
	for _, sec := range ruleSections {
		items, _ := rule[sec].([]any)
		for i, it := range items {
			if m, ok := it.(map[string]any); ok {
				f(sec, itemPath(path+"."+sec, i), m)
			}
		}
	}
}

// checkICMPFields checks ICMP types before decoding: Cilium's decoder
// rejects a type name that does not belong to the field's family, and a
// type number must fit the 8-bit type field.
func checkICMPFields(w *walker, obj map[string]any) {
	forEachRule(obj, func(path string, rule map[string]any) {
		forEachSectionItem(rule, path, func(_, p string, item map[string]any) {
			icmps, _ := item["icmps"].([]any)
			for i, ic := range icmps {
				m, _ := ic.(map[string]any)
				fields, _ := m["fields"].([]any)
				for j, f := range fields {
					fm, _ := f.(map[string]any)
					checkICMPField(w, itemPath(itemPath(p+".icmps", i)+".fields", j), fm)
				}
			}
		})
	})
}

// checkICMPField checks one ICMP field (type and family).
func checkICMPField(w *walker, path string, f map[string]any) {
	switch t := f["type"].(type) {
	case int64:
		if t < 0 || t > 255 {
			w.diag(Error, path+".type", nil, "ICMP type %d is out of range 0-255", t)
		}
		return
	case string:
		if n, err := strconv.Atoi(t); err == nil {
			if n < 0 || n > 255 {
				w.diag(Error, path+".type", nil, "ICMP type %d is out of range 0-255", n)
			}
			return
		}
	}
	data, _ := json.Marshal(f)
	var field ciliumapi.ICMPField
	if err := field.UnmarshalJSON(data); err != nil {
		family, _ := f["family"].(string)
		if family == "" {
			family = ciliumapi.IPv4Family
		}
		w.diag(Error, path+".type", nil, "%v is not an ICMP type name of family %s (%s names include %s)",
			f["type"], family, family, icmpNameExamples[family])
	}
}

// icmpNameExamples lists some ICMP type names of each family for hints.
var icmpNameExamples = map[string]string{
	ciliumapi.IPv4Family: "EchoRequest, EchoReply, DestinationUnreachable, TimeExceeded",
	ciliumapi.IPv6Family: "EchoRequest, EchoReply, DestinationUnreachable, PacketTooBig, NeighborSolicitation",
}

// extractRemovedL7 takes the Kafka and generic L7 rules out of the
// tree (they are not part of Cilium 1.20's Rule), warning that Cilium
// 1.20 no longer accepts them, and returns them by port-rule path.
func extractRemovedL7(w *walker, obj map[string]any) (map[string][]KafkaRule, map[string]L7ProtoRule) {
	var kafka map[string][]KafkaRule
	var l7 map[string]L7ProtoRule
	forEachRule(obj, func(path string, rule map[string]any) {
		forEachSectionItem(rule, path, func(_, p string, item map[string]any) {
			ports, _ := item["toPorts"].([]any)
			for i, pr := range ports {
				pm, _ := pr.(map[string]any)
				rules, _ := pm["rules"].(map[string]any)
				if rules == nil {
					continue
				}
				pp := itemPath(p+".toPorts", i)
				if k, ok := rules["kafka"]; ok {
					delete(rules, "kafka")
					var kr []KafkaRule
					data, _ := json.Marshal(k)
					if err := json.Unmarshal(data, &kr); err != nil {
						w.diag(Error, pp+".rules.kafka", nil, "decode Kafka rules: %v", err)
						continue
					}
					if kafka == nil {
						kafka = map[string][]KafkaRule{}
					}
					kafka[pp] = kr
					w.diag(Warning, pp+".rules.kafka", nil, "Kafka rules were removed in Cilium 1.20, "+
						"whose API server rejects this port rule; cilia reads them as Cilium 1.19 did")
				}
				proto, hasProto := rules["l7proto"].(string)
				if hasProto {
					var lr L7ProtoRule
					lr.Proto = proto
					data, _ := json.Marshal(rules["l7"])
					_ = json.Unmarshal(data, &lr.Rules)
					delete(rules, "l7proto")
					delete(rules, "l7")
					if l7 == nil {
						l7 = map[string]L7ProtoRule{}
					}
					l7[pp] = lr
					w.diag(Warning, pp+".rules.l7proto", nil, "generic L7 rules (l7proto) were removed in Cilium 1.20, "+
						"whose API server rejects this port rule; cilia reads them as Cilium 1.19 did")
				} else if _, ok := rules["l7"]; ok {
					w.diag(Error, pp+".rules.l7", nil, "l7 rules need l7proto (the name of the L7 protocol parser)")
				}
			}
		})
	})
	return kafka, l7
}
