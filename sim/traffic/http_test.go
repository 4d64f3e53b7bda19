package traffic

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func TestProbeHTTP(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	cases := []struct {
		name    string
		src     netip.Addr
		dst     netip.AddrPort
		req     HTTPRequest
		want    Outcome
		status  int
		backend string
		seen    netip.Addr
	}{
		{"get v4", netip.Addr{}, ap(srv4, testPort), HTTPRequest{}, Allowed, 200, "srv", cli4},
		{"post v6 from alt", cliAlt6, ap(srv6, testPort), HTTPRequest{Method: "POST", Path: "/v1/request-landing",
			Headers: map[string]string{"X-Has-Force": "True"}}, Allowed, 200, "srv", cliAlt6},
		{"closed port", netip.Addr{}, ap(srv4, closedPort), HTTPRequest{}, Refused, 0, "", netip.Addr{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ProbeHTTP(context.Background(), p.client, c.src, c.dst, c.req, probeWait)
			if r.Outcome != c.want || r.HTTPStatus != c.status || r.Backend != c.backend || r.SourceSeen != c.seen {
				t.Fatalf("got %s, want %s status=%d backend=%q src=%v", r, c.want, c.status, c.backend, c.seen)
			}
		})
	}
	// Probe with HTTP is a GET /.
	if r := Probe(context.Background(), p.client, HTTP, netip.Addr{}, ap(srv6, testPort), probeWait); r.Outcome != Allowed || r.HTTPStatus != 200 || r.SourceSeen != cli6 {
		t.Fatalf("Probe(HTTP) = %s, want allowed status=200 src=%s", r, cli6)
	}
}

// TestProbeHTTPStatus checks that an error status is a refusal carrying the
// status (what an L7 proxy's 403 looks like).
func TestProbeHTTPStatus(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	var l net.Listener
	if err := inNetns(p.server, func() (err error) {
		l, err = net.Listen("tcp4", netip.AddrPortFrom(srv4, testPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadString('\n')
			writeHTTP(c, 403, []byte("Access denied\r\n"), "text/plain")
			c.Close()
		}
	}()
	r := ProbeHTTP(context.Background(), p.client, netip.Addr{}, ap(srv4, testPort), HTTPRequest{Method: "PUT", Path: "/x"}, probeWait)
	if r.Outcome != Refused || r.HTTPStatus != 403 || r.Backend != "" {
		t.Fatalf("got %s, want refused status=403 and no backend", r)
	}
}

// TestTCPClientSilent checks that a TCP client that sends nothing (as
// before the probe line existed) still gets the hello, after helloWait.
func TestTCPClientSilent(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.serve(t)
	f, stop, fail := dialTCP(context.Background(), p.client, netip.Addr{}, ap(srv4, testPort), time.Now().Add(3*helloWait))
	if f == nil {
		t.Fatalf("dial: %s", fail)
	}
	defer f.Close()
	defer stop()
	start := time.Now()
	r := readHello(TCP, f)
	if r.Outcome != Allowed || r.Backend != "srv" || r.SourceSeen != cli4 {
		t.Fatalf("got %s, want allowed backend=srv src=%s", r, cli4)
	}
	if d := time.Since(start); d < helloWait/2 {
		t.Errorf("hello after %v, want about %v", d, helloWait)
	}
}

// TestServeCurrentNetns serves on unspecified addresses of both families
// with an empty netns path (as cilia-probe does in a pod) from a thread
// moved into the server's netns.
func TestServeCurrentNetns(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	type started struct {
		s   *Server
		err error
	}
	done := make(chan started, 1)
	go func() {
		// This goroutine's thread stays in the server netns and dies with
		// it (never unlocked), so nothing else runs there.
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(p.server)
		if err != nil {
			done <- started{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			done <- started{err: err}
			return
		}
		s, err := serveHere()
		done <- started{s, err}
	}()
	st := <-done
	if st.err != nil {
		t.Fatalf("serve in the current netns: %v", st.err)
	}
	t.Cleanup(func() { st.s.Close() })
	for _, dst := range []netip.Addr{srv4, srv6} {
		for _, proto := range []Proto{TCP, UDP, HTTP} {
			r := Probe(context.Background(), p.client, proto, netip.Addr{}, ap(dst, testPort), probeWait)
			if r.Outcome != Allowed || r.Backend != "here" {
				t.Errorf("%s to %s: got %s, want allowed backend=here", proto, dst, r)
			}
		}
	}
}

// serveHere serves TCP and UDP on 0.0.0.0 and :: in the current netns.
// Listening sockets keep their netns, so the servers work from any thread.
func serveHere() (*Server, error) {
	return Serve("", "here", []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()},
		[]Port{{TCP, testPort}, {UDP, testPort}})
}
