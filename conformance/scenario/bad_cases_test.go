package scenario

// head is the start of most test scenarios: body lines start at line 4.
const head = "apiVersion: conformance.cilia.dev/v1alpha1\nkind: Scenario\nmetadata: {name: t}\n"

// onePod is a cluster with two pods, a node and an external (lines 4-9).
const onePod = head + `cluster:
  pods:
    - {name: default/deathstar, labels: {class: deathstar}, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
    - {name: default/xwing, labels: {class: xwing}}
  externals:
    - {name: internet, ipv4: 203.0.113.7}
`

// badCase is an invalid scenario and the exact problems it must give.
type badCase struct {
	name string
	src  string
	want []string
}

var badCases = []badCase{
	{"wrong apiVersion", "apiVersion: v1\nkind: Scenario\nmetadata: {name: t}\nprobes: []\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:1:13: apiVersion: must be \"conformance.cilia.dev/v1alpha1\", got \"v1\"",
	}},
	{"wrong kind", "apiVersion: conformance.cilia.dev/v1alpha1\nkind: Test\nmetadata: {name: t}\nsteps: []\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:2:7: kind: must be \"Scenario\", got \"Test\"",
	}},
	{"missing metadata", "apiVersion: conformance.cilia.dev/v1alpha1\nkind: Scenario\n", []string{
		"t.yaml:1:1: metadata: required field is missing",
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
	}},
	{"bad name", "apiVersion: conformance.cilia.dev/v1alpha1\nkind: Scenario\nmetadata: {name: My_Test}\n" + "probes: [{from: a, to: b, port: 1, expect: allow}]\ncluster: {externals: [{name: a, ipv4: 1.1.1.1}, {name: b, ipv4: 1.1.1.2}]}\n", []string{
		"t.yaml:3:18: metadata.name: \"My_Test\" is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit",
	}},
	{"unknown feature", "apiVersion: conformance.cilia.dev/v1alpha1\nkind: Scenario\nmetadata: {name: t, features: [policy-l3, polcy-l4, policy-l3]}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:3:43: metadata.features[1]: unknown feature \"polcy-l4\" (did you mean \"policy-l4\"?)",
		"t.yaml:3:53: metadata.features[2]: duplicate feature \"policy-l3\"",
	}},
	{"unknown top-level field", head + "probe: []\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:4:1: probe: unknown field \"probe\" (did you mean \"probes\"?)",
	}},
	{"duplicate key", head + "cluster:\n  pods: []\n  pods: []\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:6:3: cluster.pods: duplicate field \"pods\" (first at line 5)",
	}},
	{"pod name without namespace", head + "cluster:\n  pods: [{name: xwing}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:17: cluster.pods[0].name: pod name \"xwing\" must be \"namespace/name\"",
	}},
	{"label value not a string", head + "cluster:\n  pods: [{name: default/a, labels: {enabled: true}}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:46: cluster.pods[0].labels[\"enabled\"]: expected a string, got a boolean (true); quote it (\"true\") if a string is meant",
	}},
	{"invalid label key", head + "cluster:\n  pods: [{name: default/a, labels: {-bad: x}}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:37: cluster.pods[0].labels[\"-bad\"]: invalid label key \"-bad\": the name part must be 1-63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
	}},
	{"unknown node", head + "cluster:\n  nodes: [{name: node-1}, {name: node-2}]\n  pods: [{name: default/a, node: node-3}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:6:34: cluster.pods[0].node: unknown node \"node-3\" (did you mean \"node-1\"?)",
	}},
	{"duplicate pod", head + "cluster:\n  pods:\n    - {name: default/a}\n    - {name: default/a}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:7:14: cluster.pods[1].name: duplicate pod \"default/a\" (also line 6)",
	}},
	{"address used twice", head + "cluster:\n  nodes: [{name: node-1, ipv4: 192.168.0.11}]\n  pods: [{name: default/a, ipv4: 192.168.0.11}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:6:34: cluster.pods[0].ipv4: address 192.168.0.11 is already used by node node-1",
	}},
	{"merge keys and anchors work, unknown merged field caught", head + "cluster:\n  pods:\n    - &base {name: default/a, labels: {app: a}, colour: red}\n    - {<<: *base, name: default/b}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:6:49: cluster.pods[0].colour: unknown field \"colour\" (known fields: ipv4, ipv6, labels, name, node, ports)",
		"t.yaml:6:49: cluster.pods[1].colour: unknown field \"colour\" (known fields: ipv4, ipv6, labels, name, node, ports)",
	}},
	{"unknown field in a service port", onePod + "  services:\n    - {name: default/ds, ports: [{port: 80, target: 8080}]}\nprobes:\n  - {from: default/xwing, to: service:default/ds, port: 80, expect: allow}\n", []string{
		"t.yaml:11:45: cluster.services[0].ports[0].target: unknown field \"target\" (known fields: name, nodePort, port, protocol, targetPort)",
	}},
	{"matrix port syntax", onePod + "matrix:\n  - {from: [\"*\"], to: [\"*\"], ports: [\"80/tcp\", \"80/ICMP\", 0], default: allow}\n", []string{
		"t.yaml:11:38: matrix[0].ports[0]: invalid port \"80/tcp\": write the protocol in capitals (\"80/TCP\")",
		"t.yaml:11:48: matrix[0].ports[1]: invalid port \"80/ICMP\": ICMP takes no port number, write \"ICMP\"",
		"t.yaml:11:59: matrix[0].ports[2]: port 0 is out of range (1-65535)",
	}},
	{"invalid pattern", onePod + "matrix:\n  - {from: [\"default/x*\"], to: [\"*\"], ports: [\"80/TCP\"], default: maybe}\n", []string{
		"t.yaml:11:13: matrix[0].from[0]: invalid pattern \"default/x*\": \"*\" stands alone or as \"namespace/*\"",
		"t.yaml:11:67: matrix[0].default: expected allow or deny, got \"maybe\"",
	}},
	{"ipv4 field with an IPv6 address", head + "cluster:\n  pods: [{name: default/a, ipv4: \"fd00::1\"}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:34: cluster.pods[0].ipv4: expected an IPv4 address, got fd00::1",
	}},
	{"external without address", head + "cluster:\n  externals: [{name: world}]\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:15: cluster.externals[0]: an external needs an address: give ipv4, ipv6 or both",
	}},
	{"policy without name", head + "policies:\n  - apiVersion: cilium.io/v2\n    kind: CiliumNetworkPolicy\n    metadata: {namespace: x}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:7:15: policies[0].metadata.name: required field is missing",
	}},
	{"policy kind typo", head + "policies:\n  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolcy, metadata: {name: p}}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:38: policies[0].kind: unsupported kind \"CiliumNetworkPolcy\" (did you mean \"CiliumNetworkPolicy\"?)",
	}},
	{"clusterwide policy with namespace", head + "policies:\n  - {apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: p, namespace: x}}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:101: policies[0].metadata.namespace: a CiliumClusterwideNetworkPolicy is cluster-scoped and has no namespace",
	}},
	{"duplicate policy", head + "policies:\n  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p}}\n  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: default}}\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:6:5: policies[1]: duplicate policy NetworkPolicy default/p (also line 5)",
	}},
	{"unknown pod", onePod + "probes:\n  - {from: default/xwng, to: default/deathstar, port: 80, expect: allow}\n", []string{
		"t.yaml:11:12: probes[0].from: unknown pod \"default/xwng\" (did you mean \"default/xwing\"?)",
	}},
	{"unknown port name", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: htp, expect: allow}\n", []string{
		"t.yaml:11:56: probes[0].port: pod default/deathstar has no port named \"htp\" (it has: http, dns)",
	}},
	{"named port protocol mismatch", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: dns, protocol: TCP, expect: allow}\n", []string{
		"t.yaml:11:71: probes[0].protocol: port \"dns\" of pod default/deathstar is UDP, not TCP",
	}},
	{"ICMP with a port", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, protocol: ICMP, expect: allow}\n", []string{
		"t.yaml:11:56: probes[0].port: an ICMP probe sends an echo request and takes no port",
	}},
	{"TCP without a port", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, expect: allow}\n", []string{
		"t.yaml:11:5: probes[0].port: required field is missing: a TCP probe needs a port",
	}},
	{"port out of range", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 70000, expect: allow}\n", []string{
		"t.yaml:11:56: probes[0].port: port 70000 is out of range (1-65535)",
	}},
	{"ipv6 to an IPv4-only external", onePod + "probes:\n  - {from: default/xwing, to: internet, port: 443, family: ipv6, expect: allow}\n", []string{
		"t.yaml:11:31: probes[0].to: external internet has no IPv6 address (the probe's family is ipv6)",
	}},
	{"probe from a service", onePod + "probes:\n  - {from: service:default/x, to: default/xwing, port: 80, expect: allow}\n", []string{
		"t.yaml:11:12: probes[0].from: a probe cannot start at service default/x: from is a pod, an external or node:<name>",
	}},
	{"ip family mismatch", onePod + "probes:\n  - {from: default/xwing, to: \"ip:fd00::99\", port: 80, family: ipv4, expect: allow}\n", []string{
		"t.yaml:11:31: probes[0].to: ip:fd00::99 is an IPv6 address but the probe's family is ipv4",
	}},
	{"bare address", onePod + "probes:\n  - {from: default/xwing, to: 10.0.0.1, port: 80, expect: allow}\n", []string{
		"t.yaml:11:31: probes[0].to: write an address as \"ip:10.0.0.1\"",
	}},
	{"unknown field in probe", onePod + "probes:\n  - {fom: default/xwing, to: default/deathstar, port: 80, expect: allow}\n", []string{
		"t.yaml:11:5: probes[0].from: required field is missing",
		"t.yaml:11:6: probes[0].fom: unknown field \"fom\" (did you mean \"from\"?)",
	}},
	{"expect without verdict", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, expect: {dropReason: POLICY_DENIED}}\n", []string{
		"t.yaml:11:68: probes[0].expect.verdict: required field is missing",
	}},
	{"drop reason with allow", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: allow, dropReason: POLICY_DENIED}}\n", []string{
		"t.yaml:11:97: probes[0].expect.dropReason: a drop reason needs verdict deny",
	}},
	{"httpStatus without http", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: deny, httpStatus: 403}}\n", []string{
		"t.yaml:11:96: probes[0].expect.httpStatus: httpStatus needs an http request",
	}},
	{"backendIn unknown pod", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: allow, backendIn: [default/deathstar-1]}}\n", []string{
		"t.yaml:11:97: probes[0].expect.backendIn[0]: unknown pod \"default/deathstar-1\" (did you mean \"default/deathstar\"?)",
	}},
	{"http over UDP", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: dns, http: {path: /}, expect: allow}\n", []string{
		"t.yaml:11:67: probes[0].http: an http request needs protocol TCP, got UDP",
	}},
	{"unknown kafka apiKey", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, kafka: {apiKey: prodce}, expect: allow}\n", []string{
		"t.yaml:11:76: probes[0].kafka.apiKey: unknown Kafka apiKey \"prodce\" (did you mean \"produce\"?)",
	}},
	{"conflicting probes", onePod + "probes:\n  - {from: default/xwing, to: default/deathstar, port: 80, expect: allow}\n  - {from: default/xwing, to: default/deathstar, port: http, expect: deny}\n", []string{
		"t.yaml:12:5: probes[1]: default/xwing -> default/deathstar http=80/TCP expects deny here but probes[0] (line 11) expects allow",
	}},
	{"except matches nothing", onePod + "matrix:\n  - from: [\"*\"]\n    to: [\"default/*\"]\n    ports: [\"80/TCP\"]\n    default: allow\n    except: [{from: default/xwing, to: default/deathstar, port: \"81/TCP\"}]\n", []string{
		"t.yaml:15:14: matrix[0].except[0]: matches no probe of this matrix (check from, to and port; self pairs are left out)",
	}},
	{"matrix port name nobody has", onePod + "matrix:\n  - {from: [\"*\"], to: [\"*\"], ports: [\"80/TCP\", htp], default: allow}\n", []string{
		"t.yaml:11:48: matrix[0].ports[1]: no destination of this matrix has a port named \"htp\"",
	}},
	{"matrix pattern matches no pods", onePod + "matrix:\n  - {from: [\"kube-system/*\"], to: [\"*\"], ports: [\"80/TCP\"], default: allow}\n", []string{
		"t.yaml:11:13: matrix[0].from[0]: \"kube-system/*\" matches no pods: namespace \"kube-system\" has none at this step",
	}},
	{"contradicting excepts", onePod + "matrix:\n  - from: [\"*\"]\n    to: [\"*\"]\n    ports: [\"80/TCP\"]\n    default: allow\n    except:\n      - {from: default/xwing, to: \"*\"}\n      - {from: \"*\", to: default/deathstar, expect: allow}\n", []string{
		"t.yaml:17:9: matrix[0].except[1]: contradicts matrix[0].except[0] on a probe both match",
	}},
	{"step without probes", onePod + "steps:\n  - deletePods: [default/xwing]\n", []string{
		"t.yaml:11:5: steps[0]: a step has no probes and no matrix: every step must observe something",
	}},
	{"delete a policy that does not exist", onePod + "steps:\n  - delete: [{kind: NetworkPolicy, name: default/nope}]\n    probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]\n", []string{
		"t.yaml:11:14: steps[0].delete[0]: NetworkPolicy default/nope does not exist at this step (no policies are in effect)",
	}},
	{"probe a deleted pod", onePod + "steps:\n  - deletePods: [default/xwing]\n    probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]\n", []string{
		"t.yaml:12:21: steps[0].probes[0].from: pod \"default/xwing\" does not exist at this step (it was deleted earlier)",
	}},
	{"probe a pod before it is added", onePod + "probes: [{from: default/ywing, to: default/deathstar, port: 80, expect: allow}]\nsteps:\n  - addPods: [{name: default/ywing}]\n    probes: [{from: default/ywing, to: default/deathstar, port: 80, expect: allow}]\n", []string{
		"t.yaml:10:17: probes[0].from: pod \"default/ywing\" does not exist yet at this step (steps[0].addPods[0] adds it)",
	}},
	{"add a pod that exists", onePod + "steps:\n  - addPods: [{name: default/xwing}]\n    probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]\n", []string{
		"t.yaml:11:22: steps[0].addPods[0].name: pod \"default/xwing\" already exists at this step",
	}},
	{"namespace name label contradicted", onePod + "steps:\n  - setLabels: [{namespace: default, labels: {kubernetes.io/metadata.name: other}}]\n    probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]\n", []string{
		"t.yaml:11:17: steps[0].setLabels[0].labels: label kubernetes.io/metadata.name must be the namespace's name \"default\", got \"other\"",
	}},
	{"no probes", onePod, []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
	}},
	{"YAML syntax error", head + "cluster:\n  pods: [\n", []string{
		"t.yaml:5: invalid YAML: did not find expected node content",
	}},
	{"two documents", head + "probes: []\n---\nkind: Scenario\n", []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:1: a file holds one scenario; found a second YAML document",
	}},
	{"service port checks", onePod + "  services:\n    - {name: default/ds, selector: {class: deathstar}, ports: [{port: 80, nodePort: 30080}]}\nprobes:\n  - {from: default/xwing, to: service:default/ds, port: 81, expect: allow}\n", []string{
		"t.yaml:11:85: cluster.services[0].ports[0].nodePort: only NodePort and LoadBalancer services have node ports",
		"t.yaml:13:57: probes[0].port: service default/ds has no port 81/TCP (it has: 80/TCP); to probe a port it does not expose, use ip:<cluster IP>",
	}},
}

