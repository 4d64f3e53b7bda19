// Package generate writes random but valid scenario files for differential
// testing (issue 4, "generator"): small clusters whose label vocabularies
// are tiny on purpose (so selectors collide), named ports that map the same
// name to different numbers on different pods, and 1-4 stacked policies
// drawn from every rule kind of the policy profile (NetworkPolicy,
// CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy).
//
// Generated scenarios have no hand-written expectations. Their probes are
// matrices over the whole pod x pod (+ externals, + a node) x port x
// protocol grid with the placeholder `default: allow` and no `except`:
// a differential run (conformance/differential) compares two targets with
// each other and ignores the file's expectations. A shrunk regression gets
// real expectations from the model before it is committed.
//
// Generate is deterministic: the same seed and Options give the same bytes.
package generate

import (
	"fmt"
	"math/rand"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Options bound the size of generated scenarios. Zero fields take the
// defaults shown.
type Options struct {
	MaxNamespaces int // 3
	MinPods       int // 2
	MaxPods       int // 6
	MaxPolicies   int // 4
	MaxSteps      int // 2; -1 for none
	MaxExternals  int // 2; -1 for none
	// MaxPorts is the number of ports (incl. ICMP) per matrix: 4.
	MaxPorts int
	// NoIPv6 leaves IPv6 probes out (they are added to some matrices).
	NoIPv6 bool
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxNamespaces, 3)
	def(&o.MinPods, 2)
	def(&o.MaxPods, 6)
	def(&o.MaxPolicies, 4)
	def(&o.MaxSteps, 2)
	def(&o.MaxExternals, 2)
	def(&o.MaxPorts, 4)
	if o.MaxPods < o.MinPods {
		o.MaxPods = o.MinPods
	}
	return o
}

// Vocabularies: deliberately small so that selectors collide.
var (
	nsNames      = []string{"x", "y", "z"}
	nsLabelKeys  = []string{"ns", "team"}
	nsLabelVals  = []string{"a", "b"}
	podLabelKeys = []string{"pod", "role"}
	podLabelVals = map[string][]string{"pod": {"a", "b", "c"}, "role": {"web", "db"}}
	podNames     = []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	// namedPorts: the same name maps to different numbers on different pods.
	namedPorts = []struct {
		name  string
		ports []int
		proto string
	}{
		{"http", []int{80, 8080}, "TCP"},
		{"dns", []int{53, 5353}, "UDP"},
		{"metrics", []int{9090, 9091}, "TCP"},
		{"sctp", []int{132, 2905}, "SCTP"},
	}
	// numeric probe ports, per protocol.
	tcpPorts  = []int{80, 81, 8080, 9090, 9091}
	udpPorts  = []int{53, 5353}
	sctpPorts = []int{132, 2905}
	// externals live in these networks (CIDR rules carve them up).
	extNets = []struct{ v4, v6 string }{
		{"203.0.113.", "2001:db8:1::"},
		{"198.51.100.", "2001:db8:2::"},
	}
)

// Generate returns a scenario file for seed. See the package comment.
func Generate(seed int64, opts Options) []byte {
	g := &gen{r: rand.New(rand.NewSource(seed)), o: opts.withDefaults(), seed: seed}
	return g.scenario()
}

type gen struct {
	r    *rand.Rand
	o    Options
	seed int64

	namespaces []string
	nodes      []string
	pods       []*podSpec
	externals  []extSpec
	policies   []policyRef
	feats      map[string]bool
	nextPod    int
}

type podSpec struct {
	ns, name string
	labels   map[string]string
	node     string
	ports    []portSpec
}

func (p *podSpec) key() string { return p.ns + "/" + p.name }

type portSpec struct {
	Name     string `yaml:"name,omitempty"`
	Port     int    `yaml:"port"`
	Protocol string `yaml:"protocol"`
}

type extSpec struct {
	Name string `yaml:"name"`
	IPv4 string `yaml:"ipv4,omitempty"`
	IPv6 string `yaml:"ipv6,omitempty"`
}

type policyRef struct{ kind, ns, name string }

func (g *gen) chance(p float64) bool { return g.r.Float64() < p }
func (g *gen) intn(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + g.r.Intn(hi-lo+1)
}
func pick[T any](g *gen, xs []T) T { return xs[g.r.Intn(len(xs))] }

// M is an ordered YAML mapping (keys in insertion order), so generated
// policies read like hand-written ones.
type M []kv

type kv struct {
	k string
	v any
}

func (m M) set(k string, v any) M { return append(m, kv{k, v}) }

// MarshalYAML implements yaml.Marshaler.
func (m M) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, e := range m {
		var v yaml.Node
		if err := v.Encode(e.v); err != nil {
			return nil, err
		}
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: e.k}, &v)
	}
	return n, nil
}

