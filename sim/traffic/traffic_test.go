package traffic

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath/testrun"
)

// testPort is the port every protocol is served on; closedPort has no server.
const (
	testPort   = 8080
	closedPort = 8081
	probeWait  = 400 * time.Millisecond
)

// pair is two named netns joined by a veth: the client (10.9.0.1, .5 and
// fd09::1, ::5) and the server (10.9.0.2, fd09::2).
type pair struct {
	client, server string // netns paths
	ch, sh         *netlink.Handle
	clientLink     netlink.Link
}

var (
	cli4, cliAlt4 = netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.5")
	srv4          = netip.MustParseAddr("10.9.0.2")
	// The kernel picks the IPv4 address added first and the IPv6 address
	// added last as the default source (see newPair).
	cli6, cliAlt6 = netip.MustParseAddr("fd09::1"), netip.MustParseAddr("fd09::5")
	srv6          = netip.MustParseAddr("fd09::2")
)

// newNamedNetns creates a netns bound to a file of a private directory (not
// /var/run/netns, where other tools may stack shared mounts), unmounted when
// the test ends.
func newNamedNetns(t *testing.T, name string) (string, *netlink.Handle) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatalf("create netns file: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		ns, err := netns.New() // moves this thread into it
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		ns.Close()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		merr := unix.Mount(self, path, "", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			done <- err // stay locked: the thread dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- merr
	}()
	if err := <-done; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount netns %s: %v", path, err)
		}
	})
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	// Without DAD on the link-local address too, IPv6 works at once
	// instead of a second or two after the link comes up.
	for _, f := range []string{"all", "default"} {
		sysctl(t, path, "net/ipv6/conf/"+f+"/accept_dad", "0")
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatalf("lo in %s: %v", name, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatalf("set lo up in %s: %v", name, err)
	}
	return path, h
}

// sysctl writes value to /proc/sys/key in the netns at path.
func sysctl(t *testing.T, path, key, value string) {
	t.Helper()
	if err := inNetns(path, func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644) }); err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
}

