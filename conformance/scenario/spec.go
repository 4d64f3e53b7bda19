package scenario

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/features"
)

// This file decodes each section of a scenario on its own (syntax, types,
// local rules). Cross references (does that pod exist at this step?) are
// resolved by the builder in build.go.

// fileSpec is a decoded scenario file before cross references are
// resolved.
type fileSpec struct {
	rootAt   loc
	meta     Metadata
	nameAt   loc
	nodes    []nodeSpec
	nss      []nsSpec
	pods     []podSpec
	exts     []extSpec
	svcs     []svcSpec
	policies []Object
	policyAt []loc
	probes   []probeSpec
	matrix   []matrixSpec
	topAt    loc // the top-level probes or matrix, for step 0
	steps    []stepSpec
}

// nodeSpec is a decoded node.
type nodeSpec struct {
	node   Node
	at     loc
	ipv4At loc
	ipv6At loc
}

// nsSpec is a decoded namespace.
type nsSpec struct {
	ns       Namespace
	at       loc
	labelsAt loc
}

// podSpec is a decoded pod; addresses and node are defaulted later.
type podSpec struct {
	pod    Pod
	at     loc
	nameAt loc
	nodeAt loc // n is nil when not given
	ipv4At loc
	ipv6At loc
	ok     bool
}

// extSpec is a decoded external.
type extSpec struct {
	ext    External
	at     loc
	ipv4At loc
	ipv6At loc
}

// svcSpec is a decoded service; cluster IPs and node ports are defaulted
// later.
type svcSpec struct {
	svc     Service
	at      loc
	ipAts   []loc // where ClusterIP, ClusterIPv6 and LoadBalancerIPs were written
	portAts []loc
}

// probeSpec is a decoded probe before its peers and port are resolved.
type probeSpec struct {
	at       loc
	from, to string
	fromAt   loc
	toAt     loc
	port     portArg
	portAt   loc
	protocol Protocol // "" when not given
	protoAt  loc
	family   Family // "" when not given
	familyAt loc
	http     *HTTPRequest
	kafka    *KafkaRequest
	l7At     loc
	// name, repeat and sourcePort are the load-balancing fields (0 when
	// not given).
	name         strAt
	repeat       int64
	repeatAt     loc
	sourcePort   int64
	sourcePortAt loc
	expect       expectSpec
	// ok is false when any field failed to decode; portOK when port,
	// protocol, family and the L7 request decoded (so that they can be
	// resolved even when, say, expect is wrong).
	ok     bool
	portOK bool
}

// portArg is a probe's port as written.
type portArg struct {
	given bool
	num   int64
	name  string // a port name, "" for a number
}

// expectSpec is a decoded expectation.
type expectSpec struct {
	e         Expectation
	at        loc
	backendAt []loc
	// Where the load-balancing expectations were written.
	sameBackendAt, distinctAt, sameAsAt loc
	replyNotViaAt                       []loc
	ok                                  bool
}

// strAt is a string and where it was written.
type strAt struct {
	s  string
	at loc
}

// portPat is one entry of a matrix's ports.
type portPat struct {
	raw   string
	name  string // a port name, resolved per destination
	num   uint16
	proto Protocol // ICMP for an echo
	at    loc
}

// matrixSpec is a decoded matrix.
type matrixSpec struct {
	at       loc
	from, to []strAt
	ports    []portPat
	families []Family
	def      Verdict
	except   []exceptSpec
	ok       bool
}

// exceptSpec is one exception of a matrix.
type exceptSpec struct {
	at       loc
	from, to strAt
	port     *portPat
	family   Family
	expect   *expectSpec
}

// stepSpec is a decoded entry of steps.
type stepSpec struct {
	at         loc
	apply      []Object
	applyAt    []loc
	delete     []deleteSpec
	setLabels  []labelSpec
	addPods    []podSpec
	deletePods []strAt
	// terminatePods are the pods that start terminating.
	terminatePods []strAt
	probes        []probeSpec
	matrix        []matrixSpec
}

