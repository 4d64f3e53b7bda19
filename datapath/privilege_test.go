package datapath

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
)

// TestPrivilegeErrorLeavesVerifierErrorsAlone: the verifier answers EACCES
// when it rejects a program; that is not a missing capability.
func TestPrivilegeErrorLeavesVerifierErrorsAlone(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"verifier rejection", fmt.Errorf("load: %w", &ebpf.VerifierError{Cause: syscall.EACCES, Log: []string{"invalid bpf_context access"}})},
		{"unrelated error", fmt.Errorf("load: %w", syscall.EINVAL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := privilegeError(tc.err); errors.Is(got, ErrMissingCapability) {
				t.Fatalf("privilegeError(%v) = %v, reported as a missing capability", tc.err, got)
			}
		})
	}
}
