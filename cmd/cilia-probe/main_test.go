package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/traffic"
)

func TestParseListen(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in      string
		want    []traffic.Port
		wantErr bool
	}{
		{"tcp:80,udp:53,sctp:132,http:8080", []traffic.Port{{Proto: traffic.TCP, Port: 80}, {Proto: traffic.UDP, Port: 53}, {Proto: traffic.SCTP, Port: 132}, {Proto: traffic.TCP, Port: 8080}}, false},
		{"", nil, false},
		{"tcp:80,http:80", []traffic.Port{{Proto: traffic.TCP, Port: 80}}, false},
		{"TCP:80", []traffic.Port{{Proto: traffic.TCP, Port: 80}}, false},
		{"tcp", nil, true},
		{"tcp:0", nil, true},
		{"tcp:65536", nil, true},
		{"icmp:1", nil, true},
	}
	for _, c := range cases {
		got, err := ParseListen(c.in)
		if (err != nil) != c.wantErr || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("ParseListen(%q) = %v, %v; want %v (error: %v)", c.in, got, err, c.want, c.wantErr)
		}
		if err != nil && !errors.Is(err, errUsage) {
			t.Errorf("ParseListen(%q): error %v is not a usage error", c.in, err)
		}
	}
}

func TestParseTo(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want netip.AddrPort
		ok   bool
	}{
		{"10.0.0.1:80", netip.MustParseAddrPort("10.0.0.1:80"), true},
		{"[fd00::1]:53", netip.MustParseAddrPort("[fd00::1]:53"), true},
		{"10.0.0.1", netip.MustParseAddrPort("10.0.0.1:0"), true},
		{"fd00::1", netip.MustParseAddrPort("[fd00::1]:0"), true},
		{"host:80", netip.AddrPort{}, false},
		{"", netip.AddrPort{}, false},
	}
	for _, c := range cases {
		got, err := ParseTo(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseTo(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"probe", "--proto", "quic", "--to", "10.0.0.1:80"},
		{"probe", "--proto", "tcp", "--to", "10.0.0.1"},
		{"probe", "--to", "nowhere"},
		{"probe", "--header", "novalue", "--to", "10.0.0.1:80"},
		{"serve", "--listen", "tcp:x"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
		if out.Len() != 0 {
			t.Errorf("run(%q) printed %q on a usage error", args, out.String())
		}
	}
}

// probeBin is the cilia-probe binary built by TestMain (static, as in the
// image).
var probeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cilia-probe-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	probeBin = filepath.Join(dir, "cilia-probe")
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(gobin, "build", "-o", probeBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cilia-probe:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newNetns creates a netns bound to a file of the test's temporary folder,
// unmounted when the test ends.
func newNetns(t *testing.T, name string) (string, *netlink.Handle) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatalf("create netns file: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		ns.Close()
		merr := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			done <- err // stay locked: the thread dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- merr
	}()
	if err := <-done; err != nil {
		t.Fatalf("new netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return path, h
}

var (
	cli4, srv4 = netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")
	cli6, srv6 = netip.MustParseAddr("fd09::1"), netip.MustParseAddr("fd09::2")
)

// newPair returns a client and a server netns joined by a veth.
func newPair(t *testing.T) (client, server string) {
	t.Helper()
	testrun.RequirePrivileges(t)
	client, ch := newNetns(t, "client")
	server, sh := newNetns(t, "server")
	sns, err := netns.GetFromPath(server)
	if err != nil {
		t.Fatal(err)
	}
	defer sns.Close()
	if err := ch.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "c0"}, PeerName: "s0", PeerNamespace: netlink.NsFd(sns)}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h     *netlink.Handle
		link  string
		addrs []string
	}{{ch, "c0", []string{"10.9.0.1/24", "fd09::1/64"}}, {sh, "s0", []string{"10.9.0.2/24", "fd09::2/64"}}} {
		l, err := side.h.LinkByName(side.link)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range side.addrs {
			ip, _ := netlink.ParseAddr(a)
			if ip.IP.To4() == nil {
				ip.Flags = unix.IFA_F_NODAD
			}
			if err := side.h.AddrAdd(l, ip); err != nil {
				t.Fatalf("add %s: %v", a, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		lo, err := side.h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := side.h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
	}
	return client, server
}

// probeFrom runs the binary's probe command in the netns and parses its
// one line of output.
func probeFrom(t *testing.T, ns string, args ...string) traffic.Result {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + ns, probeBin, "probe"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cilia-probe probe %q: %v (stderr: %s)", args, err, stderr.String())
	}
	if n := bytes.Count(out, []byte("\n")); n != 1 {
		t.Fatalf("cilia-probe probe %q printed %d lines, want 1: %q", args, n, out)
	}
	r, err := traffic.ParseResultJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestServeAndProbe runs the binary as a server in one netns and as a
// client in another, like the kube target runs it in two pods.
func TestServeAndProbe(t *testing.T) {
	client, server := newPair(t)
	srv := exec.Command("nsenter", "--net="+server, probeBin, "serve", "--name", "x/a",
		"--listen", "tcp:8080,udp:8080,sctp:8080,http:8081")
	var srvErr bytes.Buffer
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		t.Fatalf("start server: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGKILL)
		<-exited
	})
	// Wait until it listens (and the veth carries IPv6).
	for start := time.Now(); ; {
		r4 := probeFrom(t, client, "--proto", "tcp", "--to", "10.9.0.2:8080", "--timeout", "200ms")
		r6 := probeFrom(t, client, "--proto", "tcp", "--to", "[fd09::2]:8080", "--timeout", "200ms")
		if r4.Outcome == traffic.Allowed && r6.Outcome == traffic.Allowed {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("server not answering after 5s: %s / %s (server stderr: %s)", r4, r6, srvErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cases := []struct {
		args    []string
		want    traffic.Outcome
		backend string
		seen    netip.Addr
		status  int
	}{
		{[]string{"--proto", "tcp", "--to", "10.9.0.2:8080"}, traffic.Allowed, "x/a", cli4, 0},
		{[]string{"--proto", "udp", "--to", "10.9.0.2:8080"}, traffic.Allowed, "x/a", cli4, 0},
		{[]string{"--proto", "sctp", "--to", "10.9.0.2:8080"}, traffic.Allowed, "x/a", cli4, 0},
		{[]string{"--proto", "icmp", "--to", "10.9.0.2"}, traffic.Allowed, "", netip.Addr{}, 0},
		{[]string{"--proto", "http", "--to", "10.9.0.2:8081", "--method", "POST", "--path", "/v1/x", "--header", "X-A=b"}, traffic.Allowed, "x/a", cli4, 200},
		{[]string{"--proto", "http", "--to", "10.9.0.2:8080"}, traffic.Allowed, "x/a", cli4, 200},
		{[]string{"--proto", "tcp", "--to", "[fd09::2]:8081"}, traffic.Allowed, "x/a", cli6, 0},
		{[]string{"--proto", "udp", "--to", "[fd09::2]:8080"}, traffic.Allowed, "x/a", cli6, 0},
		{[]string{"--proto", "http", "--to", "[fd09::2]:8081"}, traffic.Allowed, "x/a", cli6, 200},
		// Nothing serves 9090: a refusal (RST), an ICMP port unreachable,
		// an SCTP ABORT.
		{[]string{"--proto", "tcp", "--to", "10.9.0.2:9090"}, traffic.Refused, "", netip.Addr{}, 0},
		{[]string{"--proto", "udp", "--to", "10.9.0.2:9090"}, traffic.Unreachable, "", netip.Addr{}, 0},
		{[]string{"--proto", "sctp", "--to", "10.9.0.2:9090"}, traffic.Refused, "", netip.Addr{}, 0},
		// Nobody has 10.9.0.77: no answer at all, a timeout.
		{[]string{"--proto", "tcp", "--to", "10.9.0.77:8080", "--timeout", "300ms"}, traffic.Timeout, "", netip.Addr{}, 0},
		{[]string{"--proto", "http", "--to", "10.9.0.77:8080", "--timeout", "300ms"}, traffic.Timeout, "", netip.Addr{}, 0},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.args), func(t *testing.T) {
			r := probeFrom(t, client, c.args...)
			if r.Outcome != c.want || r.Backend != c.backend || r.SourceSeen != c.seen || r.HTTPStatus != c.status {
				t.Fatalf("got %s, want %s backend=%q src=%v status=%d", r, c.want, c.backend, c.seen, c.status)
			}
			if c.want == traffic.Timeout && (r.Elapsed < 300*time.Millisecond || r.Elapsed > time.Second) {
				t.Errorf("timed out after %v, want about 300ms", r.Elapsed)
			}
		})
	}
	// ready checks the ports on loopback: served ones pass, others fail.
	for _, c := range []struct {
		listen string
		ok     bool
	}{{"tcp:8080,udp:8080,sctp:9999,http:8081", true}, {"tcp:9090", false}, {"udp:9090", false}} {
		cmd := exec.Command("nsenter", "--net="+server, probeBin, "ready", "--listen", c.listen)
		out, err := cmd.CombinedOutput()
		if (err == nil) != c.ok {
			t.Errorf("ready --listen %s: %v (%s), want ok=%v", c.listen, err, out, c.ok)
		}
	}
	// SIGTERM stops the server cleanly.
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Errorf("server exited with %v after SIGTERM (stderr: %s)", err, srvErr.String())
		}
	case <-time.After(5 * time.Second):
		t.Errorf("server still running 5s after SIGTERM")
	}
}