// deleteSpec is one entry of a step's delete.
type deleteSpec struct {
	ref ObjectRef
	at  loc
	ok  bool
}

// labelSpec is one entry of a step's setLabels.
type labelSpec struct {
	change   LabelChange
	at       loc
	targetAt loc
	ok       bool
}

// policyKind describes a policy kind a scenario may hold.
type policyKind struct {
	apiVersion string
	namespaced bool
}

// policyKinds are the kinds allowed in policies, apply and delete.
var policyKinds = map[string]policyKind{
	"CiliumNetworkPolicy":            {"cilium.io/v2", true},
	"CiliumClusterwideNetworkPolicy": {"cilium.io/v2", false},
	"NetworkPolicy":                  {"networking.k8s.io/v1", true},
}

// policyKindNames lists policyKinds' names, sorted.
func policyKindNames() []string {
	var out []string
	for k := range policyKinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeFile decodes the top level.
func (d *decoder) decodeFile(root *yaml.Node) *fileSpec {
	f := &fileSpec{rootAt: at(resolve(root), "")}
	fs, ok := d.fields(root, "", "apiVersion", "kind", "metadata", "cluster", "policies", "probes", "matrix", "steps")
	if !ok {
		return nil
	}
	if v, ok := fs.requireStr("apiVersion"); ok && v != APIVersion {
		d.errorf(fs.at("apiVersion"), "must be %q, got %q", APIVersion, v)
	}
	if v, ok := fs.requireStr("kind"); ok && v != "Scenario" {
		d.errorf(fs.at("kind"), "must be \"Scenario\", got %q", v)
	}
	if n := fs.require("metadata"); n != nil {
		f.meta, f.nameAt = d.metadata(n, "metadata")
	}
	if n := fs.get("cluster"); n != nil {
		d.cluster(n, "cluster", f)
	}
	if n := fs.get("policies"); n != nil {
		f.policies, f.policyAt = d.objects(n, "policies")
	}
	if n := fs.get("probes"); n != nil {
		f.probes = d.probes(n, "probes")
		f.topAt = at(n, "probes")
	}
	if n := fs.get("matrix"); n != nil {
		f.matrix = d.matrices(n, "matrix")
		if f.topAt.n == nil {
			f.topAt = at(n, "matrix")
		}
	}
	if n := fs.get("steps"); n != nil {
		items, _ := d.list(n, "steps")
		for i, e := range items {
			f.steps = append(f.steps, d.step(e, index("steps", i)))
		}
	}
	return f
}

// metadata decodes the scenario's metadata.
func (d *decoder) metadata(n *yaml.Node, path string) (Metadata, loc) {
	var m Metadata
	fs, ok := d.fields(n, path, "name", "description", "features", "source")
	if !ok {
		return m, at(n, path)
	}
	if name, ok := fs.requireStr("name"); ok {
		if err := checkDNSLabel(name, 253); err != nil {
			d.errorf(fs.at("name"), "%v", err)
		} else {
			m.Name = name
		}
	}
	m.Description, _ = fs.str("description")
	m.Source, _ = fs.str("source")
	if fn := fs.get("features"); fn != nil {
		m.Features = d.features(fn, field(path, "features"))
	}
	return m, fs.at("name")
}

// features decodes a list of known features without duplicates.
func (d *decoder) features(n *yaml.Node, path string) []features.Feature {
	names, locs := d.strList(n, path)
	var known []string
	for _, p := range features.Profiles {
		for _, f := range p.Features {
			known = append(known, string(f))
		}
	}
	var out []features.Feature
	for i, s := range names {
		f := features.Feature(s)
		switch {
		case !features.Known(f):
			d.errorf(locs[i], "unknown feature %q%s", s, suggest(s, known, "known features"))
		case contains(out, f):
			d.errorf(locs[i], "duplicate feature %q", s)
		default:
			out = append(out, f)
		}
	}
	return out
}

// cluster decodes the cluster section into f.
func (d *decoder) cluster(n *yaml.Node, path string, f *fileSpec) {
	fs, ok := d.fields(n, path, "nodes", "namespaces", "pods", "externals", "services")
	if !ok {
		return
	}
	for i, e := range d.optList(fs, "nodes") {
		f.nodes = append(f.nodes, d.node(e, index(field(path, "nodes"), i)))
	}
	for i, e := range d.optList(fs, "namespaces") {
		f.nss = append(f.nss, d.namespace(e, index(field(path, "namespaces"), i)))
	}
	for i, e := range d.optList(fs, "pods") {
		f.pods = append(f.pods, d.pod(e, index(field(path, "pods"), i)))
	}
	for i, e := range d.optList(fs, "externals") {
		if x, ok := d.external(e, index(field(path, "externals"), i)); ok {
			f.exts = append(f.exts, x)
		}
	}
	for i, e := range d.optList(fs, "services") {
		if s, ok := d.service(e, index(field(path, "services"), i)); ok {
			f.svcs = append(f.svcs, s)
		}
	}
}

// optList returns the items of an optional list field.
func (d *decoder) optList(fs *fieldSet, name string) []*yaml.Node {
	n := fs.get(name)
	if n == nil {
		return nil
	}
	items, _ := d.list(n, field(fs.path, name))
	return items
}

// node decodes a node.
func (d *decoder) node(n *yaml.Node, path string) nodeSpec {
	ns := nodeSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "name", "ipv4", "ipv6")
	if !ok {
		return ns
	}
	ns.node.Line = n.Line
	if name, ok := fs.requireStr("name"); ok {
		if err := checkDNSSubdomain(name); err != nil {
			d.errorf(fs.at("name"), "%v", err)
		} else {
			ns.node.Name = name
		}
	}
	ns.node.IPv4, ns.ipv4At = d.optAddr(fs, "ipv4", IPv4)
	ns.node.IPv6, ns.ipv6At = d.optAddr(fs, "ipv6", IPv6)
	return ns
}

