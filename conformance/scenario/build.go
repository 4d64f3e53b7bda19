package scenario

import (
	"fmt"
	"net/netip"
	"strings"
)

// builder resolves a decoded file against the cluster as it evolves step
// by step: defaults, addresses, references, probes.
type builder struct {
	d  *decoder
	f  *fileSpec
	sc *Scenario
	// st is the current state, mutated by steps.
	st *State
	// inUse maps the addresses held now to their holder's description.
	inUse map[netip.Addr]string
	// explicit holds every address written anywhere in the file, so that
	// assigned addresses never collide with one, even a later one.
	explicit map[netip.Addr]bool
	// nodeIndex is the 1-based position of each node.
	nodeIndex map[string]int
	// nextPod is the next pod host number to try per node.
	nextPod map[string]int
	// nextService is the next service host number to try.
	nextService int
	// everPods holds every pod key seen so far; laterPods the path of the
	// addPods entry that first adds a key (for "not yet" hints).
	everPods  map[string]bool
	laterPods map[string]string
	// step is the step being built, nil while building the initial state.
	step *Step
	// ids counts probe IDs, for #2 suffixes.
	ids map[string]int
	// names are the probe names declared so far, with their probe.
	names map[string]Probe
}

// build resolves f into a Scenario; problems go to d.
func (d *decoder) build(f *fileSpec) *Scenario {
	b := &builder{
		d: d, f: f,
		sc:        &Scenario{File: d.file, Metadata: f.meta},
		st:        &State{Step: -1},
		inUse:     map[netip.Addr]string{},
		explicit:  map[netip.Addr]bool{},
		nodeIndex: map[string]int{},
		nextPod:   map[string]int{},
		everPods:  map[string]bool{},
		laterPods: map[string]string{},
		ids:       map[string]int{},
		names:     map[string]Probe{},
	}
	if f.nameAt.n != nil {
		b.sc.nameLine, b.sc.nameColumn = f.nameAt.n.Line, f.nameAt.n.Column
	}
	b.collectExplicit()
	b.buildNodes()
	b.buildExternals()
	b.buildNamespaces()
	for _, ps := range f.pods {
		b.addPod(ps)
	}
	b.buildServices()
	b.buildPolicies()
	b.sc.initial = b.st.clone()
	b.sc.Cluster = clusterOf(b.st.clone())
	b.sc.Policies = append([]Object(nil), b.st.Policies...)
	if len(f.probes) > 0 || len(f.matrix) > 0 {
		b.topStep()
	}
	for _, ss := range f.steps {
		b.stepEntry(ss)
	}
	if len(b.sc.Steps) == 0 && len(f.steps) == 0 {
		d.errorf(f.rootAt, "the scenario has no probes: add probes, a matrix or steps")
	}
	return b.sc
}

// clusterOf returns the cluster part of a state.
func clusterOf(st *State) Cluster {
	return Cluster{Nodes: st.Nodes, Namespaces: st.Namespaces, Pods: st.Pods, Externals: st.Externals, Services: st.Services}
}

// collectExplicit records every address written in the file and where
// each addPods key first appears.
func (b *builder) collectExplicit() {
	mark := func(as ...netip.Addr) {
		for _, a := range as {
			if a.IsValid() {
				b.explicit[a] = true
			}
		}
	}
	for _, n := range b.f.nodes {
		mark(n.node.IPv4, n.node.IPv6)
	}
	for _, x := range b.f.exts {
		mark(x.ext.IPv4, x.ext.IPv6)
	}
	for _, s := range b.f.svcs {
		mark(s.svc.ClusterIP, s.svc.ClusterIPv6)
		mark(s.svc.LoadBalancerIPs...)
	}
	for _, p := range b.f.pods {
		mark(p.pod.IPv4, p.pod.IPv6)
	}
	for _, ss := range b.f.steps {
		for _, p := range ss.addPods {
			mark(p.pod.IPv4, p.pod.IPv6)
			if _, seen := b.laterPods[p.pod.Key()]; !seen && p.ok {
				b.laterPods[p.pod.Key()] = p.at.path
			}
		}
	}
}

