package kubeproxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// TestChainNames checks the chain names against kube-proxy's own test
// fixtures (pkg/proxy/iptables/proxier_test.go: service port ns1/svc1:p80,
// endpoint 10.180.0.1:80).
func TestChainNames(t *testing.T) {
	s := Service{Namespace: "ns1", Name: "svc1", PortName: "p80"}
	if got, want := SVCChain(s), "KUBE-SVC-XPGD46QRK7WJZT7O"; got != want {
		t.Errorf("SVCChain = %s, want %s", got, want)
	}
	if got, want := SEPChain(s, netip.MustParseAddrPort("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ"; got != want {
		t.Errorf("SEPChain = %s, want %s", got, want)
	}
}

// TestRulesTwoServices checks the exact iptables-restore input for two
// services with two endpoints each.
func TestRulesTwoServices(t *testing.T) {
	services, err := Services(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := `*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-X67Z27UM2GOD7DY2 - [0:0]
:KUBE-SEP-A27VI4XEGAAVPFA5 - [0:0]
:KUBE-SEP-X2E464PLGZUL3GJV - [0:0]
:KUBE-SVC-TVZCCMOTRUOFKFR2 - [0:0]
:KUBE-SEP-4ATUPCZNEATUOKCA - [0:0]
:KUBE-SEP-HMUTX4TGI4VGMGJH - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "default/svc-0:http cluster IP" -m tcp -p tcp -d 10.96.0.1/32 --dport 80 -j KUBE-SVC-X67Z27UM2GOD7DY2
-A KUBE-SVC-X67Z27UM2GOD7DY2 -m comment --comment "default/svc-0:http cluster IP" -m tcp -p tcp -d 10.96.0.1/32 --dport 80 ! -s 10.0.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-X67Z27UM2GOD7DY2 -m comment --comment "default/svc-0:http -> 10.0.1.20:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-A27VI4XEGAAVPFA5
-A KUBE-SVC-X67Z27UM2GOD7DY2 -m comment --comment "default/svc-0:http -> 10.0.1.21:8080" -j KUBE-SEP-X2E464PLGZUL3GJV
-A KUBE-SEP-A27VI4XEGAAVPFA5 -m comment --comment default/svc-0:http -s 10.0.1.20/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-A27VI4XEGAAVPFA5 -m comment --comment default/svc-0:http -m tcp -p tcp -j DNAT --to-destination 10.0.1.20:8080
-A KUBE-SEP-X2E464PLGZUL3GJV -m comment --comment default/svc-0:http -s 10.0.1.21/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-X2E464PLGZUL3GJV -m comment --comment default/svc-0:http -m tcp -p tcp -j DNAT --to-destination 10.0.1.21:8080
-A KUBE-SERVICES -m comment --comment "default/svc-1:http cluster IP" -m tcp -p tcp -d 10.96.0.2/32 --dport 80 -j KUBE-SVC-TVZCCMOTRUOFKFR2
-A KUBE-SVC-TVZCCMOTRUOFKFR2 -m comment --comment "default/svc-1:http cluster IP" -m tcp -p tcp -d 10.96.0.2/32 --dport 80 ! -s 10.0.0.0/16 -j KUBE-MARK-MASQ
-A KUBE-SVC-TVZCCMOTRUOFKFR2 -m comment --comment "default/svc-1:http -> 10.0.1.20:8080" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-4ATUPCZNEATUOKCA
-A KUBE-SVC-TVZCCMOTRUOFKFR2 -m comment --comment "default/svc-1:http -> 10.0.1.21:8080" -j KUBE-SEP-HMUTX4TGI4VGMGJH
-A KUBE-SEP-4ATUPCZNEATUOKCA -m comment --comment default/svc-1:http -s 10.0.1.20/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-4ATUPCZNEATUOKCA -m comment --comment default/svc-1:http -m tcp -p tcp -j DNAT --to-destination 10.0.1.20:8080
-A KUBE-SEP-HMUTX4TGI4VGMGJH -m comment --comment default/svc-1:http -s 10.0.1.21/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-HMUTX4TGI4VGMGJH -m comment --comment default/svc-1:http -m tcp -p tcp -j DNAT --to-destination 10.0.1.21:8080
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`
	got := string(Rules(services, ClusterCIDR))
	if got != want {
		t.Errorf("Rules differ:\n%s", lineDiff(got, want))
	}
	rules := 0
	for _, l := range strings.Split(got, "\n") {
		if strings.HasPrefix(l, "-A ") {
			rules++
		}
	}
	if n := ruleCount(services); n != rules {
		t.Errorf("ruleCount = %d, the rules have %d", n, rules)
	}
}

// TestRulesProbabilities checks the statistic rules of a service with
// four endpoints: 1/4, 1/3, 1/2, then the last one unconditionally.
func TestRulesProbabilities(t *testing.T) {
	services, err := Services(1, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(string(Rules(services, ClusterCIDR)), "\n") {
		if strings.HasPrefix(l, "-A "+SVCChain(services[0])) && strings.Contains(l, " -> ") {
			p := "-"
			if _, after, ok := strings.Cut(l, "--probability "); ok {
				p, _, _ = strings.Cut(after, " ")
			}
			got = append(got, p)
		}
	}
	want := []string{"0.2500000000", "0.3333333333", "0.5000000000", "-"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("probabilities %v, want %v", got, want)
	}
}

func TestServices(t *testing.T) {
	s, err := Services(30000, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := s[len(s)-1].ClusterIP; got != netip.MustParseAddr("10.96.117.48") {
		t.Errorf("last cluster IP %s", got)
	}
	if _, err := Services(70000, 2); err == nil {
		t.Error("70000 services fit in a /16")
	}
	if _, err := Services(1, 5); err == nil {
		t.Error("5 backends accepted")
	}
}

// lineDiff lists the lines that differ.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			fmt.Fprintf(&b, "line %d:\n  got  %s\n  want %s\n", i+1, gl, wl)
		}
	}
	return b.String()
}