// optAddr decodes an optional address field of the given family.
func (d *decoder) optAddr(fs *fieldSet, name string, fam Family) (netip.Addr, loc) {
	v := fs.get(name)
	if v == nil {
		return netip.Addr{}, loc{}
	}
	a, _ := d.addr(v, field(fs.path, name), fam)
	return a, fs.at(name)
}

// namespace decodes a namespace.
func (d *decoder) namespace(n *yaml.Node, path string) nsSpec {
	ns := nsSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "name", "labels")
	if !ok {
		return ns
	}
	ns.ns.Line = n.Line
	if name, ok := fs.requireStr("name"); ok {
		if err := checkDNSLabel(name, 63); err != nil {
			d.errorf(fs.at("name"), "%v", err)
		} else {
			ns.ns.Name = name
		}
	}
	ns.ns.Labels = d.optLabels(fs, "labels")
	ns.labelsAt = fs.at("labels")
	if v, ok := ns.ns.Labels[NamespaceNameLabel]; ok && ns.ns.Name != "" && v != ns.ns.Name {
		d.errorf(ns.labelsAt, "label %s must be the namespace's name %q, got %q", NamespaceNameLabel, ns.ns.Name, v)
	}
	return ns
}

// optLabels decodes an optional labels field; it never returns nil.
func (d *decoder) optLabels(fs *fieldSet, name string) map[string]string {
	v := fs.get(name)
	if v == nil {
		return map[string]string{}
	}
	return d.labels(v, field(fs.path, name))
}

// labels decodes and validates Kubernetes labels.
func (d *decoder) labels(n *yaml.Node, path string) map[string]string {
	m := d.strMap(n, path)
	for _, k := range sortedKeys(m) {
		kpath := fmt.Sprintf("%s[%q]", path, k)
		if err := checkLabelKey(k); err != nil {
			d.errorf(at(keyNode(n, k), kpath), "%v", err)
			delete(m, k)
		} else if err := checkLabelValue(k, m[k]); err != nil {
			d.errorf(at(lookup(resolve(n), k), kpath), "%v", err)
			delete(m, k)
		}
	}
	return m
}

