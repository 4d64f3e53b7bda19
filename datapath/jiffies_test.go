package datapath_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// TestKernelHZAndJiffies: the conntrack clock advances at the measured HZ.
func TestKernelHZAndJiffies(t *testing.T) {
	testrun.RequirePrivileges(t)
	hz, err := datapath.KernelHZ()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains([]uint32{100, 250, 300, 1000}, hz) {
		t.Fatalf("HZ = %d, not a rate Linux offers", hz)
	}
	j0, err := datapath.Jiffies()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(200 * time.Millisecond)
	j1, err := datapath.Jiffies()
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start).Seconds()
	// At least the sleep's worth of ticks (less one for the tick boundary),
	// at most what the elapsed time allows (plus one).
	lo, hi := uint64(0.2*float64(hz))-1, uint64(elapsed*float64(hz))+1
	if d := j1 - j0; d < lo || d > hi {
		t.Errorf("jiffies advanced %d in %.3fs at HZ %d, want %d..%d", d, elapsed, hz, lo, hi)
	}
}
