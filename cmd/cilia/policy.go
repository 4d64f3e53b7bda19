package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/agent/policy/load"
)

// newPolicyCmd returns "cilia policy", the policy tools.
func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Validate and inspect network policies",
		Long: `Tools for network policies as users write them: CiliumNetworkPolicy,
CiliumClusterwideNetworkPolicy and Kubernetes NetworkPolicy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	// The subcommands of "cilia policy": add new ones to this list.
	cmd.AddCommand(
		newPolicyValidateCmd(),
		newPolicyTraceCmd(),
	)
	return cmd
}

// validateOptions are the flags of "cilia policy validate".
type validateOptions struct {
	strict bool
	output string
	quiet  bool
}

// newPolicyValidateCmd returns "cilia policy validate".
func newPolicyValidateCmd() *cobra.Command {
	var opts validateOptions
	cmd := &cobra.Command{
		Use:   "validate FILE|DIR|- ...",
		Short: "Check policy files the way the API server and Cilium would",
		Long: `Validate CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and
NetworkPolicy objects in YAML files, as kubectl apply and Cilium would
read them, and report every problem with its file, line, column and
field path:

  error    the API server or Cilium rejects the object (wrong type, bad CIDR,
           missing selector, unknown entity, endPort below port, ...)
  warning  the object is accepted but does not do what is written: a
           field the API server drops (a misspelt or mis-indented field),
           a key without value, a label key that can never match, ...
  note     an object of another kind that was skipped (a Pod, a Service),
           or a feature cilia parses but does not enforce yet (L7 rules,
           toFQDNs, host policies, ...)

FILE may be a file, a directory (searched recursively for *.yaml and
*.yml) or - for standard input. Files may hold several documents
separated by ---. Each diagnostic is printed as

  file:line:column: severity: field.path: message

followed by a summary line per file and a total. The exit status is 1
when there is an error (with --strict, also a warning), else 0.`,
		Example: `  cilia policy validate fixtures/policies/valid
  cilia policy validate --strict deny-all.yaml allow-dns.yaml
  kubectl get cnp -A -o yaml | cilia policy validate -
  cilia policy validate -o json policies/ | jq '.files[].diagnostics[]'
  cilia policy validate --quiet policies/   # only what fails`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.output != "text" && opts.output != "json" {
				return fmt.Errorf("validate policies: unknown output format %q (want text or json)", opts.output)
			}
			return runPolicyValidate(cmd, args, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.strict, "strict", false, "treat warnings as errors")
	cmd.Flags().StringVarP(&opts.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&opts.quiet, "quiet", "q", false, "print only the diagnostics that fail validation, no summaries")
	return cmd
}

// fileResult is the result of one input file.
type fileResult struct {
	name   string
	result load.Result
}

// runPolicyValidate validates the inputs and prints the report.
func runPolicyValidate(cmd *cobra.Command, args []string, opts validateOptions) error {
	files, err := expandInputs(args)
	if err != nil {
		return err
	}
	var results []fileResult
	for _, f := range files {
		r, err := loadInput(cmd.InOrStdin(), f)
		if err != nil {
			return err
		}
		results = append(results, fileResult{name: displayName(f), result: r})
	}
	out := cmd.OutOrStdout()
	if opts.output == "json" {
		err = printJSONReport(out, results, opts)
	} else {
		err = printTextReport(out, results, opts)
	}
	if err != nil {
		return fmt.Errorf("print report: %w", err)
	}
	var failed int
	for _, fr := range results {
		if fr.result.HasErrors(opts.strict) {
			failed++
		}
	}
	if failed > 0 {
		what := "errors"
		if opts.strict {
			what = "errors or warnings"
		}
		return fmt.Errorf("validate policies: %d of %d files have %s", failed, len(results), what)
	}
	return nil
}

// expandInputs turns the arguments into a list of files: directories
// are searched recursively for *.yaml and *.yml files, in lexical order.
func expandInputs(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		if a == "-" {
			files = append(files, a)
			continue
		}
		info, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("validate policies: %w", err)
		}
		if !info.IsDir() {
			files = append(files, a)
			continue
		}
		found := 0
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				files = append(files, p)
				found++
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("validate policies: %w", err)
		}
		if found == 0 {
			return nil, fmt.Errorf("validate policies: no *.yaml or *.yml files in %s", a)
		}
	}
	return files, nil
}

// loadInput loads one file, or standard input for "-".
func loadInput(stdin io.Reader, name string) (load.Result, error) {
	if name != "-" {
		r, err := load.File(name)
		if err != nil {
			return r, fmt.Errorf("validate policies: %w", err)
		}
		return r, nil
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return load.Result{}, fmt.Errorf("validate policies: read standard input: %w", err)
	}
	return load.Bytes(displayName(name), data), nil
}

// displayName is how a file is named in the report.
func displayName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

// shown reports whether a diagnostic is printed with the options.
func shown(d load.Diagnostic, opts validateOptions) bool {
	if !opts.quiet {
		return true
	}
	return d.Severity == load.Error || (opts.strict && d.Severity == load.Warning)
}

