package load

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"sync"

	crdv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/client/crds/v2"
	"go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// schema is the part of an OpenAPI v3 structural schema that the API
// server checks when it decodes an object: types, the fields that
// exist (others are pruned), enums, patterns, formats, bounds, required
// fields and the oneOf/anyOf constraints Cilium's CRDs use (each branch
// only lists required fields).
type schema struct {
	Type            string // object, array, string, integer, number, boolean; "" accepts anything
	IntOrString     bool
	Properties      map[string]*schema
	Additional      *schema // the values of a map
	PreserveUnknown bool
	Items           *schema
	Enum            []string
	Pattern         *regexp.Regexp
	Format          string
	Minimum         *float64
	Maximum         *float64
	MinLength       *int
	MaxLength       *int
	MaxItems        *int
	Required        []string
	OneOf           [][]string // exactly one of these sets of fields must be present
	AnyOf           [][]string // at least one
	Nullable        bool
}

// isSelector reports whether s is a label selector (matchLabels and
// matchExpressions).
func (s *schema) isSelector() bool {
	return s.Properties["matchLabels"] != nil && s.Properties["matchExpressions"] != nil
}

// acceptsAnything reports whether s puts no constraint on a value.
func (s *schema) acceptsAnything() bool {
	return s.Type == "" && !s.IntOrString && s.Properties == nil && s.Items == nil && s.Additional == nil
}

// openAPI is an OpenAPI v3 schema as written in a CRD.
type openAPI struct {
	Type                 string              `yaml:"type"`
	Format               string              `yaml:"format"`
	Pattern              string              `yaml:"pattern"`
	Enum                 []string            `yaml:"enum"`
	Minimum              *float64            `yaml:"minimum"`
	Maximum              *float64            `yaml:"maximum"`
	MinLength            *int                `yaml:"minLength"`
	MaxLength            *int                `yaml:"maxLength"`
	MaxItems             *int                `yaml:"maxItems"`
	Required             []string            `yaml:"required"`
	Nullable             bool                `yaml:"nullable"`
	Properties           map[string]*openAPI `yaml:"properties"`
	AdditionalProperties yaml.Node           `yaml:"additionalProperties"`
	Items                *openAPI            `yaml:"items"`
	OneOf                []openAPI           `yaml:"oneOf"`
	AnyOf                []openAPI           `yaml:"anyOf"`
	IntOrString          bool                `yaml:"x-kubernetes-int-or-string"`
	PreserveUnknown      bool                `yaml:"x-kubernetes-preserve-unknown-fields"`
}

// crd is the part of a CustomResourceDefinition read here.
type crd struct {
	Spec struct {
		Versions []struct {
			Name   string `yaml:"name"`
			Served bool   `yaml:"served"`
			Schema struct {
				OpenAPIV3Schema *openAPI `yaml:"openAPIV3Schema"`
			} `yaml:"schema"`
		} `yaml:"versions"`
	} `yaml:"spec"`
}

// compile turns a CRD schema into a schema.
func (o *openAPI) compile() (*schema, error) {
	s := &schema{
		Type: o.Type, IntOrString: o.IntOrString, Enum: o.Enum, Format: o.Format,
		Minimum: o.Minimum, Maximum: o.Maximum, MinLength: o.MinLength, MaxLength: o.MaxLength,
		MaxItems: o.MaxItems, Required: o.Required, Nullable: o.Nullable, PreserveUnknown: o.PreserveUnknown,
	}
	if o.Pattern != "" {
		re, err := regexp.Compile(o.Pattern)
		if err != nil {
			return nil, fmt.Errorf("compile pattern %q: %w", o.Pattern, err)
		}
		s.Pattern = re
	}
	if len(o.Properties) > 0 {
		s.Properties = map[string]*schema{}
		for name, p := range o.Properties {
			ps, err := p.compile()
			if err != nil {
				return nil, err
			}
			s.Properties[name] = ps
		}
	}
	if o.AdditionalProperties.Kind == yaml.MappingNode {
		var ap openAPI
		if err := o.AdditionalProperties.Decode(&ap); err != nil {
			return nil, fmt.Errorf("decode additionalProperties: %w", err)
		}
		as, err := ap.compile()
		if err != nil {
			return nil, err
		}
		s.Additional = as
	}
	if o.Items != nil {
		is, err := o.Items.compile()
		if err != nil {
			return nil, err
		}
		s.Items = is
	}
	for _, b := range o.OneOf {
		if len(b.Required) > 0 {
			s.OneOf = append(s.OneOf, b.Required)
		}
	}
	for _, b := range o.AnyOf {
		if len(b.Required) > 0 {
			s.AnyOf = append(s.AnyOf, b.Required)
		}
	}
	return s, nil
}

// crdFiles are the CRDs embedded in Cilium's module, by kind.
var crdFiles = map[Kind]string{
	KindCNP:  "ciliumnetworkpolicies.yaml",
	KindCCNP: "ciliumclusterwidenetworkpolicies.yaml",
}

// schemas caches the schema of each kind.
var schemas struct {
	once  sync.Once
	byKey map[Kind]*schema
	err   error
}

// schemaFor returns the schema of a policy kind: Cilium's CRD schema
// (served version v2) for CNP and CCNP, with metadata as ObjectMeta and
// cilia's extensions (see extendL7Rules); the Go types for NetworkPolicy.
func schemaFor(k Kind) (*schema, error) {
	schemas.once.Do(func() {
		schemas.byKey = map[Kind]*schema{}
		meta := reflectSchema(reflect.TypeFor[metav1.ObjectMeta](), map[reflect.Type]*schema{})
		for kind, file := range crdFiles {
			s, err := loadCRDSchema(file)
			if err != nil {
				schemas.err = err
				return
			}
			s.Properties["metadata"] = meta
			extendL7Rules(s)
			schemas.byKey[kind] = s
		}
		schemas.byKey[KindKNP] = reflectSchema(reflect.TypeFor[networkingv1.NetworkPolicy](), map[reflect.Type]*schema{})
	})
	if schemas.err != nil {
		return nil, schemas.err
	}
	return schemas.byKey[k], nil
}

