package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// The load-balancing benchmark topology: the pod reaches ClusterIP
// services (from 10.96.0.0/12, port 80) whose backends are remote pods in
// 10.0.2.0/24 (identity lbBackendIdentity, allowed on TCP/8080 by the
// pod's egress policy), two backends per service.
var (
	lbServiceBase     = netip.MustParseAddr("10.96.0.0")
	lbBackendPrefix   = netip.MustParsePrefix("10.0.2.0/24")
	lbBackendIdentity = uint32(2000)
	lbServicePort     = uint16(80)
	lbBackendPort     = uint16(8080)
	lbBackends        = 2
)

// allowBackends is the pod's egress allow entry to the backends: policy is
// enforced against the backend after the translation.
var allowBackends = testrun.Rule{Direction: maps.Egress, Identity: lbBackendIdentity, Protocol: testrun.ProtoTCP,
	Ports: maps.PortRange{Lo: lbBackendPort, Hi: lbBackendPort}, RuleID: 3}

// lbEnv is a benchmark environment holding a number of services, and the
// service the measured packets go to.
type lbEnv struct {
	*Env
	size   int
	target ClusterIP
}

// lbService returns service i: its cluster IP is the i+1-th address after
// lbServiceBase, its backends two addresses of lbBackendPrefix (backend
// ids of its own, like the agent's per-service backends).
func lbService(i int) ClusterIP {
	vip := lbServiceBase.As4()
	v := binary.BigEndian.Uint32(vip[:]) + uint32(i) + 1
	binary.BigEndian.PutUint32(vip[:], v)
	s := ClusterIP{Frontend: netip.AddrPortFrom(netip.AddrFrom4(vip), lbServicePort), RevNatID: uint32(i + 1)}
	base := lbBackendPrefix.Addr().As4()
	for j := range lbBackends {
		b := base
		b[3] = byte(1 + (i*lbBackends+j)%250)
		s.BackendIDs = append(s.BackendIDs, uint32(i*lbBackends+j+1))
		s.Backends = append(s.Backends, netip.AddrPortFrom(netip.AddrFrom4(b), lbBackendPort))
	}
	return s
}

// newLBEnv returns an environment whose load-balancing maps hold size
// services (lbService(0..size-1)); the measured packets go to the last
// one.
func newLBEnv(size int) (*lbEnv, error) {
	node := datapath.NodeOptions{}
	if n := uint32(size * (1 + lbBackends)); n > 200000 {
		node.LBServicesMaxEntries = n + 1024
		node.LBBackendsMaxEntries = uint32(size*lbBackends) + 1024
	}
	env, err := NewEnv(datapath.TraceConnectionEvents, node)
	if err != nil {
		return nil, err
	}
	e := &lbEnv{Env: env, size: size, target: lbService(size - 1)}
	if err := e.fill(); err != nil {
		env.Close()
		return nil, err
	}
	return e, nil
}

// fill adds the backends' identity and policy rule and writes the
// services.
func (e *lbEnv) fill() error {
	if err := e.H.SetIdentity(lbBackendPrefix, lbBackendIdentity); err != nil {
		return err
	}
	if err := e.EP.AddRule(allowBackends); err != nil {
		return err
	}
	for i := range e.size {
		if err := PutClusterIP(e.H.Node, lbService(i)); err != nil {
			return err
		}
	}
	return nil
}

// syn returns the SYN of a new connection from the pod's sport to the
// target service.
func (e *lbEnv) syn(sport uint16) []byte {
	return testrun.TCP(netip.AddrPortFrom(podAddr, sport), e.target.Frontend, testrun.SYN, nil)
}

// checkDNAT fails unless out (the packet as the program left it) goes
// from the pod's sport to one of the target's backends (want, when valid:
// to that one).
func (e *lbEnv) checkDNAT(out []byte, sport uint16, want netip.AddrPort) (netip.AddrPort, error) {
	src, dst, ok := tcpAddrs(out)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("the program left no TCP/IPv4 packet (%d bytes)", len(out))
	}
	if src != netip.AddrPortFrom(podAddr, sport) {
		return dst, fmt.Errorf("%w: source %s, want %s", ErrNotTranslated, src, netip.AddrPortFrom(podAddr, sport))
	}
	for _, b := range e.target.Backends {
		if dst == b && (!want.IsValid() || dst == want) {
			return dst, nil
		}
	}
	if want.IsValid() {
		return dst, fmt.Errorf("%w: destination %s, want the pinned backend %s", ErrNotTranslated, dst, want)
	}
	return dst, fmt.Errorf("%w: destination %s, want a backend of %s (%v)", ErrNotTranslated, dst,
		e.target.Frontend, e.target.Backends)
}

