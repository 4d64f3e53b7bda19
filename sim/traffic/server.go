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
func Serve(netnsPath, name string, addrs []netip.Addr, ports []Port) (*Server, error) {
	key, err := netnsKey(netnsPath)
	if err != nil {
		return nil, err
	}
	s := &Server{name: name, ns: key}
	var sctpPorts []uint16
	for _, p := range ports {
		switch p.Proto {
		case TCP, UDP, ICMP:
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
				switch p.Proto {
				case TCP:
					l, err := lc.Listen(context.Background(), "tcp", ap)
					if err != nil {
						return fmt.Errorf("listen tcp %s: %w", ap, err)
					}
					s.tcp = append(s.tcp, l)
				case UDP:
					c, err := lc.ListenPacket(context.Background(), "udp", ap)
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

// serveTCP accepts connections on l until it is closed, sending each the
// hello and closing it.
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
		src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write(hello(s.name, src))
		_ = c.Close()
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
