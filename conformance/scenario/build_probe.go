package scenario

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/ciliaproject/cilia/conformance/features"
)

// builtProbe is a resolved probe and where it was written (for the cells
// of a matrix: the matrix, or the except that set its expectation).
type builtProbe struct {
	p  Probe
	at loc
}

// stepProbes builds a step's explicit probes, then the cells of its
// matrices, checks that duplicates agree, and assigns IDs.
func (b *builder) stepProbes(step *Step, probes []probeSpec, matrices []matrixSpec) {
	var all []builtProbe
	for _, ps := range probes {
		if p, ok := b.probe(ps); ok {
			all = append(all, builtProbe{p: p, at: ps.at})
		}
	}
	for _, ms := range matrices {
		all = append(all, b.matrix(ms)...)
	}
	b.checkConflicts(all)
	for _, bp := range all {
		if bp.p.Repeat == 0 {
			bp.p.Repeat = 1 // matrix cells
		}
		bp.p.Step = step.Index
		bp.p.ID = b.newID(step.Index, bp.p)
		step.Probes = append(step.Probes, bp.p)
	}
}

// probe resolves one explicit probe at the current state.
func (b *builder) probe(ps probeSpec) (Probe, bool) {
	var from, to Peer
	okFrom, okTo := false, false
	if ps.from != "" {
		from, okFrom = b.resolvePeer(ps.from, ps.fromAt, false)
	}
	if ps.to != "" {
		to, okTo = b.resolvePeer(ps.to, ps.toAt, true)
	}
	okBackends := b.checkBackends(ps.expect)
	if !ps.portOK || !okFrom || !okTo {
		return Probe{}, false
	}
	p := Probe{
		From: from, To: to, HTTP: ps.http, Kafka: ps.kafka, Expect: ps.expect.e,
		Line: ps.at.n.Line, Path: ps.at.path,
	}
	ok := b.probePort(ps, &p)
	ok = b.probeFamily(ps, &p) && ok
	ok = b.probeL7(ps, &p) && ok
	ok = b.probeLB(ps, &p) && ok
	p.Features = probeFeatures(p)
	return p, ok && ps.ok && okBackends
}

// probeLB resolves a probe's name, repeat and sourcePort and checks the
// load-balancing expectations against them: sameBackend needs repeat >= 2,
// distinctBackends at most repeat, sameBackendAs an earlier probe's name,
// replyNotVia known nodes.
func (b *builder) probeLB(ps probeSpec, p *Probe) bool {
	ok := true
	p.Repeat, p.SourcePort = 1, uint16(ps.sourcePort)
	if ps.repeat > 0 {
		p.Repeat = int(ps.repeat)
	}
	if p.SourcePort != 0 && p.Protocol == ICMP {
		b.d.errorf(ps.sourcePortAt, "an ICMP probe has no source port")
		ok = false
	}
	es := ps.expect
	if es.e.SameBackend && p.Repeat < 2 {
		b.d.errorf(es.sameBackendAt, "sameBackend relates the repetitions of a probe: it needs repeat of at least 2")
		ok = false
	}
	if es.e.DistinctBackends > p.Repeat {
		b.d.errorf(es.distinctAt, "distinctBackends %d needs at least as many repetitions (repeat is %d)", es.e.DistinctBackends, p.Repeat)
		ok = false
	}
	if name := es.e.SameBackendAs; name != "" {
		ref, found := b.names[name]
		switch {
		case name == ps.name.s:
			b.d.errorf(es.sameAsAt, "sameBackendAs %q names this probe itself", name)
			ok = false
		case !found:
			var known []string
			for n := range b.names {
				known = append(known, n)
			}
			sort.Strings(known)
			b.d.errorf(es.sameAsAt, "sameBackendAs %q names no earlier probe%s", name, suggest(name, known, "named probes"))
			ok = false
		case ref.Expect.Verdict != Allow:
			b.d.errorf(es.sameAsAt, "sameBackendAs %q names a probe that expects deny: it has no backend", name)
			ok = false
		}
	}
	for i, n := range es.e.ReplyNotVia {
		if _, known := b.nodeIndex[n]; !known {
			var nodes []string
			for _, node := range b.st.Nodes {
				nodes = append(nodes, node.Name)
			}
			b.d.errorf(es.replyNotViaAt[i], "unknown node %q%s", n, suggest(n, nodes, "nodes"))
			ok = false
		}
	}
	p.Name = ps.name.s
	if p.Name != "" {
		if prev, dup := b.names[p.Name]; dup {
			b.d.errorf(ps.name.at, "duplicate probe name %q (also %s, line %d)", p.Name, prev.Path, prev.Line)
			ok = false
		} else {
			b.names[p.Name] = *p
		}
	}
	return ok
}

