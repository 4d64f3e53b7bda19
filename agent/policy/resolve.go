package policy

import (
	"sort"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// NamedPort is a port a pod serves under a name.
type NamedPort struct {
	Name  string
	Port  uint16
	Proto uint8
}

// Subject is the endpoint whose policy is resolved.
type Subject struct {
	Identity *identity.Identity
	// Ports are the endpoint's own named ports: named ports of ingress
	// rules resolve on them.
	Ports []NamedPort
}

// PeerPorts tells which named ports the pods of the cluster serve: named
// ports of egress rules resolve on them, per destination.
type PeerPorts interface {
	// PortsOf returns the named ports of the pods that have identity n.
	PortsOf(n identity.NumericIdentity) []NamedPort
	// PortOwners returns the named ports of every pod identity.
	PortOwners() map[identity.NumericIdentity][]NamedPort
}

// Synthetic origins of entries no user rule wrote.
var (
	// OriginAllowLocalhost allows the endpoint's own node in: Kubernetes
	// requires that traffic from the node (kubelet probes) always reaches
	// its pods, and Cilium's allow-localhost default does so.
	OriginAllowLocalhost = &Origin{Policy: "allow-localhost", Path: "traffic from the endpoint's own node is always allowed"}
	// OriginNoDefaultDeny allows everything not denied when every rule
	// selecting the endpoint in a direction sets enableDefaultDeny false.
	OriginNoDefaultDeny = &Origin{Policy: "enableDefaultDeny: false", Path: "no rule selecting the endpoint turns on default deny"}
)

// EndpointPolicy is the resolved policy of one endpoint: per direction,
// whether it is enforced, the rules that select the endpoint, and the
// policy map entries. It is updated in place as identities come and go.
type EndpointPolicy struct {
	Subject   Subject
	Ingress   *DirPolicy
	Egress    *DirPolicy
	cache     *SelectorCache
	peerPorts PeerPorts
}

// DirPolicy is one direction of an EndpointPolicy.
type DirPolicy struct {
	Dir      maps.Direction
	Enforced bool
	// Selecting are the rules that select the endpoint and have rules in
	// this direction.
	Selecting []*Rule
	terms     []*PeerRule
	synthetic []*PeerRule
	raw       map[identity.NumericIdentity]map[maps.PolicyKey]*rawEntry
}

// rawEntry is one key's contributions: the allow and the deny terms that
// wrote it.
type rawEntry struct {
	allows []*Origin
	denies []*Origin
}

// MapValue is an effective policy map entry and the rules behind it.
type MapValue struct {
	Entry   maps.PolicyEntry
	Origins []*Origin
}

// Deny reports whether the entry denies.
func (v MapValue) Deny() bool { return v.Entry.Flags&maps.PolicyFlagDeny != 0 }

// Resolve computes the policy of an endpoint from every rule of the
// repository. peerPorts resolves named ports of egress rules.
func (r *Repository) Resolve(s Subject, peerPorts PeerPorts) *EndpointPolicy {
	p := &EndpointPolicy{
		Subject: s, cache: r.cache, peerPorts: peerPorts,
		Ingress: &DirPolicy{Dir: maps.Ingress}, Egress: &DirPolicy{Dir: maps.Egress},
	}
	rules := r.Rules()
	for _, d := range []*DirPolicy{p.Ingress, p.Egress} {
		defaultDeny := false
		for _, rule := range rules {
			sec := rule.section(d.Dir)
			if !sec.Present || !r.cache.Selects(rule.Subject, s.Identity.ID) {
				continue
			}
			d.Enforced = true
			defaultDeny = defaultDeny || sec.DefaultDeny
			d.Selecting = append(d.Selecting, rule)
			d.terms = append(d.terms, sec.Rules...)
		}
		if d.Enforced && !defaultDeny {
			d.synthetic = append(d.synthetic, &PeerRule{Origin: OriginNoDefaultDeny})
		}
		if d.Enforced && d.Dir == maps.Ingress {
			d.synthetic = append(d.synthetic, &PeerRule{Origin: OriginAllowLocalhost,
				Peers: []*Selector{r.hostSelector}})
		}
		d.raw = map[identity.NumericIdentity]map[maps.PolicyKey]*rawEntry{}
		for _, t := range d.allTerms() {
			for _, n := range p.peerIdentities(t) {
				p.addTerm(d, t, n)
			}
		}
	}
	return p
}

func (d *DirPolicy) allTerms() []*PeerRule {
	return append(append([]*PeerRule(nil), d.terms...), d.synthetic...)
}

// peerIdentities returns the identities a term's peers select (0 for any
// peer).
func (p *EndpointPolicy) peerIdentities(t *PeerRule) []identity.NumericIdentity {
	if t.Peers == nil {
		return []identity.NumericIdentity{0}
	}
	if len(t.Peers) == 1 {
		return p.selections(t.Peers[0])
	}
	seen := map[identity.NumericIdentity]struct{}{}
	var out []identity.NumericIdentity
	for _, s := range t.Peers {
		for _, n := range p.selections(s) {
			if _, dup := seen[n]; !dup {
				seen[n] = struct{}{}
				out = append(out, n)
			}
		}
	}
	return out
}

func (p *EndpointPolicy) selections(s *Selector) []identity.NumericIdentity {
	if s.Wildcard {
		return []identity.NumericIdentity{0}
	}
	return p.cache.Selections(s)
}

// portRange is a resolved protocol and port range (proto 0: any).
type portRange struct {
	proto uint8
	ports maps.PortRange
}

// numericPorts returns a term's ports that are not named.
func numericPorts(t *PeerRule) []portRange {
	if t.Ports == nil {
		return []portRange{{}}
	}
	var out []portRange
	for _, pp := range t.Ports {
		if pp.Name == "" {
			out = append(out, portRange{proto: pp.Proto, ports: maps.PortRange{Lo: pp.Lo, Hi: pp.Hi}})
		}
	}
	return out
}

// namedPorts resolves a term's named ports on the ports a destination
// serves.
func namedPorts(t *PeerRule, serves []NamedPort) []portRange {
	var out []portRange
	for _, pp := range t.Ports {
		if pp.Name == "" {
			continue
		}
		for _, np := range serves {
			if np.Name == pp.Name && (pp.Proto == 0 || pp.Proto == np.Proto) {
				out = append(out, portRange{proto: np.Proto, ports: maps.PortRange{Lo: np.Port, Hi: np.Port}})
			}
		}
	}
	return out
}

func hasNamedPorts(t *PeerRule) bool {
	for _, pp := range t.Ports {
		if pp.Name != "" {
			return true
		}
	}
	return false
}

// addTerm adds the entries of term t for peer identity n. Named ports
// resolve on the destination: the endpoint itself for ingress; for egress
// the pods with identity n, or, for any peer (n 0), each pod identity that
// serves the name, so that every destination gets its own number.
func (p *EndpointPolicy) addTerm(d *DirPolicy, t *PeerRule, n identity.NumericIdentity) {
	p.addPorts(d, t, n, numericPorts(t))
	if !hasNamedPorts(t) {
		return
	}
	switch {
	case d.Dir == maps.Ingress:
		p.addPorts(d, t, n, namedPorts(t, p.Subject.Ports))
	case p.peerPorts == nil:
	case n == 0:
		for owner, serves := range p.peerPorts.PortOwners() {
			p.addPorts(d, t, owner, namedPorts(t, serves))
		}
	default:
		p.addPorts(d, t, n, namedPorts(t, p.peerPorts.PortsOf(n)))
	}
}

// addPorts adds entries for peer identity n and the given ports.
func (p *EndpointPolicy) addPorts(d *DirPolicy, t *PeerRule, n identity.NumericIdentity, prs []portRange) {
	for _, pr := range prs {
		keys, err := maps.PolicyKeys(uint32(n), d.Dir, pr.proto, pr.ports)
		if err != nil {
			continue // unreachable: translate checks ranges
		}
		byKey := d.raw[n]
		if byKey == nil {
			byKey = map[maps.PolicyKey]*rawEntry{}
			d.raw[n] = byKey
		}
		for _, k := range keys {
			e := byKey[k]
			if e == nil {
				e = &rawEntry{}
				byKey[k] = e
			}
			if t.Deny {
				e.denies = append(e.denies, t.Origin)
			} else {
				e.allows = append(e.allows, t.Origin)
			}
		}
	}
}

// IdentitiesAdded adds the entries of identities that just appeared (they
// must already be in the selector cache) and returns those whose entries
// changed.
func (p *EndpointPolicy) IdentitiesAdded(ids []identity.NumericIdentity) []identity.NumericIdentity {
	changed := map[identity.NumericIdentity]struct{}{}
	for _, d := range []*DirPolicy{p.Ingress, p.Egress} {
		for _, t := range d.allTerms() {
			for _, n := range ids {
				if p.termSelects(t, n) || p.namedPortsFor(d, t, n) {
					changed[n] = struct{}{}
				}
			}
		}
	}
	for n := range changed {
		for _, d := range []*DirPolicy{p.Ingress, p.Egress} {
			p.rebuildIdentity(d, n)
		}
	}
	return sortedIDs(changed)
}

// rebuildIdentity recomputes the entries of identity n (not 0): every term
// whose selectors select it, and the named ports n's pods serve for egress
// terms to any peer (those resolve per destination identity).
func (p *EndpointPolicy) rebuildIdentity(d *DirPolicy, n identity.NumericIdentity) {
	delete(d.raw, n)
	for _, t := range d.allTerms() {
		if p.termSelects(t, n) {
			p.addTerm(d, t, n)
		} else if p.namedPortsFor(d, t, n) {
			p.addPorts(d, t, n, namedPorts(t, p.peerPorts.PortsOf(n)))
		}
	}
}

// namedPortsFor reports whether egress term t reaches any peer (so its
// named ports resolve on every pod identity, n included).
func (p *EndpointPolicy) namedPortsFor(d *DirPolicy, t *PeerRule, n identity.NumericIdentity) bool {
	if d.Dir != maps.Egress || n == 0 || p.peerPorts == nil || !hasNamedPorts(t) {
		return false
	}
	if t.Peers == nil {
		return true
	}
	for _, s := range t.Peers {
		if s.Wildcard {
			return true
		}
	}
	return false
}

// termSelects reports whether one of t's (non-wildcard) selectors selects
// identity n.
func (p *EndpointPolicy) termSelects(t *PeerRule, n identity.NumericIdentity) bool {
	for _, s := range t.Peers {
		if s.Wildcard {
			continue // covered by identity 0
		}
		if p.cache.Selects(s, n) {
			return true
		}
	}
	return false
}

// IdentitiesRemoved drops the entries of identities that are gone and
// returns those that had entries.
func (p *EndpointPolicy) IdentitiesRemoved(ids []identity.NumericIdentity) []identity.NumericIdentity {
	changed := map[identity.NumericIdentity]struct{}{}
	for _, n := range ids {
		for _, d := range []*DirPolicy{p.Ingress, p.Egress} {
			if _, ok := d.raw[n]; ok && n != 0 {
				delete(d.raw, n)
				changed[n] = struct{}{}
			}
		}
	}
	return sortedIDs(changed)
}

func sortedIDs(set map[identity.NumericIdentity]struct{}) []identity.NumericIdentity {
	out := make([]identity.NumericIdentity, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// MapState returns the policy map entries of the endpoint: every entry of
// both directions, except allows that a deny of the same identity covers
// (the datapath takes the longest match per identity, so such an allow
// would hide the deny; see docs/architecture.md "Policy lookup").
func (p *EndpointPolicy) MapState() map[maps.PolicyKey]MapValue {
	out := map[maps.PolicyKey]MapValue{}
	for _, d := range []*DirPolicy{p.Ingress, p.Egress} {
		for n := range d.raw {
			d.effective(n, out)
		}
	}
	return out
}

// MapStateOf returns the entries of MapState whose identity is one of ids.
func (p *EndpointPolicy) MapStateOf(ids []identity.NumericIdentity) map[maps.PolicyKey]MapValue {
	out := map[maps.PolicyKey]MapValue{}
	for _, d := range []*DirPolicy{p.Ingress, p.Egress} {
		for _, n := range ids {
			d.effective(n, out)
		}
	}
	return out
}

// effective adds the effective entries of identity n to out.
func (d *DirPolicy) effective(n identity.NumericIdentity, out map[maps.PolicyKey]MapValue) {
	byKey := d.raw[n]
	var denies []maps.PolicyKey
	for k, e := range byKey {
		if len(e.denies) > 0 {
			denies = append(denies, k)
		}
	}
	for k, e := range byKey {
		deny := len(e.denies) > 0
		if !deny && coveredByAny(k, denies) {
			continue
		}
		v := maps.PolicyEntry{Prefixlen: uint8(k.Prefixlen)}
		origins := e.allows
		if deny {
			// A deny decides the key: its rules are the ones to report.
			v.Flags, origins = maps.PolicyFlagDeny, e.denies
		}
		if len(origins) > 0 {
			v.RuleID = origins[0].RuleID
		}
		out[k] = MapValue{Entry: v, Origins: origins}
	}
}

func coveredByAny(k maps.PolicyKey, denies []maps.PolicyKey) bool {
	for _, d := range denies {
		if keyCovers(d, k) {
			return true
		}
	}
	return false
}

// keyCovers reports whether every packet key b matches also matches a: a
// is no longer than b and agrees with b on a's prefix.
func keyCovers(a, b maps.PolicyKey) bool {
	if a.Prefixlen > b.Prefixlen || a.Identity != b.Identity || a.Egress != b.Egress {
		return false
	}
	return maskKey(b, a.Prefixlen) == a
}

// maskKey keeps the first pl bits of k (its prefix length becomes pl).
func maskKey(k maps.PolicyKey, pl uint32) maps.PolicyKey {
	out := maps.PolicyKey{Prefixlen: pl, Identity: k.Identity, Egress: k.Egress}
	if pl >= maps.PolicyPrefixProto {
		out.Protocol = k.Protocol
	}
	if pl > maps.PolicyPrefixProto {
		bits := pl - maps.PolicyPrefixProto
		port := maps.NetToHost16(k.DPortNet) & uint16(0xffff<<(16-bits))
		out.DPortNet = maps.HostToNet16(port)
	}
	return out
}
