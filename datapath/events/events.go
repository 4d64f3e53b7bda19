// Package events decodes the datapath's ring buffer records (struct event,
// bpf/lib/events.h) into typed trace and drop events.
package events

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// Type says whether an event is a trace (forward) or a drop.
type Type uint8

// Event types (events.h EVENT_*).
const (
	TypeTrace Type = 1
	TypeDrop  Type = 2
)

// ObservationPoint is where the packet goes (trace) or was seen (drop); the
// numbers are flow.TraceObservationPoint's.
type ObservationPoint uint8

// Observation points (events.h OBS_*).
const (
	ObsUnknown      ObservationPoint = 0
	ObsToProxy      ObservationPoint = 1
	ObsToHost       ObservationPoint = 2
	ObsToStack      ObservationPoint = 3
	ObsToOverlay    ObservationPoint = 4
	ObsFromEndpoint ObservationPoint = 5
	ObsFromProxy    ObservationPoint = 6
	ObsFromHost     ObservationPoint = 7
	ObsFromStack    ObservationPoint = 8
	ObsFromOverlay  ObservationPoint = 9
	ObsFromNetwork  ObservationPoint = 10
	ObsToNetwork    ObservationPoint = 11
	ObsToEndpoint   ObservationPoint = 101
)

// String returns the flow.TraceObservationPoint name.
func (o ObservationPoint) String() string {
	switch o {
	case ObsToProxy:
		return "TO_PROXY"
	case ObsToHost:
		return "TO_HOST"
	case ObsToStack:
		return "TO_STACK"
	case ObsToOverlay:
		return "TO_OVERLAY"
	case ObsFromEndpoint:
		return "FROM_ENDPOINT"
	case ObsFromProxy:
		return "FROM_PROXY"
	case ObsFromHost:
		return "FROM_HOST"
	case ObsFromStack:
		return "FROM_STACK"
	case ObsFromOverlay:
		return "FROM_OVERLAY"
	case ObsFromNetwork:
		return "FROM_NETWORK"
	case ObsToNetwork:
		return "TO_NETWORK"
	case ObsToEndpoint:
		return "TO_ENDPOINT"
	}
	return fmt.Sprintf("UNKNOWN_POINT(%d)", uint8(o))
}

// Verdict is the flow.Verdict number of an event.
type Verdict uint8

// Verdicts (events.h VERDICT_*).
const (
	VerdictForwarded  Verdict = 1
	VerdictDropped    Verdict = 2
	VerdictRedirected Verdict = 5
)

// String returns the flow.Verdict name.
func (v Verdict) String() string {
	switch v {
	case VerdictForwarded:
		return "FORWARDED"
	case VerdictDropped:
		return "DROPPED"
	case VerdictRedirected:
		return "REDIRECTED"
	}
	return fmt.Sprintf("VERDICT_UNKNOWN(%d)", uint8(v))
}

// Policy match kinds (policy.h POLICY_MATCH_*), bits of Event.PolicyMatch.
const (
	MatchNone uint8 = 0
	MatchL3   uint8 = 1
	MatchL4   uint8 = 2
	MatchAny  uint8 = 4
)

// Event is a decoded trace or drop event.
type Event struct {
	Timestamp        time.Duration // CLOCK_MONOTONIC at the event
	Type             Type
	ObservationPoint ObservationPoint
	CTState          uint8 // maps.CT*
	Direction        maps.Direction
	Reason           dropreason.Reason
	EndpointID       uint16
	SrcIdentity      uint32
	DstIdentity      uint32
	Ifindex          uint32 // trace: target ifindex (0: the stack); drop: where
	RuleID           uint32 // policy entry that decided, 0 if none
	ProxyPort        uint16 // host order
	PolicyMatch      uint8
	Verdict          Verdict
	OrigLen          uint32
	// TunnelID is the VNI of an encapsulated packet (trace TO_OVERLAY)
	// or of one that came out of the overlay (from_overlay): the source's
	// security identity. 0 when there was no tunnel.
	TunnelID uint32
	// TunnelEndpoint is the remote node of the tunnel (IPv4), the zero
	// Addr when there was no tunnel.
	TunnelEndpoint netip.Addr
	Data           []byte // head of the packet
}

// IsDrop reports whether e is a drop event.
func (e Event) IsDrop() bool { return e.Type == TypeDrop }

