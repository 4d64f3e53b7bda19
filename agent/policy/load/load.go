package load

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	ciliumapi "github.com/cilium/cilium/pkg/policy/api"
	"go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"
)

// File loads every object of the YAML file at path (see Bytes). The
// error is only for reading the file; problems with its content are
// diagnostics.
func File(path string) (Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, fmt.Errorf("read policy file: %w", err)
	}
	return Bytes(path, data), nil
}

// Bytes loads every object of a stream of YAML documents separated by
// "---", as kubectl apply -f would read them: policy objects are
// validated and returned, objects of other kinds are skipped with a
// Note, empty documents are ignored, and a List (kind: List or
// CiliumNetworkPolicyList, ...) contributes each of its items. file
// names the input in diagnostics. A YAML syntax error ends the stream:
// the documents before it are still loaded.
func Bytes(file string, data []byte) Result {
	var r Result
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			r.Diagnostics = append(r.Diagnostics, syntaxError(file, err))
			r.Invalid++
			break
		}
		root := documentRoot(&doc)
		if root == nil {
			continue
		}
		if items := listItems(root); items != nil {
			for _, item := range items {
				r.add(file, item)
			}
			continue
		}
		r.add(file, root)
	}
	return r
}

// add loads one object into the result.
func (r *Result) add(file string, n *yaml.Node) {
	p, diags, st := loadObject(file, n)
	r.Diagnostics = append(r.Diagnostics, diags...)
	switch st {
	case statusPolicy:
		r.Policies = append(r.Policies, p)
	case statusInvalid:
		r.Invalid++
	case statusSkipped:
		r.Skipped++
	}
}

// Node loads one object from its YAML mapping node (a document node is
// unwrapped). Positions are those of the nodes, so an object embedded
// in a larger file (a scenario's policies) is reported with that
// file's lines; paths are relative to the object. It returns the policy
// if the object is a valid policy, and nil if it is invalid (see the
// Errors) or of another kind (see the Note).
func Node(file string, n *yaml.Node) (*Policy, []Diagnostic) {
	if n != nil && n.Kind == yaml.DocumentNode {
		n = documentRoot(n)
	}
	if n == nil {
		return nil, []Diagnostic{{File: file, Severity: Error, Message: "empty document: expected a policy object"}}
	}
	p, diags, _ := loadObject(file, n)
	return p, diags
}

// status of one loaded object.
type status int

const (
	statusPolicy status = iota
	statusInvalid
	statusSkipped
)

// documentRoot returns the content of a document node, or nil for an
// empty document.
func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil
	}
	return root
}

// syntaxLine finds the line in a YAML library error.
var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a YAML parse error into a diagnostic.
func syntaxError(file string, err error) Diagnostic {
	msg := err.Error()
	d := Diagnostic{File: file, Severity: Error}
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		d.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.Message = "invalid YAML: " + msg
	return d
}

// listItems returns the items of a List object (kind List, or a kind
// ending in List with items), or nil.
func listItems(root *yaml.Node) []*yaml.Node {
	if root.Kind != yaml.MappingNode {
		return nil
	}
	h := readHeader(root)
	if h.kind != "List" && !(strings.HasSuffix(h.kind, "List") && len(h.kind) > 4) {
		return nil
	}
	pairs, _ := mappingPairs(root)
	for _, p := range pairs {
		if p.key == "items" {
			if items := resolveAlias(p.value); items.Kind == yaml.SequenceNode {
				return items.Content
			}
		}
	}
	return nil
}

// header is what identifies an object: its type and name.
type header struct {
	apiVersion, kind   string
	apiVersionN, kindN *yaml.Node
	name, namespace    string
	foldKeys           map[string]pair // keys by lower case, for case mistakes
}

// readHeader reads apiVersion, kind and metadata name and namespace of
// an object without validating anything.
func readHeader(root *yaml.Node) header {
	h := header{foldKeys: map[string]pair{}}
	pairs, _ := mappingPairs(root)
	for _, p := range pairs {
		h.foldKeys[strings.ToLower(p.key)] = p
		v := resolveAlias(p.value)
		switch p.key {
		case "apiVersion":
			h.apiVersionN = p.keyN
			if s, ok := scalarValue(v).(string); ok && v.Kind == yaml.ScalarNode {
				h.apiVersion = s
			}
		case "kind":
			h.kindN = p.keyN
			if s, ok := scalarValue(v).(string); ok && v.Kind == yaml.ScalarNode {
				h.kind = s
			}
		case "metadata":
			if v.Kind == yaml.MappingNode {
				mp, _ := mappingPairs(v)
				for _, m := range mp {
					mv := resolveAlias(m.value)
					if mv.Kind != yaml.ScalarNode {
						continue
					}
					if s, ok := scalarValue(mv).(string); ok {
						switch m.key {
						case "name":
							h.name = s
						case "namespace":
							h.namespace = s
						}
					}
				}
			}
		}
	}
	return h
}