// keyNode returns the key node of key in mapping n (n itself when absent).
func keyNode(n *yaml.Node, key string) *yaml.Node {
	for _, kv := range mergedPairs(resolve(n)) {
		if k := resolve(kv[0]); k.Kind == yaml.ScalarNode && k.Value == key {
			return k
		}
	}
	return n
}

// sortedKeys returns the keys of m in lexical order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pod decodes a pod (in cluster.pods or a step's addPods).
func (d *decoder) pod(n *yaml.Node, path string) podSpec {
	ps := podSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "name", "labels", "node", "ipv4", "ipv6", "ports")
	if !ok {
		return ps
	}
	ps.pod.Line = n.Line
	ps.nameAt = fs.at("name")
	ps.ok = true
	if s, ok := fs.requireStr("name"); ok {
		ns, name, err := checkKey(s, "pod")
		if err != nil {
			d.errorf(ps.nameAt, "%v", err)
			ps.ok = false
		}
		ps.pod.Namespace, ps.pod.Name = ns, name
	} else {
		ps.ok = false
	}
	ps.pod.Labels = d.optLabels(fs, "labels")
	if fs.has("node") {
		var good bool
		ps.pod.Node, good = fs.str("node")
		ps.nodeAt = fs.at("node")
		ps.ok = ps.ok && good
	}
	ps.pod.IPv4, ps.ipv4At = d.optAddr(fs, "ipv4", IPv4)
	ps.pod.IPv6, ps.ipv6At = d.optAddr(fs, "ipv6", IPv6)
	if v := fs.get("ports"); v != nil {
		ps.pod.Ports = d.ports(v, field(path, "ports"))
	}
	return ps
}

// ports decodes the ports a pod or external serves.
func (d *decoder) ports(n *yaml.Node, path string) []Port {
	items, _ := d.list(n, path)
	var out []Port
	names := map[string]int{}
	nums := map[string]int{}
	for i, e := range items {
		p, ok := d.port(e, index(path, i))
		if !ok {
			continue
		}
		if p.Name != "" {
			if j, dup := names[p.Name]; dup {
				d.errorf(at(e, index(path, i)+".name"), "duplicate port name %q (also ports[%d])", p.Name, j)
				continue
			}
			names[p.Name] = i
		}
		key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if j, dup := nums[key]; dup {
			d.errorf(at(e, index(path, i)), "duplicate port %s (also ports[%d])", key, j)
			continue
		}
		nums[key] = i
		out = append(out, p)
	}
	return out
}

// port decodes one {name, port, protocol}.
func (d *decoder) port(n *yaml.Node, path string) (Port, bool) {
	var p Port
	fs, ok := d.fields(n, path, "name", "port", "protocol")
	if !ok {
		return p, false
	}
	ok = true
	if fs.has("name") {
		name, _ := fs.str("name")
		if err := checkPortName(name); err != nil {
			d.errorf(fs.at("name"), "%v", err)
			ok = false
		}
		p.Name = name
	}
	if v := fs.require("port"); v != nil {
		num, good := d.portNumber(v, field(path, "port"))
		p.Port, ok = num, ok && good
	} else {
		ok = false
	}
	p.Protocol = TCP
	if v := fs.get("protocol"); v != nil {
		proto, good := d.protocol(v, field(path, "protocol"), false)
		p.Protocol, ok = proto, ok && good
	}
	return p, ok
}

// portNumber decodes a port number, 1-65535.
func (d *decoder) portNumber(n *yaml.Node, path string) (uint16, bool) {
	v, ok := d.integer(n, path)
	if !ok {
		return 0, false
	}
	if v < 1 || v > 65535 {
		d.errorf(at(n, path), "port %d is out of range (1-65535)", v)
		return 0, false
	}
	return uint16(v), true
}