// newPair builds the two netns and the veth between them.
func newPair(t *testing.T) *pair {
	t.Helper()
	testrun.RequirePrivileges(t)
	p := &pair{}
	p.client, p.ch = newNamedNetns(t, "client")
	p.server, p.sh = newNamedNetns(t, "server")
	sns, err := netns.GetFromPath(p.server)
	if err != nil {
		t.Fatalf("open server netns: %v", err)
	}
	defer sns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "c0"}, PeerName: "s0", PeerNamespace: netlink.NsFd(sns)}
	if err := p.ch.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	setup := func(h *netlink.Handle, path, name string, addrs ...string) netlink.Link {
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		// Neighbour solicitations repeat every 100ms, not every second:
		// the first one is often lost while the veth's carrier comes up.
		sysctl(t, path, "net/ipv6/neigh/"+name+"/retrans_time_ms", "100")
		for _, a := range addrs {
			ip, err := netlink.ParseAddr(a)
			if err != nil {
				t.Fatalf("parse %s: %v", a, err)
			}
			if ip.IP.To4() == nil {
				ip.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, ip); err != nil {
				t.Fatalf("add %s to %s: %v", a, name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
		return l
	}
	p.clientLink = setup(p.ch, p.client, "c0", "10.9.0.1/24", "10.9.0.5/24", "fd09::5/64", "fd09::1/64")
	setup(p.sh, p.server, "s0", "10.9.0.2/24", "fd09::2/64")
	// IPv6 on a veth is ready once the kernel has seen its carrier (which
	// can take up to a second): wait for an echo to pass.
	ready := false
	for start := time.Now(); !ready && time.Since(start) < 3*time.Second; {
		r := Probe(context.Background(), p.client, ICMP, netip.Addr{}, ap(srv6, 0), 50*time.Millisecond)
		ready = r.Outcome == Allowed
	}
	if !ready {
		t.Fatalf("IPv6 between the netns not ready after 3s")
	}
	return p
}

// serve starts server "srv" on both server addresses and every protocol.
func (p *pair) serve(t *testing.T) *Server {
	t.Helper()
	s, err := Serve(p.server, "srv", []netip.Addr{srv4, srv6},
		[]Port{{TCP, testPort}, {UDP, testPort}, {SCTP, testPort}, {ICMP, 0}})
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// probeCase is one probe and what it must give.
type probeCase struct {
	proto   Proto
	src     netip.Addr
	dst     netip.AddrPort
	want    Outcome
	backend string
	seen    netip.Addr
	timeout time.Duration // probeWait when zero
}

func (c probeCase) name() string {
	src := "any"
	if c.src.IsValid() {
		src = c.src.String()
	}
	return fmt.Sprintf("%s/%s->%s", c.proto, src, c.dst)
}

// run probes and checks every case.
func (p *pair) run(t *testing.T, cases []probeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name(), func(t *testing.T) {
			wait := probeWait
			if c.timeout != 0 {
				wait = c.timeout
			}
			r := Probe(context.Background(), p.client, c.proto, c.src, c.dst, wait)
			if r.Outcome != c.want || r.Backend != c.backend || r.SourceSeen != c.seen {
				t.Fatalf("got %s, want %s backend=%q src=%v", r, c.want, c.backend, c.seen)
			}
			if r.Outcome == Timeout && (r.Elapsed < wait || r.Elapsed > wait+300*time.Millisecond) {
				t.Errorf("timeout after %v, want about %v", r.Elapsed, wait)
			}
			if r.Outcome != Timeout && r.Elapsed > wait {
				t.Errorf("took %v, more than the timeout", r.Elapsed)
			}
			t.Logf("%s", r)
		})
	}
}

// ap returns a:port.
func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func TestProbeAllowed(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	var cases []probeCase
	for _, fam := range []struct{ cli, alt, srv netip.Addr }{{cli4, cliAlt4, srv4}, {cli6, cliAlt6, srv6}} {
		for _, proto := range []Proto{TCP, UDP, SCTP} {
			cases = append(cases,
				probeCase{proto, netip.Addr{}, ap(fam.srv, testPort), Allowed, "srv", fam.cli, 0},
				probeCase{proto, fam.alt, ap(fam.srv, testPort), Allowed, "srv", fam.alt, 0})
		}
		// The kernel answers echo requests: no backend, no source seen.
		cases = append(cases,
			probeCase{ICMP, netip.Addr{}, ap(fam.srv, 0), Allowed, "", netip.Addr{}, 0},
			probeCase{ICMP, fam.alt, ap(fam.srv, 0), Allowed, "", netip.Addr{}, 0})
	}
	p.run(t, cases)
}

func TestProbeClosedPort(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	var cases []probeCase
	for _, srv := range []netip.Addr{srv4, srv6} {
		cases = append(cases,
			// The kernel answers the SYN with an RST.
			probeCase{TCP, netip.Addr{}, ap(srv, closedPort), Refused, "", netip.Addr{}, 0},
			// The kernel answers with an ICMP port unreachable, reported
			// on the connected socket as ECONNREFUSED.
			probeCase{UDP, netip.Addr{}, ap(srv, closedPort), Unreachable, "", netip.Addr{}, 0},
			// The server's raw socket answers an INIT nobody serves with
			// an ABORT, as an SCTP stack does.
			probeCase{SCTP, netip.Addr{}, ap(srv, closedPort), Refused, "", netip.Addr{}, 0})
	}
	p.run(t, cases)
}

// allProtos returns a case per protocol to dst with the same outcome.
func allProtos(dst netip.Addr, want Outcome) []probeCase {
	var cases []probeCase
	for _, proto := range []Proto{TCP, UDP, SCTP, ICMP} {
		cases = append(cases, probeCase{proto, netip.Addr{}, ap(dst, testPort), want, "", netip.Addr{}, 0})
	}
	return cases
}

func TestProbeDropped(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	// Send the server's packets to a MAC nobody has: the server's veth
	// drops them as PACKET_OTHERHOST, silently, like a dropping datapath.
	bogus, _ := net.ParseMAC("02:00:00:00:00:99")
	for _, srv := range []netip.Addr{srv4, srv6} {
		family := netlink.FAMILY_V4
		if srv.Is6() {
			family = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{LinkIndex: p.clientLink.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT,
			IP: srv.AsSlice(), HardwareAddr: bogus}
		if err := p.ch.NeighSet(n); err != nil {
			t.Fatalf("set neighbour %s: %v", srv, err)
		}
	}
	p.run(t, append(allProtos(srv4, Timeout), allProtos(srv6, Timeout)...))
}

func TestProbeUnreachable(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	// Locally: an unreachable route in the client fails the send at once.
	// Remotely: the server routes 10.97/16 and fd97::/16 as unreachable
	// and forwards, so it answers with ICMP destination unreachable.
	local4, local6 := netip.MustParseAddr("10.98.0.1"), netip.MustParseAddr("fd98::1")
	remote4, remote6 := netip.MustParseAddr("10.97.0.1"), netip.MustParseAddr("fd97::1")
	for _, r := range []struct {
		h   *netlink.Handle
		dst string
		via string
	}{
		{p.ch, "10.98.0.0/16", ""}, {p.ch, "fd98::/16", ""},
		{p.sh, "10.97.0.0/16", ""}, {p.sh, "fd97::/16", ""},
		{p.ch, "10.97.0.0/16", "10.9.0.2"}, {p.ch, "fd97::/16", "fd09::2"},
	} {
		_, dst, _ := net.ParseCIDR(r.dst)
		route := &netlink.Route{Dst: dst, Type: unix.RTN_UNREACHABLE}
		if r.via != "" {
			route = &netlink.Route{Dst: dst, Gw: net.ParseIP(r.via), LinkIndex: p.clientLink.Attrs().Index}
		}
		if err := r.h.RouteAdd(route); err != nil {
			t.Fatalf("add route %s: %v", r.dst, err)
		}
	}
	sysctl(t, p.server, "net/ipv4/ip_forward", "1")
	sysctl(t, p.server, "net/ipv6/conf/all/forwarding", "1")
	// The kernel rate-limits ICMP errors per peer (IPv4: a burst of about
	// two unreachables, then one a second); lift the limits here.
	sysctl(t, p.server, "net/ipv4/icmp_ratemask", "0")
	sysctl(t, p.server, "net/ipv6/icmp/ratelimit", "0")
	var cases []probeCase
	for _, dst := range []netip.Addr{local4, local6, remote4, remote6} {
		cases = append(cases, allProtos(dst, Unreachable)...)
	}
	// The ICMP error about a SYN often arrives while connect() still holds
	// the socket: the kernel then only notes it as a soft error, and the
	// connection fails on the error about the SYN retransmitted after 1s.
	for i := range cases {
		if cases[i].proto == TCP {
			cases[i].timeout = 1500 * time.Millisecond
		}
	}
	p.run(t, cases)
}

func TestServerClose(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	s := p.serve(t)
	ctx := context.Background()
	if r := Probe(ctx, p.client, TCP, netip.Addr{}, ap(srv4, testPort), probeWait); r.Outcome != Allowed {
		t.Fatalf("before close: %s", r)
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	// Nothing listens any more: the kernel refuses TCP, answers UDP with a
	// port unreachable and SCTP (no raw socket) with a protocol unreachable.
	p.run(t, []probeCase{
		{TCP, netip.Addr{}, ap(srv4, testPort), Refused, "", netip.Addr{}, 0},
		{UDP, netip.Addr{}, ap(srv6, testPort), Unreachable, "", netip.Addr{}, 0},
		{SCTP, netip.Addr{}, ap(srv4, testPort), Unreachable, "", netip.Addr{}, 0},
		{SCTP, netip.Addr{}, ap(srv6, testPort), Unreachable, "", netip.Addr{}, 0},
	})
	// The ports are free again.
	s2, err := Serve(p.server, "srv2", []netip.Addr{srv4, srv6}, []Port{{TCP, testPort}, {UDP, testPort}, {SCTP, testPort}})
	if err != nil {
		t.Fatalf("serve again: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	for _, proto := range []Proto{TCP, UDP, SCTP} {
		if r := Probe(ctx, p.client, proto, netip.Addr{}, ap(srv6, testPort), probeWait); r.Outcome != Allowed || r.Backend != "srv2" {
			t.Errorf("%s after serving again: %s", proto, r)
		}
	}
	// A second server cannot take the same ports.
	if s3, err := Serve(p.server, "srv3", []netip.Addr{srv4}, []Port{{SCTP, testPort}}); err == nil {
		s3.Close()
		t.Errorf("serving SCTP/%d twice: no error", testPort)
	}
	if s3, err := Serve(p.server, "srv3", []netip.Addr{srv4}, []Port{{TCP, testPort}}); err == nil {
		s3.Close()
		t.Errorf("serving TCP/%d twice: no error", testPort)
	}
}

func TestProbeCanceled(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	// 10.9.0.77 has no neighbour: the SYN is never answered.
	r := Probe(ctx, p.client, TCP, netip.Addr{}, ap(netip.MustParseAddr("10.9.0.77"), testPort), 5*time.Second)
	if r.Outcome != Error || r.Elapsed > time.Second {
		t.Fatalf("canceled probe: %s, want error within 1s", r)
	}
}

func TestHelloRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name string
		src  netip.Addr
	}{{"srv", srv4}, {"pod a/b", srv6}, {"x", netip.MustParseAddr("::ffff:10.0.0.1")}} {
		name, src, err := parseHello(hello(c.name, c.src))
		if err != nil || name != c.name || src != c.src.Unmap() {
			t.Errorf("hello(%q, %s): got %q %s %v", c.name, c.src, name, src, err)
		}
	}
	if _, _, err := parseHello([]byte("HTTP/1.1 200 OK\n")); err == nil {
		t.Errorf("parse of a non-hello: no error")
	}
}

func TestSCTPPacket(t *testing.T) {
	in := sctpPacket{SrcPort: 1, DstPort: 2, VTag: 3, Chunk: chunkInitAck, InitTag: 4, Cookie: []byte("abcde")}
	b := marshalSCTP(in)
	out, err := parseSCTP(b)
	if err != nil || out.SrcPort != 1 || out.DstPort != 2 || out.VTag != 3 || out.Chunk != chunkInitAck ||
		out.InitTag != 4 || string(out.Cookie) != "abcde" {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	b[len(b)-1] ^= 1
	if _, err := parseSCTP(b); err == nil {
		t.Errorf("corrupted packet parsed")
	}
}
