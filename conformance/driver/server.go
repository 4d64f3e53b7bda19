package driver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// ServeOptions tune Serve.
type ServeOptions struct {
	// Implementation is reported by "features"; its Name defaults to the
	// target's name.
	Implementation Implementation
}

// Serve exposes t over the driver protocol: it reads requests from in,
// one per line, and writes one response per request to out. It serves one
// scenario: it returns nil after answering "close", or when in ends (then
// it closes t itself if a scenario was set up). It returns an error only
// when it cannot read in or write out, or when ctx ends.
func Serve(ctx context.Context, t target.Target, in io.Reader, out io.Writer) error {
	return ServeWith(ctx, t, in, out, ServeOptions{})
}

// ServeWith is Serve with options.
func ServeWith(ctx context.Context, t target.Target, in io.Reader, out io.Writer, opts ServeOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the reader below
	s := &server{t: t, out: out, opts: opts}
	if s.opts.Implementation.Name == "" {
		s.opts.Implementation.Name = t.Name()
	}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(in, 1<<16)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			s.cleanup()
			return ctx.Err()
		case err := <-readErr:
			s.cleanup()
			if err != nil {
				return fmt.Errorf("driver: read requests: %w", err)
			}
			return nil
		case line := <-lines:
			done, err := s.handle(ctx, line)
			if err != nil {
				s.cleanup()
				return err
			}
			if done {
				return nil
			}
		}
	}
}

type server struct {
	t    target.Target
	out  io.Writer
	opts ServeOptions
	wmu  sync.Mutex
	sc   *scenario.Scenario
	// open is true between a successful setup and close.
	open bool
}

// cleanup closes the target when the client went away without "close".
func (s *server) cleanup() {
	if s.open {
		s.open = false
		_ = s.t.Close()
	}
}

// handle answers one request line; done is true after "close".
func (s *server) handle(ctx context.Context, line []byte) (done bool, err error) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return false, s.reply(nil, nil, &Error{Code: CodeParseError, Message: "request is not JSON: " + err.Error()})
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		return false, s.reply(req.ID, nil, &Error{Code: CodeInvalidRequest, Message: `request needs "jsonrpc": "2.0" and a method`})
	}
	result, rerr := s.call(ctx, req)
	if len(req.ID) == 0 || string(req.ID) == "null" {
		// A notification: no answer, even on error.
		return req.Method == MethodClose && rerr == nil, nil
	}
	if err := s.reply(req.ID, result, rerr); err != nil {
		return false, err
	}
	return req.Method == MethodClose && rerr == nil, nil
}

// call runs a method, turning a panic of the target into an internal error.
func (s *server) call(ctx context.Context, req Request) (result any, rerr *Error) {
	defer func() {
		if v := recover(); v != nil {
			result, rerr = nil, &Error{Code: CodeInternalError, Message: fmt.Sprintf("%s: target panicked: %v\n%s", req.Method, v, debug.Stack())}
		}
	}()
	switch req.Method {
	case MethodFeatures:
		res := FeaturesResult{ProtocolVersion: ProtocolVersion, Implementation: s.opts.Implementation, Features: []string{}}
		for _, f := range s.t.Features().Sorted() {
			res.Features = append(res.Features, string(f))
		}
		return res, nil
	case MethodSetup:
		return s.setup(ctx, req.Params)
	case MethodStep:
		return s.step(ctx, req.Params)
	case MethodProbe:
		return s.probe(ctx, req.Params)
	case MethodClose:
		s.open = false
		if err := s.t.Close(); err != nil {
			return nil, &Error{Code: CodeCloseFailed, Message: err.Error()}
		}
		return struct{}{}, nil
	}
	return nil, &Error{Code: CodeMethodNotFound, Message: fmt.Sprintf("unknown method %q (known: features, setup, step, probe, close)", req.Method)}
}

func failure(code int, err error) *Error {
	if errors.Is(err, ErrUnsupported) {
		code = CodeUnsupported
	}
	return &Error{Code: code, Message: err.Error()}
}

func (s *server) setup(ctx context.Context, raw json.RawMessage) (any, *Error) {
	if s.sc != nil {
		return nil, &Error{Code: CodeInvalidState, Message: "setup: a scenario is already set up (a driver serves one scenario per process)"}
	}
	var p SetupParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: "setup: " + err.Error()}
	}
	if p.Source == "" {
		return nil, &Error{Code: CodeInvalidParams, Message: `setup: this driver needs the scenario file's text in "source"`}
	}
	sc, err := scenario.Parse(p.File, []byte(p.Source))
	if err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: "setup: " + err.Error()}
	}
	s.sc = sc
	if err := s.t.Setup(ctx, sc); err != nil {
		// Setup may have built part of the cluster: Close tears it down.
		s.open = true
		return nil, failure(CodeSetupFailed, err)
	}
	s.open = true
	return struct{}{}, nil
}

func (s *server) step(ctx context.Context, raw json.RawMessage) (any, *Error) {
	if !s.open {
		return nil, &Error{Code: CodeInvalidState, Message: "step: no scenario is set up"}
	}
	var p StepParams
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: "step: " + err.Error()}
	}
	if p.Index < 0 || p.Index >= len(s.sc.Steps) {
		return nil, &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("step: index %d out of range (the scenario has %d steps)", p.Index, len(s.sc.Steps))}
	}
	// The loaded scenario's step carries the policies' YAML nodes (with
	// the file's lines for errors); the params' mutations are the same.
	if err := s.t.Step(ctx, s.sc.Steps[p.Index]); err != nil {
		return nil, failure(CodeStepFailed, err)
	}
	return struct{}{}, nil
}

func (s *server) probe(ctx context.Context, raw json.RawMessage) (any, *Error) {
	if !s.open {
		return nil, &Error{Code: CodeInvalidState, Message: "probe: no scenario is set up"}
	}
	var pj ProbeParams
	if err := json.Unmarshal(raw, &pj); err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: "probe: " + err.Error()}
	}
	p, err := DecodeProbe(pj)
	if err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: err.Error()}
	}
	obs, err := s.t.Probe(ctx, p)
	if err != nil {
		return nil, failure(CodeProbeFailed, err)
	}
	oj, err := EncodeObservation(obs)
	if err != nil {
		return nil, &Error{Code: CodeInternalError, Message: fmt.Sprintf("probe %q: encode observation: %v", p.ID, err)}
	}
	return oj, nil
}

func (s *server) reply(id json.RawMessage, result any, rerr *Error) error {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	resp := Response{JSONRPC: "2.0", ID: id, Error: rerr}
	if rerr == nil {
		b, err := Marshal(result)
		if err != nil {
			resp.Error = &Error{Code: CodeInternalError, Message: "encode result: " + err.Error()}
		} else {
			resp.Result = b
		}
	}
	b, err := Marshal(resp)
	if err != nil {
		return fmt.Errorf("driver: encode response: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("driver: write response: %w", err)
	}
	return nil
}