// protocol decodes TCP, UDP, SCTP (and ICMP when allowed).
func (d *decoder) protocol(n *yaml.Node, path string, icmp bool) (Protocol, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	valid := []string{"TCP", "UDP", "SCTP"}
	if icmp {
		valid = append(valid, "ICMP")
	}
	if contains(valid, s) {
		return Protocol(s), true
	}
	if contains(valid, strings.ToUpper(s)) {
		d.errorf(at(n, path), "protocol must be written in capitals: %q", strings.ToUpper(s))
		return "", false
	}
	d.errorf(at(n, path), "unknown protocol %q (one of %s)", s, strings.Join(valid, ", "))
	return "", false
}

// enum decodes a string that must be one of values.
func (d *decoder) enum(n *yaml.Node, path string, values ...string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !contains(values, s) {
		d.errorf(at(n, path), "must be one of %s, got %q", strings.Join(values, ", "), s)
		return "", false
	}
	return s, true
}

// external decodes an external host.
func (d *decoder) external(n *yaml.Node, path string) (extSpec, bool) {
	x := extSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "name", "ipv4", "ipv6", "ports")
	if !ok {
		return x, false
	}
	x.ext.Line = n.Line
	name, ok := fs.requireStr("name")
	if ok {
		if err := checkDNSLabel(name, 63); err != nil {
			d.errorf(fs.at("name"), "%v", err)
			ok = false
		}
	}
	x.ext.Name = name
	x.ext.IPv4, x.ipv4At = d.optAddr(fs, "ipv4", IPv4)
	x.ext.IPv6, x.ipv6At = d.optAddr(fs, "ipv6", IPv6)
	if !fs.has("ipv4") && !fs.has("ipv6") {
		d.errorf(at(n, path), "an external needs an address: give ipv4, ipv6 or both")
	}
	if v := fs.get("ports"); v != nil {
		x.ext.Ports = d.ports(v, field(path, "ports"))
	}
	return x, ok
}

// Service defaults.
const (
	defaultAffinityTimeout = 10800
	maxAffinityTimeout     = 86400
	minNodePort            = 30000
	maxNodePort            = 32767
)

// service decodes a Service in compact form.
func (d *decoder) service(n *yaml.Node, path string) (svcSpec, bool) {
	s := svcSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "name", "type", "clusterIP", "clusterIPs", "externalIPs", "loadBalancerIPs",
		"selector", "ports", "sessionAffinity", "sessionAffinityConfig", "externalTrafficPolicy", "annotations")
	if !ok {
		return s, false
	}
	svc := &s.svc
	svc.Line = n.Line
	if key, ok := fs.requireStr("name"); ok {
		ns, name, err := checkKey(key, "service")
		if err != nil {
			d.errorf(fs.at("name"), "%v", err)
			ok = false
		}
		svc.Namespace, svc.Name = ns, name
	} else {
		ok = false
	}
	svc.Type = "ClusterIP"
	if v := fs.get("type"); v != nil {
		svc.Type, _ = d.enum(v, field(path, "type"), "ClusterIP", "NodePort", "LoadBalancer")
	}
	d.clusterIPs(fs, &s)
	if v := fs.get("externalIPs"); v != nil {
		svc.ExternalIPs = d.addrList(v, field(path, "externalIPs"), nil)
	}
	if v := fs.get("loadBalancerIPs"); v != nil {
		svc.LoadBalancerIPs = d.addrList(v, field(path, "loadBalancerIPs"), &s.ipAts)
		if svc.Type != "LoadBalancer" && svc.Type != "" {
			d.errorf(fs.at("loadBalancerIPs"), "only a service of type LoadBalancer has loadBalancerIPs (type is %s)", svc.Type)
		}
	}
	svc.Selector = d.optLabels(fs, "selector")
	if v := fs.require("ports"); v != nil {
		svc.Ports, s.portAts = d.servicePorts(v, field(path, "ports"), svc.Type)
		if len(s.portAts) == 0 && resolve(v).Kind == yaml.SequenceNode {
			d.errorf(fs.at("ports"), "a service needs at least one port")
		}
	}
	d.affinity(fs, svc)
	svc.ExternalTrafficPolicy = "Cluster"
	if v := fs.get("externalTrafficPolicy"); v != nil {
		svc.ExternalTrafficPolicy, _ = d.enum(v, field(path, "externalTrafficPolicy"), "Cluster", "Local")
		if svc.ExternalTrafficPolicy == "Local" && svc.Type == "ClusterIP" && len(svc.ExternalIPs) == 0 {
			d.errorf(fs.at("externalTrafficPolicy"), "externalTrafficPolicy Local needs a NodePort or LoadBalancer service, or externalIPs")
		}
	}
	svc.Annotations = d.annotations(fs)
	return s, ok
}

