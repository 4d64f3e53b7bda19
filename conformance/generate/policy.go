package generate

import (
	"fmt"
	"strconv"
)

// policy returns the i-th policy object: a NetworkPolicy, a
// CiliumNetworkPolicy or a CiliumClusterwideNetworkPolicy.
func (g *gen) policy(i int) M {
	name := fmt.Sprintf("p%d", i+1)
	switch g.r.Intn(5) {
	case 0, 1:
		ns := pick(g, g.namespaces)
		g.policies = append(g.policies, policyRef{"NetworkPolicy", ns, name})
		g.feat("policy-knp")
		return M{}.set("apiVersion", "networking.k8s.io/v1").set("kind", "NetworkPolicy").
			set("metadata", M{}.set("name", name).set("namespace", ns)).set("spec", g.knpSpec())
	case 2, 3:
		ns := pick(g, g.namespaces)
		g.policies = append(g.policies, policyRef{"CiliumNetworkPolicy", ns, name})
		return M{}.set("apiVersion", "cilium.io/v2").set("kind", "CiliumNetworkPolicy").
			set("metadata", M{}.set("name", name).set("namespace", ns)).set("spec", g.cnpSpec(false))
	default:
		g.policies = append(g.policies, policyRef{"CiliumClusterwideNetworkPolicy", "", name})
		g.feat("policy-clusterwide")
		return M{}.set("apiVersion", "cilium.io/v2").set("kind", "CiliumClusterwideNetworkPolicy").
			set("metadata", M{}.set("name", name)).set("spec", g.cnpSpec(true))
	}
}

// labelSelector is a Kubernetes LabelSelector over the pod (or namespace)
// vocabulary: empty, matchLabels, matchExpressions or both.
func (g *gen) labelSelector(keys []string, vals func(string) []string) M {
	m := M{}
	switch g.r.Intn(6) {
	case 0: // {}: everything
		return m
	case 1, 2, 3:
		ml := M{}
		k := pick(g, keys)
		ml = ml.set(k, pick(g, vals(k)))
		if g.chance(0.2) {
			for _, k2 := range keys {
				if k2 != k {
					ml = ml.set(k2, pick(g, vals(k2)))
					break
				}
			}
		}
		m = m.set("matchLabels", ml)
		if g.chance(0.2) {
			m = m.set("matchExpressions", []any{g.expr(keys, vals)})
		}
	default:
		m = m.set("matchExpressions", []any{g.expr(keys, vals)})
	}
	return m
}

func (g *gen) expr(keys []string, vals func(string) []string) M {
	k := pick(g, keys)
	op := pick(g, []string{"In", "NotIn", "Exists", "DoesNotExist"})
	e := M{}.set("key", k).set("operator", op)
	if op == "In" || op == "NotIn" {
		vs := vals(k)
		n := g.intn(1, len(vs))
		perm := g.r.Perm(len(vs))
		var sel []string
		for _, j := range perm[:n] {
			sel = append(sel, vs[j])
		}
		e = e.set("values", sel)
	}
	return e
}

func podVals(k string) []string { return podLabelVals[k] }
func nsVals(string) []string    { return nsLabelVals }

func (g *gen) podSelector() M { return g.labelSelector(podLabelKeys, podVals) }
func (g *gen) nsSelector() M {
	if g.chance(0.2) { // the implied name label
		return M{}.set("matchLabels", M{}.set("kubernetes.io/metadata.name", pick(g, g.namespaces)))
	}
	return g.labelSelector(nsLabelKeys, nsVals)
}

// cidr returns a prefix around the externals' networks and, sometimes, an
// except inside it.
func (g *gen) cidr(v6 bool) (string, []string) {
	net := pick(g, extNets)
	if v6 {
		switch g.r.Intn(3) {
		case 0:
			return net.v6 + "/48", []string{net.v6 + "/120"}
		case 1:
			return net.v6 + "/64", nil
		default:
			return "::/0", []string{net.v6 + "/64"}
		}
	}
	base := net.v4 + "0"
	if g.chance(0.1) {
		// prefixes around pods and nodes: CIDR rules never select them
		switch g.r.Intn(3) {
		case 0:
			return "10.244.0.0/16", []string{"10.244.1.0/24"}
		case 1:
			return "10.0.0.0/8", []string{"10.244.0.0/16"}
		default:
			return "192.168.0.0/24", []string{"192.168.0.12/32"}
		}
	}
	switch g.r.Intn(5) {
	case 0:
		return base + "/24", []string{net.v4 + "128/25"}
	case 1:
		return base + "/24", []string{net.v4 + "0/25"}
	case 2:
		return base + "/25", nil
	case 3:
		return "0.0.0.0/0", []string{base + "/24"}
	default:
		return net.v4 + "100/32", nil
	}
}

// --- NetworkPolicy ---