// ErrNotTranslated is returned (wrapped) when a packet to a service was
// not DNATed to one of its backends: the benchmark then reports no
// number.
var ErrNotTranslated = errors.New("packet to a service not translated to a backend")

// tcpAddrs returns the source and destination of an Ethernet frame with an
// IPv4 TCP packet.
func tcpAddrs(frame []byte) (src, dst netip.AddrPort, ok bool) {
	const eth = 14
	if len(frame) < eth+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 || frame[eth+9] != protoTCP {
		return src, dst, false
	}
	ihl := int(frame[eth]&0x0f) * 4
	if len(frame) < eth+ihl+4 {
		return src, dst, false
	}
	s := netip.AddrFrom4([4]byte(frame[eth+12 : eth+16]))
	d := netip.AddrFrom4([4]byte(frame[eth+16 : eth+20]))
	l4 := frame[eth+ihl:]
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(l4[0:2])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(l4[2:4])), true
}

// checkNewConn runs the SYN of a new connection to the target once
// through the harness and checks it: passed to the stack, DNATed to a
// backend, a trace event of a new connection allowed by the backends'
// rule.
func (e *lbEnv) checkNewConn(sport uint16) error {
	res, err := e.EP.FromContainer(e.syn(sport))
	if err != nil {
		return err
	}
	if res.Code != testrun.ActOK {
		return fmt.Errorf("want the SYN to %s passed, got %s", e.target.Frontend, res)
	}
	if _, err := e.checkDNAT(res.Packet, sport, netip.AddrPort{}); err != nil {
		return err
	}
	tr, ok := res.Trace()
	if !ok || tr.CTState != maps.CTNew || tr.RuleID != allowBackends.RuleID {
		return fmt.Errorf("want a new connection allowed by rule %d, got %s", allowBackends.RuleID, res)
	}
	return nil
}

// establish runs the handshake of a connection from the pod's sport to the
// target through the harness (the SYN translated, the backend's SYN-ACK
// reverse-translated at to_container) and returns the client's next ACK,
// addressed to the frontend, and the backend the connection is pinned to.
func (e *lbEnv) establish(sport uint16) ([]byte, netip.AddrPort, error) {
	res, err := e.EP.FromContainer(e.syn(sport))
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	backend, err := e.checkDNAT(res.Packet, sport, netip.AddrPort{})
	if err != nil {
		return nil, backend, fmt.Errorf("SYN: %w", err)
	}
	client := netip.AddrPortFrom(podAddr, sport)
	synack, err := e.EP.ToContainer(testrun.TCP(backend, client, testrun.SYN|testrun.ACK, nil))
	if err != nil {
		return nil, backend, err
	}
	if synack.Code == testrun.ActShot {
		return nil, backend, fmt.Errorf("SYN-ACK from %s dropped: %s", backend, synack)
	}
	if src, dst, ok := tcpAddrs(synack.Packet); !ok || src != e.target.Frontend || dst != client {
		return nil, backend, fmt.Errorf("SYN-ACK from %s: want it from %s to %s after reverse NAT, got %s -> %s",
			backend, e.target.Frontend, client, src, dst)
	}
	ack := testrun.TCP(client, e.target.Frontend, testrun.ACK, nil)
	res, err = e.EP.FromContainer(ack)
	if err != nil {
		return nil, backend, err
	}
	if res.Code != testrun.ActOK || len(res.Events) != 0 {
		return nil, backend, fmt.Errorf("want the established ACK passed without an event, got %s", res)
	}
	if _, err := e.checkDNAT(res.Packet, sport, backend); err != nil {
		return nil, backend, fmt.Errorf("ACK: %w", err)
	}
	return ack, backend, nil
}