// moreBadCases cover services, references and the long expectation form.
var moreBadCases = []badCase{
	{"service field rules", onePod + `  services:
    - name: default/a
      type: ClusterIP
      clusterIP: None
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}
      externalTrafficPolicy: Local
      loadBalancerIPs: [1.2.3.4]
      annotations: {service.cilium.io/lb-algorithm: round-robin}
      ports: [{port: 80}, {port: 80}]
    - name: default/b
      type: NodePort
      clusterIPs: [10.96.1.1, 10.96.1.2]
      ports: [{name: a, port: 80, nodePort: 40000}]
    - name: default/c
      clusterIP: 10.96.2.1
      clusterIPs: [10.96.2.2]
      ports: [{port: 80, targetPort: not_a_name}]
    - {name: default/c, ports: []}
    - {name: default/d, type: NodePort, ports: [{port: 80, nodePort: 30005}]}
    - {name: default/e, type: NodePort, ports: [{port: 80, nodePort: 30005}]}
probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]
`, []string{
		"t.yaml:13:18: cluster.services[0].clusterIP: headless services (clusterIP: None) are not supported",
		"t.yaml:14:30: cluster.services[0].sessionAffinityConfig: sessionAffinityConfig needs sessionAffinity: ClientIP",
		"t.yaml:14:58: cluster.services[0].sessionAffinityConfig.clientIP.timeoutSeconds: timeoutSeconds 0 is out of range (1-86400)",
		"t.yaml:15:30: cluster.services[0].externalTrafficPolicy: externalTrafficPolicy Local needs a NodePort or LoadBalancer service, or externalIPs",
		"t.yaml:16:24: cluster.services[0].loadBalancerIPs: only a service of type LoadBalancer has loadBalancerIPs (type is ClusterIP)",
		"t.yaml:17:20: cluster.services[0].annotations: annotation service.cilium.io/lb-algorithm must be one of random, maglev, got \"round-robin\"",
		"t.yaml:18:15: cluster.services[0].ports[0]: name is required when a service has more than one port",
		"t.yaml:18:27: cluster.services[0].ports[1]: name is required when a service has more than one port",
		"t.yaml:18:27: cluster.services[0].ports[1]: duplicate port 80/TCP (also ports[0])",
		"t.yaml:21:31: cluster.services[1].clusterIPs[1]: a service has at most one cluster IP per family",
		"t.yaml:22:45: cluster.services[1].ports[0].nodePort: node port 40000 is out of range (30000-32767)",
		"t.yaml:25:20: cluster.services[2].clusterIPs[0]: clusterIPs[0] must equal clusterIP (10.96.2.1)",
		"t.yaml:26:38: cluster.services[2].ports[0].targetPort: invalid port name \"not_a_name\": at most 15 lowercase letters, digits and '-', with at least one letter and no \"--\"",
		"t.yaml:27:7: cluster.services[3].name: duplicate service \"default/c\"",
		"t.yaml:27:32: cluster.services[3].ports: a service needs at least one port",
		"t.yaml:29:49: cluster.services[5].ports[0].nodePort: node port 30005 is already used by service default/d",
	}},
	{"peer hints", onePod + `  nodes: [{name: node-1}]
  services: [{name: default/web, ports: [{port: 80}]}]
probes:
  - {from: node-1, to: deathstar, port: 80, expect: allow}
  - {from: default/xwing, to: web, port: 80, expect: allow}
  - {from: default/xwing, to: pod:default/deathstar, port: 80, expect: allow}
  - {from: default/xwing, to: "node:", port: 80, expect: allow}
  - {from: default/xwing, to: service:web, port: 80, expect: allow}
  - {from: default/xwing, to: node:node-9, port: 80, expect: allow}
  - {from: default/xwing, to: service:default/wbe, port: 80, expect: allow}
  - {from: default/xwing, to: default/Bad_Name, port: 80, expect: allow}
`, []string{
		"t.yaml:13:12: probes[0].from: unknown peer \"node-1\": not a pod (namespace/name), node:<name>, service:<namespace/name>, ip:<address> or external (did you mean \"node:node-1\"?)",
		"t.yaml:13:24: probes[0].to: unknown peer \"deathstar\": not a pod (namespace/name), node:<name>, service:<namespace/name>, ip:<address> or external (did you mean \"default/deathstar\"?)",
		"t.yaml:14:31: probes[1].to: unknown peer \"web\": not a pod (namespace/name), node:<name>, service:<namespace/name>, ip:<address> or external (did you mean \"service:default/web\"?)",
		"t.yaml:15:31: probes[2].to: unknown peer prefix \"pod:\": use node:, service: or ip:",
		"t.yaml:16:31: probes[3].to: \"node:\" names no node",
		"t.yaml:17:31: probes[4].to: service name \"web\" must be \"namespace/name\"",
		"t.yaml:18:31: probes[5].to: unknown node \"node-9\" (did you mean \"node-1\"?)",
		"t.yaml:19:31: probes[6].to: unknown service \"default/wbe\" (did you mean \"default/web\"?)",
		"t.yaml:20:31: probes[7].to: pod \"Bad_Name\" is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
	}},
	{"expectation rules", onePod + `probes:
  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: deny, sourceSeen: client, backendIn: [default/xwing]}}
  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: allow, sourceSeen: somewhere}}
  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: deny, dropReason: policy-denied}}
  - {from: default/xwing, to: default/deathstar, port: 80, http: {method: get, path: x}, expect: {verdict: deny, httpStatus: 200}}
  - {from: default/xwing, to: default/deathstar, port: 80, http: {}, expect: {verdict: allow, httpStatus: 999}}
  - {from: default/xwing, to: default/deathstar, port: 80, expect: {verdict: allow, backendIn: []}}
  - {from: default/xwing, to: default/deathstar, port: 80, http: {}, kafka: {apiKey: fetch}, expect: allow}
  - {from: default/xwing, to: default/deathstar, port: 80, protocol: tcp, family: ipv5, expect: allow}
`, []string{
		"t.yaml:11:96: probes[0].expect.sourceSeen: sourceSeen needs verdict allow",
		"t.yaml:11:115: probes[0].expect.backendIn: backendIn needs verdict allow",
		"t.yaml:12:97: probes[1].expect.sourceSeen: sourceSeen must be client, node or an IP address, got \"somewhere\"",
		"t.yaml:13:96: probes[2].expect.dropReason: invalid drop reason \"policy-denied\": use the catalogue name, e.g. POLICY_DENIED",
		"t.yaml:14:75: probes[3].http.method: invalid HTTP method \"get\": use capitals, e.g. GET or POST",
		"t.yaml:14:86: probes[3].http.path: HTTP path \"x\" must start with \"/\"",
		"t.yaml:14:126: probes[3].expect.httpStatus: a denied request's status is 400 or above, got 200",
		"t.yaml:15:107: probes[4].expect.httpStatus: HTTP status 999 is out of range (100-599)",
		"t.yaml:16:96: probes[5].expect.backendIn: backendIn lists no pods",
		"t.yaml:17:77: probes[6].kafka: a probe sends either an http or a kafka request, not both",
		"t.yaml:18:70: probes[7].protocol: protocol must be written in capitals: \"TCP\"",
		"t.yaml:18:83: probes[7].family: must be one of ipv4, ipv6, got \"ipv5\"",
	}},
	{"step reference rules", onePod + `steps:
  - delete:
      - {kind: CiliumClusterwideNetworkPolicy, name: default/x}
      - {kind: NetworkPolicy, name: default/x, namespace: other}
      - {kind: Policy, name: x}
      - {kind: CiliumClusterwideNetworkPolicy, name: x, namespace: y}
    setLabels:
      - {pod: default/xwing, namespace: default, labels: {}}
      - {labels: {a: b}}
      - {pod: default/nope, labels: {}}
      - {namespace: nope, labels: {}}
      - {pod: default/xwing}
    deletePods: [xwing]
    apply:
      - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p}}
      - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p, namespace: default}}
      - {apiVersion: cilium.io/v1, kind: CiliumNetworkPolicy, metadata: {name: q}}
      - just-a-string
    probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]
`, []string{
		"t.yaml:12:54: steps[0].delete[0].name: a CiliumClusterwideNetworkPolicy is cluster-scoped: name it without a namespace",
		"t.yaml:13:59: steps[0].delete[1].namespace: namespace \"other\" contradicts name \"default/x\"",
		"t.yaml:14:16: steps[0].delete[2].kind: unsupported kind \"Policy\" (supported kinds: CiliumClusterwideNetworkPolicy, CiliumNetworkPolicy, NetworkPolicy)",
		"t.yaml:15:68: steps[0].delete[3].namespace: a CiliumClusterwideNetworkPolicy is cluster-scoped and has no namespace",
		"t.yaml:17:41: steps[0].setLabels[0].namespace: give pod or namespace, not both",
		"t.yaml:18:9: steps[0].setLabels[1].pod: required field is missing: give pod or namespace",
		"t.yaml:19:15: steps[0].setLabels[2].pod: unknown pod \"default/nope\" (pods: default/deathstar, default/xwing)",
		"t.yaml:20:21: steps[0].setLabels[3].namespace: unknown namespace \"nope\" (namespaces: default)",
		"t.yaml:21:9: steps[0].setLabels[4].labels: required field is missing",
		"t.yaml:22:18: steps[0].deletePods[0]: pod name \"xwing\" must be \"namespace/name\"",
		"t.yaml:25:9: steps[0].apply[1]: CiliumNetworkPolicy default/p is applied twice in this step (also line 24)",
		"t.yaml:26:22: steps[0].apply[2].apiVersion: apiVersion of a CiliumNetworkPolicy must be \"cilium.io/v2\", got \"cilium.io/v1\"",
		"t.yaml:27:9: steps[0].apply[3]: expected a policy object (a mapping), got the string \"just-a-string\"",
	}},
	{"matrix field rules", onePod + `matrix:
  - {from: [], to: ["*"], ports: [], default: allow, family: ipv6, families: [ipv4]}
  - {from: ["*"], to: ["*"], ports: ["80/TCP"], default: allow, families: [ipv4, ipv4]}
  - {from: [default/deathstar], to: [default/deathstar], ports: ["80/TCP"], default: allow}
  - {from: [internet], to: ["*"], ports: ["80/TCP"], default: allow, family: ipv6}
  - {from: [service:default/x], to: [a/b/c], ports: [http], default: allow}
`, []string{
		"t.yaml:11:12: matrix[0].from: lists no peers",
		"t.yaml:11:34: matrix[0].ports: a matrix needs at least one port",
		"t.yaml:11:78: matrix[0].families: give family or families, not both",
		"t.yaml:12:82: matrix[1].families[1]: duplicate family \"ipv4\"",
		"t.yaml:13:5: matrix[2]: the matrix expands to no probes: its only from/to pairs are self pairs, which are left out",
		"t.yaml:14:5: matrix[3]: the matrix expands to no probes: no destination has its ports, or no from/to pair has addresses of its families",
		"t.yaml:15:13: matrix[4].from[0]: a probe cannot start at service default/x: from is a pod, an external or node:<name>",
		"t.yaml:15:38: matrix[4].to[0]: pod name \"a/b/c\" must be \"namespace/name\"",
	}},
	{"types", head + `cluster:
  nodes: {name: node-1}
  pods:
    - {name: default/a, ports: [{port: http}]}
    - [default/b]
    - {name: default/c, ipv4: 10.0.0.999}
    - {name: default/d, ipv6: "fe80::1%eth0"}
    - {name: default/e, ipv6: "::ffff:10.0.0.1"}
    - {name: default/f, labels: [a, b]}
    - {name: default/g, labels: {a: [b]}}
  externals: [{name: x, ipv4: 1.1.1.1, ports: [{port: 99999999999999999999}]}]
metadata: {name: again}
probes: 42
`, []string{
		"t.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		"t.yaml:5:10: cluster.nodes: expected a list, got a mapping",
		"t.yaml:7:40: cluster.pods[0].ports[0].port: expected an integer, got the string \"http\"",
		"t.yaml:8:7: cluster.pods[1]: expected a mapping, got a list",
		"t.yaml:9:31: cluster.pods[2].ipv4: invalid IP address \"10.0.0.999\"",
		"t.yaml:10:31: cluster.pods[3].ipv6: invalid IP address \"fe80::1%eth0\"",
		"t.yaml:11:31: cluster.pods[4].ipv6: invalid IP address \"::ffff:10.0.0.1\": write IPv4-mapped addresses as plain IPv4",
		"t.yaml:12:33: cluster.pods[5].labels: expected a mapping, got a list",
		"t.yaml:13:37: cluster.pods[6].labels[\"a\"]: expected a string, got a list",
		"t.yaml:14:55: cluster.externals[0].ports[0].port: expected an integer, got a number (99999999999999999999)",
		"t.yaml:15:1: metadata: duplicate field \"metadata\" (first at line 3)",
		"t.yaml:16:9: probes: expected a list, got an integer (42)",
	}},
	{"load-balancing probe fields", onePod + `  services: [{name: default/ds, selector: {class: deathstar}, ports: [{port: 80}]}]
probes:
  - {name: first, from: default/xwing, to: service:default/ds, port: 80, repeat: 0, expect: allow}
  - {name: Bad_Name, from: default/xwing, to: service:default/ds, port: 80, repeat: 2, sourcePort: 40000, expect: allow}
  - {from: default/xwing, to: service:default/ds, port: 80, sourcePort: 80, expect: {verdict: allow, sameBackend: true, distinctBackends: 3}}
  - {from: default/xwing, to: service:default/ds, port: 80, expect: {verdict: deny, sameBackendAs: first}}
  - {name: first, from: default/xwing, to: service:default/ds, port: 80, repeat: 3, expect: {verdict: allow, sameBackendAs: frist, replyNotVia: [node-2], distinctBackends: 1}}
  - {from: default/xwing, to: default/deathstar, protocol: ICMP, sourcePort: 2000, expect: {verdict: allow, sameBackend: false}}
`, []string{
		"t.yaml:12:82: probes[0].repeat: repeat 0 is out of range (1-1000)",
		"t.yaml:13:12: probes[1].name: invalid probe name \"Bad_Name\": lowercase letters, digits and '-', starting and ending with a letter or digit",
		"t.yaml:13:100: probes[1].sourcePort: sourcePort fixes one connection; repeat makes new ones from fresh ports: use one or the other",
		"t.yaml:14:73: probes[2].sourcePort: sourcePort 80 is out of range (1024-65535)",
		"t.yaml:14:115: probes[2].expect.sameBackend: sameBackend relates the repetitions of a probe: it needs repeat of at least 2",
		"t.yaml:14:139: probes[2].expect.distinctBackends: distinctBackends 3 needs at least as many repetitions (repeat is 1)",
		"t.yaml:15:100: probes[3].expect.sameBackendAs: sameBackendAs needs verdict allow",
		"t.yaml:16:12: probes[4].name: duplicate probe name \"first\" (also probes[0], line 12)",
		"t.yaml:16:125: probes[4].expect.sameBackendAs: sameBackendAs \"frist\" names no earlier probe (did you mean \"first\"?)",
		"t.yaml:16:146: probes[4].expect.replyNotVia[0]: unknown node \"node-2\" (did you mean \"node-1\"?)",
		"t.yaml:16:173: probes[4].expect.distinctBackends: distinctBackends must be at least 2, got 1",
		"t.yaml:17:78: probes[5].sourcePort: an ICMP probe has no source port",
		"t.yaml:17:122: probes[5].expect.sameBackend: sameBackend must be true (leave it out otherwise), got a boolean (false)",
	}},
	{"terminatePods", onePod + `steps:
  - terminatePods: [default/xwing, default/nope, default/xwing]
    probes: [{from: default/xwing, to: default/deathstar, port: 80, expect: allow}]
`, []string{
		"t.yaml:11:36: steps[0].terminatePods[1]: unknown pod \"default/nope\" (pods: default/deathstar, default/xwing)",
		"t.yaml:11:50: steps[0].terminatePods[2]: pod \"default/xwing\" is terminating already",
	}},
}
