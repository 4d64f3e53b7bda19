package traffic

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrUnknownProto is returned for a protocol a server or probe does not speak.
var ErrUnknownProto = errors.New("unknown protocol")

// Server is a set of servers in one netns, started by Serve.
type Server struct {
	name    string
	ns      nsKey
	tcp     []net.Listener
	udp     []*net.UDPConn
	sctp    []*rawSCTP
	served  []netip.AddrPort // SCTP addresses and ports, in the registry
	wg      sync.WaitGroup
	once    sync.Once
	closeEr error
}

// Serve starts servers inside the netns at netnsPath (like
// /var/run/netns/NAME) on every address of addrs: a TCP listener and a UDP
// responder per TCP and UDP port, and an SCTP responder (a raw socket per
// address) answering INITs to the SCTP ports with an INIT-ACK and INITs to
// other ports with an ABORT. ICMP ports are ignored: the kernel answers
// echo requests. Every reply carries name and the source address seen.
// A TCP (or HTTP: the same) server also answers HTTP requests on the same
// port, with 200 and a JSON body (see HTTPReply). An empty netnsPath
// serves in the current netns; unspecified addresses (0.0.0.0, ::) serve
// every address of their family.
func Serve(netnsPath, name string, addrs []netip.Addr, ports []Port) (*Server, error) {
	key, err := netnsKey(netnsPath)
	if err != nil {
		return nil, err
	}
	s := &Server{name: name, ns: key}
	var sctpPorts []uint16
	for _, p := range ports {
		switch p.Proto {
		case TCP, UDP, ICMP, HTTP:
		case SCTP:
			sctpPorts = append(sctpPorts, p.Port)
		default:
			return nil, fmt.Errorf("serve %s: %w", p, ErrUnknownProto)
		}
	}
	err = inNetns(netnsPath, func() error {
		var lc net.ListenConfig
		for _, a := range addrs {
			a = a.Unmap()
			for _, p := range ports {
				ap := netip.AddrPortFrom(a, p.Port).String()
				// tcp4/tcp6: an unspecified IPv6 address then serves only
				// IPv6, so 0.0.0.0 and :: can be served together.
				v := "4"
				if a.Is6() {
					v = "6"
				}
				switch p.Proto {
				case TCP, HTTP:
					l, err := lc.Listen(context.Background(), "tcp"+v, ap)
					if err != nil {
						return fmt.Errorf("listen tcp %s: %w", ap, err)
					}
					s.tcp = append(s.tcp, l)
				case UDP:
					c, err := lc.ListenPacket(context.Background(), "udp"+v, ap)
					if err != nil {
						return fmt.Errorf("listen udp %s: %w", ap, err)
					}
					s.udp = append(s.udp, c.(*net.UDPConn))
				}
			}
			if len(sctpPorts) > 0 {
				r, err := openRawSCTP(a, netip.Addr{})
				if err != nil {
					return fmt.Errorf("listen sctp %s: %w", a, err)
				}
				s.sctp = append(s.sctp, r)
			}
		}
		return nil
	})
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("serve %s in %s: %w", name, netnsPath, err)
	}
	var served []netip.AddrPort
	for _, a := range addrs {
		for _, p := range sctpPorts {
			served = append(served, netip.AddrPortFrom(a.Unmap(), p))
		}
	}
	if err := registerSCTP(key, served); err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("serve %s in %s: %w", name, netnsPath, err)
	}
	s.served = served
	for _, l := range s.tcp {
		s.wg.Go(func() { s.serveTCP(l) })
	}
	for _, c := range s.udp {
		s.wg.Go(func() { s.serveUDP(c) })
	}
	for _, r := range s.sctp {
		s.wg.Go(func() { s.serveSCTP(r, sctpPorts) })
	}
	return s, nil
}

// Name returns the name the server answers with.
func (s *Server) Name() string { return s.name }

// Close stops the servers' goroutines and closes their sockets. It is
// idempotent: later calls return the first call's result.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.closeEr = s.closeSockets()
		s.wg.Wait()
		unregisterSCTP(s.ns, s.served)
	})
	return s.closeEr
}

// closeSockets closes every socket of s and returns the first error.
func (s *Server) closeSockets() error {
	var errs []error
	for _, l := range s.tcp {
		errs = append(errs, l.Close())
	}
	for _, c := range s.udp {
		errs = append(errs, c.Close())
	}
	for _, r := range s.sctp {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

// serveTCP accepts connections on l until it is closed, answering each
// (see handleTCP) on a goroutine of its own.
func (s *Server) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.wg.Go(func() { s.handleTCP(c) })
	}
}

// serveUDP answers every datagram on c with the hello until c is closed.
func (s *Server) serveUDP(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED left by an earlier reply
		}
		_, _ = c.WriteToUDPAddrPort(hello(s.name, from.Addr()), from)
	}
}
