// Package model is cilia's executable specification of network policy: it
// answers a conformance probe ("may A open this connection to B on this
// port and protocol?") straight from the scenario's cluster state and the
// policy objects as the user wrote them (CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy, Kubernetes NetworkPolicy).
//
// It is the independent oracle of the conformance suite (DESIGN.md §3): it
// imports nothing from agent/, datapath/ or sim/, keeps no identities, map
// entries or prefix tables, and is written to be read, not to be fast. Each
// rule of semantics is one small function whose doc comment cites the
// Kubernetes or Cilium documentation it implements. docs/model.md lists
// them.
//
// How a probe is decided (Model.Probe):
//
//  1. The client's egress: if the client is a pod, every policy that selects
//     it for egress has its say (egressVerdict).
//  2. The server's ingress: if the server is a pod, every policy that selects
//     it for ingress has its say (ingressVerdict).
//  3. In each direction (directionVerdict.decide): a matching deny term wins
//     (drop reason POLICY_DENY); a direction no policy selects allows
//     everything; ingress from the pod's own node is always allowed
//     (allow-localhost); a direction whose policies all disable default deny
//     allows everything not denied; otherwise some allow term must match
//     (else POLICY_DENIED).
//  4. A connection allowed both ways completes, replies included (policy is
//     stateful: replies of an allowed connection are never checked again).
//
// A probe to a service frontend (a cluster IP, a node port, an external IP
// or a load-balancer IP) is first load-balanced (services.go,
// probeService): the eligible backends (selector, family, targetPort,
// terminating, externalTrafficPolicy Local at the entry node), one chosen
// by rendezvous hashing of the client's address and source port (address
// only with session affinity); no eligible backend is a deny with
// NO_SERVICE. Then steps 1-4 run as for a direct connection to the chosen
// backend at its target port, with the source the backend sees (the
// client, or the entry node when source NATed; a pod reaching itself is
// checked for egress only). docs/load-balancing.md ("What the model computes") has the rules.
package model
