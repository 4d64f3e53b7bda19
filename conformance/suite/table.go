package suite

import (
	"fmt"
	"strings"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// CellState is how a probe of a truth table turned out.
type CellState int

// Cell states.
const (
	// Right: every check of the probe passed.
	Right CellState = iota
	// Wrong: the probe ran and some check failed (the verdict, or a detail
	// such as dropReason: then expected and observed marks may agree).
	Wrong
	// NoObservation: the target could not run the probe, or its step
	// failed.
	NoObservation
	// Unsupported: the probe needs a feature that is not tested.
	Unsupported
)

// Cell is one probe in a truth table.
type Cell struct {
	// Row and Column are the probe's source and its destination
	// (peer:port/protocol, family and L7 request when they matter).
	Row, Column string
	Expect      scenario.Verdict
	// Observed is meaningful when State is Right or Wrong.
	Observed target.Verdict
	State    CellState
}

// Table marks.
const (
	markAllow   = "."
	markDeny    = "X"
	markWrong   = "!"
	markNoObs   = "?"
	markSkipped = "-"
)

// maxTableWidth is the width past which column headers are replaced by
// numbers and listed under the tables.
const maxTableWidth = 160

// RenderTruthTable prints cells as three cyclonus-style tables, rows the
// sources and columns the destinations: what was expected, what was
// observed, and which cells are wrong. A cell probed more than once (same
// source and column) is split into columns "#2", "#3"...
func RenderTruthTable(title string, cells []Cell) string {
	var rows, cols []string
	seenRow := map[string]bool{}
	seenCol := map[string]bool{}
	type key struct{ row, col string }
	grid := map[key]Cell{}
	uses := map[key]int{}
	wrong, total := 0, 0
	for _, c := range cells {
		col := c.Column
		uses[key{c.Row, c.Column}]++
		if n := uses[key{c.Row, c.Column}]; n > 1 {
			col = fmt.Sprintf("%s #%d", c.Column, n)
		}
		if !seenRow[c.Row] {
			seenRow[c.Row] = true
			rows = append(rows, c.Row)
		}
		if !seenCol[col] {
			seenCol[col] = true
			cols = append(cols, col)
		}
		grid[key{c.Row, col}] = c
		total++
		if c.State != Right {
			wrong++
		}
	}

	headers := cols
	rowWidth := 0
	for _, r := range rows {
		rowWidth = max(rowWidth, len(r))
	}
	width := rowWidth
	for _, c := range cols {
		width += 2 + len(c)
	}
	numbered := width > maxTableWidth
	if numbered {
		headers = make([]string, len(cols))
		for i := range cols {
			headers[i] = fmt.Sprint(i + 1)
		}
	}

	var b strings.Builder
	probes := "probes"
	if total == 1 {
		probes = "probe"
	}
	fmt.Fprintf(&b, "%s: %d %s, %d not as expected\n", title, total, probes, wrong)
	table := func(name string, mark func(Cell) string) {
		fmt.Fprintf(&b, "\n%s\n", name)
		fmt.Fprintf(&b, "%-*s", rowWidth, "")
		for _, h := range headers {
			fmt.Fprintf(&b, "  %s", h)
		}
		b.WriteString("\n")
		for _, r := range rows {
			line := fmt.Sprintf("%-*s", rowWidth, r)
			for i, col := range cols {
				m := " "
				if c, ok := grid[key{r, col}]; ok {
					m = mark(c)
				}
				line += "  " + center(m, len(headers[i]))
			}
			b.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	table(`expected ("." allow, "X" deny):`, func(c Cell) string { return verdictMark(c.Expect == scenario.Allow) })
	table(`observed ("." allowed, "X" denied, "?" no observation, "-" skipped: unsupported feature):`, func(c Cell) string {
		switch c.State {
		case NoObservation:
			return markNoObs
		case Unsupported:
			return markSkipped
		}
		if c.Observed != target.Allowed && c.Observed != target.Denied {
			return markNoObs
		}
		return verdictMark(c.Observed == target.Allowed)
	})
	table(`diff ("!" wrong, "." as expected, "?" no observation, "-" skipped):`, func(c Cell) string {
		switch c.State {
		case Wrong:
			return markWrong
		case NoObservation:
			return markNoObs
		case Unsupported:
			return markSkipped
		}
		return markAllow
	})
	if numbered {
		b.WriteString("\ncolumns:\n")
		for i, c := range cols {
			fmt.Fprintf(&b, "%*d  %s\n", len(fmt.Sprint(len(cols))), i+1, c)
		}
	}
	return b.String()
}

func verdictMark(allowed bool) string {
	if allowed {
		return markAllow
	}
	return markDeny
}

// center pads s to width w, s in the middle (left of it when w-len(s) is
// odd).
func center(s string, w int) string {
	if len(s) >= w {
		return s
	}
	left := (w - len(s)) / 2
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", w-len(s)-left)
}

// peerLabel prints a probe endpoint as the scenario file writes it.
func peerLabel(p scenario.Peer) string {
	switch p.Kind {
	case scenario.PeerPod, scenario.PeerExternal:
		return p.Name
	case scenario.PeerIP:
		return "ip:" + p.Addr.String()
	}
	return string(p.Kind) + ":" + p.Name
}

// columnLabel is a probe's destination column: "to:port/PROTO", with
// "/ipv6" for IPv6 and the L7 request when there is one.
func columnLabel(p scenario.Probe) string {
	s := peerLabel(p.To)
	if p.Protocol == scenario.ICMP {
		s += ":ICMP"
	} else {
		port := fmt.Sprint(p.Port)
		if p.PortName != "" {
			port = p.PortName
		}
		s += ":" + port + "/" + string(p.Protocol)
	}
	if p.Family == scenario.IPv6 {
		s += "/ipv6"
	}
	switch {
	case p.HTTP != nil:
		s += " " + strings.TrimSpace(p.HTTP.Method+" "+p.HTTP.Path)
	case p.Kafka != nil:
		s += " kafka:" + p.Kafka.APIKey
		if p.Kafka.Topic != "" {
			s += "/" + p.Kafka.Topic
		}
	}
	return s
}
