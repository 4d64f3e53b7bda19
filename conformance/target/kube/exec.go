package kube

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"path"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// restExecutor runs commands in pods through the API server's exec
// subresource: WebSocket first (Kubernetes 1.30+), SPDY when the server
// refuses the upgrade.
type restExecutor struct{ cfg *rest.Config }

// ExecURL returns the exec URL of a container for cmd on the API server at
// base.
func ExecURL(base *url.URL, namespace, pod, container string, cmd []string) *url.URL {
	u := *base
	u.Path = path.Join(u.Path, "/api/v1/namespaces", namespace, "pods", pod, "exec")
	q := url.Values{}
	for _, c := range cmd {
		q.Add("command", c)
	}
	q.Set("container", container)
	q.Set("stdout", "true")
	q.Set("stderr", "true")
	u.RawQuery = q.Encode()
	return &u
}

// Exec implements Executor.
func (e *restExecutor) Exec(ctx context.Context, namespace, pod, container string, cmd []string) ([]byte, []byte, error) {
	base, _, err := rest.DefaultServerUrlFor(e.cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: server url: %w", err)
	}
	u := ExecURL(base, namespace, pod, container, cmd)
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", u.String())
	if err != nil {
		return nil, nil, fmt.Errorf("exec: websocket executor: %w", err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", u)
	if err != nil {
		return nil, nil, fmt.Errorf("exec: spdy executor: %w", err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("exec: %w", err)
	}
	var stdout, stderr bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.Bytes(), stderr.Bytes(), err
}
