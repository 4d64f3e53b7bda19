// Package capture records real traffic in a simulated cluster: it builds a
// scenario's cluster with the datapath attached to the real devices (the
// netns conformance target), starts tcpdump in one of its network
// namespaces, runs the scenario's probes as real socket exchanges, and
// stops tcpdump. The result is a real capture of what the datapath did,
// the kind of file an operator brings from a broken cluster, and what
// cilia replay reads.
package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/conformance/target/netns"
	"github.com/ciliaproject/cilia/sim/topology"
)

// Options configure a capture.
type Options struct {
	// At is where tcpdump listens: "pod:NS/NAME" (the pod's eth0, an
	// Ethernet capture) or "node:NAME" (every device of the node,
	// tcpdump -i any: Linux cooked v2).
	At string
	// Out is the pcap file to write.
	Out string
	// Mode is the cluster's routing mode ("" = tunnel).
	Mode topology.Mode
	// Probes, when set, is a regexp over probe IDs: only matching probes
	// run (all steps' mutations still apply in order).
	Probes *regexp.Regexp
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Result says what a capture did.
type Result struct {
	Probes  int
	Allowed int
	Denied  int
}

// Run builds sc's cluster, captures at opts.At while running the probes,
// and writes opts.Out. The cluster is removed when it returns.
func Run(ctx context.Context, sc *scenario.Scenario, opts Options) (res Result, err error) {
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		return res, fmt.Errorf("capture: tcpdump is needed (apt-get install tcpdump): %w", err)
	}
	tg := netns.New()
	if opts.Mode != "" {
		tg = netns.NewWithMode(opts.Mode)
	}
	defer func() {
		if cerr := tg.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("capture: remove cluster: %w", cerr)
		}
	}()
	if err := tg.Setup(ctx, sc); err != nil {
		return res, fmt.Errorf("capture: build cluster of %s: %w", sc.Metadata.Name, err)
	}
	nsName, iface, err := where(tg, opts.At)
	if err != nil {
		return res, err
	}
	dump, err := startTcpdump(ctx, tcpdump, nsName, iface, opts.Out)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := dump.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	for _, st := range sc.Steps {
		if err := tg.Step(ctx, st); err != nil {
			return res, fmt.Errorf("capture: step %d: %w", st.Index, err)
		}
		for _, p := range st.Probes {
			if opts.Probes != nil && !opts.Probes.MatchString(p.ID) {
				continue
			}
			obs, err := tg.Probe(ctx, p)
			if err != nil {
				return res, fmt.Errorf("capture: %w", err)
			}
			res.Probes++
			if obs.Verdict == target.Allowed {
				res.Allowed++
			} else {
				res.Denied++
			}
			fmt.Fprintf(log, "%-60s %s %s\n", p.ID, obs.Verdict, obs.DropReason)
		}
	}
	return res, nil
}

// where resolves an --at value to a network namespace and interface.
func where(tg *netns.Target, at string) (nsName, iface string, err error) {
	kind, name, _ := strings.Cut(at, ":")
	topo := tg.Cluster().Topology
	switch kind {
	case "pod":
		if p := topo.Pods[name]; p != nil {
			return p.Netns, p.Eth0.Name, nil
		}
		return "", "", fmt.Errorf("capture: no pod %s", name)
	case "node":
		if n := topo.Node(name); n != nil {
			return n.Netns, "any", nil
		}
		return "", "", fmt.Errorf("capture: no node %s", name)
	}
	return "", "", fmt.Errorf("capture: --at %q: want pod:NS/NAME or node:NAME", at)
}

// tcpdumpProc is a running tcpdump.
type tcpdumpProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

// startTcpdump starts tcpdump in netns nsName on iface writing out, and
// returns once it listens.
func startTcpdump(ctx context.Context, tcpdump, nsName, iface, out string) (*tcpdumpProc, error) {
	nsFile, err := os.Open(topology.NetnsPath(nsName))
	if err != nil {
		return nil, fmt.Errorf("capture: open netns %s: %w", nsName, err)
	}
	defer nsFile.Close()
	// Full packets, delivered and written as they come (immediate mode:
	// with TPACKET_V3 blocks, packets of a short capture may never reach
	// tcpdump before it is stopped), no name resolution, and no
	// promiscuous mode (the veth sees only its own traffic anyway).
	cmd := exec.Command("nsenter", "--net="+topology.NetnsPath(nsName), tcpdump,
		"--immediate-mode", "-i", iface, "-s", "0", "-U", "-n", "-p", "-w", out)
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(stderr, pw)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("capture: start tcpdump: %w", err)
	}
	p := &tcpdumpProc{cmd: cmd, stderr: stderr, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		pw.Close()
	}()
	// tcpdump says "listening on IFACE" on stderr once it captures.
	listening := make(chan bool, 1)
	go func() {
		buf := make([]byte, 4096)
		var seen []byte
		for {
			n, err := pr.Read(buf)
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte("listening on")) {
				listening <- true
				io.Copy(io.Discard, pr)
				return
			}
			if err != nil {
				listening <- false
				return
			}
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			return nil, fmt.Errorf("capture: tcpdump exited: %s", strings.TrimSpace(stderr.String()))
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("capture: tcpdump did not start listening within 10s")
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, ctx.Err()
	}
	return p, nil
}

// stop lets tcpdump flush and exit.
func (p *tcpdumpProc) stop() error {
	// Packets still in flight (a reply being delivered) get a moment.
	time.Sleep(200 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return fmt.Errorf("capture: tcpdump: %w", err)
		}
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		return errors.New("capture: tcpdump did not exit after SIGINT")
	}
	return nil
}
