package scenario

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// kafkaAPIKeys are the Kafka API key names Cilium's Kafka policy knows.
var kafkaAPIKeys = []string{
	"produce", "fetch", "offsets", "metadata", "leaderandisr", "stopreplica", "updatemetadata",
	"controlledshutdown", "offsetcommit", "offsetfetch", "findcoordinator", "joingroup", "heartbeat",
	"leavegroup", "syncgroup", "describegroups", "listgroups", "saslhandshake", "apiversions",
	"createtopics", "deletetopics", "deleterecords", "initproducerid", "offsetforleaderepoch",
	"addpartitionstotxn", "addoffsetstotxn", "endtxn", "writetxnmarkers", "txnoffsetcommit",
	"describeacls", "createacls", "deleteacls", "describeconfigs", "alterconfigs",
}

// probes decodes a list of probes.
func (d *decoder) probes(n *yaml.Node, path string) []probeSpec {
	items, _ := d.list(n, path)
	var out []probeSpec
	for i, e := range items {
		out = append(out, d.probe(e, index(path, i)))
	}
	return out
}

// probe decodes one probe.
func (d *decoder) probe(n *yaml.Node, path string) probeSpec {
	ps := probeSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "name", "from", "to", "port", "protocol", "family", "http", "kafka",
		"repeat", "sourcePort", "expect")
	if !ok {
		return ps
	}
	ps.ok, ps.portOK = true, true
	ps.ok = d.probeLB(fs, &ps) && ps.ok
	var good bool
	ps.from, good = fs.requireStr("from")
	ps.ok = ps.ok && good
	ps.fromAt = fs.at("from")
	ps.to, good = fs.requireStr("to")
	ps.ok = ps.ok && good
	ps.toAt = fs.at("to")
	if v := fs.get("port"); v != nil {
		ps.port, good = d.portArg(v, field(path, "port"))
		ps.portOK = ps.portOK && good
	}
	ps.portAt = fs.at("port")
	if v := fs.get("protocol"); v != nil {
		ps.protocol, good = d.protocol(v, field(path, "protocol"), true)
		ps.portOK = ps.portOK && good
		ps.protoAt = fs.at("protocol")
	}
	if v := fs.get("family"); v != nil {
		f, good := d.enum(v, field(path, "family"), string(IPv4), string(IPv6))
		ps.family, ps.portOK = Family(f), ps.portOK && good
		ps.familyAt = fs.at("family")
	}
	d.l7(fs, &ps)
	ps.ok = ps.ok && ps.portOK
	if v := fs.require("expect"); v != nil {
		ps.expect = d.expect(v, field(path, "expect"), ps.http != nil)
		ps.ok = ps.ok && ps.expect.ok
	} else {
		ps.ok = false
	}
	return ps
}

// portArg decodes a probe's port: a number or a port name. A string of
// digits counts as a number.
func (d *decoder) portArg(n *yaml.Node, path string) (portArg, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, ok := d.integer(n, path)
		return portArg{given: true, num: v}, ok
	}
	s, ok := d.str(n, path)
	if !ok {
		return portArg{}, false
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return portArg{given: true, num: v}, true
	}
	if s == "" {
		d.errorf(at(n, path), "must not be empty")
		return portArg{}, false
	}
	return portArg{given: true, name: s}, true
}

// l7 decodes a probe's http or kafka request.
func (d *decoder) l7(fs *fieldSet, ps *probeSpec) {
	if v := fs.get("http"); v != nil {
		ps.http = d.httpRequest(v, field(fs.path, "http"))
		ps.l7At = fs.at("http")
	}
	if v := fs.get("kafka"); v != nil {
		ps.kafka = d.kafkaRequest(v, field(fs.path, "kafka"))
		if ps.http != nil {
			d.errorf(fs.at("kafka"), "a probe sends either an http or a kafka request, not both")
			ps.portOK = false
		}
		ps.l7At = fs.at("kafka")
	}
}