// String is a one-line summary for logs and test failures.
func (e Event) String() string {
	if e.IsDrop() {
		return fmt.Sprintf("drop %s ep=%d dir=%s %d->%d rule=%d ct=%d", e.Reason, e.EndpointID, e.Direction,
			e.SrcIdentity, e.DstIdentity, e.RuleID, e.CTState)
	}
	tun := ""
	if e.TunnelEndpoint.IsValid() {
		tun = fmt.Sprintf(" tunnel=%s/vni=%d", e.TunnelEndpoint, e.TunnelID)
	}
	return fmt.Sprintf("trace %s %s ifindex=%d ep=%d dir=%s %d->%d rule=%d ct=%d%s", e.Verdict, e.ObservationPoint,
		e.Ifindex, e.EndpointID, e.Direction, e.SrcIdentity, e.DstIdentity, e.RuleID, e.CTState, tun)
}

// ErrShortRecord is returned by Decode for a record smaller than struct event.
var ErrShortRecord = errors.New("short event record")

// Decode decodes one ring buffer record.
func Decode(raw []byte) (Event, error) {
	var r maps.Event
	size := int(unsafe.Sizeof(r))
	if len(raw) < size {
		return Event{}, fmt.Errorf("decode event: %w: %d bytes", ErrShortRecord, len(raw))
	}
	// The record is a struct event in native byte order, and maps.Event
	// has its exact layout (checked against BTF in datapath/maps): copy
	// it over instead of decoding field by field with reflection.
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), size), raw)
	capLen := int(r.CapLen)
	if capLen > len(r.Data) {
		capLen = len(r.Data)
	}
	var tep netip.Addr
	switch r.TunnelFamily {
	case maps.FamilyIPv4:
		tep = netip.AddrFrom4([4]byte(r.TunnelEndpoint[:4]))
	case maps.FamilyIPv6:
		tep = netip.AddrFrom16(r.TunnelEndpoint)
	}
	return Event{
		Timestamp:        time.Duration(r.Timestamp),
		Type:             Type(r.Type),
		ObservationPoint: ObservationPoint(r.ObsPoint),
		CTState:          r.CTState,
		Direction:        maps.Direction(r.Direction),
		Reason:           dropreason.Reason(r.Reason),
		EndpointID:       r.EndpointID,
		SrcIdentity:      r.SrcIdentity,
		DstIdentity:      r.DstIdentity,
		Ifindex:          r.Ifindex,
		RuleID:           r.RuleID,
		ProxyPort:        maps.NetToHost16(r.ProxyPortNet),
		PolicyMatch:      r.PolicyMatch,
		Verdict:          Verdict(r.Verdict),
		OrigLen:          r.OrigLen,
		TunnelID:         r.TunnelID,
		TunnelEndpoint:   tep,
		Data:             append([]byte(nil), r.Data[:capLen]...),
	}, nil
}

// Reader reads events from the cilia_events ring buffer.
type Reader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record
}

// NewReader opens a reader on the ring buffer map m.
func NewReader(m *ebpf.Map) (*Reader, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &Reader{rd: rd}, nil
}

// Read blocks until the next event (or Close) and returns it.
func (r *Reader) Read() (Event, error) {
	r.rd.SetDeadline(time.Time{})
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return Event{}, fmt.Errorf("read event: %w", err)
	}
	return Decode(r.rec.RawSample)
}

// Drain returns every event already in the ring buffer without waiting.
// While records are there it reads them straight from the ring, with no
// system call: the walker drains after every program run.
func (r *Reader) Drain() ([]Event, error) {
	var out []Event
	// Should the reader poll (it does when it last saw the ring empty), a
	// deadline of now makes the poll return at once.
	r.rd.SetDeadline(time.Now())
	for r.rd.AvailableBytes() > 0 {
		err := r.rd.ReadInto(&r.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("drain events: %w", err)
		}
		e, err := Decode(r.rec.RawSample)
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Close closes the reader; a blocked Read returns.
func (r *Reader) Close() error {
	return r.rd.Close()
}

// MetricKey is a cilia_metrics slot: a reason (0 forwarded, 1 event lost,
// >= 130 drops, 205 redirect to proxy) and a direction.
type MetricKey struct {
	Reason    dropreason.Reason
	Direction maps.Direction
}

// ReadMetrics sums cilia_metrics over CPUs and returns the non-zero slots.
func ReadMetrics(m *ebpf.Map) (map[MetricKey]maps.MetricsValue, error) {
	out := map[MetricKey]maps.MetricsValue{}
	var (
		key    uint32
		percpu []maps.MetricsValue
	)
	it := m.Iterate()
	for it.Next(&key, &percpu) {
		var sum maps.MetricsValue
		for _, v := range percpu {
			sum.Packets += v.Packets
			sum.Bytes += v.Bytes
		}
		if sum.Packets == 0 {
			continue
		}
		out[MetricKey{Reason: dropreason.Reason(key >> 2), Direction: maps.Direction(key & 3)}] = sum
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}
