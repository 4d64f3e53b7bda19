package traffic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// probeLine is what a TCP probe sends after connecting: it tells the
// server the client is not speaking HTTP, so the hello comes at once.
const probeLine = "cilia-traffic probe\n"

// helloWait is how long a TCP server waits for the client's first line
// before sending the hello anyway (a client that only reads).
const helloWait = time.Second

// HTTPRequest is the request of an HTTP probe; zero values mean GET /.
type HTTPRequest struct {
	Method  string
	Path    string
	Headers map[string]string
}

// HTTPReply is the JSON body a server answers every HTTP request with
// (status 200).
type HTTPReply struct {
	// Name is the server's name.
	Name string `json:"name"`
	// SourceSeen is the source address of the connection as the server
	// saw it.
	SourceSeen string `json:"sourceSeen"`
	// Method and Path echo the request.
	Method string `json:"method"`
	Path   string `json:"path"`
}

// handleTCP answers one connection: an HTTP request (a first line made of
// a method, a target and an HTTP version) gets an HTTP response; anything
// else, or nothing within helloWait, gets the hello.
func (s *Server) handleTCP(c net.Conn) {
	defer c.Close()
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	_ = c.SetDeadline(time.Now().Add(helloWait))
	br := bufio.NewReader(c)
	line, err := br.ReadSlice('\n')
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if err != nil || !isRequestLine(line) {
		_, _ = c.Write(hello(s.name, src))
		return
	}
	// Hand the line back to the request parser.
	req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(bytes.NewReader(line), br)))
	if err != nil {
		writeHTTP(c, http.StatusBadRequest, []byte(err.Error()+"\n"), "text/plain")
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	body, _ := json.Marshal(HTTPReply{Name: s.name, SourceSeen: src.Unmap().String(), Method: req.Method, Path: req.URL.Path})
	writeHTTP(c, http.StatusOK, append(body, '\n'), "application/json")
}

// isRequestLine reports whether line looks like an HTTP/1.x request line.
func isRequestLine(line []byte) bool {
	f := strings.Fields(string(line))
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/1.") {
		return false
	}
	for _, r := range f[0] {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// writeHTTP writes a complete HTTP/1.1 response that closes the connection.
func writeHTTP(w io.Writer, status int, body []byte, contentType string) {
	resp := http.Response{
		StatusCode:    status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {contentType}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Close:         true,
	}
	_ = resp.Write(w)
}

// ProbeHTTP connects to dst from the netns at netnsPath like a TCP probe
// and sends req (GET / by default). An answer with a status below 400 is
// Allowed, one of 400 or above Refused (refused at L7, e.g. 403 from a
// proxy); both carry HTTPStatus, and Backend and SourceSeen when the body
// is a server's HTTPReply. Timeouts and errors are as for Probe.
func ProbeHTTP(ctx context.Context, netnsPath string, src netip.Addr, dst netip.AddrPort, req HTTPRequest, timeout time.Duration) Result {
	return runProbe(ctx, src, dst, timeout, func(src netip.Addr, dst netip.AddrPort, deadline time.Time) Result {
		return probeHTTP(ctx, netnsPath, src, dst, req, deadline)
	})
}

// probeHTTP sends req over a new TCP connection and reads the response.
func probeHTTP(ctx context.Context, netnsPath string, src netip.Addr, dst netip.AddrPort, req HTTPRequest, deadline time.Time) Result {
	method, path := req.Method, req.Path
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	hreq, err := http.NewRequest(method, "http://"+dst.String()+path, nil)
	if err != nil {
		return Result{Outcome: Error, Detail: fmt.Sprintf("http request: %v", err)}
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, "Host") {
			hreq.Host = v
			continue
		}
		hreq.Header.Set(k, v)
	}
	hreq.Header.Set("User-Agent", "cilia-traffic")
	hreq.Close = true
	f, stop, fail := dialTCP(ctx, netnsPath, src, dst, deadline)
	if f == nil {
		return fail
	}
	defer f.Close()
	defer stop()
	if err := hreq.Write(f); err != nil {
		return errResult(TCP, "send http request", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(f), hreq)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Result{Outcome: Refused, Detail: fmt.Sprintf("read http response: %v (connection closed)", err)}
		}
		return errResult(TCP, "read http response", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return errResult(TCP, "read http body", err)
	}
	r := Result{Outcome: Allowed, HTTPStatus: resp.StatusCode}
	if resp.StatusCode >= 400 {
		r.Outcome = Refused
		r.Detail = fmt.Sprintf("http status %d", resp.StatusCode)
	}
	var reply HTTPReply
	if json.Unmarshal(body, &reply) == nil && reply.Name != "" {
		r.Backend = reply.Name
		if a, err := netip.ParseAddr(reply.SourceSeen); err == nil {
			r.SourceSeen = a
		}
	}
	return r
}
