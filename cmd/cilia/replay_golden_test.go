package main

import (
	"bufio"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden replay outputs in fixtures/pcaps")

// summaryTiming is the line of the table summary that depends on the
// machine (elapsed time, packets per second).
var summaryTiming = regexp.MustCompile(`(?m)^Summary: (\d+) packets in .*$`)

// TestReplayGolden replays every capture in fixtures/pcaps against its
// scenario through the real simulated cluster and compares the table and
// the Hubble JSON with the golden outputs beside them (go test -run
// TestReplayGolden ./cmd/cilia -update rewrites them).
func TestReplayGolden(t *testing.T) {
	dptestrun.RequirePrivileges(t)
	pcaps, err := filepath.Glob("../../fixtures/pcaps/*.pcap")
	if err != nil || len(pcaps) == 0 {
		t.Fatalf("no captures in fixtures/pcaps: %v", err)
	}
	for _, pcap := range pcaps {
		base := strings.TrimSuffix(pcap, ".pcap")
		t.Run(filepath.Base(base), func(t *testing.T) {
			args := []string{"--scenario", base + ".yaml", "--pcap", pcap, "--no-progress"}
			table, stderr, err := execReplay(t, nil, args...)
			if err != nil {
				t.Fatalf("replay: %v\n%s", err, stderr)
			}
			table = summaryTiming.ReplaceAllString(strings.ReplaceAll(table, "../../", ""), "Summary: $1 packets")
			js, stderr, err := execReplay(t, nil, append(args, "-o", "json")...)
			if err != nil {
				t.Fatalf("replay -o json: %v\n%s", err, stderr)
			}
			if *updateGolden {
				must(t, os.WriteFile(base+".table.golden", []byte(table), 0o644))
				must(t, os.WriteFile(base+".json.golden", []byte(js), 0o644))
				return
			}
			want, err := os.ReadFile(base + ".table.golden")
			if err != nil {
				t.Fatalf("read golden table (go test ./cmd/cilia -run TestReplayGolden -update writes it): %v", err)
			}
			if table != string(want) {
				t.Errorf("table differs from %s.table.golden:\n got:\n%s\nwant:\n%s", base, table, want)
			}
			wantJSON, err := os.ReadFile(base + ".json.golden")
			if err != nil {
				t.Fatal(err)
			}
			got, wantFlows := parseFlows(t, js), parseFlows(t, string(wantJSON))
			if len(got) != len(wantFlows) {
				t.Fatalf("%d flows, golden has %d", len(got), len(wantFlows))
			}
			for i := range got {
				if !proto.Equal(got[i], wantFlows[i]) {
					t.Errorf("flow %d differs:\n got %v\nwant %v", i+1, got[i], wantFlows[i])
				}
			}
			if !strings.Contains(table, "DROPPED") {
				t.Errorf("the capture shows no drop; each capture in fixtures/pcaps is made to show one")
			}
		})
	}
}

// parseFlows reads hubble observe -o jsonpb lines.
func parseFlows(t *testing.T, s string) []*observer.GetFlowsResponse {
	t.Helper()
	var out []*observer.GetFlowsResponse
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r observer.GetFlowsResponse
		if err := protojson.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("parse flow %q: %v", sc.Text(), err)
		}
		out = append(out, &r)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCaptureThenReplay captures real traffic with cilia sim capture
// (tcpdump on a client pod's eth0 while the scenario's probes run over
// real sockets) and replays the capture: the denied probe's SYN comes out
// dropped with its reason, the allowed exchange delivered.
func TestCaptureThenReplay(t *testing.T) {
	dptestrun.RequirePrivileges(t)
	out := filepath.Join(t.TempDir(), "capture.pcap")
	scenarioFile := "../../fixtures/pcaps/cross-node-port.yaml"
	stdout, stderr, failed := runCilia(t, "", "sim", "capture", "--scenario", scenarioFile, "--at", "pod:shop/client", "--out", out)
	if failed {
		t.Fatalf("capture failed:\n%s\n%s", stdout, stderr)
	}
	if !strings.Contains(stdout, "captured 2 probes (1 allowed, 1 denied)") {
		t.Errorf("capture said %q", stdout)
	}
	table, stderr, err := execReplay(t, nil, "--scenario", scenarioFile, "--pcap", out, "--no-progress")
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr)
	}
	// How many segments the allowed connection takes (delayed ACKs,
	// FIN/ACK merges) is the kernel's business; one SYN was delivered
	// and exactly one was dropped, with its reason.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)shop/client\s+shop/api\s+TCP SYN\s+FORWARDED`),
		regexp.MustCompile(`(?m)shop/client\s+shop/api\s+TCP SYN\s+DROPPED\s+POLICY_DENIED\s+default deny`),
		regexp.MustCompile(`dropped 1, `),
	} {
		if !want.MatchString(table) {
			t.Errorf("replay of the capture does not match %s:\n%s", want, table)
		}
	}
}
