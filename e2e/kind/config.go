// Package kind creates and deletes the kind clusters of cilia's end-to-end
// tests with the sigs.k8s.io/kind Go library: the cluster configuration (node
// count, no default CNI, kube-proxy off, optional dual-stack), a per-cluster
// docker network, the baseline ptp CNI, loading locally built images, exporting
// logs, and deletion that checks nothing is left behind. It also detects the
// host workarounds an offline, unprivileged docker needs (see host.go) and
// picks the node image (see image.go). docs/e2e.md describes the whole flow.
package kind

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

// DefaultPrefix is the name prefix of every cluster this package creates, so
// that cilia's clusters are told from others and runs do not collide.
const DefaultPrefix = "cilia"

// Default subnets of the clusters (kind's defaults, IPv6 ones for dual-stack).
const (
	DefaultPodSubnet      = "10.244.0.0/16"
	DefaultServiceSubnet  = "10.96.0.0/16"
	DefaultPodSubnet6     = "fd00:10:244::/56"
	DefaultServiceSubnet6 = "fd00:10:96::/112"
)

// ErrInvalidName is returned for a cluster name kind or docker would refuse.
var ErrInvalidName = errors.New("invalid cluster name")

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateName checks that name can name a kind cluster, its docker network
// and its node containers ("NAME-control-plane", "NAME-worker2").
func ValidateName(name string) error {
	if len(name) > 40 || !nameRE.MatchString(name) {
		return fmt.Errorf("validate name %q: %w (want lowercase letters, digits and '-', at most 40)", name, ErrInvalidName)
	}
	return nil
}

// UniqueName returns prefix followed by a random suffix ("cilia-e2e-3f9a1c"),
// for test runs that must not collide with each other.
func UniqueName(prefix string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return prefix + "-" + hex.EncodeToString(b)
}

// Config describes one cluster.
type Config struct {
	// Name is the cluster name; also the name of its docker network.
	Name string
	// Workers is the number of worker nodes besides the control plane.
	Workers int
	// DualStack gives the cluster IPv4 and IPv6 pod and service subnets.
	DualStack bool
	// Image is the node image; empty means kind's default (online only).
	Image string
	// KubeconfigPath is where the cluster's kubeconfig is written.
	KubeconfigPath string
	// KubeProxyMode is kube-proxy's mode; empty means "none" (no kube-proxy:
	// the offline node image has no iptables in its kube-proxy image).
	KubeProxyMode string
	// DefaultCNI keeps kind's kindnet; false (the default) installs no CNI
	// and Create writes the ptp baseline instead.
	DefaultCNI bool
}

// V1Alpha4 returns the kind cluster configuration for c.
func (c Config) V1Alpha4() *v1alpha4.Cluster {
	cl := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     c.Name,
	}
	cl.Nodes = append(cl.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: c.Image})
	for range c.Workers {
		cl.Nodes = append(cl.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: c.Image})
	}
	mode := c.KubeProxyMode
	if mode == "" {
		mode = "none"
	}
	cl.Networking = v1alpha4.Networking{
		IPFamily:          v1alpha4.IPv4Family,
		PodSubnet:         DefaultPodSubnet,
		ServiceSubnet:     DefaultServiceSubnet,
		DisableDefaultCNI: !c.DefaultCNI,
		KubeProxyMode:     v1alpha4.ProxyMode(mode),
	}
	if c.DualStack {
		cl.Networking.IPFamily = v1alpha4.DualStackFamily
		cl.Networking.PodSubnet = DefaultPodSubnet + "," + DefaultPodSubnet6
		cl.Networking.ServiceSubnet = DefaultServiceSubnet + "," + DefaultServiceSubnet6
	}
	return cl
}

// YAML renders c as a kind configuration file (what `kind create cluster
// --config` reads), for logs and for reproducing a run by hand.
func (c Config) YAML() ([]byte, error) {
	b, err := yaml.Marshal(c.V1Alpha4())
	if err != nil {
		return nil, fmt.Errorf("marshal kind config: %w", err)
	}
	return b, nil
}
