// Package driver implements the driver protocol (DESIGN.md §4,
// docs/driver-protocol.md): JSON-RPC 2.0, one JSON object per line, with
// which the conformance suite drives any implementation (the exec target).
//
// This package holds both halves that are written in Go: the JSON forms of
// scenarios, probes and observations (shared by client and server), and
// Serve, which exposes any target.Target as a driver (`cilia driver`).
package driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ProtocolVersion is the version of the protocol this package speaks. It
// is reported in the result of "features"; a client refuses a driver whose
// major version (the part before the first dot) differs.
const ProtocolVersion = "1.0"

// Method names.
const (
	MethodFeatures = "features"
	MethodSetup    = "setup"
	MethodStep     = "step"
	MethodProbe    = "probe"
	MethodClose    = "close"
)

// Error codes. The first five are JSON-RPC 2.0's; the others are the
// protocol's own, in the range JSON-RPC reserves for servers.
const (
	CodeParseError     = -32700 // the request line is not JSON
	CodeInvalidRequest = -32600 // JSON, but not a JSON-RPC 2.0 request
	CodeMethodNotFound = -32601 // unknown method
	CodeInvalidParams  = -32602 // params missing or malformed
	CodeInternalError  = -32603 // the driver failed unexpectedly (e.g. a panic)

	CodeSetupFailed  = -32001 // setup: the implementation could not build the scenario
	CodeUnsupported  = -32002 // the implementation does not support what was asked
	CodeStepFailed   = -32003 // step: the implementation could not apply the mutations
	CodeProbeFailed  = -32004 // probe: the implementation could not run the probe at all
	CodeInvalidState = -32005 // the method is not allowed now (e.g. probe before setup)
	CodeCloseFailed  = -32006 // close: teardown failed
)

// ErrUnsupported may be wrapped by a target's error to make Serve answer
// with CodeUnsupported instead of the method's failure code.
var ErrUnsupported = errors.New("unsupported")

// Request is a JSON-RPC 2.0 request. ID is absent for a notification.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Response is a JSON-RPC 2.0 response: exactly one of Result and Error.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Error is a JSON-RPC 2.0 error object.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("driver error %d (%s): %s", e.Code, CodeName(e.Code), e.Message)
}

// CodeName names an error code for messages.
func CodeName(code int) string {
	switch code {
	case CodeParseError:
		return "parse error"
	case CodeInvalidRequest:
		return "invalid request"
	case CodeMethodNotFound:
		return "method not found"
	case CodeInvalidParams:
		return "invalid params"
	case CodeInternalError:
		return "internal error"
	case CodeSetupFailed:
		return "setup failed"
	case CodeUnsupported:
		return "unsupported"
	case CodeStepFailed:
		return "step failed"
	case CodeProbeFailed:
		return "probe failed"
	case CodeInvalidState:
		return "invalid state"
	case CodeCloseFailed:
		return "close failed"
	}
	if code <= -32000 && code >= -32099 {
		return "server error"
	}
	return "application error"
}

// FeaturesResult is the result of "features".
type FeaturesResult struct {
	ProtocolVersion string         `json:"protocolVersion"`
	Implementation  Implementation `json:"implementation"`
	// Features are feature names (DESIGN.md §2, e.g. "policy-l3").
	Features []string `json:"features"`
}

// Implementation names the implementation behind a driver.
type Implementation struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// SetupParams are the params of "setup".
type SetupParams struct {
	// File is the scenario file's path as the suite loaded it.
	File string `json:"file"`
	// Source is the scenario file's text, verbatim.
	Source string `json:"source"`
	// Scenario is the loaded scenario: defaults applied, matrices
	// expanded, named ports resolved.
	Scenario *ScenarioJSON `json:"scenario"`
}

// StepParams are the params of "step": the step's index and its
// mutations (StepJSON without its probes).
type StepParams = StepJSON

// ProbeParams are the params of "probe".
type ProbeParams = ProbeJSON

// ObservationResult is the result of "probe".
type ObservationResult = ObservationJSON

// Marshal encodes v as one line of the protocol: compact JSON without
// HTML escaping ("->" stays readable in probe IDs), with no newline.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
