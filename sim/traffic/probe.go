package traffic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Probe runs one exchange from the netns at netnsPath to dst and reports
// its outcome: TCP connect and read the server's hello; UDP request and
// reply; SCTP INIT and INIT-ACK; ICMP echo request and reply (dst's port is
// ignored). src, when valid, is the source address bound. The exchange
// ends after timeout or when ctx ends, whichever comes first: no answer is
// Timeout (a dropped packet looks like this); a TCP RST or SCTP ABORT is
// Refused; an ICMP destination unreachable (for UDP a port unreachable) is
// Unreachable. Canceling ctx gives Error.
func Probe(ctx context.Context, netnsPath string, proto Proto, src netip.Addr, dst netip.AddrPort, timeout time.Duration) Result {
	return ProbeFromPort(ctx, netnsPath, proto, src, 0, dst, timeout)
}

// ProbeFromPort is Probe from a fixed source port (0: the kernel picks
// one), for TCP and UDP: a load balancer that hashes the connection's
// 5-tuple sees the same connection again. A TCP probe from a fixed port
// closes with an RST (SO_LINGER 0), so that the port is free at once and
// the next probe from it opens a new connection.
func ProbeFromPort(ctx context.Context, netnsPath string, proto Proto, src netip.Addr, srcPort uint16, dst netip.AddrPort, timeout time.Duration) Result {
	if srcPort != 0 && proto != TCP && proto != UDP {
		return Result{Outcome: Error, Detail: fmt.Sprintf("probe %s: a fixed source port needs TCP or UDP", proto)}
	}
	return runProbe(ctx, src, dst, timeout, func(src netip.Addr, dst netip.AddrPort, deadline time.Time) Result {
		return probe(ctx, netnsPath, proto, netip.AddrPortFrom(src, srcPort), dst, deadline)
	})
}

// runProbe is what every probe shares: the deadline (timeout or ctx's,
// whichever comes first), the checks of the addresses, a cancelled ctx as
// Error rather than Timeout, and the elapsed time. exchange runs the
// probe's packets with the addresses unmapped.
func runProbe(ctx context.Context, src netip.Addr, dst netip.AddrPort, timeout time.Duration,
	exchange func(src netip.Addr, dst netip.AddrPort, deadline time.Time) Result) Result {
	start := time.Now()
	deadline := start.Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	src, dst = src.Unmap(), netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	var r Result
	switch {
	case !dst.Addr().IsValid():
		r = Result{Outcome: Error, Detail: "probe: invalid destination"}
	case src.IsValid() && src.Is4() != dst.Addr().Is4():
		r = Result{Outcome: Error, Detail: fmt.Sprintf("probe: source %s and destination %s differ in family", src, dst.Addr())}
	case ctx.Err() != nil:
		r = Result{Outcome: Error, Detail: ctx.Err().Error()}
	default:
		r = exchange(src, dst, deadline)
	}
	if r.Outcome == Timeout && errors.Is(ctx.Err(), context.Canceled) {
		r = Result{Outcome: Error, Detail: ctx.Err().Error()}
	}
	r.Elapsed = time.Since(start)
	return r
}

// probe dispatches on proto.
func probe(ctx context.Context, netnsPath string, proto Proto, src netip.AddrPort, dst netip.AddrPort, deadline time.Time) Result {
	switch proto {
	case TCP:
		return probeTCP(ctx, netnsPath, src, dst, deadline)
	case UDP:
		return probeUDP(ctx, netnsPath, src, dst, deadline)
	case SCTP:
		return probeSCTP(ctx, netnsPath, src.Addr(), dst, deadline)
	case ICMP:
		return probeICMP(ctx, netnsPath, src.Addr(), dst.Addr(), deadline)
	case HTTP:
		return probeHTTP(ctx, netnsPath, src.Addr(), dst, HTTPRequest{}, deadline)
	}
	return Result{Outcome: Error, Detail: fmt.Sprintf("probe %s: %v", proto, ErrUnknownProto)}
}

// deadliner is a socket with a deadline.
type deadliner interface{ SetDeadline(time.Time) error }

// watch sets c's deadline and moves it to now when ctx ends; the returned
// function stops watching.
func watch(ctx context.Context, c deadliner, deadline time.Time) (stop func() bool, err error) {
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) }), nil
}

// errResult classifies the error of step what. For UDP and SCTP
// ECONNREFUSED is an ICMP port unreachable, so unreachable; for TCP it is
// an RST.
func errResult(proto Proto, what string, err error) Result {
	d := fmt.Sprintf("%s: %v", what, err)
	var errno syscall.Errno
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return Result{Outcome: Timeout, Detail: d}
	case errors.As(err, &errno):
		switch errno {
		case unix.ECONNREFUSED:
			if proto == TCP {
				return Result{Outcome: Refused, Detail: d}
			}
			return Result{Outcome: Unreachable, Detail: d + " (icmp port unreachable)"}
		case unix.ECONNRESET:
			return Result{Outcome: Refused, Detail: d}
		case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ENOPROTOOPT, unix.EPROTO, unix.EACCES:
			return Result{Outcome: Unreachable, Detail: d}
		}
	}
	return Result{Outcome: Error, Detail: d}
}

