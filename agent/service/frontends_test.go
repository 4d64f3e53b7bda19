package service

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// describeFrontend is "Kind addr/PROTO flags ext=bool [pod@addr(T) ...]".
func describeFrontend(f Frontend) string {
	var bs []string
	for _, b := range f.Backends {
		s := b.Pod + "@" + b.Addr.String()
		if b.Terminating {
			s += "(T)"
		}
		bs = append(bs, s)
	}
	return fmt.Sprintf("%s %s %v ext=%v [%s]", f.Kind, frontendString(f.Addr, f.Proto), FlagNames(f.Flags), f.External, strings.Join(bs, " "))
}

func TestFrontends(t *testing.T) {
	addr := netip.MustParseAddr
	pods := []*Pod{
		{Namespace: "x", Name: "b", Node: "node-2", Labels: web, IPv4: addr("10.0.0.2"), IPv6: addr("fd::2"),
			Ports: []NamedPort{{Name: "http", Port: 8082, Proto: ProtoTCP}}},
		{Namespace: "x", Name: "a", Node: "node-1", Labels: web, IPv4: addr("10.0.0.1"),
			Ports: []NamedPort{{Name: "http", Port: 8081, Proto: ProtoTCP}, {Name: "dns", Port: 5301, Proto: ProtoUDP}}},
		{Namespace: "x", Name: "t", Node: "node-1", Labels: web, IPv4: addr("10.0.0.3"), Terminating: true},
		{Namespace: "x", Name: "other", Node: "node-1", Labels: map[string]string{"app": "db"}, IPv4: addr("10.0.0.4")},
		{Namespace: "y", Name: "a", Node: "node-1", Labels: web, IPv4: addr("10.0.1.1")},
	}
	nodes := []Node{node1, {Name: "node-3", IPv4: addr("192.168.0.3")}}
	tcp80 := []Port{{Name: "http", Port: 80, Proto: ProtoTCP, NodePort: 30080}}
	tests := []struct {
		name string
		svc  Service
		want []string
	}{
		{"cluster IP dual stack, target port = port, terminating last",
			Service{Namespace: "x", Name: "s", ClusterIPs: []netip.Addr{addr("10.96.0.1"), addr("fd00::96")},
				Ports: tcp80, Selector: web},
			[]string{
				"ClusterIP 10.96.0.1:80/TCP [] ext=false [x/a@10.0.0.1:80 x/b@10.0.0.2:80 x/t@10.0.0.3:80(T)]",
				"ClusterIP [fd00::96]:80/TCP [] ext=false [x/b@[fd::2]:80]",
			}},
		{"empty selector selects nothing",
			Service{Namespace: "x", Name: "s", ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Ports: tcp80},
			[]string{"ClusterIP 10.96.0.1:80/TCP [] ext=false []"}},
		{"named target port resolves per pod and protocol",
			Service{Namespace: "x", Name: "s", ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Selector: web,
				Ports: []Port{{Name: "web", Port: 80, TargetPortName: "http", Proto: ProtoTCP},
					{Name: "dns", Port: 53, TargetPortName: "dns", Proto: ProtoUDP},
					{Name: "dnstcp", Port: 53, TargetPortName: "dns", Proto: ProtoTCP},
					{Name: "num", Port: 81, TargetPort: 9000, Proto: ProtoSCTP}}},
			[]string{
				"ClusterIP 10.96.0.1:80/TCP [] ext=false [x/a@10.0.0.1:8081 x/b@10.0.0.2:8082]",
				"ClusterIP 10.96.0.1:53/UDP [] ext=false [x/a@10.0.0.1:5301]",
				"ClusterIP 10.96.0.1:53/TCP [] ext=false []",
				"ClusterIP 10.96.0.1:81/SCTP [] ext=false [x/a@10.0.0.1:9000 x/b@10.0.0.2:9000 x/t@10.0.0.3:9000(T)]",
			}},
		{"node port on every node address, maglev and affinity",
			Service{Namespace: "x", Name: "s", Type: NodePort, ClusterIPs: []netip.Addr{addr("10.96.0.1")},
				Ports: tcp80, Selector: map[string]string{"app": "db"}, Algorithm: Maglev, SessionAffinity: true},
			[]string{
				"ClusterIP 10.96.0.1:80/TCP [affinity maglev] ext=false [x/other@10.0.0.4:80]",
				"NodePort 192.168.0.1:30080/TCP [nodeport external affinity maglev] ext=true [x/other@10.0.0.4:80]",
				"NodePort [fd00::1]:30080/TCP [nodeport external affinity maglev] ext=true []",
				"NodePort 192.168.0.3:30080/TCP [nodeport external affinity maglev] ext=true [x/other@10.0.0.4:80]",
			}},
		{"a ClusterIP service has no node port frontends",
			Service{Namespace: "y", Name: "s", ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Ports: tcp80, Selector: web},
			[]string{"ClusterIP 10.96.0.1:80/TCP [] ext=false [y/a@10.0.1.1:80]"}},
		{"load balancer with external IP, DSR on the external frontends only",
			Service{Namespace: "y", Name: "s", Type: LoadBalancer, ClusterIPs: []netip.Addr{addr("10.96.0.1")},
				Ports: []Port{{Name: "http", Port: 80, Proto: ProtoTCP}}, Selector: web, Mode: DSR,
				ExternalIPs: []netip.Addr{addr("203.0.113.1")}, LoadBalancerIPs: []netip.Addr{addr("198.51.100.1")}},
			[]string{
				"ClusterIP 10.96.0.1:80/TCP [] ext=false [y/a@10.0.1.1:80]",
				"ExternalIP 203.0.113.1:80/TCP [external dsr] ext=true [y/a@10.0.1.1:80]",
				"LoadBalancerIP 198.51.100.1:80/TCP [external dsr] ext=true [y/a@10.0.1.1:80]",
			}},
		{"load balancer IPs of a NodePort service are ignored",
			Service{Namespace: "y", Name: "s", Type: NodePort, Ports: []Port{{Name: "http", Port: 80, Proto: ProtoTCP}},
				Selector: web, LoadBalancerIPs: []netip.Addr{addr("198.51.100.1")}},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range Frontends(&tt.svc, pods, nodes) {
				got = append(got, describeFrontend(f))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("frontends:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
		})
	}
}

func TestScopes(t *testing.T) {
	f := Frontend{Flags: maps.LBFlagNodePort | maps.LBFlagExternal | maps.LBFlagMaglev, External: true,
		Backends: []Backend{{Pod: "x/a", Node: "node-1"}, {Pod: "x/b", Node: "node-2"}, {Pod: "x/c", Node: "node-1", Terminating: true}}}
	tests := []struct {
		scope     uint8
		local     bool
		node      string
		wantFlags []string
		wantPods  []string
		usable    []string
	}{
		{maps.LBScopeInternal, true, "node-1", []string{"nodeport", "external", "maglev"}, []string{"x/a", "x/b", "x/c"}, []string{"x/a", "x/b"}},
		{maps.LBScopeExternal, false, "node-1", []string{"nodeport", "external", "maglev"}, []string{"x/a", "x/b", "x/c"}, []string{"x/a", "x/b"}},
		{maps.LBScopeExternal, true, "node-1", []string{"nodeport", "external", "local"}, []string{"x/a", "x/c"}, []string{"x/a"}},
		{maps.LBScopeExternal, true, "node-2", []string{"nodeport", "external", "local"}, []string{"x/b"}, []string{"x/b"}},
		{maps.LBScopeExternal, true, "node-3", []string{"nodeport", "external", "local"}, nil, nil},
	}
	pods := func(bs []Backend) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Pod)
		}
		return out
	}
	for _, tt := range tests {
		name := fmt.Sprintf("scope %d local %v %s", tt.scope, tt.local, tt.node)
		if got := FlagNames(f.ScopeFlags(tt.scope, tt.local)); !slices.Equal(got, tt.wantFlags) {
			t.Errorf("%s: flags %v, want %v", name, got, tt.wantFlags)
		}
		bs := f.ScopeBackends(tt.scope, tt.local, tt.node)
		if got := pods(bs); !slices.Equal(got, tt.wantPods) {
			t.Errorf("%s: backends %v, want %v", name, got, tt.wantPods)
		}
		if got := pods(Usable(bs)); !slices.Equal(got, tt.usable) {
			t.Errorf("%s: usable %v, want %v", name, got, tt.usable)
		}
	}
	onlyTerm := []Backend{{Pod: "x/c", Terminating: true}}
	if got := Usable(onlyTerm); len(got) != 1 {
		t.Errorf("only terminating backends: usable %v, want them", got)
	}
}