// lbTarget is one size of the load-balancing curves in a single-run
// measurement: distinct packets, each checked after its run.
type lbTarget struct {
	env   *lbEnv
	pkts  [][]byte
	check func(i int, out []byte) error
}

// lbCurves measures, with the single-run method, the first packet of new
// connections to a ClusterIP (SYN, from_container: service lookup, a new
// backend choice pinned by a service conntrack entry, DNAT, policy
// against the backend, conntrack entry) and the established packet of a
// connection pinned to a backend (ACK: service lookup, service conntrack
// hit, DNAT, conntrack hit), with opts.LBSizes services in the maps. The
// DNAT rewrites the packet, so a loop cannot measure either path: every
// run is a syscall of its own on a fresh copy of the packet, and the
// packet the program leaves is checked after every run.
func (r *runner) lbCurves(t *Table) error {
	var newConn, est []lbTarget
	for _, size := range r.opts.LBSizes {
		r.logf("lb: filling the maps with %d services", size)
		env, err := newLBEnv(size)
		if err != nil {
			return fmt.Errorf("lb size %d: %w", size, err)
		}
		defer env.Close()
		if err := env.checkNewConn(65000); err != nil {
			return fmt.Errorf("%s size %d: %w", RowLBNewConn, size, err)
		}
		ack, backend, err := env.establish(64999)
		if err != nil {
			return fmt.Errorf("%s size %d: %w", RowLBEstablished, size, err)
		}
		n := newConnTarget(env, r.opts.Flows)
		newConn = append(newConn, n)
		pkts := make([][]byte, r.opts.Flows)
		for i := range pkts {
			pkts[i] = ack
		}
		est = append(est, lbTarget{env: env, pkts: pkts, check: func(_ int, out []byte) error {
			_, err := env.checkDNAT(out, 64999, backend)
			return err
		}})
	}
	r.logf("lb: %d new connections and %d established packets per size, one kernel-timed run each",
		r.opts.Flows, r.opts.Flows)
	before := make([]int, len(newConn))
	for i, tg := range newConn {
		var err error
		if before[i], err = tg.env.CountCT(); err != nil {
			return err
		}
	}
	ms, err := r.singleChecked(append(append([]lbTarget(nil), newConn...), est...))
	if err != nil {
		return fmt.Errorf("lb: %w", err)
	}
	for i, tg := range newConn {
		after, err := tg.env.CountCT()
		if err != nil {
			return err
		}
		if after-before[i] < len(tg.pkts) {
			return fmt.Errorf("%s size %d: %d new connections created %d conntrack entries: not every run was a new connection",
				RowLBNewConn, tg.env.size, len(tg.pkts), after-before[i])
		}
	}
	fm, err := r.loop([]target{{name: RowFloor, prog: r.floor.Prog, pkt: newConn[0].pkts[0], wantCode: testrun.ActOK}})
	if err != nil {
		return fmt.Errorf("lb: floor: %w", err)
	}
	for i := range ms {
		ms[i].floor = fm[0].median
		ms[i].median += fm[0].median
		ms[i].ratio = ms[i].median / fm[0].median
	}
	k := len(newConn)
	for i, tg := range newConn {
		t.Rows = append(t.Rows, ms[i].row(RowLBNewConn, GroupLBNewConn, tg.env.size,
			"SYN to a ClusterIP among N services: service lookup, backend choice, DNAT, policy, CT inserts"))
		r.logf("%s size=%d: %.1f ns/pkt (%.2fx floor)", RowLBNewConn, tg.env.size, ms[i].median, ms[i].ratio)
	}
	for i, tg := range est {
		m := ms[k+i]
		t.Rows = append(t.Rows, m.row(RowLBEstablished, GroupLBEstablished, tg.env.size,
			"ACK of a pinned connection: service lookup, service CT hit, DNAT, CT hit"))
		r.logf("%s size=%d: %.1f ns/pkt (%.2fx floor)", RowLBEstablished, tg.env.size, m.median, m.ratio)
	}
	return nil
}