// httpRequest decodes an HTTP request; method defaults to GET and path
// to "/".
func (d *decoder) httpRequest(n *yaml.Node, path string) *HTTPRequest {
	r := &HTTPRequest{Method: "GET", Path: "/", Headers: map[string]string{}}
	fs, ok := d.fields(n, path, "method", "path", "headers")
	if !ok {
		return r
	}
	if m, ok := fs.str("method"); ok {
		if !httpMethodRE.MatchString(m) {
			d.errorf(fs.at("method"), "invalid HTTP method %q: use capitals, e.g. GET or POST", m)
		}
		r.Method = m
	}
	if p, ok := fs.str("path"); ok {
		if !strings.HasPrefix(p, "/") {
			d.errorf(fs.at("path"), "HTTP path %q must start with \"/\"", p)
		}
		r.Path = p
	}
	if v := fs.get("headers"); v != nil {
		r.Headers = d.strMap(v, field(path, "headers"))
	}
	return r
}

// kafkaRequest decodes a Kafka request; apiKey is required.
func (d *decoder) kafkaRequest(n *yaml.Node, path string) *KafkaRequest {
	r := &KafkaRequest{}
	fs, ok := d.fields(n, path, "apiKey", "topic", "clientID")
	if !ok {
		return r
	}
	if k, ok := fs.requireStr("apiKey"); ok {
		if !contains(kafkaAPIKeys, k) {
			d.errorf(fs.at("apiKey"), "unknown Kafka apiKey %q%s", k, suggest(k, kafkaAPIKeys, "known keys"))
		}
		r.APIKey = k
	}
	r.Topic, _ = fs.str("topic")
	r.ClientID, _ = fs.str("clientID")
	return r
}

// verdict decodes allow or deny.
func (d *decoder) verdict(n *yaml.Node, path string) (Verdict, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if s != string(Allow) && s != string(Deny) {
		d.errorf(at(n, path), "expected allow or deny, got %q", s)
		return "", false
	}
	return Verdict(s), true
}

// expect decodes an expectation: allow, deny, or the long form.
func (d *decoder) expect(n *yaml.Node, path string, hasHTTP bool) expectSpec {
	n = resolve(n)
	es := expectSpec{at: at(n, path)}
	if n.Kind == yaml.ScalarNode {
		es.e.Verdict, es.ok = d.verdict(n, path)
		return es
	}
	fs, ok := d.fields(n, path, "verdict", "dropReason", "httpStatus", "backendIn", "sourceSeen",
		"sameBackend", "distinctBackends", "sameBackendAs", "replyNotVia")
	if !ok {
		return es
	}
	v := fs.require("verdict")
	if v == nil {
		return es
	}
	if es.e.Verdict, es.ok = d.verdict(v, field(path, "verdict")); !es.ok {
		return es
	}
	d.dropReason(fs, &es)
	d.httpStatus(fs, &es, hasHTTP)
	d.backendIn(fs, &es)
	d.sourceSeen(fs, &es)
	d.expectLB(fs, &es)
	return es
}

// probeLB decodes a probe's name, repeat and sourcePort.
func (d *decoder) probeLB(fs *fieldSet, ps *probeSpec) bool {
	ok := true
	if name, given := fs.str("name"); given {
		ps.name = strAt{s: name, at: fs.at("name")}
		if !dnsLabelRE.MatchString(name) {
			d.errorf(fs.at("name"), "invalid probe name %q: lowercase letters, digits and '-', starting and ending with a letter or digit", name)
			ok = false
		}
	}
	if v := fs.get("repeat"); v != nil {
		n, good := d.integer(v, fs.at("repeat").path)
		ps.repeat, ps.repeatAt = n, fs.at("repeat")
		if good && (n < 1 || n > 1000) {
			d.errorf(fs.at("repeat"), "repeat %d is out of range (1-1000)", n)
			good = false
		}
		ok = ok && good
	}
	if v := fs.get("sourcePort"); v != nil {
		n, good := d.integer(v, fs.at("sourcePort").path)
		ps.sourcePort, ps.sourcePortAt = n, fs.at("sourcePort")
		switch {
		case !good:
		case n < 1024 || n > 65535:
			d.errorf(fs.at("sourcePort"), "sourcePort %d is out of range (1024-65535)", n)
			good = false
		case ps.repeat > 1:
			d.errorf(fs.at("sourcePort"), "sourcePort fixes one connection; repeat makes new ones from fresh ports: use one or the other")
			good = false
		}
		ok = ok && good
	}
	return ok
}

