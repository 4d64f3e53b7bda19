package kubeproxy

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
)

// TestTenServicesConnect loads 10 services into each datapath and checks
// that a real connection to every one of them reaches a backend (the only
// listeners are on the backends' addresses and BackendPort), which sees
// the client's address; and that the iptables world's rules are
// kube-proxy's and go away with the world.
func TestTenServicesConnect(t *testing.T) {
	testrun.RequirePrivileges(t)
	services, err := Services(10, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{IPTables, EBPF} {
		t.Run(name, func(t *testing.T) {
			w, err := newWorld(context.Background(), name, 2, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := w.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			// Nothing listens on a service address: before the services
			// exist, a connection to one fails.
			first := netip.AddrPortFrom(services[0].ClusterIP, services[0].Port)
			if s, err := w.check(first); err == nil {
				t.Fatalf("connection to %s before loading the services: answered by %s", first, s.backend)
			}
			if _, err := w.load(services); err != nil {
				t.Fatal(err)
			}
			if name == IPTables {
				saved, err := Save(w.nodeNetns())
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []string{"-A KUBE-SERVICES", SVCChain(services[9]), "DNAT --to-destination 10.0.1.21:8080",
					"--mode random --probability 0.50000000000"} {
					if !strings.Contains(saved, s) {
						t.Errorf("iptables-save lacks %q:\n%s", s, saved)
					}
				}
			}
			seen := map[string]int{}
			for round := range 4 {
				for _, s := range services {
					dst := netip.AddrPortFrom(s.ClusterIP, s.Port)
					got, err := w.check(dst)
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					seen[got.backend]++
				}
			}
			t.Logf("%s: backends answered %v", name, seen)
			if len(seen) != 2 {
				t.Errorf("40 connections reached %d backends (%v), want both", len(seen), seen)
			}
		})
	}
	// Every netns of the worlds is gone.
	runs, err := topology.Runs()
	if err != nil {
		t.Fatal(err)
	}
	for prefix, names := range runs {
		if pid, ok := topology.PrefixPID(prefix); ok && pid == os.Getpid() {
			t.Errorf("netns left behind: %v", names)
		}
	}
}

// TestRunTiny runs a tiny comparison (two small sizes, few samples) to
// check the machinery: every point is there with positive times, every
// backend answered, the table prints. It asserts nothing about timing.
func TestRunTiny(t *testing.T) {
	testrun.RequirePrivileges(t)
	var progress bytes.Buffer
	res, err := Run(context.Background(), Options{Sizes: []int{20, 10}, Samples: 20, PositionSamples: 4}, &progress)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(res.Points) != 2 || res.Points[0].Services != 10 || res.Points[1].Services != 20 {
		t.Fatalf("points %+v, want sizes 10 and 20 in order", res.Points)
	}
	for _, p := range res.Points {
		for name, st := range map[string]Stats{IPTables: p.IPTables, EBPF: p.EBPF} {
			if st.Samples != 20 || st.Median <= 0 || st.P99 < st.Median || st.Last <= 0 {
				t.Errorf("%d services, %s: %+v", p.Services, name, st)
			}
			n := 0
			for _, c := range st.Backends {
				n += c
			}
			if n != 20 {
				t.Errorf("%d services, %s: backends answered %v, want 20 in all", p.Services, name, st.Backends)
			}
		}
	}
	var out bytes.Buffer
	res.Print(&out)
	for _, s := range []string{"0 direct", "ratio", "curves", "iptables", "eBPF", "rules"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("printed table lacks %q:\n%s", s, out.String())
		}
	}
	t.Logf("\n%s", out.String())
}

// cancelOn is a progress writer that cancels a run when a progress line
// contains a string.
type cancelOn struct {
	bytes.Buffer
	what   string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.what) {
		c.cancel()
	}
	return c.Buffer.Write(p)
}

// TestRunCleansUpOnFailure interrupts a run while it measures (the
// services loaded, the programs attached) and checks that it fails and
// leaves no netns behind.
func TestRunCleansUpOnFailure(t *testing.T) {
	testrun.RequirePrivileges(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progress := &cancelOn{what: "connections per datapath", cancel: cancel}
	_, err := Run(ctx, Options{Sizes: []int{10}, Samples: 1000, PositionSamples: 4}, progress)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled\nprogress:\n%s", err, progress.String())
	}
	runs, err := topology.Runs()
	if err != nil {
		t.Fatal(err)
	}
	for prefix, names := range runs {
		if pid, ok := topology.PrefixPID(prefix); ok && pid == os.Getpid() {
			t.Errorf("netns left behind: %v", names)
		}
	}
}
