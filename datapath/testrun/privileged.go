package testrun

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ciliaproject/cilia/datapath"
)

// SkipPrivilegedEnv is the variable that, set to 1, skips tests that need
// root on purpose. Without it such tests fail when privileges are missing.
const SkipPrivilegedEnv = "CILIA_SKIP_PRIVILEGED"

// RequirePrivileges fails t (or skips it when CILIA_SKIP_PRIVILEGED=1) when
// the process lacks what loading and attaching BPF programs needs.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	if os.Getenv(SkipPrivilegedEnv) == "1" {
		t.Skipf("%s=1: skipping a test that needs CAP_BPF and CAP_NET_ADMIN", SkipPrivilegedEnv)
	}
	missing, err := datapath.MissingCapabilities()
	if err != nil {
		t.Fatalf("check capabilities: %v", err)
	}
	if len(missing) > 0 {
		t.Fatalf("this test needs %v (run as root, or set %s=1 to skip it on purpose)", missing, SkipPrivilegedEnv)
	}
}

// FreshNetns moves the calling test goroutine, locked to its OS thread,
// into a new network namespace, and moves it back (closing the namespace)
// when the test ends. The test must not spread its work over goroutines.
func FreshNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("restore netns: %v", err)
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	return ns
}

// NewForTest checks privileges, enters a fresh netns and returns a harness
// that is closed when the test ends.
func NewForTest(t testing.TB, opts Options) *Harness {
	t.Helper()
	RequirePrivileges(t)
	FreshNetns(t)
	h, err := New(opts)
	if err != nil {
		t.Fatalf("create harness: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
