package datapath

import (
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// jiffiesProbe runs bpf/jiffies.c, which stores the kernel's jiffies.
type jiffiesProbe struct {
	objs jiffiesObjects
}

var (
	probeOnce sync.Once
	probe     *jiffiesProbe
	probeErr  error
	hzOnce    sync.Once
	hz        uint32
	hzErr     error
)

func loadJiffiesProbe() (*jiffiesProbe, error) {
	probeOnce.Do(func() {
		p := &jiffiesProbe{}
		if err := loadJiffiesObjects(&p.objs, nil); err != nil {
			probeErr = fmt.Errorf("load jiffies probe: %w", privilegeError(err))
			return
		}
		probe = p
	})
	return probe, probeErr
}

// Jiffies returns the kernel's jiffies counter now: the clock of conntrack
// lifetimes (maps.CTEntry.Expires).
func Jiffies() (uint64, error) {
	p, err := loadJiffiesProbe()
	if err != nil {
		return 0, err
	}
	// Any Ethernet-sized packet will do: the program ignores it.
	if _, err := p.objs.ReadJiffies.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
		return 0, fmt.Errorf("run jiffies probe: %w", err)
	}
	var j uint64
	if err := p.objs.JiffiesNow.Get(&j); err != nil {
		return 0, fmt.Errorf("read jiffies: %w", err)
	}
	return j, nil
}

// KernelHZ returns the kernel's tick rate (CONFIG_HZ), measured once per
// process by counting jiffies over about 100 ms and rounding to the
// nearest rate Linux offers (100, 250, 300, 1000).
func KernelHZ() (uint32, error) {
	hzOnce.Do(func() {
		j0, err := Jiffies()
		if err != nil {
			hzErr = err
			return
		}
		t0 := time.Now()
		time.Sleep(100 * time.Millisecond)
		j1, err := Jiffies()
		if err != nil {
			hzErr = err
			return
		}
		measured := float64(j1-j0) / time.Since(t0).Seconds()
		best := uint32(0)
		for _, c := range []uint32{100, 250, 300, 1000} {
			if best == 0 || abs(float64(c)-measured) < abs(float64(best)-measured) {
				best = c
			}
		}
		hz = best
	})
	return hz, hzErr
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