func (g *gen) scenario() []byte {
	g.feats = map[string]bool{}
	g.cluster()
	var pols []any
	np := g.intn(1, g.o.MaxPolicies)
	for i := 0; i < np; i++ {
		pols = append(pols, g.policy(i))
	}
	doc := M{}.set("apiVersion", scenario.APIVersion).set("kind", "Scenario")
	cl := M{}
	if len(g.nodes) > 1 {
		var ns []any
		for _, n := range g.nodes {
			ns = append(ns, M{}.set("name", n))
		}
		cl = cl.set("nodes", ns)
	}
	var nss []any
	for _, n := range g.namespaces {
		nss = append(nss, M{}.set("name", n).set("labels", g.nsLabels()))
	}
	cl = cl.set("namespaces", nss)
	var pods []any
	for _, p := range g.pods {
		pods = append(pods, p.yaml(len(g.nodes) > 1))
	}
	cl = cl.set("pods", pods)
	if len(g.externals) > 0 {
		cl = cl.set("externals", g.externals)
	}
	matrix := g.matrices(g.pods)
	var steps []any
	if g.o.MaxSteps > 0 {
		ns := g.intn(0, g.o.MaxSteps)
		for i := 0; i < ns; i++ {
			if st := g.step(i); st != nil {
				steps = append(steps, st)
			}
		}
	}
	var fs []string
	for f := range g.feats {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	md := M{}.set("name", fmt.Sprintf("generated-%d", uint64(g.seed))).
		set("description", fmt.Sprintf("Generated by conformance/generate from seed %d; the expectations are placeholders (a differential run compares targets with each other).", g.seed)).
		set("features", fs).
		set("source", fmt.Sprintf("generated: seed %d", g.seed))
	doc = doc.set("metadata", md).set("cluster", cl).set("policies", pols).set("matrix", matrix)
	if len(steps) > 0 {
		doc = doc.set("steps", steps)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("generate: marshal: %v", err))
	}
	return out
}

func (g *gen) feat(fs ...string) {
	for _, f := range fs {
		g.feats[f] = true
	}
}

func (g *gen) nsLabels() M {
	m := M{}
	for _, k := range nsLabelKeys {
		if g.chance(0.6) {
			m = m.set(k, pick(g, nsLabelVals))
		}
	}
	return m
}

func (g *gen) podLabels() M {
	m := M{}
	for _, k := range podLabelKeys {
		if g.chance(0.7) {
			m = m.set(k, pick(g, podLabelVals[k]))
		}
	}
	return m
}

func (m M) strMap() map[string]string {
	out := map[string]string{}
	for _, e := range m {
		out[e.k] = e.v.(string)
	}
	return out
}

func (g *gen) cluster() {
	nn := g.intn(1, g.o.MaxNamespaces)
	g.namespaces = append([]string(nil), nsNames[:nn]...)
	g.nodes = []string{"node-1"}
	if g.chance(0.25) {
		g.nodes = append(g.nodes, "node-2")
	}
	np := g.intn(g.o.MinPods, g.o.MaxPods)
	for i := 0; i < np; i++ {
		g.pods = append(g.pods, g.newPod())
	}
	if g.o.MaxExternals > 0 && g.chance(0.6) {
		ne := g.intn(1, g.o.MaxExternals)
		for i := 0; i < ne; i++ {
			net := extNets[i%len(extNets)]
			host := pick(g, []int{7, 100, 200})
			e := extSpec{Name: fmt.Sprintf("ext-%d", i+1), IPv4: fmt.Sprintf("%s%d", net.v4, host)}
			if g.chance(0.5) {
				e.IPv6 = fmt.Sprintf("%s%d", net.v6, host)
			}
			g.externals = append(g.externals, e)
		}
	}
}

func (g *gen) newPod() *podSpec {
	name := podNames[g.nextPod%len(podNames)]
	if g.nextPod >= len(podNames) {
		name = fmt.Sprintf("%s%d", name, g.nextPod/len(podNames))
	}
	g.nextPod++
	p := &podSpec{ns: pick(g, g.namespaces), name: name, labels: g.podLabels().strMap(), node: pick(g, g.nodes)}
	for _, np := range namedPorts {
		if g.chance(0.4) {
			p.ports = append(p.ports, portSpec{Name: np.name, Port: pick(g, np.ports), Protocol: np.proto})
		}
	}
	if len(g.pods) > 0 && g.chance(0.3) {
		// a replica: same namespace and labels (so the same identity), its
		// named ports on other numbers
		o := pick(g, g.pods)
		p.ns, p.labels = o.ns, map[string]string{}
		for k, v := range o.labels {
			p.labels[k] = v
		}
		p.ports = nil
		for _, pt := range o.ports {
			for _, np := range namedPorts {
				if np.name == pt.Name {
					for _, n := range np.ports {
						if n != pt.Port {
							pt.Port = n
							break
						}
					}
				}
			}
			p.ports = append(p.ports, pt)
		}
	}
	return p
}

func (p *podSpec) yaml(withNode bool) M {
	m := M{}.set("name", p.key())
	lm := M{}
	keys := make([]string, 0, len(p.labels))
	for k := range p.labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lm = lm.set(k, p.labels[k])
	}
	m = m.set("labels", lm)
	if withNode {
		m = m.set("node", p.node)
	}
	if len(p.ports) > 0 {
		m = m.set("ports", p.ports)
	}
	return m
}

