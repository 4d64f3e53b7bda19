package kind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindcmd "sigs.k8s.io/kind/pkg/cmd"
	"sigs.k8s.io/kind/pkg/log"
)

// ErrLeftovers is returned by Delete when containers, the network or network
// namespaces of the cluster are still there afterwards.
var ErrLeftovers = errors.New("cluster left resources behind")

// ErrNotReady is returned by WaitReady when the cluster does not get ready in
// time.
var ErrNotReady = errors.New("cluster not ready")

// networkEnv is how the kind library is told which docker network to use; a
// network per cluster lets Delete remove it and check nothing else uses it.
const networkEnv = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

// Cluster is a kind cluster created (or found) by this package.
type Cluster struct {
	// Name is the kind cluster name.
	Name string
	// KubeconfigPath is the kubeconfig file written for the cluster.
	KubeconfigPath string
	// Network is the cluster's docker network (named like the cluster).
	Network string

	provider *cluster.Provider
}

// Logger returns the kind library's logger printing to stderr at verbosity v.
func Logger(v int) log.Logger {
	l := kindcmd.NewLogger()
	if s, ok := l.(interface{ SetVerbosity(log.Level) }); ok {
		s.SetVerbosity(log.Level(v))
	}
	return l
}

func newProvider(logger log.Logger) *cluster.Provider {
	if logger == nil {
		logger = log.NoopLogger{}
	}
	return cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(logger))
}

// Open returns the cluster called name, which must exist, with its kubeconfig
// at kubeconfigPath.
func Open(name, kubeconfigPath string, logger log.Logger) (*Cluster, error) {
	p := newProvider(logger)
	names, err := p.List()
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	for _, n := range names {
		if n == name {
			return &Cluster{Name: name, KubeconfigPath: kubeconfigPath, Network: name, provider: p}, nil
		}
	}
	return nil, fmt.Errorf("open cluster %q: no such cluster (have %v)", name, names)
}

// Create creates the cluster cfg describes on its own docker network, writes
// its kubeconfig, installs the ptp baseline CNI unless cfg.DefaultCNI, and
// waits until every node is Ready and the API server answers /readyz. On a
// failure after the nodes exist, it exports logs to logDir (when not empty)
// and deletes the cluster.
func Create(ctx context.Context, cfg Config, logDir string, logger log.Logger) (c *Cluster, err error) {
	if err := ValidateName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.KubeconfigPath == "" {
		return nil, fmt.Errorf("create cluster %q: no kubeconfig path", cfg.Name)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.KubeconfigPath), 0o755); err != nil {
		return nil, fmt.Errorf("create cluster %q: %w", cfg.Name, err)
	}
	prev, hadPrev := os.LookupEnv(networkEnv)
	if err := os.Setenv(networkEnv, cfg.Name); err != nil {
		return nil, fmt.Errorf("create cluster %q: %w", cfg.Name, err)
	}
	defer func() {
		if hadPrev {
			_ = os.Setenv(networkEnv, prev)
		} else {
			_ = os.Unsetenv(networkEnv)
		}
	}()
	c = &Cluster{Name: cfg.Name, KubeconfigPath: cfg.KubeconfigPath, Network: cfg.Name, provider: newProvider(logger)}
	opts := []cluster.CreateOption{
		cluster.CreateWithV1Alpha4Config(cfg.V1Alpha4()),
		cluster.CreateWithKubeconfigPath(cfg.KubeconfigPath),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
		cluster.CreateWithRetain(logDir != ""), // keep failed nodes for their logs
	}
	if cfg.Image != "" {
		opts = append(opts, cluster.CreateWithNodeImage(cfg.Image))
	}
	defer func() {
		if err == nil {
			return
		}
		if logDir != "" {
			if lerr := c.ExportLogs(logDir); lerr != nil {
				err = errors.Join(err, lerr)
			}
		}
		if derr := c.Delete(context.WithoutCancel(ctx)); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	if err := c.provider.Create(cfg.Name, opts...); err != nil {
		return c, fmt.Errorf("create cluster %q: %w", cfg.Name, err)
	}
	if !cfg.DefaultCNI {
		if err := c.InstallPTP(ctx); err != nil {
			return c, err
		}
	}
	if err := c.WaitReady(ctx); err != nil {
		return c, err
	}
	return c, nil
}