// socketFile wraps a non-blocking socket fd into a pollable file.
func socketFile(fd int, name string) (*os.File, syscall.RawConn, error) {
	f := os.NewFile(uintptr(fd), name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s socket: %w", name, err)
	}
	return f, rc, nil
}

// probeTCP connects to dst, sends the probe line and reads the server's
// hello.
func probeTCP(ctx context.Context, netnsPath string, src netip.AddrPort, dst netip.AddrPort, deadline time.Time) Result {
	f, stop, fail := dialTCPFrom(ctx, netnsPath, src, dst, deadline)
	if f == nil {
		return fail
	}
	defer f.Close()
	defer stop()
	// The probe line tells the server this is not an HTTP request, so it
	// answers at once (a client that sends nothing gets the hello after
	// helloWait).
	if _, err := f.Write([]byte(probeLine)); err != nil {
		return errResult(TCP, "send tcp probe", err)
	}
	return readHello(TCP, f)
}

// dialTCP connects to dst from the netns at netnsPath. On success it
// returns the connected socket, whose deadline follows deadline and ctx
// until stop is called; on failure a nil file and the result.
func dialTCP(ctx context.Context, netnsPath string, src netip.Addr, dst netip.AddrPort, deadline time.Time) (*os.File, func() bool, Result) {
	return dialTCPFrom(ctx, netnsPath, netip.AddrPortFrom(src, 0), dst, deadline)
}

// dialTCPFrom is dialTCP from src's port when it is not 0 (bound with
// SO_REUSEADDR; the socket closes with an RST, SO_LINGER 0).
func dialTCPFrom(ctx context.Context, netnsPath string, srcAP netip.AddrPort, dst netip.AddrPort, deadline time.Time) (*os.File, func() bool, Result) {
	src := srcAP.Addr()
	fd := -1
	err := inNetns(netnsPath, func() error {
		family := unix.AF_INET
		if dst.Addr().Is6() {
			family = unix.AF_INET6
		}
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fd = -1
			return fmt.Errorf("open tcp socket: %w", err)
		}
		if srcAP.Port() != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return fmt.Errorf("set SO_REUSEADDR: %w", err)
			}
			if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
				return fmt.Errorf("set SO_LINGER: %w", err)
			}
		}
		if src.IsValid() || srcAP.Port() != 0 {
			sa := sockaddr(src)
			if !src.IsValid() {
				sa = sockaddr(netip.IPv4Unspecified())
				if dst.Addr().Is6() {
					sa = sockaddr(netip.IPv6Unspecified())
				}
			}
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				sa.Port = int(srcAP.Port())
			case *unix.SockaddrInet6:
				sa.Port = int(srcAP.Port())
			}
			if err := unix.Bind(fd, sa); err != nil {
				return fmt.Errorf("bind tcp socket to %s: %w", srcAP, err)
			}
		}
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, nil, errResult(TCP, "probe tcp", err)
	}
	f, rc, err := socketFile(fd, "tcp")
	if err != nil {
		return nil, nil, Result{Outcome: Error, Detail: err.Error()}
	}
	stop, err := watch(ctx, f, deadline)
	if err != nil {
		f.Close()
		return nil, nil, Result{Outcome: Error, Detail: err.Error()}
	}

	sa := sockaddr(dst.Addr())
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		sa.Port = int(dst.Port())
	case *unix.SockaddrInet6:
		sa.Port = int(dst.Port())
	}
	started := false
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			cerr = unix.Connect(int(fd), sa)
			return cerr != unix.EINPROGRESS
		}
		// Like the net package: a wake-up is not a connection until
		// SO_ERROR is set or the peer name is known.
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case v != 0:
			cerr = syscall.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false
			}
			cerr = nil
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		stop()
		f.Close()
		return nil, nil, errResult(TCP, "connect tcp", err)
	}
	return f, stop, Result{}
}

// readHello reads a hello ending in a newline (or at EOF) from r.
func readHello(proto Proto, r interface{ Read([]byte) (int, error) }) Result {
	var got []byte
	buf := make([]byte, 512)
	for !bytes.HasSuffix(got, []byte("\n")) && len(got) < 4096 {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if len(got) > 0 {
				break
			}
			return errResult(proto, "read hello", err)
		}
	}
	name, seen, err := parseHello(got)
	if err != nil {
		return Result{Outcome: Error, Detail: err.Error()}
	}
	return Result{Outcome: Allowed, Backend: name, SourceSeen: seen}
}

