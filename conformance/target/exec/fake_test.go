package exec

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/conformance/driver"
)

// TestMain turns the test binary into a fake driver when it is started as
// "<test binary> fake-driver MODE" (the exec target's tests do that), and
// runs the tests otherwise.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "fake-driver" {
		os.Exit(fakeDriver(os.Args[2]))
	}
	os.Exit(m.Run())
}

// fakeDriver speaks the protocol on stdin/stdout and misbehaves as mode
// says: "ok", or "<fault>-on-<method>" with fault one of crash, hang,
// garbage, wrongid, error, noverdict, noresult, exit0.
func fakeDriver(mode string) int {
	fault, on, _ := strings.Cut(mode, "-on-")
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req driver.Request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "fake driver: bad request:", err)
			return 3
		}
		var result any = struct{}{}
		switch req.Method {
		case driver.MethodFeatures:
			result = driver.FeaturesResult{ProtocolVersion: driver.ProtocolVersion,
				Implementation: driver.Implementation{Name: "fake", Version: "0.0.1"}, Features: []string{"policy-knp", "policy-l4", "drop-reasons"}}
			if fault == "badversion" && on == req.Method {
				result = driver.FeaturesResult{ProtocolVersion: "2.0", Features: []string{}}
			}
		case driver.MethodProbe:
			result = driver.ObservationJSON{Verdict: "denied", DropReason: "POLICY_DENIED",
				Flows: []json.RawMessage{json.RawMessage(`{"verdict":"DROPPED","drop_reason_desc":"POLICY_DENIED","source":{"namespace":"x","pod_name":"a"}}`)}}
		}
		if on == req.Method {
			switch fault {
			case "crash":
				fmt.Fprintln(os.Stderr, "fake driver: about to crash")
				fmt.Fprintln(os.Stderr, "panic: boom")
				return 2
			case "exit0":
				return 0
			case "hang":
				time.Sleep(time.Hour)
			case "garbage":
				fmt.Println("this is not json")
				continue
			case "wrongid":
				var id int
				json.Unmarshal(req.ID, &id)
				out.Encode(map[string]any{"jsonrpc": "2.0", "id": id + 41, "result": result})
				continue
			case "error":
				out.Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID,
					"error": driver.Error{Code: driver.CodeProbeFailed, Message: "no route from x/a to x/b"}})
				continue
			case "noverdict":
				result = map[string]any{"dropReason": "POLICY_DENIED"}
			case "noresult":
				out.Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID})
				continue
			}
		}
		out.Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
		if req.Method == driver.MethodClose {
			return 0
		}
	}
	return 0
}
