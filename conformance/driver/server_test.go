package driver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cilium/cilium/api/v1/flow"

	"github.com/ciliaproject/cilia/conformance/driver"
	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// recorder is a fake target that records what it is given.
type recorder struct {
	setup  *scenario.Scenario
	steps  []int
	probes []scenario.Probe
	closed int
}

func (r *recorder) Name() string { return "recorder" }
func (r *recorder) Features() features.Set {
	return features.NewSet(features.Feature("policy-l3"), features.Feature("drop-reasons"))
}
func (r *recorder) Setup(_ context.Context, sc *scenario.Scenario) error {
	r.setup = sc
	return nil
}
func (r *recorder) Step(_ context.Context, st scenario.Step) error {
	r.steps = append(r.steps, st.Index)
	if st.Index == 7 {
		return errors.New("cannot apply")
	}
	return nil
}
func (r *recorder) Probe(_ context.Context, p scenario.Probe) (target.Observation, error) {
	r.probes = append(r.probes, p)
	switch p.ID {
	case "fails":
		return target.Observation{}, errors.New("no route")
	case "unsupported":
		return target.Observation{}, fmt.Errorf("kafka: %w", driver.ErrUnsupported)
	case "panics":
		panic("oops")
	}
	return target.Observation{Verdict: target.Denied, DropReason: "POLICY_DENIED", HTTPStatus: 403, Backend: "x/b",
		SourceSeen: netip.MustParseAddr("10.0.0.1"),
		Flows: []*flow.Flow{{Verdict: flow.Verdict_DROPPED, DropReasonDesc: flow.DropReason_POLICY_DENIED,
			Source: &flow.Endpoint{Namespace: "x", PodName: "a"}}}}, nil
}
func (r *recorder) Close() error { r.closed++; return nil }

const scenarioText = `apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: rt, features: [policy-l3]}
cluster:
  pods:
    - {name: x/a, labels: {pod: a}}
    - {name: x/b, labels: {pod: b}, ports: [{name: http, port: 80, protocol: TCP}]}
probes:
  - {from: x/a, to: x/b, port: http, expect: allow}
steps:
  - setLabels: [{pod: x/a, labels: {pod: c}}]
    probes: [{from: x/a, to: x/b, port: 80, expect: deny}]
`

// session runs Serve over pipes and returns a function that sends a
// request line and returns the response line ("" for none).
func session(t *testing.T, tg target.Target) (send func(string) string, done <-chan error, closeIn func()) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- driver.Serve(context.Background(), tg, inR, outW)
		outW.Close()
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() { inW.Close() })
	return func(req string) string {
		if _, err := io.WriteString(inW, req+"\n"); err != nil {
			t.Fatalf("write %s: %v", req, err)
		}
		select {
		case l := <-lines:
			return l
		case <-time.After(100 * time.Millisecond):
			return ""
		}
	}, errc, func() { inW.Close() }
}