// expectLB decodes the load-balancing expectations: sameBackend,
// distinctBackends, sameBackendAs, replyNotVia (allow only; how they
// relate to repeat and other probes is checked when the probe is built).
func (d *decoder) expectLB(fs *fieldSet, es *expectSpec) {
	allowOnly := func(name string) bool {
		if es.e.Verdict != Allow {
			d.errorf(fs.at(name), "%s needs verdict allow", name)
			es.ok = false
			return false
		}
		return true
	}
	if v := fs.get("sameBackend"); v != nil && allowOnly("sameBackend") {
		b := resolve(v)
		if b.Kind != yaml.ScalarNode || b.ShortTag() != "!!bool" || b.Value != "true" {
			d.errorf(fs.at("sameBackend"), "sameBackend must be true (leave it out otherwise), got %s", describe(v))
			es.ok = false
		} else {
			es.e.SameBackend, es.sameBackendAt = true, fs.at("sameBackend")
		}
	}
	if v := fs.get("distinctBackends"); v != nil && allowOnly("distinctBackends") {
		n, good := d.integer(v, fs.at("distinctBackends").path)
		switch {
		case !good:
			es.ok = false
		case n < 2:
			d.errorf(fs.at("distinctBackends"), "distinctBackends must be at least 2, got %d", n)
			es.ok = false
		default:
			es.e.DistinctBackends, es.distinctAt = int(n), fs.at("distinctBackends")
		}
	}
	if name, given := fs.str("sameBackendAs"); given && allowOnly("sameBackendAs") {
		es.e.SameBackendAs, es.sameAsAt = name, fs.at("sameBackendAs")
	}
	if v := fs.get("replyNotVia"); v != nil && allowOnly("replyNotVia") {
		names, locs := d.strList(v, fs.at("replyNotVia").path)
		if len(names) == 0 {
			d.errorf(fs.at("replyNotVia"), "replyNotVia lists no nodes")
			es.ok = false
		}
		es.e.ReplyNotVia, es.replyNotViaAt = names, locs
	}
}

// dropReason decodes expect.dropReason: a catalogue name, deny only.
func (d *decoder) dropReason(fs *fieldSet, es *expectSpec) {
	r, ok := fs.str("dropReason")
	if !ok {
		return
	}
	switch {
	case !dropReasonRE.MatchString(r):
		d.errorf(fs.at("dropReason"), "invalid drop reason %q: use the catalogue name, e.g. POLICY_DENIED", r)
		es.ok = false
	case es.e.Verdict != Deny:
		d.errorf(fs.at("dropReason"), "a drop reason needs verdict deny")
		es.ok = false
	default:
		es.e.DropReason = r
	}
}

// httpStatus decodes expect.httpStatus: 100-599, needs an http request;
// a denied request's status is 400 or above.
func (d *decoder) httpStatus(fs *fieldSet, es *expectSpec, hasHTTP bool) {
	v := fs.get("httpStatus")
	if v == nil {
		return
	}
	code, ok := d.integer(v, fs.at("httpStatus").path)
	switch {
	case !ok:
		es.ok = false
	case code < 100 || code > 599:
		d.errorf(fs.at("httpStatus"), "HTTP status %d is out of range (100-599)", code)
		es.ok = false
	case !hasHTTP:
		d.errorf(fs.at("httpStatus"), "httpStatus needs an http request")
		es.ok = false
	case es.e.Verdict == Deny && code < 400:
		d.errorf(fs.at("httpStatus"), "a denied request's status is 400 or above, got %d", code)
		es.ok = false
	default:
		es.e.HTTPStatus = int(code)
	}
}

// backendIn decodes expect.backendIn: pod keys, allow only (existence is
// checked at the probe's step).
func (d *decoder) backendIn(fs *fieldSet, es *expectSpec) {
	v := fs.get("backendIn")
	if v == nil {
		return
	}
	keys, locs := d.strList(v, fs.at("backendIn").path)
	if es.e.Verdict != Allow {
		d.errorf(fs.at("backendIn"), "backendIn needs verdict allow")
		es.ok = false
		return
	}
	if len(keys) == 0 {
		d.errorf(fs.at("backendIn"), "backendIn lists no pods")
		es.ok = false
	}
	for i, k := range keys {
		if _, _, err := checkKey(k, "pod"); err != nil {
			d.errorf(locs[i], "%v", err)
			es.ok = false
			continue
		}
		es.e.BackendIn = append(es.e.BackendIn, k)
		es.backendAt = append(es.backendAt, locs[i])
	}
}