// probePort resolves a probe's port and protocol: a named port gives
// both; ICMP takes no port; TCP, UDP and SCTP need one.
func (b *builder) probePort(ps probeSpec, p *Probe) bool {
	proto := ps.protocol
	if ps.port.given && ps.port.name != "" {
		port, ok := b.namedPortOrError(p.To, ps.port.name, ps.portAt)
		if !ok {
			return false
		}
		if proto != "" && proto != port.Protocol {
			b.d.errorf(ps.protoAt, "port %q of %s is %s, not %s", ps.port.name, describePeer(p.To), port.Protocol, proto)
			return false
		}
		p.Port, p.PortName, p.Protocol = port.Port, ps.port.name, port.Protocol
		return true
	}
	if proto == ICMP {
		if ps.port.given {
			b.d.errorf(ps.portAt, "an ICMP probe sends an echo request and takes no port")
			return false
		}
		p.Protocol = ICMP
		return true
	}
	if proto == "" {
		proto = TCP
	}
	p.Protocol = proto
	if !ps.port.given {
		b.d.errorf(ps.portAt, "required field is missing: a %s probe needs a port", proto)
		return false
	}
	if ps.port.num < 1 || ps.port.num > 65535 {
		b.d.errorf(ps.portAt, "port %d is out of range (1-65535)", ps.port.num)
		return false
	}
	p.Port = uint16(ps.port.num)
	return b.checkServicePort(p, ps.portAt)
}

// checkServicePort checks that a service destination exposes the
// probe's port.
func (b *builder) checkServicePort(p *Probe, l loc) bool {
	if p.To.Kind != PeerService {
		return true
	}
	svc, _ := b.st.Service(p.To.Name)
	if serviceHasPort(svc, p.Port, p.Protocol) {
		return true
	}
	var have []string
	for _, sp := range svc.Ports {
		have = append(have, fmt.Sprintf("%d/%s", sp.Port, sp.Protocol))
	}
	b.d.errorf(l, "service %s has no port %d/%s (it has: %s); to probe a port it does not expose, use ip:<cluster IP>",
		svc.Key(), p.Port, p.Protocol, strings.Join(have, ", "))
	return false
}

// serviceHasPort reports whether svc exposes port/proto.
func serviceHasPort(svc Service, port uint16, proto Protocol) bool {
	for _, sp := range svc.Ports {
		if sp.Port == port && sp.Protocol == proto {
			return true
		}
	}
	return false
}

// portsOf returns the ports a destination serves under names: a pod's or
// external's ports, a service's ports. ok is false for nodes and
// addresses, which have no named ports.
func (b *builder) portsOf(p Peer) ([]Port, bool) {
	switch p.Kind {
	case PeerPod:
		pod, _ := b.st.Pod(p.Name)
		return pod.Ports, true
	case PeerExternal:
		x, _ := b.st.External(p.Name)
		return x.Ports, true
	case PeerService:
		svc, _ := b.st.Service(p.Name)
		var out []Port
		for _, sp := range svc.Ports {
			out = append(out, Port{Name: sp.Name, Port: sp.Port, Protocol: sp.Protocol})
		}
		return out, true
	}
	return nil, false
}