func TestServeRoundTrip(t *testing.T) {
	rec := &recorder{}
	send, done, _ := session(t, rec)
	sc, err := scenario.Parse("rt.yaml", []byte(scenarioText))
	if err != nil {
		t.Fatal(err)
	}
	sj, err := driver.EncodeScenario(sc)
	if err != nil {
		t.Fatal(err)
	}
	setup, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 2, "method": "setup",
		"params": driver.SetupParams{File: "rt.yaml", Source: scenarioText, Scenario: sj}})
	step1, _ := driver.EncodeStep(sc.Steps[1])
	stepReq, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "s1", "method": "step", "params": step1})
	probe := func(id any, p scenario.Probe) string {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "probe", "params": driver.EncodeProbe(p)})
		return string(b)
	}
	named := func(id string) scenario.Probe {
		p := sc.Steps[0].Probes[0]
		p.ID = id
		return p
	}
	obs := `{"verdict":"denied","dropReason":"POLICY_DENIED","httpStatus":403,"backend":"x/b","sourceSeen":"10.0.0.1","flows":[{"verdict":"DROPPED","source":{"namespace":"x","pod_name":"a"},"drop_reason_desc":"POLICY_DENIED"}]}`
	for _, tc := range []struct{ name, req, resp string }{
		{"features", `{"jsonrpc":"2.0","id":1,"method":"features"}`,
			`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"1.0","implementation":{"name":"recorder"},"features":["drop-reasons","policy-l3"]}}`},
		{"not JSON", `{oops`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"request is not JSON: invalid character 'o' looking for beginning of object key string"}}`},
		{"not JSON-RPC", `{"id":9,"method":"features"}`, `{"jsonrpc":"2.0","id":9,"error":{"code":-32600,"message":"request needs \"jsonrpc\": \"2.0\" and a method"}}`},
		{"unknown method", `{"jsonrpc":"2.0","id":3,"method":"reboot"}`,
			`{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"unknown method \"reboot\" (known: features, setup, step, probe, close)"}}`},
		{"probe before setup", probe(4, sc.Steps[0].Probes[0]), `{"jsonrpc":"2.0","id":4,"error":{"code":-32005,"message":"probe: no scenario is set up"}}`},
		{"setup without source", `{"jsonrpc":"2.0","id":5,"method":"setup","params":{"file":"x.yaml"}}`,
			`{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"setup: this driver needs the scenario file's text in \"source\""}}`},
		{"setup", string(setup), `{"jsonrpc":"2.0","id":2,"result":{}}`},
		{"setup twice", string(setup), `{"jsonrpc":"2.0","id":2,"error":{"code":-32005,"message":"setup: a scenario is already set up (a driver serves one scenario per process)"}}`},
		{"probe", probe(6, sc.Steps[0].Probes[0]), `{"jsonrpc":"2.0","id":6,"result":` + obs + `}`},
		{"notification", `{"jsonrpc":"2.0","method":"features"}`, ``},
		{"probe error", probe(7, named("fails")), `{"jsonrpc":"2.0","id":7,"error":{"code":-32004,"message":"no route"}}`},
		{"probe unsupported", probe(8, named("unsupported")), `{"jsonrpc":"2.0","id":8,"error":{"code":-32002,"message":"kafka: unsupported"}}`},
		{"probe bad params", `{"jsonrpc":"2.0","id":9,"method":"probe","params":{"id":"p","from":{"kind":"pod"}}}`,
			`{"jsonrpc":"2.0","id":9,"error":{"code":-32602,"message":"probe \"p\": from: kind pod needs a name"}}`},
		{"step", string(stepReq), `{"jsonrpc":"2.0","id":"s1","result":{}}`},
		{"step out of range", `{"jsonrpc":"2.0","id":10,"method":"step","params":{"index":5}}`,
			`{"jsonrpc":"2.0","id":10,"error":{"code":-32602,"message":"step: index 5 out of range (the scenario has 2 steps)"}}`},
		{"probe step 1", probe(11, sc.Steps[1].Probes[0]), `{"jsonrpc":"2.0","id":11,"result":` + obs + `}`},
		{"close", `{"jsonrpc":"2.0","id":12,"method":"close"}`, `{"jsonrpc":"2.0","id":12,"result":{}}`},
	} {
		if got := send(tc.req); got != tc.resp {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.resp)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Serve did not return after close")
	}
	if rec.setup == nil || rec.setup.Metadata.Name != "rt" || len(rec.setup.Steps) != 2 {
		t.Fatalf("setup got %+v", rec.setup)
	}
	if !reflect.DeepEqual(rec.steps, []int{1}) || rec.closed != 1 {
		t.Errorf("steps %v, closed %d", rec.steps, rec.closed)
	}
	if len(rec.probes) != 4 || !reflect.DeepEqual(rec.probes[0], sc.Steps[0].Probes[0]) || !reflect.DeepEqual(rec.probes[3], sc.Steps[1].Probes[0]) {
		t.Errorf("probes differ from the scenario's:\n%+v\n%+v", rec.probes, sc.Probes())
	}
}

// TestServePanicAndEOF: a panicking target gives an internal error, and
// Serve closes the target when its input ends without "close".
func TestServePanicAndEOF(t *testing.T) {
	rec := &recorder{}
	send, done, closeIn := session(t, rec)
	sc, _ := scenario.Parse("rt.yaml", []byte(scenarioText))
	setup, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "setup", "params": driver.SetupParams{File: "rt.yaml", Source: scenarioText}})
	if got := send(string(setup)); got != `{"jsonrpc":"2.0","id":1,"result":{}}` {
		t.Fatalf("setup: %s", got)
	}
	p := sc.Steps[0].Probes[0]
	p.ID = "panics"
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 2, "method": "probe", "params": driver.EncodeProbe(p)})
	got := send(string(b))
	if !strings.HasPrefix(got, `{"jsonrpc":"2.0","id":2,"error":{"code":-32603,"message":"probe: target panicked: oops\n`) {
		t.Errorf("panic: %s", got)
	}
	// End the input: Serve must close the target and return nil.
	closeIn()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Serve did not return at the end of its input")
	}
	if rec.closed != 1 {
		t.Errorf("target closed %d times, want 1", rec.closed)
	}
}

// TestProbeJSONRoundTrip encodes and decodes every probe of the fixtures.
func TestProbeJSONRoundTrip(t *testing.T) {
	scs, err := scenario.LoadDir(filepath.Join("..", "..", "fixtures", "scenarios"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, sc := range scs {
		sj, err := driver.EncodeScenario(sc)
		if err != nil {
			t.Fatalf("%s: %v", sc.File, err)
		}
		if _, err := json.Marshal(sj); err != nil {
			t.Fatalf("%s: %v", sc.File, err)
		}
		for _, p := range sc.Probes() {
			b, err := json.Marshal(driver.EncodeProbe(p))
			if err != nil {
				t.Fatal(err)
			}
			var pj driver.ProbeJSON
			if err := json.Unmarshal(b, &pj); err != nil {
				t.Fatal(err)
			}
			got, err := driver.DecodeProbe(pj)
			if err != nil {
				t.Fatalf("%s: %s: %v", sc.File, p.ID, err)
			}
			if !reflect.DeepEqual(got, p) {
				t.Fatalf("%s: round trip of %s:\n got %+v\nwant %+v", sc.File, p.ID, got, p)
			}
			n++
		}
	}
	t.Logf("%d probes of %d scenarios round-trip", n, len(scs))
}