func (g *gen) knpSpec() M {
	spec := M{}.set("podSelector", g.podSelector())
	in, eg := g.chance(0.7), g.chance(0.4)
	if !in && !eg {
		in = true
	}
	var types []string
	if in {
		types = append(types, "Ingress")
	}
	if eg {
		types = append(types, "Egress")
	}
	if g.chance(0.6) || (eg && !in) {
		spec = spec.set("policyTypes", types)
	}
	if in {
		if rules := g.knpRules("from"); rules != nil {
			spec = spec.set("ingress", rules)
		}
	}
	if eg {
		if rules := g.knpRules("to"); rules != nil || !g.hasKey(spec, "policyTypes") {
			if rules == nil {
				rules = []any{}
			}
			spec = spec.set("egress", rules)
		}
	}
	return spec
}

func (g *gen) hasKey(m M, k string) bool {
	for _, e := range m {
		if e.k == k {
			return true
		}
	}
	return false
}

// knpRules returns 0-2 rules (nil: none, so the direction isolates).
func (g *gen) knpRules(peerKey string) []any {
	n := g.intn(0, 2)
	if n == 0 && g.chance(0.5) {
		return nil
	}
	var out []any
	for i := 0; i < n; i++ {
		r := M{}
		if g.chance(0.7) {
			var peers []any
			for j := g.intn(1, 2); j > 0; j-- {
				peers = append(peers, g.knpPeer())
			}
			r = r.set(peerKey, peers)
		}
		if g.chance(0.5) {
			var ports []any
			for j := g.intn(1, 2); j > 0; j-- {
				ports = append(ports, g.knpPort())
			}
			r = r.set("ports", ports)
			g.feat("policy-l4")
		}
		out = append(out, r)
	}
	if out == nil {
		out = []any{M{}} // one empty rule: allow all
	}
	return out
}

func (g *gen) knpPeer() M {
	switch g.r.Intn(5) {
	case 0:
		return M{}.set("podSelector", g.podSelector())
	case 1:
		return M{}.set("namespaceSelector", g.nsSelector())
	case 2:
		return M{}.set("namespaceSelector", g.nsSelector()).set("podSelector", g.podSelector())
	default:
		g.feat("policy-cidr")
		c, ex := g.cidr(g.chance(0.2))
		b := M{}.set("cidr", c)
		if ex != nil && g.chance(0.7) {
			b = b.set("except", ex)
		}
		return M{}.set("ipBlock", b)
	}
}

func (g *gen) knpPort() M {
	m := M{}
	proto := ""
	if g.chance(0.7) {
		proto = pick(g, []string{"TCP", "TCP", "UDP", "SCTP"})
		m = m.set("protocol", proto)
	}
	if proto == "UDP" {
		g.feat("policy-udp")
	}
	if proto == "SCTP" {
		g.feat("policy-sctp")
	}
	switch g.r.Intn(4) {
	case 0: // protocol only (every port)
		if proto == "" {
			m = m.set("protocol", "TCP")
		}
	case 1: // named
		g.feat("policy-named-ports")
		np := pick(g, namedPorts)
		if proto != "" && proto != np.proto && g.chance(0.7) {
			m = M{}.set("protocol", np.proto)
		}
		m = m.set("port", np.name)
	case 2: // range
		g.feat("policy-port-range")
		lo := pick(g, []int{50, 80, 130, 5000, 9000})
		m = m.set("port", lo).set("endPort", lo+g.intn(1, 500))
	default:
		m = m.set("port", g.anyPort(proto))
	}
	return m
}

func (g *gen) anyPort(proto string) int {
	switch proto {
	case "UDP":
		return pick(g, udpPorts)
	case "SCTP":
		return pick(g, sctpPorts)
	}
	return pick(g, append(append(append([]int{}, tcpPorts...), udpPorts...), sctpPorts...))
}

// --- CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy ---

func (g *gen) cnpSpec(clusterwide bool) M {
	g.feat("policy-l3")
	es := g.podSelector()
	if clusterwide && g.chance(0.3) {
		// scope a clusterwide subject to one namespace
		ml := M{}.set("k8s:io.kubernetes.pod.namespace", pick(g, g.namespaces))
		es = M{}.set("matchLabels", ml)
	}
	spec := M{}.set("endpointSelector", es)
	sections := []string{"ingress", "ingressDeny", "egress", "egressDeny"}
	hasSection := false
	for _, s := range sections {
		p := 0.5
		if s == "ingressDeny" || s == "egressDeny" {
			p = 0.2
		}
		if !g.chance(p) {
			continue
		}
		deny := s == "ingressDeny" || s == "egressDeny"
		if deny {
			g.feat("policy-deny")
		}
		ingress := s == "ingress" || s == "ingressDeny"
		var rules []any
		for j := g.intn(1, 2); j > 0; j-- {
			rules = append(rules, g.cnpRule(ingress, deny, clusterwide))
		}
		spec = spec.set(s, rules)
		hasSection = true
	}
	if !hasSection {
		spec = spec.set("ingress", []any{M{}}) // the empty rule: default deny, allow nothing
	}
	if g.chance(0.15) {
		g.feat("policy-default-deny")
		dd := M{}
		if g.chance(0.6) {
			dd = dd.set("ingress", false)
		}
		if len(dd) == 0 || g.chance(0.5) {
			dd = dd.set("egress", false)
		}
		spec = spec.set("enableDefaultDeny", dd)
	}
	return spec
}