// probeUDP sends a datagram to dst on a connected socket (so ICMP errors
// are reported) and waits for the reply.
func probeUDP(ctx context.Context, netnsPath string, srcAP netip.AddrPort, dst netip.AddrPort, deadline time.Time) Result {
	var c *net.UDPConn
	src := srcAP.Addr()
	err := inNetns(netnsPath, func() error {
		var laddr net.Addr
		if src.IsValid() || srcAP.Port() != 0 {
			laddr = net.UDPAddrFromAddrPort(srcAP)
		}
		var err error
		d := net.Dialer{LocalAddr: laddr, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				family := unix.AF_INET
				if dst.Addr().Is6() {
					family = unix.AF_INET6
				}
				serr = setRecvErr(int(fd), family)
			}); err != nil {
				return err
			}
			return serr
		}}
		conn, err := d.Dial("udp", dst.String())
		if err != nil {
			return err
		}
		c = conn.(*net.UDPConn)
		return nil
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return errResult(UDP, "probe udp", err)
	}
	defer c.Close()
	stop, err := watch(ctx, c, deadline)
	if err != nil {
		return Result{Outcome: Error, Detail: err.Error()}
	}
	defer stop()
	if _, err := c.Write([]byte("cilia-traffic probe\n")); err != nil {
		return errResult(UDP, "send udp", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return errResult(UDP, "read udp", err)
	}
	name, seen, err := parseHello(buf[:n])
	if err != nil {
		return Result{Outcome: Error, Detail: err.Error()}
	}
	return Result{Outcome: Allowed, Backend: name, SourceSeen: seen}
}

// probeICMP sends an echo request to dst on a raw ICMP socket and waits
// for the reply with its id and sequence, or an ICMP error quoting it.
func probeICMP(ctx context.Context, netnsPath string, src, dst netip.Addr, deadline time.Time) Result {
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	if src.IsValid() {
		laddr = src.String()
	}
	var c *icmp.PacketConn
	err := inNetns(netnsPath, func() error {
		var err error
		c, err = icmp.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return errResult(ICMP, "probe icmp", err)
	}
	defer c.Close()
	stop, err := watch(ctx, c, deadline)
	if err != nil {
		return Result{Outcome: Error, Detail: err.Error()}
	}
	defer stop()
	id, seq := rand.IntN(1<<16), rand.IntN(1<<16)
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("cilia-traffic probe")}}
	wb, err := msg.Marshal(nil) // the kernel computes the ICMPv6 checksum
	if err != nil {
		return Result{Outcome: Error, Detail: fmt.Sprintf("marshal echo: %v", err)}
	}
	if _, err := c.WriteTo(wb, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return errResult(ICMP, "send echo", err)
	}
	buf := make([]byte, 65536)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			return errResult(ICMP, "read echo reply", err)
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		from, _ := netip.AddrFromSlice(peer.(*net.IPAddr).IP)
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == replyType && body.ID == id && body.Seq == seq && from.Unmap() == dst {
				return Result{Outcome: Allowed}
			}
		case *icmp.DstUnreach:
			if quotesEcho(body.Data, dst, id, seq) {
				return Result{Outcome: Unreachable, Detail: fmt.Sprintf("%v code %d from %s", m.Type, m.Code, from.Unmap())}
			}
		case *icmp.TimeExceeded:
			if quotesEcho(body.Data, dst, id, seq) {
				return Result{Outcome: Unreachable, Detail: fmt.Sprintf("%v code %d from %s", m.Type, m.Code, from.Unmap())}
			}
		}
	}
}

// quotesEcho reports whether the packet quoted by an ICMP error is our echo
// request to dst with id and seq.
func quotesEcho(b []byte, dst netip.Addr, id, seq int) bool {
	var inner netip.Addr
	var echo []byte
	if dst.Is4() {
		if len(b) < 20 {
			return false
		}
		ihl := int(b[0]&0x0f) * 4
		if b[9] != 1 || len(b) < ihl+8 {
			return false
		}
		inner = netip.AddrFrom4([4]byte(b[16:20]))
		echo = b[ihl:]
		if echo[0] != byte(ipv4.ICMPTypeEcho) {
			return false
		}
	} else {
		if len(b) < 48 || b[6] != 58 {
			return false
		}
		inner = netip.AddrFrom16([16]byte(b[24:40]))
		echo = b[40:]
		if echo[0] != byte(ipv6.ICMPTypeEchoRequest) {
			return false
		}
	}
	return inner == dst && int(echo[4])<<8|int(echo[5]) == id && int(echo[6])<<8|int(echo[7]) == seq
}
