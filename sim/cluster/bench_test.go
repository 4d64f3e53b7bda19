package cluster_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/datapath/bench"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/cluster"
	"github.com/ciliaproject/cilia/sim/replay"
)

// benchPackets is the size of the benchmark's capture.
const benchPackets = 1_000_000

// captureOf writes a pcap of one TCP connection from client to server:
// the handshake, then data segments in both directions up to n packets.
func captureOf(b *testing.B, c *cluster.Cluster, client, server string, n int) []byte {
	b.Helper()
	st := c.State()
	cp, _ := st.Pod(client)
	sp, _ := st.Pod(server)
	cli, srv := netip.AddrPortFrom(cp.IPv4, 40000), netip.AddrPortFrom(sp.IPv4, 80)
	frame := func(fromClient bool, flags dptestrun.TCPFlags) []byte {
		src, dst, pod := cli, srv, client
		if !fromClient {
			src, dst, pod = srv, cli, server
		}
		f := dptestrun.TCP(src, dst, flags, []byte("0123456789abcdef"))
		p := c.Topology.Pods[pod]
		copy(f[0:6], p.HostVeth.MAC)
		copy(f[6:12], p.Eth0.MAC)
		return f
	}
	frames := [][]byte{frame(true, dptestrun.SYN), frame(false, dptestrun.SYN|dptestrun.ACK), frame(true, dptestrun.ACK)}
	data := [2][]byte{frame(true, dptestrun.ACK|dptestrun.PSH), frame(false, dptestrun.ACK|dptestrun.PSH)}
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		b.Fatal(err)
	}
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		f := data[i%2]
		if i < len(frames) {
			f = frames[i]
		}
		ci := gopacketCI(t0.Add(time.Duration(i)*time.Microsecond), len(f))
		if err := w.WritePacket(ci, f); err != nil {
			b.Fatal(err)
		}
	}
	return buf.Bytes()
}

// BenchmarkReplay replays a 1M-packet capture of one established TCP
// connection through cilia replay's pipeline (capture reader, walker over
// BPF_PROG_TEST_RUN, table output to io.Discard) and reports packets/s
// and the share of CPU time spent in the kernel, and the time per packet
// as a multiple of the harness floor (an empty program's run, measured in
// the same run) times the program runs a packet takes. Single-hop: both pods on
// one node (from_container, redirect, to_container per packet);
// cross-node: through the overlay (two nodes, five programs per packet).
// Run with -benchtime 1x: one op is the whole capture.
func BenchmarkReplay(b *testing.B) {
	dptestrun.RequirePrivileges(b)
	sc, err := scenario.Load("testdata/bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	c, err := cluster.New(context.Background(), sc, cluster.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sim := cluster.NewSimulator(c)
	floor := testRunFloor(b, c)
	b.Logf("harness floor: %v per BPF_PROG_TEST_RUN of the empty program through the walker's runner", floor)
	for _, bc := range []struct {
		name, server string
		runs         int // program runs per packet
	}{{"single-hop", "x/server", 2}, {"cross-node", "x/remote", 5}} {
		capture := captureOf(b, c, "x/client", bc.server, benchPackets)
		b.Run(bc.name, func(b *testing.B) {
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			for range b.N {
				sum, err := replay.Run(context.Background(), sim, bytes.NewReader(capture), io.Discard, replay.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if sum.Delivered != benchPackets {
					b.Fatalf("delivered %d of %d packets (%+v)", sum.Delivered, benchPackets, sum)
				}
			}
			elapsed := time.Since(start)
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			sys := time.Duration(ru1.Stime.Nano() - ru0.Stime.Nano())
			user := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano())
			pkts := float64(b.N * benchPackets)
			b.ReportMetric(pkts/elapsed.Seconds(), "packets/s")
			b.ReportMetric(pkts/(sys+user).Seconds(), "packets/cpu-s")
			b.ReportMetric(100*sys.Seconds()/(sys+user).Seconds(), "%kernel")
			perPacket := elapsed / time.Duration(b.N*benchPackets)
			b.ReportMetric(float64(perPacket)/float64(time.Duration(bc.runs)*floor), "x-floor")
			b.Logf("%s: %.0f packets/s wall, %.0f per CPU second, %.0f%% of CPU time in the kernel (sys %v, user %v)",
				bc.name, pkts/elapsed.Seconds(), pkts/(sys+user).Seconds(), 100*sys.Seconds()/(sys+user).Seconds(), sys, user)
		})
	}
}

// gopacketCI is the capture info of a packet of length n at ts.
func gopacketCI(ts time.Time, n int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: n}
}

// testRunFloor measures one run of the empty tc program (bpf/empty.c)
// through the same runner the walker uses: what BPF_PROG_TEST_RUN costs
// before any datapath work, the floor a packet's runs cannot go below.
func testRunFloor(b *testing.B, c *cluster.Cluster) time.Duration {
	b.Helper()
	f, err := bench.NewFloor()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := c.Harness("n1")
	pkt := dptestrun.TCP(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), dptestrun.ACK, nil)
	const n = 200_000
	start := time.Now()
	for range n {
		if _, err := h.Run("empty", f.Prog, pkt, dptestrun.RunContext{}); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / n
}
