package traffic

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ErrBadResult is returned by ParseResultJSON for a line that is not a
// probe result.
var ErrBadResult = errors.New("malformed probe result")

// ResultJSON is a Result as one JSON object, what cilia-probe prints:
// {"outcome":"allowed","backend":"ns/pod","sourceSeen":"10.0.0.1",
// "httpStatus":200,"elapsedMs":3,"detail":""}.
type ResultJSON struct {
	Outcome    Outcome `json:"outcome"`
	Backend    string  `json:"backend,omitempty"`
	SourceSeen string  `json:"sourceSeen,omitempty"`
	HTTPStatus int     `json:"httpStatus,omitempty"`
	ElapsedMs  int64   `json:"elapsedMs"`
	Detail     string  `json:"detail,omitempty"`
}

// JSON returns r in its JSON form.
func (r Result) JSON() ResultJSON {
	j := ResultJSON{Outcome: r.Outcome, Backend: r.Backend, HTTPStatus: r.HTTPStatus,
		ElapsedMs: r.Elapsed.Milliseconds(), Detail: r.Detail}
	if r.SourceSeen.IsValid() {
		j.SourceSeen = r.SourceSeen.String()
	}
	return j
}

// ParseResultJSON reads a ResultJSON from the last non-empty line of out
// (a command's output, where earlier lines may be diagnostics) and returns
// it as a Result.
func ParseResultJSON(out []byte) (Result, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	var j ResultJSON
	dec := json.NewDecoder(strings.NewReader(last))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Result{}, fmt.Errorf("parse probe result %q: %w (%v)", last, ErrBadResult, err)
	}
	switch j.Outcome {
	case Allowed, Refused, Timeout, Unreachable, Error:
	default:
		return Result{}, fmt.Errorf("parse probe result %q: unknown outcome %q: %w", last, j.Outcome, ErrBadResult)
	}
	r := Result{Outcome: j.Outcome, Backend: j.Backend, HTTPStatus: j.HTTPStatus,
		Elapsed: time.Duration(j.ElapsedMs) * time.Millisecond, Detail: j.Detail}
	if j.SourceSeen != "" {
		a, err := netip.ParseAddr(j.SourceSeen)
		if err != nil {
			return Result{}, fmt.Errorf("parse probe result %q: source seen: %w", last, ErrBadResult)
		}
		r.SourceSeen = a
	}
	return r, nil
}
