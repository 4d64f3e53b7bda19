package testrun_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// TestControlPlaneMapFull: the maps written from Go (policy, ipcache)
// refuse updates beyond their size with an error wrapping maps.ErrMapFull,
// and what did not fit is never an allow: the flow stays denied.
func TestControlPlaneMapFull(t *testing.T) {
	h := testrun.NewForTest(t, testrun.Options{Node: datapath.NodeOptions{PolicyMaxEntries: 2, IPCacheMaxEntries: 4}})
	client, err := h.AddEndpoint(testrun.EndpointSpec{ID: 1, Identity: 1001, IPv4: netip.MustParseAddr("10.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	server, err := h.AddEndpoint(testrun.EndpointSpec{ID: 2, Identity: 1002, IPv4: netip.MustParseAddr("10.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.SetEnforcement(true, false); err != nil {
		t.Fatal(err)
	}
	for port := uint16(1); port <= 2; port++ {
		if err := server.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: 1001, Protocol: testrun.ProtoTCP,
			Ports: maps.PortRange{Lo: port, Hi: port}, RuleID: uint32(port)}); err != nil {
			t.Fatalf("rule %d: %v", port, err)
		}
	}
	err = server.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: 1001, Protocol: testrun.ProtoTCP,
		Ports: maps.PortRange{Lo: 80, Hi: 80}, RuleID: 80})
	if !errors.Is(err, maps.ErrMapFull) {
		t.Fatalf("third policy entry in a map of 2: got %v, want an error wrapping maps.ErrMapFull", err)
	}
	p, err := h.Conn(testrun.PodV4(client), testrun.PodV4(server), testrun.ProtoTCP, 40000, 80).Send(true, testrun.SYN)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := p.Drop(); !ok || d.Reason != dropreason.PolicyDenied || p.Delivered {
		t.Fatalf("the flow whose entry did not fit: %s, want a POLICY_DENIED drop", p)
	}

	// The two endpoints' /32s are in the host map already; fill it.
	for i := 3; i <= 4; i++ {
		if err := h.SetIdentity(netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32), 5000); err != nil {
			t.Fatalf("host entry %d: %v", i, err)
		}
	}
	err = h.SetIdentity(netip.MustParsePrefix("192.0.2.9/32"), 1001)
	if !errors.Is(err, maps.ErrMapFull) {
		t.Fatalf("fifth host entry in an ipcache of 4: got %v, want an error wrapping maps.ErrMapFull", err)
	}
	// 192.0.2.9 did not get identity 1001: it is world, and world is not
	// allowed on port 1.
	ext := testrun.External(netip.MustParseAddr("192.0.2.9"))
	p, err = h.Conn(ext, testrun.PodV4(server), testrun.ProtoTCP, 40001, 1).Send(true, testrun.SYN)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := p.Drop()
	if !ok || d.Reason != dropreason.PolicyDenied || d.SrcIdentity != maps.IdentityWorld {
		t.Fatalf("traffic from the address that did not fit: %s, want POLICY_DENIED from world", p)
	}
}
