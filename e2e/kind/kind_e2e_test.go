//go:build e2e

package kind

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClusterLifecycle builds (or reuses) the node image, creates a
// two-node cluster with the ptp CNI, loads a local image into it, runs a pod
// on each node and checks their addresses come from their node's pod CIDR,
// that every node reaches every coredns pod over HTTP and routes the other's
// pod CIDR, exports the node logs, then deletes the cluster and checks
// nothing is left. Run with `go test -tags e2e ./e2e/kind/` (as root,
// with docker); it fails, never skips, when docker or kind cannot work.
func TestClusterLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	t.Cleanup(cancel)
	cache := CacheDir()
	mode, needs, err := Setup(ctx, cache)
	if err != nil {
		t.Fatalf("set up host: %v", err)
	}
	t.Logf("mode %s, host workarounds %s", mode, needs)
	image := StockImage
	if mode == Offline {
		if image, err = BuildOfflineImage(ctx, "../../hack/kind-image/build.sh", cache); err != nil {
			t.Fatal(err)
		}
	}
	name := UniqueName(DefaultPrefix + "-test")
	dir := t.TempDir()
	cfg := Config{Name: name, Workers: 1, Image: image, KubeconfigPath: filepath.Join(dir, "kubeconfig")}
	logs := filepath.Join(cache, "kind", name, "logs")
	c, err := Create(ctx, cfg, logs, Logger(0))
	if err != nil {
		t.Fatalf("create cluster (logs in %s): %v", logs, err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			if err := c.Delete(context.Background()); err != nil {
				t.Errorf("delete cluster: %v", err)
			}
		}
	})
	if _, err := os.Stat(cfg.KubeconfigPath); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}

	if err := c.LoadImages(ctx, ProbeImage); err != nil {
		t.Fatalf("load image: %v", err)
	}
	ns, err := c.Nodes()
	if err != nil || len(ns) != 2 {
		t.Fatalf("nodes = %v, %v; want 2", ns, err)
	}
	for _, n := range ns {
		out, err := c.Kubectl(ctx, "get", "--raw", "/readyz")
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("readyz = %q, %v", out, err)
		}
		var b strings.Builder
		if err := n.CommandContext(ctx, "ctr", "--namespace=k8s.io", "images", "ls", "-q").SetStdout(&b).Run(); err != nil {
			t.Fatalf("list images on %s: %v", n, err)
		}
		if !strings.Contains(b.String(), ProbeImage) {
			t.Errorf("%s lacks the loaded image %s:\n%s", n, ProbeImage, b.String())
		}
	}

	// One pause pod pinned to each node.
	out, err := c.Kubectl(ctx, "get", "nodes", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	infos, err := ParseNodes(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, info := range infos {
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "ptp-" + string(rune('a'+i)), "namespace": "default"},
			"spec": map[string]any{
				"nodeName":    info.Name,
				"tolerations": []any{map[string]any{"operator": "Exists"}},
				"containers":  []any{map[string]any{"name": "pause", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "Never"}},
			},
		}
		b, _ := json.Marshal(pod)
		cp, err := c.controlPlane()
		if err != nil {
			t.Fatal(err)
		}
		if err := cp.CommandContext(ctx, "kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "apply", "-f", "-").SetStdin(strings.NewReader(string(b))).Run(); err != nil {
			t.Fatalf("create pod on %s: %v", info.Name, err)
		}
	}
	mustKubectl(t, ctx, c, "wait", "--for=condition=Ready", "pod", "--all", "-n", "default", "--timeout=180s")
	for i, info := range infos {
		ip := strings.TrimSpace(mustKubectl(t, ctx, c, "get", "pod", "-n", "default", "ptp-"+string(rune('a'+i)), "-o", "jsonpath={.status.podIP}"))
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			t.Fatalf("pod on %s has IP %q: %v", info.Name, ip, err)
		}
		prefix := netip.MustParsePrefix(info.PodCIDRs[0])
		if !prefix.Contains(addr) {
			t.Errorf("pod on %s has %s, outside the node's pod CIDR %s", info.Name, addr, prefix)
		}
	}
	// Every node reaches every coredns pod (its /health answers without the
	// API): with two nodes at least one pair crosses nodes over the routes.
	ips := strings.Fields(mustKubectl(t, ctx, c, "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns",
		"-o", "jsonpath={.items[*].status.podIP}"))
	if len(ips) == 0 {
		t.Fatal("no coredns pod has an address")
	}
	for _, n := range ns {
		for _, ip := range ips {
			var b strings.Builder
			err := n.CommandContext(ctx, "curl", "-s", "-m", "5", "http://"+ip+":8080/health").SetStdout(&b).Run()
			if err != nil || strings.TrimSpace(b.String()) != "OK" {
				t.Errorf("%s -> coredns %s: %q, %v", n, ip, b.String(), err)
			}
		}
	}
	for node, routes := range PodRoutes(infos) {
		for _, n := range ns {
			if n.String() != node {
				continue
			}
			var b strings.Builder
			if err := n.CommandContext(ctx, "ip", "route").SetStdout(&b).Run(); err != nil {
				t.Fatal(err)
			}
			for _, r := range routes {
				if !strings.Contains(b.String(), r[2]+" via "+r[4]) {
					t.Errorf("%s lacks route %v:\n%s", node, r, b.String())
				}
			}
		}
	}

	logDir := filepath.Join(dir, "logs")
	if err := c.ExportLogs(logDir); err != nil {
		t.Errorf("export logs: %v", err)
	}
	for _, n := range ns {
		for _, f := range []string{"kubelet.log", "containerd.log", "images.log"} {
			if st, err := os.Stat(filepath.Join(logDir, n.String(), f)); err != nil || st.Size() == 0 {
				t.Errorf("exported logs lack %s/%s: %v", n, f, err)
			}
		}
	}

	if err := c.Delete(ctx); err != nil {
		t.Fatalf("delete cluster: %v", err)
	}
	deleted = true
	left, err := Leftovers(ctx, name)
	if err != nil || len(left) > 0 {
		t.Errorf("leftovers after delete: %v, %v", left, err)
	}
}

func mustKubectl(t *testing.T, ctx context.Context, c *Cluster, args ...string) string {
	t.Helper()
	out, err := c.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
