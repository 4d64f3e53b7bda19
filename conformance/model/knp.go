package model

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// This file is Kubernetes NetworkPolicy:
// https://kubernetes.io/docs/concepts/services-networking/network-policies/

// knpSubjectSelects reports whether a NetworkPolicy applies to the pod:
// podSelector selects pods of the policy's own namespace ({} selects all
// of them).
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#networkpolicy-resource
// ("podSelector: Each NetworkPolicy includes a podSelector which selects
// the grouping of pods to which the policy applies")
func knpSubjectSelects(np *networkingv1.NetworkPolicy, pod endpoint) bool {
	return pod.pod.Namespace == np.Namespace && podSelectorSelects(&np.Spec.PodSelector, pod)
}

// knpPolicyTypes reports whether a NetworkPolicy governs a direction: the
// directions listed in policyTypes; without policyTypes, Ingress always and
// Egress when the policy has egress rules. Rules of a direction not listed
// are ignored; a direction listed with no rules isolates the pods and
// allows nothing.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#networkpolicy-resource
// ("policyTypes ... If no policyTypes are specified on a NetworkPolicy then
// by default Ingress will always be set and Egress will be set if the
// NetworkPolicy has any egress rules")
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#the-two-sorts-of-pod-isolation
func knpPolicyTypes(np *networkingv1.NetworkPolicy, dir direction) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return dir == ingress || len(np.Spec.Egress) > 0
	}
	want := networkingv1.PolicyTypeIngress
	if dir == egress {
		want = networkingv1.PolicyTypeEgress
	}
	return slices.Contains(np.Spec.PolicyTypes, want)
}

// podSelectorSelects matches a podSelector against a pod's own labels.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#behavior-of-to-and-from-selectors
func podSelectorSelects(sel *metav1.LabelSelector, pod endpoint) bool {
	return pod.kind == kindPod && labelSelectorMatches(fromK8sSelector(sel), k8sLabels(pod.pod.Labels))
}

// namespaceSelectorSelects matches a namespaceSelector against the labels
// of the pod's namespace (which always include
// kubernetes.io/metadata.name); {} selects every namespace.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#behavior-of-to-and-from-selectors
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#targeting-a-namespace-by-its-name
func namespaceSelectorSelects(sel *metav1.LabelSelector, pod endpoint) bool {
	return pod.kind == kindPod && labelSelectorMatches(fromK8sSelector(sel), k8sLabels(pod.namespace.Labels))
}

// knpPeerSelects reports whether one from/to entry selects the peer:
// podSelector alone selects pods of the policy's namespace;
// namespaceSelector selects pods of the matching namespaces, ANDed with
// podSelector when both are in the same entry; ipBlock selects addresses
// outside the cluster.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#behavior-of-to-and-from-selectors
func knpPeerSelects(np *networkingv1.NetworkPolicy, p networkingv1.NetworkPolicyPeer, peer endpoint) bool {
	switch {
	case p.IPBlock != nil:
		return ipBlockAllows(p.IPBlock.CIDR, p.IPBlock.Except, peer)
	case p.NamespaceSelector != nil:
		if !namespaceSelectorSelects(p.NamespaceSelector, peer) {
			return false
		}
		return p.PodSelector == nil || podSelectorSelects(p.PodSelector, peer)
	case p.PodSelector != nil:
		return peer.kind == kindPod && peer.pod.Namespace == np.Namespace && podSelectorSelects(p.PodSelector, peer)
	}
	return false
}

// knpPortMatches is one ports entry: protocol defaults to TCP, no port is
// every port of the protocol, endPort makes a range, and a named port is
// resolved on the destination pod.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#targeting-a-range-of-ports
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#networkpolicy-resource
func knpPortMatches(p networkingv1.NetworkPolicyPort, c connection) bool {
	ps := portSpec{protocol: string(corev1.ProtocolTCP)}
	if p.Protocol != nil {
		ps.protocol = string(*p.Protocol)
	}
	if p.Port != nil {
		if p.Port.Type == intstr.String {
			ps.name = p.Port.StrVal
		} else if p.Port.IntVal > 0 && p.Port.IntVal <= 65535 {
			ps.number = uint16(p.Port.IntVal)
		}
	}
	if p.EndPort != nil && *p.EndPort > 0 && *p.EndPort <= 65535 {
		ps.endPort = uint16(*p.EndPort)
	}
	return portMatches(ps, c)
}

// knpRuleAllows reports whether one ingress or egress rule allows the
// connection: an empty from/to list means every peer (inside or outside the
// cluster), an empty ports list every protocol and port; otherwise a peer
// entry and a port entry must both match.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#networkpolicy-resource
// ("each rule allows traffic which matches both the from and ports sections")
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#allow-all-ingress-traffic
func knpRuleAllows(np *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, peer endpoint, c connection) bool {
	peerOK := len(peers) == 0 || slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool {
		return knpPeerSelects(np, p, peer)
	})
	portOK := len(ports) == 0 || slices.ContainsFunc(ports, func(p networkingv1.NetworkPolicyPort) bool {
		return knpPortMatches(p, c)
	})
	return peerOK && portOK
}

// knpOpinion is what one NetworkPolicy says about a connection in one
// direction for the subject pod: a NetworkPolicy always turns default deny
// on for the directions it governs (isolation), and allows what its rules
// allow; it has no deny rules.
// https://kubernetes.io/docs/concepts/services-networking/network-policies/#the-two-sorts-of-pod-isolation
func knpOpinion(np *networkingv1.NetworkPolicy, dir direction, subject, peer endpoint, c connection) opinion {
	if !knpSubjectSelects(np, subject) || !knpPolicyTypes(np, dir) {
		return opinion{}
	}
	op := opinion{selects: true, defaultDeny: true}
	if dir == ingress {
		for _, r := range np.Spec.Ingress {
			if knpRuleAllows(np, r.From, r.Ports, peer, c) {
				op.allows = true
			}
		}
	} else {
		for _, r := range np.Spec.Egress {
			if knpRuleAllows(np, r.To, r.Ports, peer, c) {
				op.allows = true
			}
		}
	}
	return op
}
