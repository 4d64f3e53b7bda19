// Package scenarioagent drives the reference agent from a scenario: it
// builds the scenario's cluster in an agent.Agent (nodes, namespaces,
// pods, services, policies) and applies each step's mutations, in the order the
// scenario format defines. Targets built on the reference agent (testrun)
// and `cilia policy trace` share it.
package scenarioagent

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/ciliaproject/cilia/agent"
	"github.com/ciliaproject/cilia/agent/policy"
	"github.com/ciliaproject/cilia/agent/policy/load"
	"github.com/ciliaproject/cilia/agent/service"
	"github.com/ciliaproject/cilia/conformance/scenario"
)

// DatapathFor returns the datapath of a scenario node.
type DatapathFor func(n scenario.Node) (agent.Datapath, error)

// Setup builds sc's initial cluster in a: every node (with the datapath dp
// gives it), namespace, pod, service (once its pods exist) and policy.
func Setup(a *agent.Agent, sc *scenario.Scenario, dp DatapathFor) error {
	for _, n := range sc.Cluster.Nodes {
		d, err := dp(n)
		if err != nil {
			return err
		}
		if err := a.AddNode(agent.Node{Name: n.Name, IPv4: n.IPv4, IPv6: n.IPv6}, d); err != nil {
			return err
		}
	}
	for _, ns := range sc.Cluster.Namespaces {
		if err := a.SetNamespace(ns.Name, ns.Labels); err != nil {
			return err
		}
	}
	for _, p := range sc.Cluster.Pods {
		if err := AddPod(a, p); err != nil {
			return err
		}
	}
	for _, s := range sc.Cluster.Services {
		svc, err := Service(s)
		if err != nil {
			return err
		}
		if err := a.UpsertService(svc); err != nil {
			return err
		}
	}
	for _, obj := range sc.Policies {
		if err := ApplyPolicy(a, obj); err != nil {
			return err
		}
	}
	return nil
}

// InMemoryAt builds sc's cluster in a on in-memory datapaths
// (agent.MemoryDatapath: no kernel needed) with the mutations of every step
// up to and including step applied: the agent as it is when that step's
// probes run. For tools that read the agent's resolved state (cilia policy
// trace, cilia service list).
func InMemoryAt(a *agent.Agent, sc *scenario.Scenario, step int) error {
	if step < 0 || step >= len(sc.Steps) {
		return fmt.Errorf("step %d out of range (the scenario has steps 0-%d)", step, len(sc.Steps)-1)
	}
	err := Setup(a, sc, func(scenario.Node) (agent.Datapath, error) {
		return agent.NewMemoryDatapath(), nil
	})
	if err != nil {
		return err
	}
	for _, st := range sc.Steps {
		if st.Index > step {
			break
		}
		if err := Step(a, st); err != nil {
			return err
		}
	}
	return nil
}

// Step applies a step's mutations in the scenario format's order:
// namespaces, deleted pods, added pods, terminating pods, labels, deleted
// policies, applied policies.
func Step(a *agent.Agent, st scenario.Step) error {
	for _, ns := range st.AddNamespaces {
		if err := a.SetNamespace(ns.Name, ns.Labels); err != nil {
			return err
		}
	}
	for _, key := range st.DeletePods {
		if err := a.DeletePod(key); err != nil {
			return err
		}
	}
	for _, p := range st.AddPods {
		if err := AddPod(a, p); err != nil {
			return err
		}
	}
	for _, key := range st.TerminatePods {
		if err := a.SetPodTerminating(key, true); err != nil {
			return err
		}
	}
	for _, lc := range st.SetLabels {
		var err error
		if lc.Pod != "" {
			err = a.SetPodLabels(lc.Pod, lc.Labels)
		} else {
			err = a.SetNamespace(lc.Namespace, lc.Labels)
		}
		if err != nil {
			return err
		}
	}
	for _, ref := range st.Delete {
		if err := a.DeletePolicy(policy.PolicyRef{Kind: load.Kind(ref.Kind), Namespace: ref.Namespace, Name: ref.Name}); err != nil {
			return err
		}
	}
	for _, obj := range st.Apply {
		if err := ApplyPolicy(a, obj); err != nil {
			return err
		}
	}
	return nil
}