// newConnTarget returns n SYNs of distinct new connections (source ports
// 1024..) to env's target, each checked to be DNATed to a backend.
func newConnTarget(env *lbEnv, n int) lbTarget {
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = env.syn(uint16(1024 + i%60000))
	}
	return lbTarget{env: env, pkts: pkts, check: func(i int, out []byte) error {
		_, err := env.checkDNAT(out, uint16(1024+i%60000), netip.AddrPort{})
		return err
	}}
}

// singleChecked is the single-run method (see single) for targets whose
// runs rewrite the packet: the i-th packet of every target runs once
// through the target's from_container, next to one run of the floor
// program on the same packet, the targets interleaved; after every run the
// packet the program left is checked. It returns per target the median
// single-run time of the program minus the floor's.
func (r *runner) singleChecked(targets []lbTarget) ([]measurement, error) {
	n := len(targets[0].pkts)
	progNs := make([][]float64, len(targets))
	floorNs := make([][]float64, len(targets))
	lost := make([]uint64, len(targets))
	drainEvery := n
	for j, tg := range targets {
		if err := tg.env.DrainEvents(); err != nil {
			return nil, err
		}
		var err error
		if lost[j], err = tg.env.LostEvents(); err != nil {
			return nil, err
		}
		drainEvery = min(drainEvery, max(tg.env.EventCapacity()/2, 1))
	}
	out := make([]byte, 2048)
	for i := range n {
		if i > 0 && i%drainEvery == 0 {
			for _, tg := range targets {
				if err := tg.env.DrainEvents(); err != nil {
					return nil, err
				}
			}
		}
		for j, tg := range targets {
			pkt := tg.pkts[i]
			_, fd, err := r.floor.Prog.Benchmark(pkt, 1, nil)
			if err != nil {
				return nil, err
			}
			ret, ns, m, err := testRunOnce(tg.env.EP.Endpoint.FromContainer, pkt, out)
			if err != nil {
				return nil, err
			}
			if ret != testrun.ActOK {
				return nil, fmt.Errorf("size %d, packet %d: program returned %d, want %d", tg.env.size, i, ret, testrun.ActOK)
			}
			if err := tg.check(i, out[:m]); err != nil {
				return nil, fmt.Errorf("size %d, packet %d: %w", tg.env.size, i, err)
			}
			progNs[j] = append(progNs[j], float64(ns))
			floorNs[j] = append(floorNs[j], float64(fd.Nanoseconds()))
		}
	}
	res := make([]measurement, len(targets))
	for j, tg := range targets {
		if now, err := tg.env.LostEvents(); err != nil {
			return nil, err
		} else if now != lost[j] {
			return nil, fmt.Errorf("size %d: %d events lost", tg.env.size, now-lost[j])
		}
		pm, ps := medianSpread(progNs[j])
		fm, _ := medianSpread(floorNs[j])
		net := pm - fm
		res[j] = measurement{median: net, spread: ps * pm / math.Max(net, 1), repeat: n, samples: n,
			method: MethodSingle}
	}
	return res, nil
}

// testRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr
// (include/uapi/linux/bpf.h, struct test).
type testRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// testRunOnce runs prog once on in with BPF_PROG_TEST_RUN and returns its
// return code, the kernel's time of the run in ns, and the length of the
// packet it left, copied to out. cilium/ebpf's Program.Benchmark reports
// the time but not the packet, Program.Run the packet but not the time;
// the syscall gives both.
func testRunOnce(prog *ebpf.Program, in, out []byte) (ret, ns uint32, n int, err error) {
	for {
		attr := testRunAttr{
			progFD:      uint32(prog.FD()),
			dataSizeIn:  uint32(len(in)),
			dataSizeOut: uint32(len(out)),
			dataIn:      uint64(uintptr(unsafe.Pointer(&in[0]))),
			dataOut:     uint64(uintptr(unsafe.Pointer(&out[0]))),
			repeat:      1,
		}
		_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_TEST_RUN, uintptr(unsafe.Pointer(&attr)),
			unsafe.Sizeof(attr))
		runtime.KeepAlive(in)
		runtime.KeepAlive(out)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, 0, 0, fmt.Errorf("test run: %w", errno)
		}
		return attr.retval, attr.duration, int(attr.dataSizeOut), nil
	}
}