// clusterIPs decodes clusterIP and clusterIPs (at most one per family,
// clusterIPs[0] equal to clusterIP when both are given).
func (d *decoder) clusterIPs(fs *fieldSet, s *svcSpec) {
	var ips []netip.Addr
	var locs []loc
	if v := fs.get("clusterIP"); v != nil {
		if v.Kind == yaml.ScalarNode && v.Value == "None" {
			d.errorf(fs.at("clusterIP"), "headless services (clusterIP: None) are not supported")
		} else if a, ok := d.addr(v, fs.at("clusterIP").path, ""); ok {
			ips, locs = append(ips, a), append(locs, fs.at("clusterIP"))
		}
	}
	if v := fs.get("clusterIPs"); v != nil {
		var lst []loc
		list := d.addrList(v, fs.at("clusterIPs").path, &lst)
		if len(ips) == 1 && len(list) > 0 && list[0] != ips[0] {
			d.errorf(lst[0], "clusterIPs[0] must equal clusterIP (%s)", ips[0])
		}
		if len(ips) == 1 && len(list) > 0 {
			list, lst = list[1:], lst[1:]
		}
		ips, locs = append(ips, list...), append(locs, lst...)
	}
	for i, a := range ips {
		switch {
		case a.Is4() && !s.svc.ClusterIP.IsValid():
			s.svc.ClusterIP = a
		case a.Is6() && !s.svc.ClusterIPv6.IsValid():
			s.svc.ClusterIPv6 = a
		default:
			d.errorf(locs[i], "a service has at most one cluster IP per family")
			continue
		}
		s.ipAts = append(s.ipAts, locs[i])
	}
}

// addrList decodes a list of addresses; locs, when not nil, gets where
// each was written.
func (d *decoder) addrList(n *yaml.Node, path string, locs *[]loc) []netip.Addr {
	items, _ := d.list(n, path)
	var out []netip.Addr
	for i, e := range items {
		if a, ok := d.addr(e, index(path, i), ""); ok {
			out = append(out, a)
			if locs != nil {
				*locs = append(*locs, at(e, index(path, i)))
			}
		}
	}
	return out
}

// servicePorts decodes a service's ports.
func (d *decoder) servicePorts(n *yaml.Node, path, typ string) ([]ServicePort, []loc) {
	items, _ := d.list(n, path)
	var out []ServicePort
	var locs []loc
	names := map[string]int{}
	nums := map[string]int{}
	for i, e := range items {
		p, ok := d.servicePort(e, index(path, i), typ)
		if !ok {
			continue
		}
		l := at(e, index(path, i))
		if p.Name == "" && len(items) > 1 {
			d.errorf(l, "name is required when a service has more than one port")
		}
		if j, dup := names[p.Name]; dup && p.Name != "" {
			d.errorf(at(e, index(path, i)+".name"), "duplicate port name %q (also ports[%d])", p.Name, j)
			continue
		}
		names[p.Name] = i
		key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if j, dup := nums[key]; dup {
			d.errorf(l, "duplicate port %s (also ports[%d])", key, j)
			continue
		}
		nums[key] = i
		out, locs = append(out, p), append(locs, l)
	}
	return out, locs
}

