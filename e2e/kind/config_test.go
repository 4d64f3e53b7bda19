package kind

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

func TestConfigV1Alpha4(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		nodes     []v1alpha4.NodeRole
		family    v1alpha4.ClusterIPFamily
		podSubnet string
		proxy     v1alpha4.ProxyMode
		noCNI     bool
	}{
		{
			name:      "single node defaults",
			cfg:       Config{Name: "cilia-a", Image: "img:1"},
			nodes:     []v1alpha4.NodeRole{v1alpha4.ControlPlaneRole},
			family:    v1alpha4.IPv4Family,
			podSubnet: DefaultPodSubnet,
			proxy:     "none",
			noCNI:     true,
		},
		{
			name:      "two workers dual-stack",
			cfg:       Config{Name: "cilia-b", Workers: 2, DualStack: true, Image: "img:1"},
			nodes:     []v1alpha4.NodeRole{v1alpha4.ControlPlaneRole, v1alpha4.WorkerRole, v1alpha4.WorkerRole},
			family:    v1alpha4.DualStackFamily,
			podSubnet: DefaultPodSubnet + "," + DefaultPodSubnet6,
			proxy:     "none",
			noCNI:     true,
		},
		{
			name:      "kindnet and iptables kube-proxy",
			cfg:       Config{Name: "cilia-c", DefaultCNI: true, KubeProxyMode: "iptables"},
			nodes:     []v1alpha4.NodeRole{v1alpha4.ControlPlaneRole},
			family:    v1alpha4.IPv4Family,
			podSubnet: DefaultPodSubnet,
			proxy:     v1alpha4.IPTablesProxyMode,
			noCNI:     false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg.V1Alpha4()
			if c.Name != tt.cfg.Name {
				t.Errorf("name = %q, want %q", c.Name, tt.cfg.Name)
			}
			var roles []v1alpha4.NodeRole
			for _, n := range c.Nodes {
				roles = append(roles, n.Role)
				if n.Image != tt.cfg.Image {
					t.Errorf("node image = %q, want %q", n.Image, tt.cfg.Image)
				}
			}
			if strings.Join(roleStrings(roles), ",") != strings.Join(roleStrings(tt.nodes), ",") {
				t.Errorf("roles = %v, want %v", roles, tt.nodes)
			}
			if c.Networking.IPFamily != tt.family || c.Networking.PodSubnet != tt.podSubnet ||
				c.Networking.KubeProxyMode != tt.proxy || c.Networking.DisableDefaultCNI != tt.noCNI {
				t.Errorf("networking = %+v", c.Networking)
			}
			y, err := tt.cfg.YAML()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"apiVersion: kind.x-k8s.io/v1alpha4", "kind: Cluster", "kubeProxyMode: " + string(tt.proxy)} {
				if !strings.Contains(string(y), want) {
					t.Errorf("YAML lacks %q:\n%s", want, y)
				}
			}
		})
	}
}

func roleStrings(r []v1alpha4.NodeRole) []string {
	s := make([]string, len(r))
	for i := range r {
		s[i] = string(r[i])
	}
	return s
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"cilia-e2e", true},
		{"cilia-e2e-3f9a1c", true},
		{"Cilia", false},
		{"-cilia", false},
		{"cilia_e2e", false},
		{"", false},
		{strings.Repeat("a", 41), false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) error %v is not ErrInvalidName", tt.name, err)
		}
	}
	a, b := UniqueName("cilia-t"), UniqueName("cilia-t")
	if a == b || ValidateName(a) != nil || !strings.HasPrefix(a, "cilia-t-") {
		t.Errorf("UniqueName gave %q and %q", a, b)
	}
}

func TestPTPConflist(t *testing.T) {
	tests := []struct {
		name   string
		cidrs  []string
		routes []string
		err    bool
	}{
		{name: "ipv4", cidrs: []string{"10.244.1.0/24"}, routes: []string{"0.0.0.0/0"}},
		{name: "dual", cidrs: []string{"10.244.0.0/24", "fd00:10:244::/64"}, routes: []string{"0.0.0.0/0", "::/0"}},
		{name: "none", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := PTPConflist(tt.cidrs)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			var conf struct {
				Plugins []struct {
					Type   string `json:"type"`
					IPMasq bool   `json:"ipMasq"`
					IPAM   struct {
						Type   string `json:"type"`
						Ranges [][]struct {
							Subnet string `json:"subnet"`
						} `json:"ranges"`
						Routes []struct {
							Dst string `json:"dst"`
						} `json:"routes"`
					} `json:"ipam"`
				} `json:"plugins"`
			}
			if err := json.Unmarshal(b, &conf); err != nil {
				t.Fatal(err)
			}
			p := conf.Plugins[0]
			if p.Type != "ptp" || p.IPMasq || p.IPAM.Type != "host-local" {
				t.Fatalf("first plugin = %+v", p)
			}
			if len(p.IPAM.Ranges) != len(tt.cidrs) || len(p.IPAM.Routes) != len(tt.routes) {
				t.Fatalf("ranges %v routes %v", p.IPAM.Ranges, p.IPAM.Routes)
			}
			for i, c := range tt.cidrs {
				if p.IPAM.Ranges[i][0].Subnet != c || p.IPAM.Routes[i].Dst != tt.routes[i] {
					t.Errorf("range %d = %v route %v, want %s %s", i, p.IPAM.Ranges[i], p.IPAM.Routes[i], c, tt.routes[i])
				}
			}
		})
	}
}

func TestParseNodesAndPodRoutes(t *testing.T) {
	raw := `{"items":[
	 {"metadata":{"name":"c-control-plane"},"spec":{"podCIDRs":["10.244.0.0/24","fd00:10:244::/64"]},
	  "status":{"addresses":[{"type":"InternalIP","address":"172.18.0.2"},{"type":"InternalIP","address":"fc00:f853::2"},{"type":"Hostname","address":"c-control-plane"}],
	            "conditions":[{"type":"Ready","status":"True"}]}},
	 {"metadata":{"name":"c-worker"},"spec":{"podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"]},
	  "status":{"addresses":[{"type":"InternalIP","address":"172.18.0.3"},{"type":"InternalIP","address":"fc00:f853::3"}],
	            "conditions":[{"type":"Ready","status":"False"}]}}]}`
	ns, err := ParseNodes([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || !ns[0].Ready || ns[1].Ready || len(ns[0].InternalIPs) != 2 {
		t.Fatalf("nodes = %+v", ns)
	}
	routes := PodRoutes(ns)
	want := map[string][]string{
		"c-control-plane": {"route replace 10.244.1.0/24 via 172.18.0.3", "-6 route replace fd00:10:244:1::/64 via fc00:f853::3"},
		"c-worker":        {"route replace 10.244.0.0/24 via 172.18.0.2", "-6 route replace fd00:10:244::/64 via fc00:f853::2"},
	}
	for node, w := range want {
		var got []string
		for _, r := range routes[node] {
			got = append(got, strings.Join(r, " "))
		}
		if strings.Join(got, "|") != strings.Join(w, "|") {
			t.Errorf("routes on %s = %q, want %q", node, got, w)
		}
	}
	if _, err := ParseNodes([]byte("{")); err == nil {
		t.Error("ParseNodes accepted broken JSON")
	}
}
