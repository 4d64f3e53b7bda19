package load

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// checkNetworkPolicy applies the validation the API server applies to a
// NetworkPolicy (k8s.io/kubernetes/pkg/apis/networking/validation),
// each finding with its field path, and warns about parts that have no
// effect.
func checkNetworkPolicy(w *walker, np *networkingv1.NetworkPolicy, hasSpec bool) {
	if !hasSpec {
		w.diag(Warning, "spec", nil, "the NetworkPolicy has no spec, so it selects every pod in its namespace "+
			"and denies all their ingress")
	}
	spec := &np.Spec
	kubernetesSelector(w, "spec.podSelector", &spec.PodSelector)
	for i, in := range spec.Ingress {
		p := itemPath("spec.ingress", i)
		for j := range in.Ports {
			checkNetworkPolicyPort(w, itemPath(p+".ports", j), &in.Ports[j])
		}
		for j := range in.From {
			checkNetworkPolicyPeer(w, itemPath(p+".from", j), &in.From[j])
		}
	}
	for i, eg := range spec.Egress {
		p := itemPath("spec.egress", i)
		for j := range eg.Ports {
			checkNetworkPolicyPort(w, itemPath(p+".ports", j), &eg.Ports[j])
		}
		for j := range eg.To {
			checkNetworkPolicyPeer(w, itemPath(p+".to", j), &eg.To[j])
		}
	}
	checkPolicyTypes(w, spec)
}

// checkPolicyTypes checks spec.policyTypes, and warns about rules that
// the listed policy types leave without effect.
func checkPolicyTypes(w *walker, spec *networkingv1.NetworkPolicySpec) {
	if len(spec.PolicyTypes) > 2 {
		w.diag(Error, "spec.policyTypes", nil, "may not have more than two policyTypes (Ingress and Egress)")
		return
	}
	valid := true
	for i, t := range spec.PolicyTypes {
		if t == networkingv1.PolicyTypeIngress || t == networkingv1.PolicyTypeEgress {
			continue
		}
		valid = false
		msg := fmt.Sprintf("unsupported value %q: must be Ingress or Egress", t)
		for _, ok := range []string{"Ingress", "Egress"} {
			if strings.EqualFold(ok, string(t)) {
				msg += fmt.Sprintf(" (values are case-sensitive: write %q)", ok)
			}
		}
		w.diag(Error, itemPath("spec.policyTypes", i), nil, "%s", msg)
	}
	if !valid || len(spec.PolicyTypes) == 0 {
		return
	}
	if len(spec.Ingress) > 0 && !slices.Contains(spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		w.diag(Warning, "spec.ingress", nil, "the ingress rules have no effect: policyTypes does not include Ingress")
	}
	if len(spec.Egress) > 0 && !slices.Contains(spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		w.diag(Warning, "spec.egress", nil, "the egress rules have no effect: policyTypes does not include Egress")
	}
}

// checkNetworkPolicyPort checks a port: protocol TCP, UDP or SCTP, a port
// number 1-65535 or a port name, and endPort only after a numeric port
// and not below it.
func checkNetworkPolicyPort(w *walker, path string, port *networkingv1.NetworkPolicyPort) {
	if port.Protocol != nil {
		switch p := string(*port.Protocol); p {
		case "TCP", "UDP", "SCTP":
		default:
			msg := fmt.Sprintf("unsupported protocol %q: must be TCP, UDP or SCTP", p)
			if strings.EqualFold(p, "TCP") || strings.EqualFold(p, "UDP") || strings.EqualFold(p, "SCTP") {
				msg += fmt.Sprintf(" (values are case-sensitive: write %q)", strings.ToUpper(p))
			}
			w.diag(Error, path+".protocol", nil, "%s", msg)
		}
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			w.diag(Error, path+".endPort", nil, "endPort needs a numeric port")
		}
	case port.Port.Type == intstr.Int:
		for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
			w.diag(Error, path+".port", nil, "invalid port %d: %s", port.Port.IntVal, msg)
		}
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				w.diag(Error, path+".endPort", nil, "endPort %d is less than port %d", *port.EndPort, port.Port.IntVal)
			}
			for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
				w.diag(Error, path+".endPort", nil, "invalid endPort %d: %s", *port.EndPort, msg)
			}
		}
	default:
		if port.EndPort != nil {
			w.diag(Error, path+".endPort", nil, "endPort cannot be used with the named port %q: a port range needs a numeric port", port.Port.StrVal)
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			w.diag(Error, path+".port", nil, "invalid port name %q: %s", port.Port.StrVal, msg)
		}
	}
}

// checkNetworkPolicyPeer checks a peer: at least one of podSelector,
// namespaceSelector and ipBlock, and ipBlock alone.
func checkNetworkPolicyPeer(w *walker, path string, peer *networkingv1.NetworkPolicyPeer) {
	n := 0
	if peer.PodSelector != nil {
		n++
		kubernetesSelector(w, path+".podSelector", peer.PodSelector)
	}
	if peer.NamespaceSelector != nil {
		n++
		kubernetesSelector(w, path+".namespaceSelector", peer.NamespaceSelector)
	}
	if peer.IPBlock != nil {
		n++
		checkIPBlock(w, path+".ipBlock", peer.IPBlock)
	}
	switch {
	case n == 0:
		w.diag(Error, path, nil, "must specify a peer: podSelector, namespaceSelector or ipBlock")
	case n > 1 && peer.IPBlock != nil:
		w.diag(Error, path+".ipBlock", nil, "ipBlock cannot be combined with podSelector or namespaceSelector in one peer")
	}
}

// checkIPBlock checks an ipBlock: a valid cidr, and excepts that are
// valid CIDRs strictly inside it.
func checkIPBlock(w *walker, path string, b *networkingv1.IPBlock) {
	if b.CIDR == "" {
		w.diag(Error, path+".cidr", nil, "cidr is required")
		return
	}
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		w.diag(Error, path+".cidr", nil, "invalid CIDR %q: write an address and a prefix length, e.g. 10.0.0.0/8", b.CIDR)
		return
	}
	warnHostBits(w, path+".cidr", b.CIDR)
	for i, e := range b.Except {
		ep := itemPath(path+".except", i)
		except, err := netip.ParsePrefix(e)
		if err != nil {
			w.diag(Error, ep, nil, "invalid CIDR %q: write an address and a prefix length, e.g. 10.0.0.0/8", e)
			continue
		}
		warnHostBits(w, ep, e)
		if !cidr.Contains(except.Addr()) || cidr.Bits() >= except.Bits() {
			w.diag(Error, ep, nil, "except %s must be strictly inside cidr %s", e, b.CIDR)
		}
	}
}