// matrices probes the grid over the given pods: pods to pods and
// externals, externals and (sometimes) a node to pods.
func (g *gen) matrices(pods []*podSpec) []any {
	numeric, names := g.probePorts(pods)
	fams := []string{"ipv4"}
	if !g.o.NoIPv6 && g.chance(0.25) {
		fams = append(fams, "ipv6")
		g.feat("ipv6")
	}
	// Named ports go into a matrix of their own: within one matrix a cell
	// equal to an earlier one is dropped, so http=80 next to 80/TCP would
	// leave the name without cells.
	mat := func(from, to []string, fams []string, withNames bool) []any {
		one := func(ps []string) M {
			m := M{}.set("from", from).set("to", to).set("ports", ps)
			if len(fams) > 1 {
				m = m.set("families", fams)
			}
			return m.set("default", "allow")
		}
		out := []any{one(numeric)}
		if withNames && len(names) > 0 {
			out = append(out, one(names))
		}
		return out
	}
	var extAll []string
	for _, e := range g.externals {
		extAll = append(extAll, e.Name)
	}
	out := []any{}
	if len(pods) > 1 {
		out = append(out, mat([]string{"*"}, []string{"*"}, fams, true)...)
	}
	if len(extAll) > 0 {
		// Externals have only the families written (a matrix skips the
		// cells one end cannot take) and no named ports.
		out = append(out, mat([]string{"*"}, extAll, fams, false)...)
		out = append(out, mat(extAll, []string{"*"}, fams, true)...)
	}
	if g.chance(0.3) {
		out = append(out, mat([]string{"node:" + pick(g, g.nodes)}, []string{"*"}, []string{"ipv4"}, true)...)
	}
	if g.chance(0.2) {
		out = append(out, mat([]string{"*"}, []string{"node:" + pick(g, g.nodes)}, []string{"ipv4"}, false)...)
	}
	if len(out) == 0 { // one pod and nothing else: probe from the node
		out = append(out, mat([]string{"node:" + g.nodes[0]}, []string{"*"}, []string{"ipv4"}, true)...)
	}
	return out
}

// probePorts picks the matrix ports: numbers of every protocol and ICMP
// (at most MaxPorts), and up to two port names some pod serves.
func (g *gen) probePorts(pods []*podSpec) (numeric, names []string) {
	have := map[string]bool{}
	for _, p := range pods {
		for _, pt := range p.ports {
			have[pt.Name] = true
		}
	}
	cand := []string{fmt.Sprintf("%d/TCP", pick(g, tcpPorts)), fmt.Sprintf("%d/TCP", pick(g, tcpPorts))}
	if g.chance(0.5) {
		cand = append(cand, fmt.Sprintf("%d/UDP", pick(g, udpPorts)))
		g.feat("policy-udp")
	}
	if g.chance(0.3) {
		cand = append(cand, fmt.Sprintf("%d/SCTP", pick(g, sctpPorts)))
		g.feat("policy-sctp")
	}
	if g.chance(0.3) {
		cand = append(cand, "ICMP")
		g.feat("policy-icmp")
	}
	// the numbers named ports use, so that a name and a number collide
	for _, np := range namedPorts {
		if have[np.name] && g.chance(0.3) {
			cand = append(cand, fmt.Sprintf("%d/%s", pick(g, np.ports), np.proto))
		}
	}
	rest := cand[1:]
	g.r.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	seen := map[string]bool{}
	for _, c := range cand {
		if !seen[c] && len(numeric) < g.o.MaxPorts {
			seen[c] = true
			numeric = append(numeric, c)
		}
	}
	for _, np := range namedPorts {
		if have[np.name] && len(names) < 2 && g.chance(0.5) {
			names = append(names, np.name)
		}
	}
	return numeric, names
}

// step is one mutation (label change, policy delete, pod add, namespace
// label change) followed by the same kind of matrix.
func (g *gen) step(i int) M {
	st := M{}
	switch g.r.Intn(4) {
	case 0:
		p := pick(g, g.pods)
		p.labels = g.podLabels().strMap()
		st = st.set("setLabels", []any{M{}.set("pod", p.key()).set("labels", p.labels)})
	case 1:
		if len(g.policies) == 0 {
			return nil
		}
		k := g.r.Intn(len(g.policies))
		pr := g.policies[k]
		g.policies = append(g.policies[:k], g.policies[k+1:]...)
		ref := M{}.set("kind", pr.kind).set("name", pr.name)
		if pr.ns != "" {
			ref = ref.set("namespace", pr.ns)
		}
		st = st.set("delete", []any{ref})
	case 2:
		p := g.newPod()
		g.pods = append(g.pods, p)
		st = st.set("addPods", []any{p.yaml(len(g.nodes) > 1)})
	case 3:
		ns := pick(g, g.namespaces)
		st = st.set("setLabels", []any{M{}.set("namespace", ns).set("labels", g.nsLabels())})
	}
	return st.set("matrix", g.matrices(g.pods))
}