// taken reports whether an address may not be assigned.
func (b *builder) taken(a netip.Addr) bool {
	_, used := b.inUse[a]
	return used || b.explicit[a]
}

// claim marks an address written at l as held by owner, unless something
// holds it already.
func (b *builder) claim(a netip.Addr, owner string, l loc) bool {
	if !a.IsValid() {
		return true
	}
	if prev, used := b.inUse[a]; used {
		b.d.errorf(l, "address %s is already used by %s", a, prev)
		return false
	}
	b.inUse[a] = owner
	return true
}

// release frees the addresses of a deleted pod.
func (b *builder) release(as ...netip.Addr) {
	for _, a := range as {
		delete(b.inUse, a)
	}
}

// Address plans (docs/scenario-format.md, "Addresses").
const (
	firstHost = 10  // the first host number assigned in every range
	lastHost  = 254 // the last one
)

// hostAddr formats an address from a plan and parses it: the host
// number's decimal digits are used as written, so 10.244.1.10 pairs with
// fd00:10:244:1::10. It returns the zero Addr for an impossible address
// (a node index too large for the plan).
func hostAddr(format string, args ...any) netip.Addr {
	a, err := netip.ParseAddr(fmt.Sprintf(format, args...))
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// free reports whether an assignable address is valid and not taken.
func (b *builder) free(as ...netip.Addr) bool {
	for _, a := range as {
		if !a.IsValid() || b.taken(a) {
			return false
		}
	}
	return true
}

// buildNodes adds the nodes (one "node-1" by default) with their default
// addresses.
func (b *builder) buildNodes() {
	specs := b.f.nodes
	if len(specs) == 0 {
		specs = []nodeSpec{{node: Node{Name: "node-1"}}}
	}
	for i, ns := range specs {
		n := ns.node
		if n.Name == "" {
			continue
		}
		if _, dup := b.nodeIndex[n.Name]; dup {
			b.d.errorf(at(ns.at.n, field(ns.at.path, "name")), "duplicate node %q", n.Name)
			continue
		}
		idx := i + 1
		b.nodeIndex[n.Name] = idx
		owner := "node " + n.Name
		b.claim(n.IPv4, owner, ns.ipv4At)
		b.claim(n.IPv6, owner, ns.ipv6At)
		if !n.IPv4.IsValid() {
			n.IPv4 = b.allocNode(idx, "192.168.0.%d", ns)
		}
		if !n.IPv6.IsValid() {
			n.IPv6 = b.allocNode(idx, "fd00:0:0:1::%d", ns)
		}
		b.st.Nodes = append(b.st.Nodes, n)
	}
}

// allocNode assigns a node address: host 10+index, or the next free one.
func (b *builder) allocNode(idx int, format string, ns nodeSpec) netip.Addr {
	for h := firstHost + idx; h <= lastHost; h++ {
		if a := hostAddr(format, h); b.free(a) {
			b.inUse[a] = "node " + ns.node.Name
			return a
		}
	}
	b.d.errorf(ns.at, "no free default address for node %q: give ipv4 and ipv6", ns.node.Name)
	return netip.Addr{}
}

// buildExternals adds the externals.
func (b *builder) buildExternals() {
	seen := map[string]bool{}
	for _, xs := range b.f.exts {
		x := xs.ext
		if seen[x.Name] {
			b.d.errorf(at(xs.at.n, field(xs.at.path, "name")), "duplicate external %q", x.Name)
			continue
		}
		seen[x.Name] = true
		b.claim(x.IPv4, "external "+x.Name, xs.ipv4At)
		b.claim(x.IPv6, "external "+x.Name, xs.ipv6At)
		b.st.Externals = append(b.st.Externals, x)
	}
}

// buildNamespaces adds the listed namespaces with their implied label.
func (b *builder) buildNamespaces() {
	for _, nss := range b.f.nss {
		ns := nss.ns
		if ns.Name == "" {
			continue
		}
		if _, dup := b.st.Namespace(ns.Name); dup {
			b.d.errorf(at(nss.at.n, field(nss.at.path, "name")), "duplicate namespace %q", ns.Name)
			continue
		}
		ns.Labels[NamespaceNameLabel] = ns.Name
		b.st.Namespaces = append(b.st.Namespaces, ns)
	}
}

// ensureNamespace adds a namespace that is used but not listed, with no
// labels but the implied one.
func (b *builder) ensureNamespace(name string) {
	if name == "" {
		return
	}
	if _, ok := b.st.Namespace(name); ok {
		return
	}
	ns := Namespace{Name: name, Labels: map[string]string{NamespaceNameLabel: name}}
	b.st.Namespaces = append(b.st.Namespaces, ns)
	if b.step != nil {
		b.step.AddNamespaces = append(b.step.AddNamespaces, ns)
	}
}

// buildServices adds the services, assigning cluster IPs and node ports.
func (b *builder) buildServices() {
	b.nextService = firstHost
	for _, ss := range b.f.svcs {
		svc := ss.svc
		if _, dup := b.st.Service(svc.Key()); dup {
			b.d.errorf(at(ss.at.n, field(ss.at.path, "name")), "duplicate service %q", svc.Key())
			continue
		}
		b.ensureNamespace(svc.Namespace)
		owner := "service " + svc.Key()
		ips := append([]netip.Addr{svc.ClusterIP, svc.ClusterIPv6}, svc.LoadBalancerIPs...)
		i := 0
		for _, a := range ips {
			if a.IsValid() {
				b.claim(a, owner, ss.ipAts[i])
				i++
			}
		}
		if !svc.ClusterIP.IsValid() && !svc.ClusterIPv6.IsValid() {
			svc.ClusterIP, svc.ClusterIPv6 = b.allocService(ss)
		}
		b.st.Services = append(b.st.Services, svc)
	}
	b.assignNodePorts()
}

// allocService assigns a dual-stack pair of cluster IPs.
func (b *builder) allocService(ss svcSpec) (netip.Addr, netip.Addr) {
	for ; b.nextService <= lastHost; b.nextService++ {
		v4 := hostAddr("10.96.0.%d", b.nextService)
		v6 := hostAddr("fd00:10:96::%d", b.nextService)
		if b.free(v4, v6) {
			owner := "service " + ss.svc.Key()
			b.inUse[v4], b.inUse[v6] = owner, owner
			b.nextService++
			return v4, v6
		}
	}
	b.d.errorf(ss.at, "no free cluster IP for service %q: give clusterIP", ss.svc.Key())
	return netip.Addr{}, netip.Addr{}
}

// assignNodePorts checks that node ports are unique and gives NodePort
// and LoadBalancer services' ports without one the next free one from
// 30000.
func (b *builder) assignNodePorts() {
	used := map[uint16]string{}
	for si, svc := range b.st.Services {
		for pi, p := range svc.Ports {
			if p.NodePort == 0 {
				continue
			}
			if prev, dup := used[p.NodePort]; dup {
				b.d.errorf(b.servicePortLoc(svc, pi), "node port %d is already used by service %s", p.NodePort, prev)
				b.st.Services[si].Ports[pi].NodePort = 0
				continue
			}
			used[p.NodePort] = svc.Key()
		}
	}
	next := uint16(minNodePort)
	for si, svc := range b.st.Services {
		if svc.Type != "NodePort" && svc.Type != "LoadBalancer" {
			continue
		}
		for pi, p := range svc.Ports {
			if p.NodePort != 0 {
				continue
			}
			for used[next] != "" {
				next++
			}
			b.st.Services[si].Ports[pi].NodePort = next
			used[next] = svc.Key()
		}
	}
}

// servicePortLoc finds where a service's port was written.
func (b *builder) servicePortLoc(svc Service, pi int) loc {
	for _, ss := range b.f.svcs {
		if ss.svc.Key() == svc.Key() && pi < len(ss.portAts) {
			l := ss.portAts[pi]
			return at(l.n, field(l.path, "nodePort"))
		}
	}
	return loc{}
}

// addPod adds a pod (of the cluster, or of a step's addPods) with its
// node and addresses defaulted.
func (b *builder) addPod(ps podSpec) {
	if !ps.ok {
		return
	}
	p := ps.pod.clone()
	if old, dup := b.st.Pod(p.Key()); dup {
		if b.step == nil {
			b.d.errorf(ps.nameAt, "duplicate pod %q (also line %d)", p.Key(), old.Line)
		} else {
			b.d.errorf(ps.nameAt, "pod %q already exists at this step", p.Key())
		}
		return
	}
	if !b.podNode(&p, ps) {
		return
	}
	b.ensureNamespace(p.Namespace)
	owner := "pod " + p.Key()
	b.claim(p.IPv4, owner, ps.ipv4At)
	b.claim(p.IPv6, owner, ps.ipv6At)
	if !p.IPv4.IsValid() || !p.IPv6.IsValid() {
		b.allocPod(&p, ps)
	}
	b.st.Pods = append(b.st.Pods, p)
	b.everPods[p.Key()] = true
	if b.step != nil {
		b.step.AddPods = append(b.step.AddPods, p.clone())
	}
}

// podNode defaults a pod's node to the first node and checks it exists.
func (b *builder) podNode(p *Pod, ps podSpec) bool {
	if ps.nodeAt.n == nil {
		if len(b.st.Nodes) == 0 {
			return false
		}
		p.Node = b.st.Nodes[0].Name
		return true
	}
	if _, ok := b.nodeIndex[p.Node]; !ok {
		b.d.errorf(ps.nodeAt, "unknown node %q%s", p.Node, suggest(p.Node, b.nodeNames(), "nodes"))
		return false
	}
	return true
}

// nodeNames lists the nodes' names.
func (b *builder) nodeNames() []string {
	var out []string
	for _, n := range b.st.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// allocPod assigns a pod's missing addresses: host numbers count from 10
// per node, skipping any number whose IPv4 or IPv6 address is written
// somewhere in the file or held.
func (b *builder) allocPod(p *Pod, ps podSpec) {
	idx := b.nodeIndex[p.Node]
	h := b.nextPod[p.Node]
	if h == 0 {
		h = firstHost
	}
	for ; h <= lastHost; h++ {
		v4 := hostAddr("10.244.%d.%d", idx, h)
		v6 := hostAddr("fd00:10:244:%d::%d", idx, h)
		if !b.free(v4, v6) {
			continue
		}
		owner := "pod " + p.Key()
		if !p.IPv4.IsValid() {
			p.IPv4, b.inUse[v4] = v4, owner
		}
		if !p.IPv6.IsValid() {
			p.IPv6, b.inUse[v6] = v6, owner
		}
		b.nextPod[p.Node] = h + 1
		return
	}
	b.nextPod[p.Node] = lastHost + 1
	b.d.errorf(ps.at, "no free pod address on node %q (host numbers %d-%d are used up): give ipv4 and ipv6", p.Node, firstHost, lastHost)
}

// buildPolicies adds the top-level policies.
func (b *builder) buildPolicies() {
	for i, o := range b.f.policies {
		if prev, dup := b.st.Policy(o.Kind, o.Namespace, o.Name); dup {
			b.d.errorf(b.f.policyAt[i], "duplicate policy %s (also line %d)", objectName(o.Kind, o.Namespace, o.Name), prev.Line)
			continue
		}
		b.ensureNamespace(o.Namespace)
		b.st.Policies = append(b.st.Policies, o)
	}
}

// objectName formats "Kind namespace/name" or "Kind name".
func objectName(kind, ns, name string) string {
	if ns == "" {
		return kind + " " + name
	}
	return kind + " " + ns + "/" + name
}

// topStep builds step 0 from the top-level probes and matrix.
func (b *builder) topStep() {
	step := &Step{Index: len(b.sc.Steps), Line: b.f.topAt.n.Line}
	b.step = step
	b.st.Step = step.Index
	b.sc.states = append(b.sc.states, b.st.clone())
	b.stepProbes(step, b.f.probes, b.f.matrix)
	b.sc.Steps = append(b.sc.Steps, *step)
	b.step = nil
}

// stepEntry applies an entry of steps and builds its probes. Mutations
// apply in a fixed order: deletePods, addPods, setLabels, delete, apply.
func (b *builder) stepEntry(ss stepSpec) {
	step := &Step{Index: len(b.sc.Steps)}
	if ss.at.n != nil {
		step.Line = ss.at.n.Line
	}
	b.step = step
	b.st.Step = step.Index
	b.deletePods(ss)
	for _, ps := range ss.addPods {
		b.addPod(ps)
	}
	b.terminatePods(ss)
	b.setLabels(ss)
	b.deleteObjects(ss)
	b.applyObjects(ss)
	b.sc.states = append(b.sc.states, b.st.clone())
	b.stepProbes(step, ss.probes, ss.matrix)
	b.sc.Steps = append(b.sc.Steps, *step)
	b.step = nil
}

// deletePods removes pods and frees their addresses.
func (b *builder) deletePods(ss stepSpec) {
	for _, dp := range ss.deletePods {
		if _, _, err := checkKey(dp.s, "pod"); err != nil {
			b.d.errorf(dp.at, "%v", err)
			continue
		}
		i := b.podIndex(dp.s)
		if i < 0 {
			b.d.errorf(dp.at, "%s", b.unknownPod(dp.s))
			continue
		}
		p := b.st.Pods[i]
		b.release(p.IPv4, p.IPv6)
		b.st.Pods = append(b.st.Pods[:i:i], b.st.Pods[i+1:]...)
		b.step.DeletePods = append(b.step.DeletePods, dp.s)
	}
}

// terminatePods marks pods terminating.
func (b *builder) terminatePods(ss stepSpec) {
	for _, tp := range ss.terminatePods {
		if _, _, err := checkKey(tp.s, "pod"); err != nil {
			b.d.errorf(tp.at, "%v", err)
			continue
		}
		i := b.podIndex(tp.s)
		switch {
		case i < 0:
			b.d.errorf(tp.at, "%s", b.unknownPod(tp.s))
		case b.st.Pods[i].Terminating:
			b.d.errorf(tp.at, "pod %q is terminating already", tp.s)
		default:
			b.st.Pods[i].Terminating = true
			b.step.TerminatePods = append(b.step.TerminatePods, tp.s)
		}
	}
}

// podIndex returns the position of a pod in the current state, or -1.
func (b *builder) podIndex(key string) int {
	for i, p := range b.st.Pods {
		if p.Key() == key {
			return i
		}
	}
	return -1
}

// unknownPod explains why a pod key does not resolve at this point.
func (b *builder) unknownPod(key string) string {
	switch {
	case b.everPods[key]:
		return fmt.Sprintf("pod %q does not exist at this step (it was deleted earlier)", key)
	case b.laterPods[key] != "":
		return fmt.Sprintf("pod %q does not exist yet at this step (%s adds it)", key, b.laterPods[key])
	}
	var keys []string
	for _, p := range b.st.Pods {
		keys = append(keys, p.Key())
	}
	return fmt.Sprintf("unknown pod %q%s", key, suggest(key, keys, "pods"))
}

// setLabels replaces the labels of pods and namespaces.
func (b *builder) setLabels(ss stepSpec) {
	for _, ls := range ss.setLabels {
		if !ls.ok {
			continue
		}
		c := ls.change
		if c.Pod != "" {
			b.setPodLabels(ls)
			continue
		}
		b.setNamespaceLabels(ls, c)
	}
}

// setPodLabels replaces a pod's labels.
func (b *builder) setPodLabels(ls labelSpec) {
	c := ls.change
	if _, _, err := checkKey(c.Pod, "pod"); err != nil {
		b.d.errorf(ls.targetAt, "%v", err)
		return
	}
	i := b.podIndex(c.Pod)
	if i < 0 {
		b.d.errorf(ls.targetAt, "%s", b.unknownPod(c.Pod))
		return
	}
	b.st.Pods[i].Labels = cloneMap(c.Labels)
	c.Labels = cloneMap(c.Labels)
	b.step.SetLabels = append(b.step.SetLabels, c)
}

// setNamespaceLabels replaces a namespace's labels, keeping the implied
// name label.
func (b *builder) setNamespaceLabels(ls labelSpec, c LabelChange) {
	var names []string
	for i, ns := range b.st.Namespaces {
		names = append(names, ns.Name)
		if ns.Name != c.Namespace {
			continue
		}
		if v, ok := c.Labels[NamespaceNameLabel]; ok && v != ns.Name {
			b.d.errorf(at(ls.at.n, field(ls.at.path, "labels")), "label %s must be the namespace's name %q, got %q", NamespaceNameLabel, ns.Name, v)
			return
		}
		labels := cloneMap(c.Labels)
		labels[NamespaceNameLabel] = ns.Name
		b.st.Namespaces[i].Labels = labels
		c.Labels = cloneMap(labels)
		b.step.SetLabels = append(b.step.SetLabels, c)
		return
	}
	b.d.errorf(ls.targetAt, "unknown namespace %q%s", c.Namespace, suggest(c.Namespace, names, "namespaces"))
}

// cloneMap copies a string map, never returning nil.
func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// deleteObjects removes policies.
func (b *builder) deleteObjects(ss stepSpec) {
	for _, ds := range ss.delete {
		if !ds.ok {
			continue
		}
		r := ds.ref
		i := b.policyIndex(r.Kind, r.Namespace, r.Name)
		if i < 0 {
			b.d.errorf(ds.at, "%s does not exist at this step%s", objectName(r.Kind, r.Namespace, r.Name), b.policyHint(r))
			continue
		}
		b.st.Policies = append(b.st.Policies[:i:i], b.st.Policies[i+1:]...)
		b.step.Delete = append(b.step.Delete, r)
	}
}

// policyHint names the policies in effect, to help spot a typo.
func (b *builder) policyHint(r ObjectRef) string {
	var names []string
	for _, o := range b.st.Policies {
		names = append(names, objectName(o.Kind, o.Namespace, o.Name))
	}
	if len(names) == 0 {
		return " (no policies are in effect)"
	}
	return suggest(objectName(r.Kind, r.Namespace, r.Name), names, "policies in effect")
}

// policyIndex returns the position of a policy in the current state, or -1.
func (b *builder) policyIndex(kind, ns, name string) int {
	for i, o := range b.st.Policies {
		if o.Kind == kind && o.Namespace == ns && o.Name == name {
			return i
		}
	}
	return -1
}

// applyObjects creates or replaces policies; a replaced policy keeps its
// place.
func (b *builder) applyObjects(ss stepSpec) {
	seen := map[string]int{}
	for i, o := range ss.apply {
		name := objectName(o.Kind, o.Namespace, o.Name)
		if line, dup := seen[name]; dup {
			b.d.errorf(ss.applyAt[i], "%s is applied twice in this step (also line %d)", name, line)
			continue
		}
		seen[name] = o.Line
		b.ensureNamespace(o.Namespace)
		if j := b.policyIndex(o.Kind, o.Namespace, o.Name); j >= 0 {
			b.st.Policies[j] = o
		} else {
			b.st.Policies = append(b.st.Policies, o)
		}
		b.step.Apply = append(b.step.Apply, o)
	}
}

// peerNames lists what a bare name could have meant, for hints.
func (b *builder) peerHint(name string) string {
	if _, ok := b.st.Node(name); ok {
		return fmt.Sprintf(" (did you mean %q?)", "node:"+name)
	}
	for _, p := range b.st.Pods {
		if p.Name == name {
			return fmt.Sprintf(" (did you mean %q?)", p.Key())
		}
	}
	for _, s := range b.st.Services {
		if s.Name == name {
			return fmt.Sprintf(" (did you mean %q?)", "service:"+s.Key())
		}
	}
	var names []string
	for _, x := range b.st.Externals {
		names = append(names, x.Name)
	}
	return suggest(name, names, "externals")
}

// describePeer names a peer in messages: "pod default/a", "node node-1".
func describePeer(p Peer) string {
	switch p.Kind {
	case PeerIP:
		return "ip:" + p.Addr.String()
	case PeerService:
		return "service " + p.Name
	}
	return string(p.Kind) + " " + p.Name
}

// parsePeer parses the syntax of a probe's from or to (existence is
// checked by the caller): "node:<name>", "service:<ns/name>",
// "ip:<addr>", "<ns/name>" for a pod, else an external's name.
func parsePeer(s string) (Peer, error) {
	prefix, rest, hasPrefix := strings.Cut(s, ":")
	if hasPrefix && !strings.Contains(prefix, "/") {
		switch prefix {
		case "node":
			if rest == "" {
				return Peer{}, fmt.Errorf("%q names no node", s)
			}
			return Peer{Kind: PeerNode, Name: rest}, nil
		case "service":
			if _, _, err := checkKey(rest, "service"); err != nil {
				return Peer{}, err
			}
			return Peer{Kind: PeerService, Name: rest}, nil
		case "ip":
			a, err := parseAddr(rest)
			if err != nil {
				return Peer{}, err
			}
			return Peer{Kind: PeerIP, Addr: a}, nil
		}
		if _, err := netip.ParseAddr(s); err == nil {
			return Peer{}, fmt.Errorf("write an address as %q", "ip:"+s)
		}
		return Peer{}, fmt.Errorf("unknown peer prefix %q: use node:, service: or ip:", prefix+":")
	}
	if strings.Contains(s, "/") {
		if _, _, err := checkKey(s, "pod"); err != nil {
			return Peer{}, err
		}
		return Peer{Kind: PeerPod, Name: s}, nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return Peer{}, fmt.Errorf("write an address as %q", "ip:"+s)
	}
	return Peer{Kind: PeerExternal, Name: s}, nil
}

// resolvePeer parses a probe end and checks that it exists now; from
// ends may not be services or addresses.
func (b *builder) resolvePeer(s string, l loc, isTo bool) (Peer, bool) {
	p, err := parsePeer(s)
	if err != nil {
		b.d.errorf(l, "%v", err)
		return Peer{}, false
	}
	if !isTo && (p.Kind == PeerService || p.Kind == PeerIP) {
		b.d.errorf(l, "a probe cannot start at %s: from is a pod, an external or node:<name>", describePeer(p))
		return Peer{}, false
	}
	if msg := b.peerMissing(p); msg != "" {
		b.d.errorf(l, "%s", msg)
		return Peer{}, false
	}
	return p, true
}

// peerMissing explains why p does not exist now, "" when it does.
func (b *builder) peerMissing(p Peer) string {
	switch p.Kind {
	case PeerPod:
		if _, ok := b.st.Pod(p.Name); !ok {
			return b.unknownPod(p.Name)
		}
	case PeerNode:
		if _, ok := b.st.Node(p.Name); !ok {
			return fmt.Sprintf("unknown node %q%s", p.Name, suggest(p.Name, b.nodeNames(), "nodes"))
		}
	case PeerService:
		if _, ok := b.st.Service(p.Name); !ok {
			var keys []string
			for _, s := range b.st.Services {
				keys = append(keys, s.Key())
			}
			return fmt.Sprintf("unknown service %q%s", p.Name, suggest(p.Name, keys, "services"))
		}
	case PeerExternal:
		if _, ok := b.st.External(p.Name); !ok {
			return fmt.Sprintf("unknown peer %q: not a pod (namespace/name), node:<name>, service:<namespace/name>, ip:<address> or external%s", p.Name, b.peerHint(p.Name))
		}
	}
	return ""
}
