// Command cilia-probe is the program of the probe image the kube
// conformance target runs in every pod (docs/conformance.md, "kube"). It is
// one small static binary with two subcommands:
//
//	cilia-probe serve --name NS/POD --listen tcp:80,udp:53,sctp:132,http:8080
//	cilia-probe probe --proto tcp|udp|sctp|icmp|http --to IP:PORT [--timeout 2s]
//	                  [--method GET --path / --header K=V ...]
//
// serve answers on every listed port of every address of the pod
// (sim/traffic's servers): TCP, UDP and SCTP replies carry the server's
// name and the source address it saw, and a TCP port (tcp: and http: are
// the same) also answers HTTP requests with 200 and a JSON body holding
// both. It runs until SIGTERM or SIGINT.
//
// probe makes one exchange and prints one JSON line (traffic.ResultJSON):
//
//	{"outcome":"allowed|refused|timeout|unreachable|error","backend":"..",
//	 "sourceSeen":"..","httpStatus":200,"elapsedMs":3,"detail":".."}
//
// It exits 0 whenever it printed a result (whatever the outcome), 2 on a
// usage error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ciliaproject/cilia/sim/traffic"
)

// errUsage marks a command line that cannot be run.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "cilia-probe:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "cilia-probe:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  cilia-probe serve --name NS/POD --listen tcp:80,udp:53,sctp:132,http:8080
  cilia-probe ready --listen tcp:80,udp:53     (exit 0 when serve answers on them)
  cilia-probe probe --proto tcp|udp|sctp|icmp|http --to IP:PORT [--timeout 2s] [--from IP]
                    [--method GET] [--path /] [--header K=V]...`

// run runs the command line args.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command\n%s", errUsage, usage)
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "probe":
		return probe(ctx, args[1:], stdout, stderr)
	case "ready":
		return ready(ctx, args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("%w: unknown command %q\n%s", errUsage, args[0], usage)
}

// ParseListen reads a --listen list: comma-separated PROTO:PORT with PROTO
// one of tcp, udp, sctp, http (HTTP is served on a TCP port).
func ParseListen(s string) ([]traffic.Port, error) {
	var out []traffic.Port
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		proto, port, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("%w: listen %q: want PROTO:PORT", errUsage, item)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: listen %q: bad port", errUsage, item)
		}
		p := traffic.Port{Port: uint16(n)}
		switch strings.ToLower(proto) {
		case "tcp", "http":
			p.Proto = traffic.TCP
		case "udp":
			p.Proto = traffic.UDP
		case "sctp":
			p.Proto = traffic.SCTP
		default:
			return nil, fmt.Errorf("%w: listen %q: unknown protocol %q", errUsage, item, proto)
		}
		dup := false
		for _, q := range out {
			dup = dup || q == p
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out, nil
}

// serve runs the servers until ctx ends.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "name the replies carry (the pod's NS/NAME)")
	listen := fs.String("listen", "", "ports to serve: tcp:80,udp:53,sctp:132,http:8080")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *name == "" {
		h, _ := os.Hostname()
		*name = h
	}
	ports, err := ParseListen(*listen)
	if err != nil {
		return err
	}
	addrs := []netip.Addr{netip.IPv4Unspecified()}
	if ipv6Available() {
		addrs = append(addrs, netip.IPv6Unspecified())
	}
	s, err := traffic.Serve("", *name, addrs, ports)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stderr, "cilia-probe: %s serving %v on %v\n", *name, ports, addrs)
	<-ctx.Done()
	return nil
}

// errNotReady is ready's error when a port does not answer.
var errNotReady = errors.New("not ready")

// ready checks that every TCP and UDP port of --listen answers on
// 127.0.0.1 (a readiness probe: loopback is never subject to policies);
// SCTP ports are not checked.
func ready(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("ready", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "ports serve listens on")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ports, err := ParseListen(*listen)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if p.Proto == traffic.SCTP {
			continue
		}
		r := traffic.Probe(ctx, "", p.Proto, netip.Addr{}, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p.Port), time.Second)
		if r.Outcome != traffic.Allowed {
			return fmt.Errorf("%s: %s: %w", p, r, errNotReady)
		}
	}
	return nil
}

// ipv6Available reports whether this netns can listen on IPv6.
func ipv6Available() bool {
	l, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// headerFlags collects repeated --header K=V.
type headerFlags map[string]string

// String implements flag.Value.
func (h headerFlags) String() string { return fmt.Sprint(map[string]string(h)) }

// Set implements flag.Value: it adds one K=V header.
func (h headerFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("header %q: want K=V", v)
	}
	h[k] = val
	return nil
}

// ParseTo reads a probe destination: IP:PORT, [IPv6]:PORT, or a bare IP
// (for ICMP).
func ParseTo(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: --to %q: want IP:PORT", errUsage, s)
	}
	return netip.AddrPortFrom(a, 0), nil
}

// probe runs one probe and prints its result.
func probe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proto := fs.String("proto", "tcp", "tcp, udp, sctp, icmp or http")
	to := fs.String("to", "", "destination IP:PORT")
	from := fs.String("from", "", "source address to bind (default: the kernel's choice)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for an answer")
	method := fs.String("method", "", "HTTP method (default GET)")
	path := fs.String("path", "", "HTTP path (default /)")
	headers := headerFlags{}
	fs.Var(headers, "header", "HTTP header K=V (repeatable)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	dst, err := ParseTo(*to)
	if err != nil {
		return err
	}
	var src netip.Addr
	if *from != "" {
		if src, err = netip.ParseAddr(*from); err != nil {
			return fmt.Errorf("%w: --from %q: %v", errUsage, *from, err)
		}
	}
	p := traffic.Proto(strings.ToUpper(*proto))
	var r traffic.Result
	switch p {
	case traffic.HTTP:
		r = traffic.ProbeHTTP(ctx, "", src, dst, traffic.HTTPRequest{Method: *method, Path: *path, Headers: headers}, *timeout)
	case traffic.TCP, traffic.UDP, traffic.SCTP, traffic.ICMP:
		if p != traffic.ICMP && dst.Port() == 0 {
			return fmt.Errorf("%w: --to %q: %s needs a port", errUsage, *to, p)
		}
		r = traffic.Probe(ctx, "", p, src, dst, *timeout)
	default:
		return fmt.Errorf("%w: --proto %q: want tcp, udp, sctp, icmp or http", errUsage, *proto)
	}
	b, err := json.Marshal(r.JSON())
	if err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}