// loadCRDSchema reads the schema of the served v2 version of a CRD
// embedded in Cilium's module.
func loadCRDSchema(file string) (*schema, error) {
	data, err := crdv2.EmbedFS.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CRD %s: %w", file, err)
	}
	var c crd
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode CRD %s: %w", file, err)
	}
	for _, v := range c.Spec.Versions {
		if v.Name == "v2" && v.Served && v.Schema.OpenAPIV3Schema != nil {
			s, err := v.Schema.OpenAPIV3Schema.compile()
			if err != nil {
				return nil, fmt.Errorf("compile CRD %s: %w", file, err)
			}
			return s, nil
		}
	}
	return nil, fmt.Errorf("read CRD %s: no served version v2", file)
}

// extendL7Rules adds to every port rule's "rules" the L7 rule kinds
// Cilium 1.20 removed but cilia still reads, as Cilium 1.19 defined
// them: kafka (Kafka rules) and l7proto with l7 (generic L7 rules).
// Exactly one kind of L7 rule may be set, as before.
func extendL7Rules(s *schema) {
	visitSchemas(s, map[*schema]bool{}, func(s *schema) {
		rules := s.Properties["rules"]
		if rules == nil || rules.Properties["http"] == nil || rules.Properties["dns"] == nil {
			return
		}
		str := &schema{Type: "string"}
		rules.Properties["kafka"] = &schema{Type: "array", Items: &schema{Type: "object", Properties: map[string]*schema{
			"role": str, "apiKey": str, "apiVersion": str, "clientID": str, "topic": str,
		}}}
		rules.Properties["l7proto"] = str
		rules.Properties["l7"] = &schema{Type: "array", Items: &schema{Type: "object", Additional: str}}
		rules.OneOf = [][]string{{"http"}, {"kafka"}, {"dns"}, {"l7proto"}}
	})
}

// visitSchemas calls f on s and every schema inside it once.
func visitSchemas(s *schema, seen map[*schema]bool, f func(*schema)) {
	if s == nil || seen[s] {
		return
	}
	seen[s] = true
	f(s)
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		visitSchemas(s.Properties[n], seen, f)
	}
	visitSchemas(s.Items, seen, f)
	visitSchemas(s.Additional, seen, f)
}

// Types that decode themselves, described by the JSON they accept.
var (
	typeIntOrString = reflect.TypeFor[intstr.IntOrString]()
	typeTime        = reflect.TypeFor[metav1.Time]()
	typeMicroTime   = reflect.TypeFor[metav1.MicroTime]()
	typeUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

// reflectSchema derives a schema from a Go type the way encoding/json
// (with Kubernetes' case-sensitive field matching) would decode it:
// the JSON names of exported fields, inlined embedded structs, and the
// JSON types of the kinds.
func reflectSchema(t reflect.Type, cache map[reflect.Type]*schema) *schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s, ok := cache[t]; ok {
		return s
	}
	switch t {
	case typeIntOrString:
		return &schema{IntOrString: true}
	case typeTime, typeMicroTime:
		return &schema{Type: "string", Format: "date-time"}
	}
	if reflect.PointerTo(t).Implements(typeUnmarshaler) {
		return &schema{} // decodes itself: accept anything
	}
	s := &schema{}
	cache[t] = s
	switch t.Kind() {
	case reflect.Struct:
		s.Type = "object"
		s.Properties = map[string]*schema{}
		addStructFields(s, t, cache)
	case reflect.Map:
		s.Type = "object"
		s.Additional = reflectSchema(t.Elem(), cache)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			s.Type = "string" // base64
			break
		}
		s.Type = "array"
		s.Items = reflectSchema(t.Elem(), cache)
	case reflect.String:
		s.Type = "string"
	case reflect.Bool:
		s.Type = "boolean"
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		s.Type = "integer"
		lo, hi := intBounds(t)
		s.Minimum, s.Maximum = &lo, &hi
	case reflect.Float32, reflect.Float64:
		s.Type = "number"
	}
	return s
}

// addStructFields adds the JSON fields of struct t to s.Properties.
func addStructFields(s *schema, t reflect.Type, cache map[reflect.Type]*schema) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, inline := jsonFieldName(f)
		switch {
		case name == "-":
		case inline:
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addStructFields(s, ft, cache)
			}
		case f.IsExported():
			s.Properties[name] = reflectSchema(f.Type, cache)
		}
	}
}

// jsonFieldName returns the JSON name of a struct field and whether its
// fields are inlined into the parent (an untagged embedded struct or
// `json:",inline"`).
func jsonFieldName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	name := tag
	opts := ""
	for i := 0; i < len(tag); i++ {
		if tag[i] == ',' {
			name, opts = tag[:i], tag[i:]
			break
		}
	}
	if name == "-" && opts == "" {
		return "-", false
	}
	if name == "" && (f.Anonymous || opts == ",inline") {
		return "", true
	}
	if name == "" {
		name = f.Name
	}
	return name, false
}

// intBounds returns the range of an integer type.
func intBounds(t reflect.Type) (float64, float64) {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return 0, math.Pow(2, float64(bits)) - 1
	}
	return -math.Pow(2, float64(bits-1)), math.Pow(2, float64(bits-1)) - 1
}