// servicePort decodes one service port.
func (d *decoder) servicePort(n *yaml.Node, path, typ string) (ServicePort, bool) {
	var p ServicePort
	fs, ok := d.fields(n, path, "name", "port", "targetPort", "protocol", "nodePort")
	if !ok {
		return p, false
	}
	ok = true
	if fs.has("name") {
		p.Name, _ = fs.str("name")
		if err := checkPortName(p.Name); err != nil {
			d.errorf(fs.at("name"), "%v", err)
			ok = false
		}
	}
	if v := fs.require("port"); v != nil {
		num, good := d.portNumber(v, field(path, "port"))
		p.Port, ok = num, ok && good
	} else {
		ok = false
	}
	p.Protocol = TCP
	if v := fs.get("protocol"); v != nil {
		proto, good := d.protocol(v, field(path, "protocol"), false)
		p.Protocol, ok = proto, ok && good
	}
	p.TargetPort = strconv.Itoa(int(p.Port))
	if v := fs.get("targetPort"); v != nil {
		p.TargetPort = d.targetPort(v, field(path, "targetPort"))
	}
	if v := fs.get("nodePort"); v != nil {
		num, good := d.integer(v, field(path, "nodePort"))
		switch {
		case !good:
		case typ == "ClusterIP":
			d.errorf(fs.at("nodePort"), "only NodePort and LoadBalancer services have node ports")
		case num < minNodePort || num > maxNodePort:
			d.errorf(fs.at("nodePort"), "node port %d is out of range (%d-%d)", num, minNodePort, maxNodePort)
		default:
			p.NodePort = uint16(num)
		}
	}
	return p, ok
}

// targetPort decodes a number or a port name.
func (d *decoder) targetPort(n *yaml.Node, path string) string {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		if v, ok := d.portNumber(n, path); ok {
			return strconv.Itoa(int(v))
		}
		return ""
	}
	s, ok := d.str(n, path)
	if !ok {
		return ""
	}
	if err := checkPortName(s); err != nil {
		d.errorf(at(n, path), "%v", err)
		return ""
	}
	return s
}

// affinity decodes sessionAffinity and sessionAffinityConfig.
func (d *decoder) affinity(fs *fieldSet, svc *Service) {
	svc.SessionAffinity = "None"
	if v := fs.get("sessionAffinity"); v != nil {
		svc.SessionAffinity, _ = d.enum(v, fs.at("sessionAffinity").path, "None", "ClientIP")
	}
	svc.AffinityTimeout = defaultAffinityTimeout
	v := fs.get("sessionAffinityConfig")
	if v == nil {
		return
	}
	if svc.SessionAffinity != "ClientIP" {
		d.errorf(fs.at("sessionAffinityConfig"), "sessionAffinityConfig needs sessionAffinity: ClientIP")
	}
	path := fs.at("sessionAffinityConfig").path
	cfg, ok := d.fields(v, path, "clientIP")
	if !ok {
		return
	}
	ci := cfg.get("clientIP")
	if ci == nil {
		return
	}
	cfs, ok := d.fields(ci, field(path, "clientIP"), "timeoutSeconds")
	if !ok {
		return
	}
	if t := cfs.get("timeoutSeconds"); t != nil {
		secs, ok := d.integer(t, cfs.at("timeoutSeconds").path)
		if ok && (secs < 1 || secs > maxAffinityTimeout) {
			d.errorf(cfs.at("timeoutSeconds"), "timeoutSeconds %d is out of range (1-%d)", secs, maxAffinityTimeout)
		} else if ok {
			svc.AffinityTimeout = int(secs)
		}
	}
}

// annotationValues are the values allowed for the annotations whose
// meaning the suite knows; others pass verbatim.
var annotationValues = map[string][]string{
	"service.cilium.io/lb-algorithm":    {"random", "maglev"},
	"service.cilium.io/forwarding-mode": {"snat", "dsr"},
}

// annotations decodes a service's annotations.
func (d *decoder) annotations(fs *fieldSet) map[string]string {
	v := fs.get("annotations")
	if v == nil {
		return map[string]string{}
	}
	m := d.strMap(v, fs.at("annotations").path)
	for _, k := range sortedKeys(m) {
		if allowed, known := annotationValues[k]; known && !contains(allowed, m[k]) {
			d.errorf(fs.at("annotations"), "annotation %s must be one of %s, got %q", k, strings.Join(allowed, ", "), m[k])
		}
	}
	return m
}

