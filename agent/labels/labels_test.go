package labels

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Label
	}{
		{"k8s:app=web", Label{"k8s", "app", "web"}},
		{"app=web", Label{"unspec", "app", "web"}},
		{"reserved:host", Label{"reserved", "host", ""}},
		{"$world", Label{"reserved", "world", ""}},
		{"k8s:io.kubernetes.pod.namespace=x", Label{"k8s", "io.kubernetes.pod.namespace", "x"}},
		{"cidr:10.0.0.0/8", Label{"cidr", "10.0.0.0/8", ""}},
	}
	for _, tt := range tests {
		if got := Parse(tt.in); got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSplitKey(t *testing.T) {
	tests := []struct{ in, src, key string }{
		{"app", "any", "app"},
		{"k8s:app", "k8s", "app"},
		{"any:io.kubernetes.pod.namespace", "any", "io.kubernetes.pod.namespace"},
		{"reserved:host", "reserved", "host"},
		{"$host", "reserved", "host"},
	}
	for _, tt := range tests {
		if src, key := SplitKey(tt.in); src != tt.src || key != tt.key {
			t.Errorf("SplitKey(%q) = %q %q, want %q %q", tt.in, src, key, tt.src, tt.key)
		}
	}
}

func TestForPodAndCanonicalString(t *testing.T) {
	a := ForPod("x", map[string]string{"pod": "a", "tier": "web"}, map[string]string{"ns": "x"})
	b := ForPod("x", map[string]string{"tier": "web", "pod": "a"}, map[string]string{"ns": "x"})
	if a.String() != b.String() {
		t.Fatalf("same labels, different strings: %q vs %q", a, b)
	}
	want := "k8s:io.cilium.k8s.namespace.labels.ns=x;k8s:io.cilium.k8s.policy.cluster=default;k8s:io.kubernetes.pod.namespace=x;k8s:pod=a;k8s:tier=web"
	if a.String() != want {
		t.Fatalf("String() = %q, want %q", a, want)
	}
	if v, ok := a.Get(SourceAny, "pod"); !ok || v != "a" {
		t.Fatalf("Get(any, pod) = %q %v", v, ok)
	}
	if a.Has(SourceReserved, "pod") {
		t.Fatal("Has(reserved, pod) = true")
	}
	c := ForPod("y", map[string]string{"pod": "a", "tier": "web"}, map[string]string{"ns": "x"})
	if a.String() == c.String() {
		t.Fatal("pods in different namespaces share a label string")
	}
}