// sourceSeen decodes expect.sourceSeen: client, node or an address.
func (d *decoder) sourceSeen(fs *fieldSet, es *expectSpec) {
	s, ok := fs.str("sourceSeen")
	if !ok {
		return
	}
	if es.e.Verdict != Allow {
		d.errorf(fs.at("sourceSeen"), "sourceSeen needs verdict allow")
		es.ok = false
		return
	}
	if s != "client" && s != "node" {
		if _, err := parseAddr(s); err != nil {
			d.errorf(fs.at("sourceSeen"), "sourceSeen must be client, node or an IP address, got %q", s)
			es.ok = false
			return
		}
	}
	es.e.SourceSeen = s
}

// matrices decodes a list of matrices.
func (d *decoder) matrices(n *yaml.Node, path string) []matrixSpec {
	items, _ := d.list(n, path)
	var out []matrixSpec
	for i, e := range items {
		out = append(out, d.matrix(e, index(path, i)))
	}
	return out
}

// matrix decodes one matrix.
func (d *decoder) matrix(n *yaml.Node, path string) matrixSpec {
	ms := matrixSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "from", "to", "ports", "family", "families", "default", "except")
	if !ok {
		return ms
	}
	ms.ok = true
	ms.from = d.patterns(fs, "from")
	ms.to = d.patterns(fs, "to")
	if v := fs.require("ports"); v != nil {
		items, _ := d.list(v, field(path, "ports"))
		for i, e := range items {
			if p, ok := d.portPat(e, index(field(path, "ports"), i)); ok {
				ms.ports = append(ms.ports, p)
			}
		}
		if len(items) == 0 {
			d.errorf(fs.at("ports"), "a matrix needs at least one port")
		}
	}
	ms.families = d.families(fs)
	if v := fs.require("default"); v != nil {
		ms.def, ok = d.verdict(v, field(path, "default"))
		ms.ok = ms.ok && ok
	} else {
		ms.ok = false
	}
	for i, e := range d.optList(fs, "except") {
		ex := d.except(e, index(field(path, "except"), i), ms.def)
		ms.except = append(ms.except, ex)
	}
	ms.ok = ms.ok && len(ms.from) > 0 && len(ms.to) > 0 && len(ms.ports) > 0 && len(ms.families) > 0
	return ms
}

// patterns decodes a matrix's from or to: a non-empty list of patterns.
func (d *decoder) patterns(fs *fieldSet, name string) []strAt {
	v := fs.require(name)
	if v == nil {
		return nil
	}
	ss, locs := d.strList(v, field(fs.path, name))
	if len(ss) == 0 && resolve(v).Kind == yaml.SequenceNode {
		d.errorf(fs.at(name), "lists no peers")
	}
	out := make([]strAt, len(ss))
	for i := range ss {
		out[i] = strAt{s: ss[i], at: locs[i]}
	}
	return out
}

// families decodes a matrix's family or families; default ipv4.
func (d *decoder) families(fs *fieldSet) []Family {
	if fs.has("family") && fs.has("families") {
		d.errorf(fs.at("families"), "give family or families, not both")
		return nil
	}
	if v := fs.get("family"); v != nil {
		f, ok := d.enum(v, fs.at("family").path, string(IPv4), string(IPv6))
		if !ok {
			return nil
		}
		return []Family{Family(f)}
	}
	v := fs.get("families")
	if v == nil {
		return []Family{IPv4}
	}
	items, _ := d.list(v, fs.at("families").path)
	var out []Family
	for i, e := range items {
		f, ok := d.enum(e, index(fs.at("families").path, i), string(IPv4), string(IPv6))
		switch {
		case !ok:
		case contains(out, Family(f)):
			d.errorf(at(e, index(fs.at("families").path, i)), "duplicate family %q", f)
		default:
			out = append(out, Family(f))
		}
	}
	if len(items) == 0 {
		d.errorf(fs.at("families"), "lists no families")
	}
	return out
}