// objects decodes a list of policy objects.
func (d *decoder) objects(n *yaml.Node, path string) ([]Object, []loc) {
	items, _ := d.list(n, path)
	var out []Object
	var locs []loc
	for i, e := range items {
		if o, ok := d.object(e, index(path, i)); ok {
			out, locs = append(out, o), append(locs, at(e, index(path, i)))
		}
	}
	return out, locs
}

// object checks a policy object's identity (apiVersion, kind,
// metadata.name and namespace) and keeps it verbatim: its other fields
// are not looked at.
func (d *decoder) object(n *yaml.Node, path string) (Object, bool) {
	n = resolve(n)
	o := Object{Node: n, File: d.file, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		d.errorf(at(n, path), "expected a policy object (a mapping), got %s", describe(n))
		return o, false
	}
	ok := true
	api, kind := d.lookupStr(n, path, "apiVersion"), d.lookupStr(n, path, "kind")
	o.APIVersion, o.Kind = api.s, kind.s
	pk, known := policyKinds[kind.s]
	switch {
	case kind.at.n == nil || api.at.n == nil:
		ok = false
	case !known:
		d.errorf(kind.at, "unsupported kind %q%s", kind.s, suggest(kind.s, policyKindNames(), "supported kinds"))
		ok = false
	case api.s != pk.apiVersion:
		d.errorf(api.at, "apiVersion of a %s must be %q, got %q", kind.s, pk.apiVersion, api.s)
		ok = false
	}
	meta := lookup(n, "metadata")
	if meta == nil {
		d.errorf(at(n, field(path, "metadata")), "required field is missing")
		return o, false
	}
	mpath := field(path, "metadata")
	if resolve(meta).Kind != yaml.MappingNode {
		d.errorf(at(meta, mpath), "expected a mapping, got %s", describe(meta))
		return o, false
	}
	name := d.lookupStr(resolve(meta), mpath, "name")
	if name.at.n == nil {
		return o, false
	}
	if err := checkDNSSubdomain(name.s); err != nil {
		d.errorf(name.at, "%v", err)
		ok = false
	}
	o.Name = name.s
	return o, d.objectNamespace(resolve(meta), mpath, &o, pk, known) && ok
}

// objectNamespace sets o.Namespace: as written, "default" for a
// namespaced kind without one; a cluster-scoped kind must have none.
func (d *decoder) objectNamespace(meta *yaml.Node, path string, o *Object, pk policyKind, known bool) bool {
	v := lookup(meta, "namespace")
	if isNull(v) {
		if pk.namespaced {
			o.Namespace = "default"
		}
		return true
	}
	s, ok := d.str(v, field(path, "namespace"))
	if !ok {
		return false
	}
	if known && !pk.namespaced {
		d.errorf(at(v, field(path, "namespace")), "a %s is cluster-scoped and has no namespace", o.Kind)
		return false
	}
	if err := checkDNSLabel(s, 63); err != nil {
		d.errorf(at(v, field(path, "namespace")), "%v", err)
		return false
	}
	o.Namespace = s
	return true
}

// lookup returns the value of key in mapping n, nil when absent.
func lookup(n *yaml.Node, key string) *yaml.Node {
	for _, kv := range mergedPairs(n) {
		if k := resolve(kv[0]); k.Kind == yaml.ScalarNode && k.Value == key {
			return resolve(kv[1])
		}
	}
	return nil
}

// lookupStr returns a required, non-empty string field of mapping n;
// its loc has a nil node when it is missing or invalid.
func (d *decoder) lookupStr(n *yaml.Node, path, key string) strAt {
	v := lookup(n, key)
	if isNull(v) {
		d.errorf(at(n, field(path, key)), "required field is missing")
		return strAt{}
	}
	s, ok := d.str(v, field(path, key))
	if !ok {
		return strAt{}
	}
	if s == "" {
		d.errorf(at(v, field(path, key)), "must not be empty")
		return strAt{}
	}
	return strAt{s: s, at: at(v, field(path, key))}
}