// ref names an object for messages: "Kind namespace/name".
func (h header) ref() string {
	s := h.kind
	switch {
	case h.namespace != "" && h.name != "":
		s += " " + h.namespace + "/" + h.name
	case h.name != "":
		s += " " + h.name
	}
	return s
}

// servedVersion is the apiVersion each policy kind is served as.
var servedVersion = map[Kind]string{
	KindCNP:  "cilium.io/v2",
	KindCCNP: "cilium.io/v2",
	KindKNP:  "networking.k8s.io/v1",
}

// loadObject classifies and loads one object.
func loadObject(file string, n *yaml.Node) (*Policy, []Diagnostic, status) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return nil, []Diagnostic{{File: file, Line: n.Line, Column: n.Column, Severity: Error,
			Message: fmt.Sprintf("expected a Kubernetes object (a map with apiVersion, kind and metadata), not %s", describeValue(n))}}, statusInvalid
	}
	h := readHeader(n)
	at := func(k *yaml.Node) (int, int) {
		if k == nil {
			return n.Line, n.Column
		}
		return k.Line, k.Column
	}
	if h.kind == "" {
		d := Diagnostic{File: file, Path: "kind", Severity: Error, Message: "kind is not set; kubectl rejects the object"}
		d.Line, d.Column = at(h.kindN)
		if p, ok := h.foldKeys["kind"]; ok && p.key != "kind" {
			d.Line, d.Column = at(p.keyN)
			d.Message = fmt.Sprintf("kind is not set: the key is written %q, and keys are case-sensitive; kubectl rejects the object", p.key)
		}
		return nil, []Diagnostic{d}, statusInvalid
	}
	kind := Kind(h.kind)
	if _, ok := servedVersion[kind]; !ok {
		for k := range servedVersion {
			if strings.EqualFold(string(k), h.kind) {
				line, col := at(h.kindN)
				return nil, []Diagnostic{{File: file, Line: line, Column: col, Path: "kind", Severity: Error,
					Message: fmt.Sprintf("unknown kind %q: kinds are case-sensitive; write %q", h.kind, k)}}, statusInvalid
			}
		}
		line, col := at(nil)
		return nil, []Diagnostic{{File: file, Line: line, Column: col, Severity: Note,
			Message: fmt.Sprintf("skipped %s: not a policy object", h.ref())}}, statusSkipped
	}
	return loadPolicy(file, n, kind, h)
}

// apiVersionProblem checks the apiVersion of a policy kind; it returns
// an Error, and the key to leave out of the schema walk (a miscased
// apiVersion key, reported here).
func apiVersionProblem(file string, root *yaml.Node, kind Kind, h header) (*Diagnostic, string) {
	want := servedVersion[kind]
	if h.apiVersionN == nil {
		d := &Diagnostic{File: file, Line: root.Line, Column: root.Column, Path: "apiVersion", Severity: Error,
			Message: fmt.Sprintf("apiVersion is not set; kubectl rejects the object (write apiVersion: %s)", want)}
		if p, ok := h.foldKeys["apiversion"]; ok {
			// kubectl reads apiVersion with a case-sensitive lookup, so
			// "apiversion" leaves the object without one: kubectl apply
			// fails ("apiVersion not set", or with --validate=false "no
			// matches for kind ... in version \"\""). Only a decoder that
			// matches JSON keys case-insensitively (Go's encoding/json into
			// a typed struct) would read it.
			d.Line, d.Column = p.keyN.Line, p.keyN.Column
			d.Message = fmt.Sprintf("apiVersion is not set: the key is written %q, and keys are case-sensitive, "+
				"so kubectl rejects the object (\"apiVersion not set\"); write apiVersion: %s", p.key, want)
			return d, p.key
		}
		return d, ""
	}
	if h.apiVersion == want {
		return nil, ""
	}
	msg := fmt.Sprintf("%s is served as %s, not %q; kubectl rejects the object (no matches for kind %q in version %q)",
		kind, want, h.apiVersion, kind, h.apiVersion)
	return &Diagnostic{File: file, Line: h.apiVersionN.Line, Column: h.apiVersionN.Column, Path: "apiVersion",
		Severity: Error, Message: msg}, ""
}

