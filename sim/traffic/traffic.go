// Package traffic runs real-socket servers and probe clients inside network
// namespaces: a server answers TCP, UDP and SCTP (over raw IP sockets, the
// kernel here has no SCTP stack) with its name and the source address it
// saw; a probe is one real exchange from a client netns and reports what
// happened (allowed, refused, timeout, unreachable, error).
package traffic

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Proto is a transport protocol of a probe; its values match
// conformance/scenario.Protocol.
type Proto string

// The protocols a server answers and a probe speaks.
const (
	TCP  Proto = "TCP"
	UDP  Proto = "UDP"
	SCTP Proto = "SCTP"
	ICMP Proto = "ICMP"
	// HTTP is an HTTP/1.1 request over TCP (not a scenario protocol: a
	// scenario's HTTP probe is a TCP probe with a request).
	HTTP Proto = "HTTP"
)

// Port is a protocol and port number a server listens on.
type Port struct {
	Proto Proto
	Port  uint16
}

// String returns the port as "TCP/80".
func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Proto, p.Port) }

// Outcome is how a probe ended.
type Outcome string

// The outcomes of a probe.
const (
	// Allowed: the server answered.
	Allowed Outcome = "allowed"
	// Refused: a TCP RST (ECONNREFUSED), an SCTP ABORT, or an HTTP
	// response with a status of 400 or above.
	Refused Outcome = "refused"
	// Timeout: no answer within the timeout (a dropped packet looks like this).
	Timeout Outcome = "timeout"
	// Unreachable: an ICMP destination unreachable (for UDP: port unreachable).
	Unreachable Outcome = "unreachable"
	// Error: the probe could not run or failed in another way; see Detail.
	Error Outcome = "error"
)

// Result is the outcome of one probe.
type Result struct {
	Outcome Outcome
	// Backend is the name of the server that answered ("" for ICMP: the
	// kernel answers echo requests).
	Backend string
	// SourceSeen is the source address the server saw (invalid for ICMP).
	SourceSeen netip.Addr
	// HTTPStatus is the status of an HTTP probe's response (0 if none).
	HTTPStatus int
	// Elapsed is how long the exchange took.
	Elapsed time.Duration
	// Detail explains the outcome (an error, the ICMP type, ...).
	Detail string
}

// String returns a one-line summary of r.
func (r Result) String() string {
	s := string(r.Outcome)
	if r.Backend != "" {
		s += " backend=" + r.Backend
	}
	if r.SourceSeen.IsValid() {
		s += " src=" + r.SourceSeen.String()
	}
	if r.HTTPStatus != 0 {
		s += fmt.Sprintf(" status=%d", r.HTTPStatus)
	}
	s += " in " + r.Elapsed.Round(time.Millisecond).String()
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s
}

// ErrBadHello is returned when a server's reply is not a hello.
var ErrBadHello = errors.New("malformed server hello")

// helloPrefix starts every server reply.
const helloPrefix = "cilia-traffic "

// hello is the reply a server sends: the prefix, the source address seen and
// the server's name, ended by a newline.
func hello(name string, src netip.Addr) []byte {
	return []byte(helloPrefix + src.Unmap().String() + " " + name + "\n")
}

// parseHello returns the server name and the source address of a hello.
func parseHello(b []byte) (string, netip.Addr, error) {
	s, ok := strings.CutPrefix(string(b), helloPrefix)
	if !ok {
		return "", netip.Addr{}, fmt.Errorf("parse hello %q: %w", b, ErrBadHello)
	}
	s = strings.TrimSuffix(s, "\n")
	addr, name, ok := strings.Cut(s, " ")
	if !ok {
		return "", netip.Addr{}, fmt.Errorf("parse hello %q: %w", b, ErrBadHello)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("parse hello %q: %w", b, ErrBadHello)
	}
	return name, a, nil
}