// portPat decodes a matrix port: "80/TCP", "80" (TCP), 80, "ICMP" or a
// port name.
func (d *decoder) portPat(n *yaml.Node, path string) (portPat, bool) {
	n = resolve(n)
	p := portPat{at: at(n, path)}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		num, ok := d.portNumber(n, path)
		p.raw, p.num, p.proto = n.Value, num, TCP
		return p, ok
	}
	s, ok := d.str(n, path)
	if !ok {
		return p, false
	}
	p.raw = s
	if s == string(ICMP) {
		p.proto = ICMP
		return p, true
	}
	numStr, proto, hasProto := strings.Cut(s, "/")
	if v, err := strconv.ParseInt(numStr, 10, 64); err == nil {
		return d.numericPortPat(p, v, proto, hasProto)
	}
	if hasProto || checkPortName(s) != nil {
		d.errorf(p.at, "invalid port %q: use \"80/TCP\", \"53/UDP\", \"ICMP\" or a port name", s)
		return p, false
	}
	p.name = s
	return p, true
}

// numericPortPat completes a matrix port written as "N" or "N/PROTO".
func (d *decoder) numericPortPat(p portPat, v int64, proto string, hasProto bool) (portPat, bool) {
	if v < 1 || v > 65535 {
		d.errorf(p.at, "port %d is out of range (1-65535)", v)
		return p, false
	}
	p.num, p.proto = uint16(v), TCP
	if !hasProto {
		return p, true
	}
	switch up := Protocol(strings.ToUpper(proto)); {
	case up != Protocol(proto) && (up == TCP || up == UDP || up == SCTP):
		d.errorf(p.at, "invalid port %q: write the protocol in capitals (\"%d/%s\")", p.raw, v, up)
	case up == TCP || up == UDP || up == SCTP:
		p.proto = up
		return p, true
	case up == ICMP:
		d.errorf(p.at, "invalid port %q: ICMP takes no port number, write \"ICMP\"", p.raw)
	default:
		d.errorf(p.at, "invalid port %q: the protocol must be TCP, UDP or SCTP", p.raw)
	}
	return p, false
}

// except decodes one matrix exception; expect defaults to the opposite of
// the matrix's default.
func (d *decoder) except(n *yaml.Node, path string, def Verdict) exceptSpec {
	ex := exceptSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "from", "to", "port", "family", "expect")
	if !ok {
		return ex
	}
	if s, ok := fs.requireStr("from"); ok {
		ex.from = strAt{s: s, at: fs.at("from")}
	}
	if s, ok := fs.requireStr("to"); ok {
		ex.to = strAt{s: s, at: fs.at("to")}
	}
	if v := fs.get("port"); v != nil {
		if p, ok := d.portPat(v, field(path, "port")); ok {
			ex.port = &p
		}
	}
	if v := fs.get("family"); v != nil {
		f, _ := d.enum(v, field(path, "family"), string(IPv4), string(IPv6))
		ex.family = Family(f)
	}
	if v := fs.get("expect"); v != nil {
		es := d.expect(v, field(path, "expect"), false)
		if e := es.e; e.SameBackend || e.DistinctBackends != 0 || e.SameBackendAs != "" || len(e.ReplyNotVia) > 0 {
			d.errorf(es.at, "sameBackend, distinctBackends, sameBackendAs and replyNotVia relate single probes: write them in probes, not in a matrix")
			es.ok = false
		}
		ex.expect = &es
	}
	return ex
}