// loadPolicy validates a policy object and builds the Policy.
func loadPolicy(file string, root *yaml.Node, kind Kind, h header) (*Policy, []Diagnostic, status) {
	sch, err := schemaFor(kind)
	if err != nil {
		return nil, []Diagnostic{{File: file, Line: root.Line, Severity: Error, Message: fmt.Sprintf("load %s schema: %v", kind, err)}}, statusInvalid
	}
	w := &walker{file: file, kind: kind, crd: kind != KindKNP, ignoreRoot: map[string]bool{},
		pos: map[string]Position{"": {root.Line, root.Column}}}
	if d, skip := apiVersionProblem(file, root, kind, h); d != nil {
		w.diags = append(w.diags, *d)
		if skip != "" {
			w.ignoreRoot[skip] = true
		}
	}
	tree, _ := w.object("", root, sch)
	obj := tree.(map[string]any)
	p := &Policy{Kind: kind, APIVersion: h.apiVersion, File: file, Line: root.Line, Positions: w.pos}
	if len(root.Content) > 0 {
		p.Line = root.Content[0].Line
	}
	p.Name, p.Namespace = checkMetadata(w, kind, obj)
	switch kind {
	case KindCNP, KindCCNP:
		loadCilium(w, p, obj)
	case KindKNP:
		loadNetworkPolicy(w, p, obj)
	}
	diags := sortDiagnostics(w.diags)
	if w.hasErrors() {
		return nil, diags, statusInvalid
	}
	return p, diags, statusPolicy
}

// sortDiagnostics orders diagnostics by position (stable).
func sortDiagnostics(ds []Diagnostic) []Diagnostic {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	return ds
}

// ciliumObject is a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy
// as far as cilia reads it (the upstream object type lives in a package
// too heavy to import for this).
type ciliumObject struct {
	Spec  *ciliumapi.Rule `json:"spec,omitempty"`
	Specs ciliumapi.Rules `json:"specs,omitempty"`
}

// loadCilium checks and decodes the rules of a CNP or CCNP.
func loadCilium(w *walker, p *Policy, obj map[string]any) {
	_, hasSpec := obj["spec"]
	specs, hasSpecs := obj["specs"].([]any)
	if !hasSpec && !hasSpecs {
		w.diag(Error, "", nil, "must have spec or specs (the rules of the policy)")
		return
	}
	if !hasSpec && len(specs) == 0 {
		w.diag(Warning, "specs", nil, "specs is empty, so the policy has no rules and does nothing")
	}
	if w.hasErrors() {
		return // decoding would only repeat the problems
	}
	checkICMPFields(w, obj)
	p.Kafka, p.L7Proto = extractRemovedL7(w, obj)
	if w.hasErrors() {
		return
	}
	data, err := json.Marshal(obj)
	if err != nil {
		w.diag(Error, "", nil, "encode policy: %v", err)
		return
	}
	var co ciliumObject
	if err := json.Unmarshal(data, &co); err != nil {
		w.diag(Error, "", nil, "decode policy: %v", err)
		return
	}
	if co.Spec != nil {
		p.Rules = append(p.Rules, co.Spec)
		p.RulePaths = append(p.RulePaths, "spec")
	}
	for i, r := range co.Specs {
		p.Rules = append(p.Rules, r)
		p.RulePaths = append(p.RulePaths, itemPath("specs", i))
	}
	c := &ruleChecker{w: w, kind: p.Kind, policy: p}
	for i, r := range p.Rules {
		c.rule(p.RulePaths[i], r)
	}
	if !w.hasErrors() {
		p.unenforced = unenforcedCilium(w, p)
		w.diags = append(w.diags, p.unenforced...)
	}
}

// loadNetworkPolicy checks and decodes a NetworkPolicy.
func loadNetworkPolicy(w *walker, p *Policy, obj map[string]any) {
	if w.hasErrors() {
		return
	}
	data, err := json.Marshal(obj)
	if err != nil {
		w.diag(Error, "", nil, "encode policy: %v", err)
		return
	}
	var np networkingv1.NetworkPolicy
	if err := json.Unmarshal(data, &np); err != nil {
		w.diag(Error, "", nil, "decode policy: %v", err)
		return
	}
	np.Namespace = p.Namespace
	p.KNP = &np
	_, hasSpec := obj["spec"]
	checkNetworkPolicy(w, &np, hasSpec)
}
