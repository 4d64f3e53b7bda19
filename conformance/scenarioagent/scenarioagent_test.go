package scenarioagent

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/ciliaproject/cilia/agent/service"
	"github.com/ciliaproject/cilia/conformance/scenario"
)

func TestService(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:10:96::10")
	ext, lb := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		name string
		in   scenario.Service
		want service.Service
	}{
		{"defaults",
			scenario.Service{Namespace: "d", Name: "s", Type: "ClusterIP", ClusterIP: v4,
				Ports:           []scenario.ServicePort{{Port: 80, TargetPort: "80", Protocol: scenario.TCP}},
				SessionAffinity: "None", AffinityTimeout: 10800, ExternalTrafficPolicy: "Cluster"},
			service.Service{Namespace: "d", Name: "s", Type: service.ClusterIP, ClusterIPs: []netip.Addr{v4},
				Ports: []service.Port{{Port: 80, TargetPort: 80, Proto: service.ProtoTCP}}, AffinityTimeout: 10800}},
		{"everything",
			scenario.Service{Namespace: "d", Name: "s", Type: "LoadBalancer", ClusterIP: v4, ClusterIPv6: v6,
				ExternalIPs: []netip.Addr{ext}, LoadBalancerIPs: []netip.Addr{lb}, Selector: map[string]string{"app": "web"},
				Ports: []scenario.ServicePort{{Name: "dns", Port: 53, TargetPort: "dns", Protocol: scenario.UDP, NodePort: 30053},
					{Name: "sctp", Port: 9, TargetPort: "9000", Protocol: scenario.SCTP}},
				SessionAffinity: "ClientIP", AffinityTimeout: 30, ExternalTrafficPolicy: "Local",
				Annotations: map[string]string{AnnotationLBAlgorithm: "maglev", AnnotationForwardingMode: "dsr"}},
			service.Service{Namespace: "d", Name: "s", Type: service.LoadBalancer, ClusterIPs: []netip.Addr{v4, v6},
				ExternalIPs: []netip.Addr{ext}, LoadBalancerIPs: []netip.Addr{lb}, Selector: map[string]string{"app": "web"},
				Ports: []service.Port{{Name: "dns", Port: 53, TargetPortName: "dns", Proto: service.ProtoUDP, NodePort: 30053},
					{Name: "sctp", Port: 9, TargetPort: 9000, Proto: service.ProtoSCTP}},
				SessionAffinity: true, AffinityTimeout: 30, ExternalTrafficPolicyLocal: true,
				Algorithm: service.Maglev, Mode: service.DSR}},
	}
	for _, tt := range tests {
		got, err := Service(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
	if _, err := Service(scenario.Service{Ports: []scenario.ServicePort{{Port: 1, Protocol: "XTP"}}}); err == nil {
		t.Errorf("unknown protocol: no error")
	}
}
