package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/gopacket/pcapgo"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ciliaproject/cilia/sim/replay"
	rt "github.com/ciliaproject/cilia/sim/replay/replaytest"
	"github.com/ciliaproject/cilia/sim/walker"
)

// fakeCluster replaces openSimulator for one test and records its use.
type fakeCluster struct {
	sim    *rt.Sim
	path   string
	opts   simulatorOptions
	opened int
	closed int
	err    error
}

func (c *fakeCluster) Close() error { c.closed++; return nil }

func useFakeCluster(t *testing.T, openErr error) *fakeCluster {
	t.Helper()
	c := &fakeCluster{sim: rt.DefaultSim(), err: openErr}
	old := openSimulator
	openSimulator = func(_ context.Context, path string, o simulatorOptions) (replay.Simulator, io.Closer, error) {
		c.opened++
		c.path, c.opts = path, o
		if c.err != nil {
			return nil, nil, c.err
		}
		return c.sim, c, nil
	}
	t.Cleanup(func() { openSimulator = old })
	return c
}

// replayCapture is x/a -> x/b :80, x/a -> x/b :23 (dropped), x/a -> x/c :80.
func replayCapture() []byte {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return rt.Pcap(rt.LinuxSLL2, []rt.Record{
		{Time: t0, Frame: rt.Frame(rt.A, rt.B, "tcp", 40001, 80, 0)},
		{Time: t0.Add(time.Millisecond), Frame: rt.Frame(rt.A, rt.B, "tcp", 40002, 23, 0)},
		{Time: t0.Add(2 * time.Millisecond), Frame: rt.Frame(rt.A, rt.C, "tcp", 40003, 80, 0)},
	}, false, false)
}

func execReplay(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if stdin != nil {
		cmd.SetIn(stdin)
	}
	cmd.SetArgs(append([]string{"replay"}, args...))
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestReplayTable(t *testing.T) {
	c := useFakeCluster(t, nil)
	capFile := writeFile(t, "cap.pcap", string(replayCapture()))
	out, stderr, err := execReplay(t, nil, "--scenario", "s.yaml", "--pcap", capFile)
	if err != nil {
		t.Fatalf("replay: %v\n%s%s", err, out, stderr)
	}
	for _, s := range []string{"VERDICT", "FORWARDED", "DROPPED", "POLICY_DENIED", rt.DenyRuleText,
		"x/a from-container → n1 vxlan → n2 from-overlay → x/c to-container", "Summary: 3 packets", "Drops by rule:"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(stderr, "\r") {
		t.Errorf("progress bar drawn on a non-terminal: %q", stderr)
	}
	want := simulatorOptions{Mode: "tunnel", Step: -1}
	if c.path != "s.yaml" || c.opts != want || c.opened != 1 || c.closed != 1 {
		t.Errorf("simulator opened %d× with %q %+v, closed %d×; want once with s.yaml %+v, closed once",
			c.opened, c.path, c.opts, c.closed, want)
	}
}

func TestReplayJSONAndFlags(t *testing.T) {
	c := useFakeCluster(t, nil)
	capFile := writeFile(t, "cap.pcap", string(replayCapture()))
	written := filepath.Join(t.TempDir(), "out.pcap")
	out, stderr, err := execReplay(t, nil, "--scenario", "s.yaml", "--pcap", capFile, "-o", "json", "--at", "pod:x/a",
		"--mode", "native", "--step", "2", "--write", written, "--progress")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 {
		t.Fatalf("%d flows, want at least 5:\n%s", len(lines), out)
	}
	for i, l := range lines {
		var resp observer.GetFlowsResponse
		if err := protojson.Unmarshal([]byte(l), &resp); err != nil || resp.GetFlow() == nil {
			t.Errorf("line %d is no GetFlowsResponse with a flow (%v): %s", i+1, err, l)
		}
	}
	if !strings.Contains(stderr, "Summary: 3 packets") || !strings.Contains(stderr, "\r\x1b[K") {
		t.Errorf("stderr lacks the summary or the forced progress bar: %q", stderr)
	}
	if c.opts != (simulatorOptions{Mode: "native", Step: 2}) {
		t.Errorf("simulator options %+v", c.opts)
	}
	for i, e := range c.sim.Entries {
		if e != (walker.Entry{Node: "n1", Hook: walker.FromContainer, Pod: "x/a"}) {
			t.Errorf("packet %d entered at %v, want pod:x/a", i+1, e)
		}
	}
	f, err := os.Open(written)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	if n != 2 {
		t.Errorf("--write holds %d packets, want the 2 delivered", n)
	}
}

func TestReplayStdinAndLimit(t *testing.T) {
	useFakeCluster(t, nil)
	out, _, err := execReplay(t, bytes.NewReader(replayCapture()), "--scenario", "s.yaml", "--pcap", "-", "--limit", "2", "-v")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Summary: 2 packets") || !strings.Contains(out, "↳ n1 from-container") {
		t.Errorf("output:\n%s", out)
	}
}

func TestReplayFailures(t *testing.T) {
	capture := replayCapture()
	good := writeFile(t, "good.pcap", string(capture))
	cut := writeFile(t, "cut.pcap", string(capture[:len(capture)-10]))
	buildErr := errors.New("netns: permission denied")
	tests := []struct {
		name    string
		openErr error
		args    []string
		want    string
		opened  int
		output  []string // must be printed before the error
	}{
		{"truncated capture", nil, []string{"--pcap", cut}, "packet 3 at byte offset", 1, []string{"POLICY_DENIED", "Summary: 2 packets"}},
		{"cluster cannot be built", buildErr, []string{"--pcap", good}, "build the cluster of s.yaml: netns: permission denied", 1, nil},
		{"missing capture", nil, []string{"--pcap", filepath.Join(t.TempDir(), "nope.pcap")}, "no such file", 0, nil},
		{"bad mode", nil, []string{"--pcap", good, "--mode", "bgp"}, `--mode "bgp"`, 0, nil},
		{"bad output", nil, []string{"--pcap", good, "-o", "yaml"}, `-o "yaml"`, 0, nil},
		{"bad at", nil, []string{"--pcap", good, "--at", "pod:x/nope"}, `--at "pod:x/nope"`, 1, nil},
		{"no pcap", nil, nil, `"pcap" not set`, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := useFakeCluster(t, tt.openErr)
			out, stderr, err := execReplay(t, nil, append([]string{"--scenario", "s.yaml"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q\n%s%s", err, tt.want, out, stderr)
			}
			if c.opened != tt.opened || (c.opened == 1 && tt.openErr == nil && c.closed != 1) {
				t.Errorf("simulator opened %d×, closed %d×; want opened %d×", c.opened, c.closed, tt.opened)
			}
			for _, s := range tt.output {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestReplayHelp(t *testing.T) {
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"replay", "--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"--scenario", "--pcap", "--at", "pod:NAMESPACE/NAME", "hubble observe", "--write", "--mode",
		"--step", "--limit", "--no-progress", "Examples:", "Linux cooked"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help lacks %q", s)
		}
	}
}