// namedPort finds the port called name on a destination.
func (b *builder) namedPort(to Peer, name string) (Port, bool) {
	ports, _ := b.portsOf(to)
	for _, p := range ports {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}

// namedPortOrError finds the port called name on a destination or
// explains which names it has.
func (b *builder) namedPortOrError(to Peer, name string, l loc) (Port, bool) {
	ports, ok := b.portsOf(to)
	if !ok {
		b.d.errorf(l, "%s has no named ports: give a port number", describePeer(to))
		return Port{}, false
	}
	var names []string
	for _, p := range ports {
		if p.Name == name {
			return p, true
		}
		if p.Name != "" {
			names = append(names, p.Name)
		}
	}
	have := "it has no named ports"
	if len(names) > 0 {
		have = "it has: " + strings.Join(names, ", ")
	}
	b.d.errorf(l, "%s has no port named %q (%s)", describePeer(to), name, have)
	return Port{}, false
}

// probeFamily resolves a probe's family (ipv4 by default, or the family
// of an ip: destination) and checks both ends have an address in it.
func (b *builder) probeFamily(ps probeSpec, p *Probe) bool {
	fam := ps.family
	if fam == "" {
		fam = IPv4
		if p.To.Kind == PeerIP {
			fam = familyOf(p.To.Addr)
		}
	}
	p.Family = fam
	ok := true
	if _, has := b.st.Addr(p.From, fam); !has {
		b.d.errorf(ps.fromAt, "%s has no %s address (the probe's family is %s)", describePeer(p.From), familyName(fam), fam)
		ok = false
	}
	if _, has := b.st.Addr(p.To, fam); !has {
		if p.To.Kind == PeerIP {
			b.d.errorf(ps.toAt, "%s is an %s address but the probe's family is %s", describePeer(p.To), familyName(familyOf(p.To.Addr)), fam)
		} else {
			b.d.errorf(ps.toAt, "%s has no %s address (the probe's family is %s)", describePeer(p.To), familyName(fam), fam)
		}
		ok = false
	}
	return ok
}

// probeL7 checks that an L7 request travels over TCP.
func (b *builder) probeL7(ps probeSpec, p *Probe) bool {
	if (p.HTTP != nil || p.Kafka != nil) && p.Protocol != TCP {
		kind := "an http"
		if p.Kafka != nil {
			kind = "a kafka"
		}
		b.d.errorf(ps.l7At, "%s request needs protocol TCP, got %s", kind, p.Protocol)
		return false
	}
	return true
}

// checkBackends checks that the pods of expect.backendIn exist now.
func (b *builder) checkBackends(es expectSpec) bool {
	ok := true
	for i, k := range es.e.BackendIn {
		if _, exists := b.st.Pod(k); !exists {
			b.d.errorf(es.backendAt[i], "%s", b.unknownPod(k))
			ok = false
		}
	}
	return ok
}

// probeFeatures returns the features a probe needs beyond the
// scenario's: ipv6, l7-http, l7-kafka.
func probeFeatures(p Probe) []features.Feature {
	var out []features.Feature
	if p.Family == IPv6 {
		out = append(out, features.IPv6)
	}
	if p.HTTP != nil {
		out = append(out, features.L7HTTP)
	}
	if p.Kafka != nil {
		out = append(out, features.L7Kafka)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// probeKey identifies what a probe does, without its expectation.
func probeKey(p Probe) string {
	var l7 string
	if p.HTTP != nil {
		l7 = fmt.Sprintf("http %s %s %v", p.HTTP.Method, p.HTTP.Path, sortedLabels(p.HTTP.Headers))
	}
	if p.Kafka != nil {
		l7 = fmt.Sprintf("kafka %+v", *p.Kafka)
	}
	return fmt.Sprintf("%s|%s|%d|%s|%s|%s|%s|%d|%d", p.From, p.To, p.Port, p.Protocol, p.Family, l7, p.Name, p.Repeat, p.SourcePort)
}

// checkConflicts reports probes of one step that do the same thing but
// expect different outcomes.
func (b *builder) checkConflicts(all []builtProbe) {
	first := map[string]int{}
	for i, bp := range all {
		k := probeKey(bp.p)
		j, dup := first[k]
		if !dup {
			first[k] = i
			continue
		}
		if !reflect.DeepEqual(all[j].p.Expect, bp.p.Expect) {
			b.d.errorf(bp.at, "%s -> %s %s expects %s here but %s (line %d) expects %s",
				bp.p.From, bp.p.To, portString(bp.p), bp.p.Expect, all[j].at.path, all[j].p.Line, all[j].p.Expect)
		}
	}
}

// newID returns a probe's ID, unique within the scenario.
func (b *builder) newID(step int, p Probe) string {
	id := fmt.Sprintf("step %d: %s -> %s %s", step, p.From, p.To, portString(p))
	if p.Family == IPv6 {
		id += " ipv6"
	}
	if p.HTTP != nil {
		id += " http " + p.HTTP.Method + " " + p.HTTP.Path
	}
	if p.Kafka != nil {
		id += " kafka " + p.Kafka.APIKey
		if p.Kafka.Topic != "" {
			id += " " + p.Kafka.Topic
		}
	}
	if p.SourcePort != 0 {
		id += fmt.Sprintf(" from port %d", p.SourcePort)
	}
	if p.Repeat > 1 {
		id += fmt.Sprintf(" x%d", p.Repeat)
	}
	if p.Name != "" {
		id += " [" + p.Name + "]"
	}
	b.ids[id]++
	if n := b.ids[id]; n > 1 {
		id += fmt.Sprintf(" #%d", n)
	}
	return id
}

// portString formats a probe's port: "80/TCP", "http=80/TCP" for a named
// port, "ICMP" for an echo.
func portString(p Probe) string {
	if p.Protocol == ICMP {
		return string(ICMP)
	}
	s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	if p.PortName != "" {
		s = p.PortName + "=" + s
	}
	return s
}
