package model

import (
	"fmt"
	"net/netip"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// endpointKind says what one end of a connection is, as policy sees it.
type endpointKind string

const (
	// kindPod is a pod of the cluster.
	kindPod endpointKind = "pod"
	// kindNode is a node's host network namespace (its address).
	kindNode endpointKind = "node"
	// kindWorld is anything outside the cluster: an external, or an
	// address nobody in the cluster holds.
	kindWorld endpointKind = "world"
)

// endpoint is one end of a connection.
type endpoint struct {
	kind endpointKind
	// pod and its namespace, for kindPod.
	pod       scenario.Pod
	namespace scenario.Namespace
	// node is the node's name, for kindNode.
	node string
	// addr is the address the connection uses (the probe's family).
	addr netip.Addr
	// name is how the scenario writes it, for explanations.
	name string
}

// resolveEndpoint finds what a probe's peer is in the state, and its
// address in the probe's family. An ip: peer is whoever holds the address,
// or the world when nobody does.
func resolveEndpoint(st *scenario.State, p scenario.Peer, f scenario.Family) (endpoint, error) {
	addr, ok := st.Addr(p, f)
	if !ok {
		return endpoint{}, fmt.Errorf("%s has no %s address at this step", p, f)
	}
	if p.Kind == scenario.PeerIP {
		owner, held := st.Owner(addr)
		if !held {
			return endpoint{kind: kindWorld, addr: addr, name: p.String()}, nil
		}
		p = owner
	}
	switch p.Kind {
	case scenario.PeerPod:
		pod, _ := st.Pod(p.Name)
		ns, _ := st.Namespace(pod.Namespace)
		return endpoint{kind: kindPod, pod: pod, namespace: ns, addr: addr, name: p.String()}, nil
	case scenario.PeerNode:
		return endpoint{kind: kindNode, node: p.Name, addr: addr, name: p.String()}, nil
	case scenario.PeerExternal:
		return endpoint{kind: kindWorld, addr: addr, name: p.String()}, nil
	}
	return endpoint{}, fmt.Errorf("%s: a service address that is no frontend of this probe: %w", p, ErrNotModelled)
}

// nodeName is the node an end of a connection runs on: a pod's node, a
// node itself; "" outside the cluster.
func (e endpoint) nodeName() string {
	switch e.kind {
	case kindPod:
		return e.pod.Node
	case kindNode:
		return e.node
	}
	return ""
}

// entity names what the peer is from the point of view of a pod on node
// subjectNode, as Cilium's entities do: "host" is the pod's own node,
// "remote-node" any other node, "world" outside the cluster.
// https://docs.cilium.io/en/stable/security/policy/language/#entities-based
func (e endpoint) entity(subjectNode string) string {
	switch e.kind {
	case kindPod:
		return "pod"
	case kindNode:
		if e.node == subjectNode {
			return "host"
		}
		return "remote-node"
	}
	return "world"
}

// ciliumLabels are the labels a Cilium endpoint selector sees on the peer,
// from the point of view of a pod on node subjectNode. A pod has its own
// labels, its namespace's name and labels, and the cluster's name; nodes
// and the world have only their reserved label.
// https://docs.cilium.io/en/stable/security/policy/kubernetes/#namespaces
// https://docs.cilium.io/en/stable/security/policy/language/#access-to-from-local-host (reserved:host)
func (e endpoint) ciliumLabels(subjectNode string) labelSet {
	if e.kind != kindPod {
		ls := labelSet{{sourceReserved, e.entity(subjectNode), ""}}
		if e.kind == kindWorld {
			if e.addr.Is4() {
				ls = append(ls, label{sourceReserved, "world-ipv4", ""})
			} else {
				ls = append(ls, label{sourceReserved, "world-ipv6", ""})
			}
		}
		return ls
	}
	ls := k8sLabels(e.pod.Labels)
	ls = append(ls, label{sourceK8s, keyPodNamespace, e.pod.Namespace})
	for k, v := range e.namespace.Labels {
		ls = append(ls, label{sourceK8s, keyNamespaceLabels + k, v})
	}
	ls = append(ls, label{sourceK8s, keyPolicyCluster, clusterName})
	return ls
}
