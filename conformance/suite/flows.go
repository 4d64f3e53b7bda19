package suite

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/cilium/cilium/api/v1/flow"
)

// FormatFlow prints a flow on one line, in the spirit of `hubble observe`:
// verdict, drop reason, source -> destination with their pods, protocol,
// observation point, direction and node, e.g.
//
//	DROPPED POLICY_DENIED default/xwing 10.0.1.2:41000 -> default/deathstar 10.0.1.10:80 TCP SYN to-endpoint ingress node-1
func FormatFlow(f *flow.Flow) string {
	if f == nil {
		return "<nil flow>"
	}
	var parts []string
	parts = append(parts, f.GetVerdict().String())
	if f.GetVerdict() == flow.Verdict_DROPPED {
		reason := f.GetDropReasonDesc().String()
		if f.GetDropReasonDesc() == flow.DropReason_DROP_REASON_UNKNOWN && f.GetDropReason() != 0 {
			reason = "drop-reason-" + strconv.FormatUint(uint64(f.GetDropReason()), 10)
		}
		parts = append(parts, reason)
	}
	srcPort, dstPort, proto := l4Of(f.GetL4())
	parts = append(parts, endpointOf(f.GetSource(), f.GetIP().GetSource(), srcPort), "->",
		endpointOf(f.GetDestination(), f.GetIP().GetDestination(), dstPort))
	if proto != "" {
		parts = append(parts, proto)
	}
	if l7 := l7Of(f.GetL7()); l7 != "" {
		parts = append(parts, l7)
	}
	if p := f.GetTraceObservationPoint(); p != flow.TraceObservationPoint_UNKNOWN_POINT {
		parts = append(parts, strings.ToLower(strings.ReplaceAll(p.String(), "_", "-")))
	}
	switch f.GetTrafficDirection() {
	case flow.TrafficDirection_INGRESS:
		parts = append(parts, "ingress")
	case flow.TrafficDirection_EGRESS:
		parts = append(parts, "egress")
	}
	if f.GetIsReply().GetValue() {
		parts = append(parts, "reply")
	}
	if n := f.GetNodeName(); n != "" {
		parts = append(parts, n)
	}
	return strings.Join(parts, " ")
}

// endpointOf prints "ns/pod ip:port", or the identity when there is no pod.
func endpointOf(ep *flow.Endpoint, ip string, port uint32) string {
	addr := ip
	if addr == "" {
		addr = "?"
	}
	if port != 0 {
		addr = net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
	}
	switch {
	case ep.GetPodName() != "":
		return ep.GetNamespace() + "/" + ep.GetPodName() + " " + addr
	case ep.GetIdentity() != 0:
		return fmt.Sprintf("identity:%d %s", ep.GetIdentity(), addr)
	}
	return addr
}

func l4Of(l4 *flow.Layer4) (src, dst uint32, proto string) {
	switch {
	case l4.GetTCP() != nil:
		t := l4.GetTCP()
		proto = "TCP"
		if fl := tcpFlags(t.GetFlags()); fl != "" {
			proto += " " + fl
		}
		return t.GetSourcePort(), t.GetDestinationPort(), proto
	case l4.GetUDP() != nil:
		return l4.GetUDP().GetSourcePort(), l4.GetUDP().GetDestinationPort(), "UDP"
	case l4.GetSCTP() != nil:
		return l4.GetSCTP().GetSourcePort(), l4.GetSCTP().GetDestinationPort(), "SCTP"
	case l4.GetICMPv4() != nil:
		return 0, 0, fmt.Sprintf("ICMPv4 type %d", l4.GetICMPv4().GetType())
	case l4.GetICMPv6() != nil:
		return 0, 0, fmt.Sprintf("ICMPv6 type %d", l4.GetICMPv6().GetType())
	}
	return 0, 0, ""
}

func tcpFlags(fl *flow.TCPFlags) string {
	var s []string
	for _, f := range []struct {
		set  bool
		name string
	}{{fl.GetSYN(), "SYN"}, {fl.GetACK(), "ACK"}, {fl.GetFIN(), "FIN"}, {fl.GetRST(), "RST"}, {fl.GetPSH(), "PSH"}} {
		if f.set {
			s = append(s, f.name)
		}
	}
	return strings.Join(s, ",")
}

func l7Of(l7 *flow.Layer7) string {
	switch {
	case l7.GetHttp() != nil:
		h := l7.GetHttp()
		s := strings.TrimSpace("HTTP " + h.GetMethod() + " " + h.GetUrl())
		if h.GetCode() != 0 {
			s += fmt.Sprintf(" => %d", h.GetCode())
		}
		return s
	case l7.GetKafka() != nil:
		k := l7.GetKafka()
		s := "Kafka " + k.GetApiKey() + " " + k.GetTopic()
		if k.GetErrorCode() != 0 {
			s += fmt.Sprintf(" => error %d", k.GetErrorCode())
		}
		return s
	}
	return ""
}
