package testrun

import "github.com/ciliaproject/cilia/datapath/events"

// DrainEvents returns the events in the node's ring buffer that no run
// collected: those of real traffic through attached programs.
func (h *Harness) DrainEvents() ([]events.Event, error) { return h.events.Drain() }
