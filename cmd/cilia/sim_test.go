package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
)

func TestSimCleanHelp(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"sim", "clean", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatalf("help: %v", err)
	}
	for _, want := range []string{"removes them when it ends", "killed", "--all", "--dry-run"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help does not say %q:\n%s", want, out.String())
		}
	}
}

// TestSimClean leaves the netns of a run whose process is gone, and of a
// live run, and checks that clean lists and removes only the former.
func TestSimClean(t *testing.T) {
	testrun.RequirePrivileges(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatalf("run a process to outlive: %v", err)
	}
	spec := topology.Spec{Mode: topology.Native, Nodes: []topology.NodeSpec{{Name: "n", IPv4: netip.MustParseAddr("192.168.0.1")}}}
	spec.Prefix = fmt.Sprintf("cilia-%d-1", dead.Process.Pid)
	leftover := buildForTest(t, spec)
	spec.Prefix = ""
	live := buildForTest(t, spec)
	deadNames := []string{leftover.Prefix + "-f", leftover.Prefix + "-n0"}
	liveNames := []string{live.Prefix + "-f", live.Prefix + "-n0"}

	for _, dryRun := range []bool{true, false} {
		var out bytes.Buffer
		if err := runSimClean(&out, false, dryRun); err != nil {
			// Leftovers of other runs may be beyond reach (a netns file
			// shadowed by a later mount): only errors about ours count.
			if strings.Contains(err.Error(), leftover.Prefix) || strings.Contains(err.Error(), live.Prefix) {
				t.Fatalf("clean (dry run %v): %v\n%s", dryRun, err, out.String())
			}
			t.Logf("clean (dry run %v): other runs: %v", dryRun, err)
		}
		verb := "removed "
		if dryRun {
			verb = "would remove "
		}
		for _, n := range deadNames {
			if !strings.Contains(out.String(), verb+topology.NetnsPath(n)+"\n") {
				t.Errorf("dry run %v: output does not say %s%s:\n%s", dryRun, verb, n, out.String())
			}
		}
		for _, n := range liveNames {
			if strings.Contains(out.String(), n) {
				t.Errorf("dry run %v: output names %s of a live run:\n%s", dryRun, n, out.String())
			}
		}
		runs, err := topology.Runs()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(runs[live.Prefix], liveNames) {
			t.Errorf("dry run %v: the live run has %v, want %v", dryRun, runs[live.Prefix], liveNames)
		}
		wantDead := deadNames
		if !dryRun {
			wantDead = nil
		}
		if !slices.Equal(runs[leftover.Prefix], wantDead) {
			t.Errorf("dry run %v: the dead run has %v, want %v", dryRun, runs[leftover.Prefix], wantDead)
		}
	}
}

// buildForTest builds s, closed when the test ends.
func buildForTest(t *testing.T, s topology.Spec) *topology.Topology {
	t.Helper()
	topo, err := topology.Build(context.Background(), s)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return topo
}

// TestProcessAlive: this process is alive, a zombie (exited, not reaped)
// and a reaped process are not.
func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Errorf("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d (exited, not reaped) still alive after 5s", pid)
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("process %d alive after wait", pid)
	}
}
