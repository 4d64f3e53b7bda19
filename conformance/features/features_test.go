package features

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    []Feature
		wantErr bool
	}{
		{"", nil, false},
		{"policy-l4, ipv6", []Feature{IPv6, PolicyL4}, false},
		{"l7", []Feature{L7HTTP, L7Kafka}, false},
		{"l7,l7-http", []Feature{L7HTTP, L7Kafka}, false},
		{"policy-l5", nil, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Parse(%q) error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got.Sorted(), append([]Feature{}, tt.want...)) {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got.Sorted(), tt.want)
		}
	}
}

func TestEveryFeatureInOneProfile(t *testing.T) {
	seen := map[Feature]string{}
	for _, p := range Profiles {
		for _, f := range p.Features {
			if other, dup := seen[f]; dup {
				t.Errorf("%s in profiles %s and %s", f, other, p.Name)
			}
			seen[f] = p.Name
			if got, ok := ProfileOf(f); !ok || got != p.Name {
				t.Errorf("ProfileOf(%s) = %q %v", f, got, ok)
			}
		}
	}
	s := NewSet(PolicyL3, PolicyL4)
	if m := s.Missing([]Feature{PolicyL4, IPv6, PolicyCIDR}); !reflect.DeepEqual(m, []Feature{IPv6, PolicyCIDR}) {
		t.Errorf("Missing = %v", m)
	}
	if in := s.Intersect(NewSet(PolicyL4, IPv6)); !reflect.DeepEqual(in.Sorted(), []Feature{PolicyL4}) {
		t.Errorf("Intersect = %v", in.Sorted())
	}
}
