package exec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ciliaproject/cilia/conformance/driver"
)

// stderrLines is how many of the driver's last stderr lines an error
// quotes.
const stderrLines = 5

// maxLine bounds one response line (a probe's flows can be large).
const maxLine = 64 << 20

// process is one running driver and the JSON-RPC session with it. Calls
// are sequential.
type process struct {
	argv    []string
	cmd     *osexec.Cmd
	stdin   io.WriteCloser
	lines   chan []byte // response lines; closed when stdout ends
	exited  chan struct{}
	exitErr error // set before exited is closed: cmd.Wait's result
	stderr  *tailWriter
	nextID  int
	timeout time.Duration

	// dead is why the session is over (crash, hang, garbage): every later
	// call fails with it without talking to the driver.
	dead error
}

// start starts the driver.
func start(argv []string, timeout time.Duration) (*process, error) {
	cmd := osexec.Command(argv[0], argv[1:]...)
	// Its own process group, so that killing a hung driver kills what it
	// started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{argv: argv, cmd: cmd, lines: make(chan []byte, 1), exited: make(chan struct{}),
		stderr: &tailWriter{fwd: os.Stderr, prefix: "driver: "}, timeout: timeout}
	cmd.Stderr = p.stderr
	cmd.WaitDelay = 2 * time.Second
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start driver: %w", err)
	}
	go func() {
		r := bufio.NewReaderSize(stdout, 1<<16)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				p.lines <- line
			}
			if err != nil || len(line) > maxLine {
				break
			}
		}
		close(p.lines)
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// call sends a request and decodes the result into res (nil: ignored).
// The error does not name the method or the target: the caller adds them.
func (p *process) call(ctx context.Context, method string, params, res any) error {
	if p.dead != nil {
		return fmt.Errorf("not sent, the driver failed earlier: %w", p.dead)
	}
	p.nextID++
	id := p.nextID
	req, err := driver.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      int    `json:"id"`
		Method  string `json:"method"`
		Params  any    `json:"params,omitempty"`
	}{"2.0", id, method, params})
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	if _, err := p.stdin.Write(append(req, '\n')); err != nil {
		// The driver closed its stdin: it is exiting or gone.
		return p.fail(p.gone(fmt.Sprintf("could not send the request (%v)", err)))
	}
	var line []byte
	select {
	case l, ok := <-p.lines:
		if !ok {
			return p.fail(p.gone("without answering"))
		}
		line = l
	case <-timer.C:
		p.kill()
		return p.fail(fmt.Errorf("no answer within %s (the time limit per call, %s); the driver was killed%s", p.timeout, TimeoutEnv, p.stderr.tail()))
	case <-ctx.Done():
		p.kill()
		return p.fail(fmt.Errorf("no answer before the context ended (%v); the driver was killed%s", ctx.Err(), p.stderr.tail()))
	}
	var resp struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  json.RawMessage `json:"result"`
		Error   *driver.Error   `json:"error"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		p.kill()
		return p.fail(fmt.Errorf("driver answered garbage, not a JSON object (%v): %s", err, quote(line)))
	}
	if resp.JSONRPC != "2.0" {
		p.kill()
		return p.fail(fmt.Errorf(`driver answered garbage, not a JSON-RPC 2.0 response (no "jsonrpc": "2.0"): %s`, quote(line)))
	}
	gotID := string(bytes.TrimSpace(resp.ID))
	if gotID != strconv.Itoa(id) {
		if resp.Error != nil && (gotID == "null" || gotID == "") {
			// The driver could not read our request: an answer, but to
			// no request in particular.
			return fmt.Errorf("%w (answered with id null)", resp.Error)
		}
		p.kill()
		return p.fail(fmt.Errorf("driver answered id %s, want %d: %s", orNone(gotID), id, quote(line)))
	}
	if resp.Error != nil {
		return resp.Error
	}
	if len(resp.Result) == 0 || string(resp.Result) == "null" {
		return fmt.Errorf("driver answered with neither result nor error: %s", quote(line))
	}
	if res != nil {
		if err := json.Unmarshal(resp.Result, res); err != nil {
			return fmt.Errorf("driver answered a malformed result (%v): %s", err, quote(line))
		}
	}
	return nil
}

// fail marks the session dead with err and returns it.
func (p *process) fail(err error) error {
	p.dead = err
	return err
}

// gone describes a driver whose stdout ended: it waits (briefly) for the
// exit status.
func (p *process) gone(what string) error {
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.kill()
		<-p.exited
		return fmt.Errorf("driver closed its stdout %s and did not exit; it was killed%s", what, p.stderr.tail())
	}
	return fmt.Errorf("driver %s %s%s", exitText(p.exitErr), what, p.stderr.tail())
}

// exitText describes how a process ended from cmd.Wait's error.
func exitText(err error) string {
	var ee *osexec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("was killed (signal %s)", ws.Signal())
		}
		return fmt.Sprintf("exited (status %d)", ee.ExitCode())
	}
	if err != nil {
		return fmt.Sprintf("ended (%v)", err)
	}
	return "exited (status 0)"
}

// kill kills the driver's process group.
func (p *process) kill() {
	go p.drain()
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Process.Kill()
	}
}

// drain discards what the driver still writes, so that the reader
// reaches the end of stdout and collects the exit status.
func (p *process) drain() {
	for range p.lines {
	}
}

// stop ends the session: it closes the driver's stdin and waits for it to
// exit, killing it after the timeout. It returns the exit status as an
// error when the driver failed.
func (p *process) stop() error {
	go p.drain()
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(p.timeout):
		p.kill()
		<-p.exited
		return fmt.Errorf("driver did not exit within %s after its stdin closed; it was killed", p.timeout)
	}
	if p.exitErr != nil && p.dead == nil {
		return fmt.Errorf("driver %s%s", exitText(p.exitErr), p.stderr.tail())
	}
	return nil
}

func quote(line []byte) string {
	s := strings.TrimSpace(string(line))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.Quote(s)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// tailWriter forwards the driver's stderr (prefixed, line by line) and
// keeps its last lines for error messages.
type tailWriter struct {
	mu      sync.Mutex
	fwd     io.Writer
	prefix  string
	partial []byte
	last    []string
}

func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.add(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(b), nil
}

func (w *tailWriter) add(line string) {
	if w.fwd != nil && !Quiet {
		fmt.Fprintf(w.fwd, "%s%s\n", w.prefix, line)
	}
	w.last = append(w.last, line)
	if len(w.last) > stderrLines {
		w.last = w.last[len(w.last)-stderrLines:]
	}
}

// tail formats the last stderr lines for an error message.
func (w *tailWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := append([]string(nil), w.last...)
	if len(w.partial) > 0 {
		lines = append(lines, string(w.partial))
		if len(lines) > stderrLines {
			lines = lines[len(lines)-stderrLines:]
		}
	}
	if len(lines) == 0 {
		return "; it wrote nothing to stderr"
	}
	return "; last stderr lines:\n    " + strings.Join(lines, "\n    ")
}