// Nodes returns the cluster's node containers.
func (c *Cluster) Nodes() ([]nodes.Node, error) {
	ns, err := c.provider.ListNodes(c.Name)
	if err != nil {
		return nil, fmt.Errorf("list nodes of %q: %w", c.Name, err)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].String() < ns[j].String() })
	return ns, nil
}

func (c *Cluster) controlPlane() (nodes.Node, error) {
	ns, err := c.Nodes()
	if err != nil {
		return nil, err
	}
	cp, err := nodeutils.ControlPlaneNodes(ns)
	if err != nil {
		return nil, fmt.Errorf("find control plane of %q: %w", c.Name, err)
	}
	if len(cp) == 0 {
		return nil, fmt.Errorf("find control plane of %q: no control-plane node", c.Name)
	}
	return cp[0], nil
}

// Kubectl runs kubectl with args inside the control-plane node (admin
// kubeconfig) and returns its standard output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cp, err := c.controlPlane()
	if err != nil {
		return nil, err
	}
	var out, errb bytes.Buffer
	cmd := cp.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig=/etc/kubernetes/admin.conf"}, args...)...)
	cmd.SetStdout(&out).SetStderr(&errb)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("run kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// NodeInfo is what the CNI setup needs to know about a node.
type NodeInfo struct {
	// Name is the Kubernetes node name (the container name).
	Name string
	// PodCIDRs are the node's pod CIDRs, IPv4 first.
	PodCIDRs []string
	// InternalIPs are the node's addresses on the cluster network.
	InternalIPs []string
	// Ready tells whether the node's Ready condition is True.
	Ready bool
}

// ParseNodes reads NodeInfos from `kubectl get nodes -o json` output.
func ParseNodes(b []byte) ([]NodeInfo, error) {
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				PodCIDRs []string `json:"podCIDRs"`
			} `json:"spec"`
			Status struct {
				Addresses []struct {
					Type    string `json:"type"`
					Address string `json:"address"`
				} `json:"addresses"`
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("parse nodes: %w", err)
	}
	var out []NodeInfo
	for _, it := range list.Items {
		n := NodeInfo{Name: it.Metadata.Name, PodCIDRs: it.Spec.PodCIDRs}
		for _, a := range it.Status.Addresses {
			if a.Type == "InternalIP" {
				n.InternalIPs = append(n.InternalIPs, a.Address)
			}
		}
		for _, cond := range it.Status.Conditions {
			if cond.Type == "Ready" {
				n.Ready = cond.Status == "True"
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// PTPConflist returns the CNI configuration of the baseline: Debian's ptp
// plugin with host-local addresses from the node's pod CIDRs (no policy
// enforcement, no masquerading: pods are routed, see PodRoutes).
func PTPConflist(podCIDRs []string) ([]byte, error) {
	if len(podCIDRs) == 0 {
		return nil, errors.New("render ptp conflist: no pod CIDR")
	}
	type rng struct {
		Subnet string `json:"subnet"`
	}
	type route struct {
		Dst string `json:"dst"`
	}
	var ranges [][]rng
	var routes []route
	for _, c := range podCIDRs {
		ranges = append(ranges, []rng{{Subnet: c}})
		if strings.Contains(c, ":") {
			routes = append(routes, route{Dst: "::/0"})
		} else {
			routes = append(routes, route{Dst: "0.0.0.0/0"})
		}
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "cilia-ptp",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false,
				"mtu":    1500,
				"ipam":   map[string]any{"type": "host-local", "ranges": ranges, "routes": routes},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render ptp conflist: %w", err)
	}
	return b, nil
}

// PodRoutes returns, for each node, the `ip route replace` arguments that
// send every other node's pod CIDRs to that node's address of the same
// family.
func PodRoutes(ns []NodeInfo) map[string][][]string {
	out := make(map[string][][]string)
	for _, n := range ns {
		for _, peer := range ns {
			if peer.Name == n.Name {
				continue
			}
			for _, cidr := range peer.PodCIDRs {
				v6 := strings.Contains(cidr, ":")
				for _, ip := range peer.InternalIPs {
					if strings.Contains(ip, ":") != v6 {
						continue
					}
					args := []string{"route", "replace", cidr, "via", ip}
					if v6 {
						args = append([]string{"-6"}, args...)
					}
					out[n.Name] = append(out[n.Name], args)
					break
				}
			}
		}
	}
	return out
}

// InstallPTP writes the ptp baseline conflist into every node (once the
// controller manager has given it a pod CIDR) and adds routes between the
// nodes' pod CIDRs, so pods on different nodes reach each other.
func (c *Cluster) InstallPTP(ctx context.Context) error {
	var infos []NodeInfo
	for {
		out, err := c.Kubectl(ctx, "get", "nodes", "-o", "json")
		if err == nil {
			if infos, err = ParseNodes(out); err != nil {
				return fmt.Errorf("install ptp: %w", err)
			}
			ok := len(infos) > 0
			for _, n := range infos {
				ok = ok && len(n.PodCIDRs) > 0 && len(n.InternalIPs) > 0
			}
			if ok {
				break
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("install ptp: wait for pod CIDRs: %w", ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
	ns, err := c.Nodes()
	if err != nil {
		return fmt.Errorf("install ptp: %w", err)
	}
	byName := make(map[string]nodes.Node, len(ns))
	for _, n := range ns {
		byName[n.String()] = n
	}
	routes := PodRoutes(infos)
	for _, info := range infos {
		node, ok := byName[info.Name]
		if !ok {
			return fmt.Errorf("install ptp: no container for node %q", info.Name)
		}
		conf, err := PTPConflist(info.PodCIDRs)
		if err != nil {
			return fmt.Errorf("install ptp: %w", err)
		}
		if err := nodeutils.WriteFile(node, "/etc/cni/net.d/10-cilia-ptp.conflist", string(conf)); err != nil {
			return fmt.Errorf("install ptp on %s: %w", info.Name, err)
		}
		if err := node.CommandContext(ctx, "sysctl", "-w", "net.ipv4.ip_forward=1").Run(); err != nil {
			return fmt.Errorf("enable forwarding on %s: %w", info.Name, err)
		}
		for _, r := range routes[info.Name] {
			if err := node.CommandContext(ctx, "ip", r...).Run(); err != nil {
				return fmt.Errorf("add pod route %v on %s: %w", r, info.Name, err)
			}
		}
	}
	return nil
}

// WaitReady waits until every node is Ready and the API server answers
// /readyz, or ctx ends (ErrNotReady with the last state).
func (c *Cluster) WaitReady(ctx context.Context) error {
	var last string
	for {
		out, err := c.Kubectl(ctx, "get", "nodes", "-o", "json")
		if err != nil {
			last = err.Error()
		} else if infos, perr := ParseNodes(out); perr != nil {
			last = perr.Error()
		} else {
			var notReady []string
			for _, n := range infos {
				if !n.Ready {
					notReady = append(notReady, n.Name)
				}
			}
			last = fmt.Sprintf("nodes not ready: %v", notReady)
			if len(infos) > 0 && len(notReady) == 0 {
				ready, rerr := c.Kubectl(ctx, "get", "--raw", "/readyz")
				if rerr == nil && strings.TrimSpace(string(ready)) == "ok" {
					return nil
				}
				last = fmt.Sprintf("readyz: %s %v", ready, rerr)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for cluster %q: %w: %s", c.Name, ErrNotReady, last)
		case <-time.After(2 * time.Second):
		}
	}
}

// LoadImages copies locally built docker images into every node's
// containerd (docker save, then ctr import in the node), as `kind load
// docker-image` does.
func (c *Cluster) LoadImages(ctx context.Context, images ...string) error {
	if len(images) == 0 {
		return nil
	}
	dir, err := os.MkdirTemp("", "cilia-kind-load-")
	if err != nil {
		return fmt.Errorf("load images: %w", err)
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "images.tar")
	if out, err := exec.CommandContext(ctx, "docker", append([]string{"save", "-o", archive}, images...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("save images %v: %w: %s", images, err, out)
	}
	ns, err := c.Nodes()
	if err != nil {
		return fmt.Errorf("load images: %w", err)
	}
	for _, n := range ns {
		if err := loadArchive(n, archive); err != nil {
			return fmt.Errorf("load images %v into %s: %w", images, n, err)
		}
	}
	return nil
}

func loadArchive(n nodes.Node, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return nodeutils.LoadImageArchive(n, io.Reader(f))
}

// ExportLogs writes the nodes' logs (journal, containerd, kubelet, pods)
// into dir, as `kind export logs` does.
func (c *Cluster) ExportLogs(dir string) error {
	if err := c.provider.CollectLogs(c.Name, dir); err != nil {
		return fmt.Errorf("export logs of %q: %w", c.Name, err)
	}
	return nil
}

// Delete deletes the cluster, its kubeconfig entry and its docker network,
// then checks (Leftovers) that nothing of it is left: ErrLeftovers lists
// what is.
func (c *Cluster) Delete(ctx context.Context) error {
	if err := c.provider.Delete(c.Name, c.KubeconfigPath); err != nil {
		return fmt.Errorf("delete cluster %q: %w", c.Name, err)
	}
	if networkExists(ctx, c.Network) {
		if out, err := exec.CommandContext(ctx, "docker", "network", "rm", c.Network).CombinedOutput(); err != nil {
			return fmt.Errorf("delete network %q: %w: %s", c.Network, err, out)
		}
	}
	// docker releases a removed container's network namespace a moment
	// later: look again for up to leftoverGrace before calling it left.
	deadline := time.Now().Add(leftoverGrace)
	for {
		left, err := Leftovers(ctx, c.Name)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("delete cluster %q: %w: %s", c.Name, ErrLeftovers, strings.Join(left, "; "))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete cluster %q: %w: %s (%w)", c.Name, ErrLeftovers, strings.Join(left, "; "), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// leftoverGrace is how long Delete waits for docker to release what a
// deleted cluster held.
const leftoverGrace = 90 * time.Second

// Delete deletes the cluster called name (see Cluster.Delete); a cluster
// that does not exist only has its leftovers checked.
func Delete(ctx context.Context, name, kubeconfigPath string, logger log.Logger) error {
	c := &Cluster{Name: name, KubeconfigPath: kubeconfigPath, Network: name, provider: newProvider(logger)}
	return c.Delete(ctx)
}

func networkExists(ctx context.Context, name string) bool {
	return exec.CommandContext(ctx, "docker", "network", "inspect", name).Run() == nil
}

// Leftovers lists what remains of the cluster called name: containers that
// carry its kind label, its docker network, and docker network namespaces
// that no container owns any more.
func Leftovers(ctx context.Context, name string) ([]string, error) {
	var left []string
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+name, "--format", "{{.Names}}").Output()
	if err != nil {
		return nil, fmt.Errorf("list containers of %q: %w", name, err)
	}
	for _, n := range strings.Fields(string(out)) {
		left = append(left, "container "+n)
	}
	if networkExists(ctx, name) {
		left = append(left, "network "+name)
	}
	orphans, err := orphanNetns(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range orphans {
		left = append(left, "netns "+o)
	}
	return left, nil
}

// orphanNetns lists docker's network namespace files (/var/run/docker/netns)
// that belong to no existing container.
func orphanNetns(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir("/var/run/docker/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list docker netns: %w", err)
	}
	ids, err := exec.CommandContext(ctx, "docker", "ps", "-aq").Output()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	owned := map[string]bool{}
	if f := strings.Fields(string(ids)); len(f) > 0 {
		keys, err := exec.CommandContext(ctx, "docker", append([]string{"inspect", "-f", "{{.NetworkSettings.SandboxKey}}"}, f...)...).Output()
		if err != nil {
			return nil, fmt.Errorf("inspect containers: %w", err)
		}
		for _, k := range strings.Fields(string(keys)) {
			owned[filepath.Base(k)] = true
		}
	}
	var orphans []string
	for _, e := range entries {
		// "default" is the host's own namespace; docker keeps it.
		if e.Name() != "default" && !owned[e.Name()] {
			orphans = append(orphans, e.Name())
		}
	}
	return orphans, nil
}