// step decodes one entry of steps.
func (d *decoder) step(n *yaml.Node, path string) stepSpec {
	ss := stepSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "apply", "delete", "setLabels", "addPods", "deletePods", "terminatePods", "probes", "matrix")
	if !ok {
		return ss
	}
	if v := fs.get("apply"); v != nil {
		ss.apply, ss.applyAt = d.objects(v, field(path, "apply"))
	}
	for i, e := range d.optList(fs, "delete") {
		ss.delete = append(ss.delete, d.deleteRef(e, index(field(path, "delete"), i)))
	}
	for i, e := range d.optList(fs, "setLabels") {
		ss.setLabels = append(ss.setLabels, d.labelChange(e, index(field(path, "setLabels"), i)))
	}
	for i, e := range d.optList(fs, "addPods") {
		ss.addPods = append(ss.addPods, d.pod(e, index(field(path, "addPods"), i)))
	}
	if v := fs.get("deletePods"); v != nil {
		keys, locs := d.strList(v, field(path, "deletePods"))
		for i := range keys {
			ss.deletePods = append(ss.deletePods, strAt{s: keys[i], at: locs[i]})
		}
	}
	if v := fs.get("terminatePods"); v != nil {
		keys, locs := d.strList(v, field(path, "terminatePods"))
		for i := range keys {
			ss.terminatePods = append(ss.terminatePods, strAt{s: keys[i], at: locs[i]})
		}
	}
	if v := fs.get("probes"); v != nil {
		ss.probes = d.probes(v, field(path, "probes"))
	}
	if v := fs.get("matrix"); v != nil {
		ss.matrix = d.matrices(v, field(path, "matrix"))
	}
	if len(ss.probes) == 0 && len(ss.matrix) == 0 {
		d.errorf(ss.at, "a step has no probes and no matrix: every step must observe something")
	}
	return ss
}

// deleteRef decodes {kind, name: "ns/name" or name, namespace}.
func (d *decoder) deleteRef(n *yaml.Node, path string) deleteSpec {
	ds := deleteSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "kind", "name", "namespace")
	if !ok {
		return ds
	}
	kind, okKind := fs.requireStr("kind")
	name, okName := fs.requireStr("name")
	ns, _ := fs.str("namespace")
	pk, known := policyKinds[kind]
	if okKind && !known {
		d.errorf(fs.at("kind"), "unsupported kind %q%s", kind, suggest(kind, policyKindNames(), "supported kinds"))
	}
	if !okKind || !okName || !known {
		return ds
	}
	ds.ref, ds.ok = d.objectRef(fs, kind, name, ns, pk)
	return ds
}

// objectRef completes a delete reference's namespace.
func (d *decoder) objectRef(fs *fieldSet, kind, name, ns string, pk policyKind) (ObjectRef, bool) {
	ref := ObjectRef{Kind: kind, Name: name, Namespace: ns}
	if refNS, refName, ok := strings.Cut(name, "/"); ok {
		if !pk.namespaced {
			d.errorf(fs.at("name"), "a %s is cluster-scoped: name it without a namespace", kind)
			return ref, false
		}
		if ns != "" && ns != refNS {
			d.errorf(fs.at("namespace"), "namespace %q contradicts name %q", ns, name)
			return ref, false
		}
		ref.Namespace, ref.Name = refNS, refName
	}
	switch {
	case !pk.namespaced && ref.Namespace != "":
		d.errorf(fs.at("namespace"), "a %s is cluster-scoped and has no namespace", kind)
		return ref, false
	case pk.namespaced && ref.Namespace == "":
		ref.Namespace = "default"
	}
	return ref, true
}

// labelChange decodes {pod: ns/name, labels} or {namespace: n, labels}.
func (d *decoder) labelChange(n *yaml.Node, path string) labelSpec {
	ls := labelSpec{at: at(n, path)}
	fs, ok := d.fields(n, path, "pod", "namespace", "labels")
	if !ok {
		return ls
	}
	switch {
	case fs.has("pod") && fs.has("namespace"):
		d.errorf(fs.at("namespace"), "give pod or namespace, not both")
		return ls
	case fs.has("pod"):
		ls.change.Pod, ok = fs.str("pod")
		ls.targetAt = fs.at("pod")
	case fs.has("namespace"):
		ls.change.Namespace, ok = fs.str("namespace")
		ls.targetAt = fs.at("namespace")
	default:
		d.errorf(at(n, field(path, "pod")), "required field is missing: give pod or namespace")
		return ls
	}
	if fs.require("labels") == nil {
		return ls
	}
	ls.change.Labels = d.labels(fs.get("labels"), field(path, "labels"))
	ls.ok = ok
	return ls
}