// AddPod adds a scenario pod, with its named ports.
func AddPod(a *agent.Agent, p scenario.Pod) error {
	var ports []policy.NamedPort
	for _, pt := range p.Ports {
		if pt.Name == "" {
			continue
		}
		proto, ok := policy.ProtoNumber(string(pt.Protocol))
		if !ok {
			return fmt.Errorf("add pod %s: port %s: unknown protocol %q", p.Key(), pt.Name, pt.Protocol)
		}
		ports = append(ports, policy.NamedPort{Name: pt.Name, Port: pt.Port, Proto: proto})
	}
	return a.AddPod(agent.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, Labels: p.Labels,
		IPv4: p.IPv4, IPv6: p.IPv6, Ports: ports})
}

// ApplyPolicy parses a scenario policy object (errors carry the scenario
// file's line and the field path) and applies it.
func ApplyPolicy(a *agent.Agent, obj scenario.Object) error {
	p, diags := load.Node(obj.File, obj.Node)
	for _, d := range diags {
		if d.Severity == load.Error {
			return fmt.Errorf("apply policy %s %s/%s: %s", obj.Kind, obj.Namespace, obj.Name, d)
		}
	}
	if p == nil {
		return fmt.Errorf("apply policy %s %s/%s: not a policy object", obj.Kind, obj.Namespace, obj.Name)
	}
	return a.ApplyPolicy(p)
}

// Service annotations the agent reads.
const (
	AnnotationLBAlgorithm    = "service.cilium.io/lb-algorithm"    // random | maglev
	AnnotationForwardingMode = "service.cilium.io/forwarding-mode" // snat | dsr
)

// Service converts a scenario service to the agent's: its type, cluster
// IPs, external and LoadBalancer IPs, ports (a targetPort that is no
// number is a pod port name), selector, session affinity,
// externalTrafficPolicy and the annotations AnnotationLBAlgorithm and
// AnnotationForwardingMode.
func Service(s scenario.Service) (service.Service, error) {
	out := service.Service{Namespace: s.Namespace, Name: s.Name, Type: service.Type(s.Type),
		ExternalIPs: append([]netip.Addr(nil), s.ExternalIPs...), LoadBalancerIPs: append([]netip.Addr(nil), s.LoadBalancerIPs...),
		Selector: s.Selector, SessionAffinity: s.SessionAffinity == "ClientIP",
		ExternalTrafficPolicyLocal: s.ExternalTrafficPolicy == "Local",
		Algorithm:                  service.Algorithm(s.Annotations[AnnotationLBAlgorithm]),
		Mode:                       service.ForwardingMode(s.Annotations[AnnotationForwardingMode])}
	if s.AffinityTimeout > 0 {
		out.AffinityTimeout = uint32(s.AffinityTimeout)
	}
	for _, a := range []netip.Addr{s.ClusterIP, s.ClusterIPv6} {
		if a.IsValid() {
			out.ClusterIPs = append(out.ClusterIPs, a)
		}
	}
	for _, p := range s.Ports {
		proto, ok := policy.ProtoNumber(string(p.Protocol))
		if !ok {
			return service.Service{}, fmt.Errorf("convert service %s: port %s: unknown protocol %q", s.Key(), p.Name, p.Protocol)
		}
		sp := service.Port{Name: p.Name, Port: p.Port, Proto: proto, NodePort: p.NodePort}
		if n, err := strconv.ParseUint(p.TargetPort, 10, 16); err == nil {
			sp.TargetPort = uint16(n)
		} else if p.TargetPort != "" {
			sp.TargetPortName = p.TargetPort
		}
		out.Ports = append(out.Ports, sp)
	}
	return out, nil
}