func (g *gen) cnpRule(ingress, deny, clusterwide bool) M {
	pre := "to"
	if ingress {
		pre = "from"
	}
	r := M{}
	switch g.r.Intn(7) {
	case 0: // no L3: any peer
	case 1, 2:
		var sels []any
		for j := g.intn(1, 2); j > 0; j-- {
			sels = append(sels, g.endpointSelector())
		}
		r = r.set(pre+"Endpoints", sels)
	case 3:
		g.feat("policy-entities")
		ents := []string{"world", "cluster", "all", "host", "remote-node", "world", "cluster", "host", "health", "init", "unmanaged", "kube-apiserver", "ingress", "none"}
		var sel []string
		perm := g.r.Perm(len(ents))
		for _, j := range perm[:g.intn(1, 2)] {
			sel = append(sel, ents[j])
		}
		r = r.set(pre+"Entities", sel)
	case 4:
		g.feat("policy-cidr")
		var cs []string
		for j := g.intn(1, 2); j > 0; j-- {
			c, _ := g.cidr(g.chance(0.2))
			cs = append(cs, c)
		}
		r = r.set(pre+"CIDR", cs)
	default:
		g.feat("policy-cidr")
		var set []any
		for j := g.intn(1, 2); j > 0; j-- {
			c, ex := g.cidr(g.chance(0.2))
			e := M{}.set("cidr", c)
			if ex != nil {
				e = e.set("except", ex)
			}
			set = append(set, e)
		}
		r = r.set(pre+"CIDRSet", set)
	}
	switch g.r.Intn(5) {
	case 0, 1: // L3 only
	case 2:
		g.feat("policy-icmp")
		var fields []any
		for j := g.intn(1, 2); j > 0; j-- {
			if g.chance(0.7) {
				fields = append(fields, M{}.set("type", pick(g, []any{8, "EchoRequest"})).set("family", "IPv4"))
			} else {
				fields = append(fields, M{}.set("type", pick(g, []any{128, "EchoRequest"})).set("family", "IPv6"))
			}
		}
		r = r.set("icmps", []any{M{}.set("fields", fields)})
	default:
		g.feat("policy-l4")
		var ports []any
		for j := g.intn(1, 3); j > 0; j-- {
			ports = append(ports, g.cnpPort(deny))
		}
		r = r.set("toPorts", []any{M{}.set("ports", ports)})
	}
	return r
}

// endpointSelector is a Cilium endpoint selector: pod labels, sometimes
// scoped to a namespace or to namespace labels.
func (g *gen) endpointSelector() M {
	switch g.r.Intn(8) {
	case 0:
		return M{}.set("matchLabels", M{}.set("k8s:io.kubernetes.pod.namespace", pick(g, g.namespaces)))
	case 6:
		return M{}.set("matchLabels", M{}.set(pick(g, []string{"reserved:host", "reserved:world", "reserved:remote-node"}), ""))
	case 7: // explicit sources
		k := pick(g, podLabelKeys)
		return M{}.set("matchLabels", M{}.set(pick(g, []string{"k8s:", "any:"})+k, pick(g, podLabelVals[k])))
	case 1:
		k := pick(g, nsLabelKeys)
		return M{}.set("matchLabels", M{}.set("io.cilium.k8s.namespace.labels."+k, pick(g, nsLabelVals)))
	default:
		return g.podSelector()
	}
}

func (g *gen) cnpPort(deny bool) M {
	m := M{}
	proto := pick(g, []string{"", "TCP", "TCP", "UDP", "SCTP", "ANY"})
	switch proto {
	case "UDP", "":
		g.feat("policy-udp")
	case "SCTP":
		g.feat("policy-sctp")
	}
	switch g.r.Intn(5) {
	case 0:
		if !deny {
			g.feat("policy-named-ports")
			np := pick(g, namedPorts)
			m = m.set("port", np.name)
			if proto != "" && proto != "ANY" {
				proto = np.proto
			}
			break
		}
		fallthrough
	case 1:
		g.feat("policy-port-range")
		lo := pick(g, []int{50, 80, 130, 5000, 9000})
		m = m.set("port", strconv.Itoa(lo)).set("endPort", lo+g.intn(1, 500))
	case 2:
		m = m.set("port", "0")
	default:
		m = m.set("port", strconv.Itoa(g.anyPort(proto)))
	}
	if proto != "" {
		m = m.set("protocol", proto)
	}
	return m
}