// counts tallies a result for the summaries.
type counts struct {
	valid                   map[load.Kind]int
	invalid, skipped        int
	errors, warnings, notes int
}

// add counts a result.
func (c *counts) add(r load.Result) {
	if c.valid == nil {
		c.valid = map[load.Kind]int{}
	}
	for _, p := range r.Policies {
		c.valid[p.Kind]++
	}
	c.invalid += r.Invalid
	c.skipped += r.Skipped
	for _, d := range r.Diagnostics {
		switch d.Severity {
		case load.Error:
			c.errors++
		case load.Warning:
			c.warnings++
		case load.Note:
			c.notes++
		}
	}
}

// summary formats counts: "2 CiliumNetworkPolicies valid, 1 invalid,
// 1 error, 3 notes".
func (c counts) summary() string {
	var parts []string
	for _, k := range []load.Kind{load.KindCNP, load.KindCCNP, load.KindKNP} {
		if n := c.valid[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s valid", plural(n, string(k))))
		}
	}
	if c.invalid > 0 {
		parts = append(parts, fmt.Sprintf("%d invalid", c.invalid))
	}
	if c.skipped > 0 {
		parts = append(parts, fmt.Sprintf("%d skipped", c.skipped))
	}
	if len(parts) == 0 {
		parts = append(parts, "no policies")
	}
	for _, x := range []struct {
		n    int
		word string
	}{{c.errors, "error"}, {c.warnings, "warning"}, {c.notes, "note"}} {
		if x.n > 0 {
			parts = append(parts, plural(x.n, x.word))
		}
	}
	return strings.Join(parts, ", ")
}

// plural formats "1 error", "2 errors", "2 NetworkPolicies".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	if strings.HasSuffix(word, "y") {
		return fmt.Sprintf("%d %sies", n, word[:len(word)-1])
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// printTextReport prints diagnostics, a summary per file and a total.
func printTextReport(w io.Writer, results []fileResult, opts validateOptions) error {
	var total counts
	var b strings.Builder
	for _, fr := range results {
		for _, d := range fr.result.Diagnostics {
			if shown(d, opts) {
				fmt.Fprintln(&b, d.String())
			}
		}
	}
	if !opts.quiet {
		for _, fr := range results {
			var c counts
			c.add(fr.result)
			total.add(fr.result)
			fmt.Fprintf(&b, "%s: %s\n", fr.name, c.summary())
		}
		fmt.Fprintf(&b, "total: %s in %s\n", total.summary(), plural(len(results), "file"))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonDiagnostic is a diagnostic in the JSON report.
type jsonDiagnostic struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Severity string `json:"severity"`
	Path     string `json:"path,omitempty"`
	Message  string `json:"message"`
}

// jsonPolicy is a valid policy in the JSON report.
type jsonPolicy struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Line       int    `json:"line"`
}

// jsonFile is the report of one file.
type jsonFile struct {
	File        string           `json:"file"`
	Valid       bool             `json:"valid"`
	Policies    []jsonPolicy     `json:"policies"`
	Invalid     int              `json:"invalid"`
	Skipped     int              `json:"skipped"`
	Diagnostics []jsonDiagnostic `json:"diagnostics"`
}

// jsonReport is the whole JSON report.
type jsonReport struct {
	Valid    bool       `json:"valid"`
	Strict   bool       `json:"strict"`
	Files    []jsonFile `json:"files"`
	Errors   int        `json:"errors"`
	Warnings int        `json:"warnings"`
	Notes    int        `json:"notes"`
}

// printJSONReport prints the report as one JSON document.
func printJSONReport(w io.Writer, results []fileResult, opts validateOptions) error {
	rep := jsonReport{Valid: true, Strict: opts.strict, Files: []jsonFile{}}
	var total counts
	for _, fr := range results {
		total.add(fr.result)
		jf := jsonFile{File: fr.name, Valid: !fr.result.HasErrors(opts.strict), Policies: []jsonPolicy{},
			Invalid: fr.result.Invalid, Skipped: fr.result.Skipped, Diagnostics: []jsonDiagnostic{}}
		if !jf.Valid {
			rep.Valid = false
		}
		for _, p := range fr.result.Policies {
			jf.Policies = append(jf.Policies, jsonPolicy{Kind: string(p.Kind), APIVersion: p.APIVersion,
				Namespace: p.Namespace, Name: p.Name, Line: p.Line})
		}
		for _, d := range fr.result.Diagnostics {
			if shown(d, opts) {
				jf.Diagnostics = append(jf.Diagnostics, jsonDiagnostic{File: d.File, Line: d.Line, Column: d.Column,
					Severity: string(d.Severity), Path: d.Path, Message: d.Message})
			}
		}
		rep.Files = append(rep.Files, jf)
	}
	rep.Errors, rep.Warnings, rep.Notes = total.errors, total.warnings, total.notes
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
