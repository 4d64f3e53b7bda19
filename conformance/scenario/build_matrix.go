package scenario

import (
	"reflect"
	"strings"
)

// cell is one probe of a matrix being expanded.
type cell struct {
	p Probe
	// setBy is the index of the except that set the expectation, -1 for
	// the default.
	setBy int
	at    loc
}

// matrix expands a matrix at the current state: every from × to × port ×
// family, self pairs left out, in that nesting order; cells whose
// destination lacks a named port (or, for a service, the port), or whose
// ends lack an address of the family, are skipped. Excepts then override
// the default.
func (b *builder) matrix(ms matrixSpec) []builtProbe {
	froms, okFrom := b.expandPatterns(ms.from, false)
	tos, okTo := b.expandPatterns(ms.to, true)
	if !ms.ok || !okFrom || !okTo {
		return nil
	}
	cells := b.cells(ms, froms, tos)
	if len(cells) == 0 {
		return nil
	}
	b.applyExcepts(ms, cells)
	out := make([]builtProbe, len(cells))
	for i, c := range cells {
		c.p.Line = c.at.n.Line
		c.p.Path = c.at.path
		c.p.Features = probeFeatures(c.p)
		out[i] = builtProbe{p: c.p, at: c.at}
	}
	return out
}

// expandPatterns resolves a list of patterns into peers, in order,
// without duplicates.
func (b *builder) expandPatterns(pats []strAt, isTo bool) ([]Peer, bool) {
	var out []Peer
	seen := map[Peer]bool{}
	ok := true
	for _, pat := range pats {
		peers, good := b.expandPattern(pat, isTo)
		ok = ok && good
		for _, p := range peers {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out, ok
}

// expandPattern resolves one pattern: "*" (every pod), "ns/*" (every pod
// of ns) or a single peer.
func (b *builder) expandPattern(pat strAt, isTo bool) ([]Peer, bool) {
	s := pat.s
	switch {
	case s == "*":
		if len(b.st.Pods) == 0 {
			b.d.errorf(pat.at, "\"*\" matches no pods at this step")
			return nil, false
		}
		return podPeers(b.st.Pods), true
	case strings.HasSuffix(s, "/*"):
		ns := strings.TrimSuffix(s, "/*")
		if err := checkDNSLabel(ns, 63); err != nil {
			b.d.errorf(pat.at, "namespace %v", err)
			return nil, false
		}
		pods := b.st.PodsInNamespace(ns)
		if len(pods) == 0 {
			b.d.errorf(pat.at, "%q matches no pods: namespace %q has none at this step", s, ns)
			return nil, false
		}
		return podPeers(pods), true
	case strings.Contains(s, "*"):
		b.d.errorf(pat.at, "invalid pattern %q: \"*\" stands alone or as \"namespace/*\"", s)
		return nil, false
	}
	p, ok := b.resolvePeer(s, pat.at, isTo)
	if !ok {
		return nil, false
	}
	return []Peer{p}, true
}

// podPeers returns pods as peers.
func podPeers(pods []Pod) []Peer {
	out := make([]Peer, len(pods))
	for i, p := range pods {
		out[i] = Peer{Kind: PeerPod, Name: p.Key()}
	}
	return out
}

// matchPattern reports whether a peer matches a pattern.
func matchPattern(pat string, p Peer) bool {
	switch {
	case pat == "*":
		return p.Kind == PeerPod
	case strings.HasSuffix(pat, "/*"):
		ns, _, _ := strings.Cut(p.Name, "/")
		return p.Kind == PeerPod && ns == strings.TrimSuffix(pat, "/*")
	}
	q, err := parsePeer(pat)
	return err == nil && q == p
}

// cells expands the grid with the default expectation.
func (b *builder) cells(ms matrixSpec, froms, tos []Peer) []cell {
	var out []cell
	used := make([]int, len(ms.ports))
	seen := map[string]bool{}
	pairs := 0
	for _, from := range froms {
		for _, to := range tos {
			if from == to {
				continue
			}
			pairs++
			for pi, pp := range ms.ports {
				p, ok := b.cellPort(to, pp)
				if !ok {
					continue
				}
				p.From, p.To, p.Expect = from, to, Expectation{Verdict: ms.def}
				for _, fam := range ms.families {
					if !b.hasFamily(from, to, fam) {
						continue
					}
					p.Family = fam
					if k := probeKey(p); !seen[k] {
						seen[k] = true
						out = append(out, cell{p: p, setBy: -1, at: ms.at})
						used[pi]++
					}
				}
			}
		}
	}
	if pairs == 0 {
		b.d.errorf(ms.at, "the matrix expands to no probes: its only from/to pairs are self pairs, which are left out")
		return nil
	}
	b.checkPortsUsed(ms, used, len(out))
	return out
}

// checkPortsUsed reports matrix ports that yield no cell: a typo in a
// port name would otherwise silently probe nothing.
func (b *builder) checkPortsUsed(ms matrixSpec, used []int, total int) {
	if total == 0 {
		b.d.errorf(ms.at, "the matrix expands to no probes: no destination has its ports, or no from/to pair has addresses of its families")
		return
	}
	for pi, n := range used {
		if n > 0 {
			continue
		}
		pp := ms.ports[pi]
		if pp.name != "" {
			b.d.errorf(pp.at, "no destination of this matrix has a port named %q", pp.name)
		} else {
			b.d.errorf(pp.at, "port %q yields no probe in this matrix", pp.raw)
		}
	}
}

// cellPort resolves a matrix port on a destination; ok is false when the
// cell is to be skipped.
func (b *builder) cellPort(to Peer, pp portPat) (Probe, bool) {
	switch {
	case pp.proto == ICMP:
		return Probe{Protocol: ICMP}, true
	case pp.name != "":
		port, ok := b.namedPort(to, pp.name)
		return Probe{Port: port.Port, PortName: pp.name, Protocol: port.Protocol}, ok
	case to.Kind == PeerService:
		svc, _ := b.st.Service(to.Name)
		return Probe{Port: pp.num, Protocol: pp.proto}, serviceHasPort(svc, pp.num, pp.proto)
	}
	return Probe{Port: pp.num, Protocol: pp.proto}, true
}

// hasFamily reports whether both ends have an address of fam.
func (b *builder) hasFamily(from, to Peer, fam Family) bool {
	_, okFrom := b.st.Addr(from, fam)
	_, okTo := b.st.Addr(to, fam)
	return okFrom && okTo
}

// applyExcepts sets the expectation of the cells each except matches.
// Every except must match a cell, and two excepts matching one cell must
// agree.
func (b *builder) applyExcepts(ms matrixSpec, cells []cell) {
	for ei, ex := range ms.except {
		if ex.from.s == "" || ex.to.s == "" {
			continue
		}
		_, okFrom := b.expandPattern(ex.from, false)
		_, okTo := b.expandPattern(ex.to, true)
		exp, okExp := b.exceptExpectation(ms, ex)
		if !okFrom || !okTo || !okExp {
			continue
		}
		matched, conflict := 0, -1
		for ci := range cells {
			c := &cells[ci]
			if !b.exceptMatches(ex, c.p) {
				continue
			}
			matched++
			if c.setBy >= 0 && !reflect.DeepEqual(c.p.Expect, exp) {
				conflict = c.setBy
				continue
			}
			c.p.Expect, c.setBy, c.at = exp, ei, ex.at
		}
		if matched == 0 {
			b.d.errorf(ex.at, "matches no probe of this matrix (check from, to and port; self pairs are left out)")
		}
		if conflict >= 0 {
			b.d.errorf(ex.at, "contradicts %s on a probe both match", index(field(ms.at.path, "except"), conflict))
		}
	}
}

// exceptExpectation returns an except's expectation: as written, or the
// opposite of the matrix default.
func (b *builder) exceptExpectation(ms matrixSpec, ex exceptSpec) (Expectation, bool) {
	if ex.expect == nil {
		v := Deny
		if ms.def == Deny {
			v = Allow
		}
		return Expectation{Verdict: v}, true
	}
	if !ex.expect.ok || !b.checkBackends(*ex.expect) {
		return Expectation{}, false
	}
	return ex.expect.e, true
}

// exceptMatches reports whether an except matches a cell. A port name
// matches the cells whose destination has a port of that name with the
// cell's number and protocol.
func (b *builder) exceptMatches(ex exceptSpec, p Probe) bool {
	if !matchPattern(ex.from.s, p.From) || !matchPattern(ex.to.s, p.To) {
		return false
	}
	if ex.family != "" && ex.family != p.Family {
		return false
	}
	pp := ex.port
	switch {
	case pp == nil:
		return true
	case pp.proto == ICMP:
		return p.Protocol == ICMP
	case pp.name != "":
		port, ok := b.namedPort(p.To, pp.name)
		return ok && p.Protocol != ICMP && port.Port == p.Port && port.Protocol == p.Protocol
	}
	return p.Protocol == pp.proto && p.Port == pp.num
}
