package topology

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named netns are bind-mounted (as by "ip netns add").
const NetnsDir = "/var/run/netns"

// NetnsPath returns the path of the named netns name: /var/run/netns/<name>.
func NetnsPath(name string) string {
	return filepath.Join(NetnsDir, name)
}

// prefixCounter numbers the prefixes of this process.
var prefixCounter atomic.Uint64

// NewPrefix returns a new run prefix "cilia-<pid>-<n>", unique per process
// and call. It skips prefixes a leftover netns already uses (a killed run
// of an earlier process with the same pid).
func NewPrefix() string {
	for {
		p := fmt.Sprintf("cilia-%d-%d", os.Getpid(), prefixCounter.Add(1))
		runs, err := Runs()
		if err != nil || len(runs[p]) == 0 {
			return p
		}
	}
}

// runNetns matches the netns names of a run and captures its prefix.
var runNetns = regexp.MustCompile(`^(cilia-[0-9]+-[0-9]+)-(f|[npx][0-9]+)$`)

// Runs lists the netns of runs found under /var/run/netns, by run prefix
// ("cilia-<pid>-<n>"), each list sorted. Other netns are ignored.
func Runs() (map[string][]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	runs := map[string][]string{}
	for _, e := range entries {
		if m := runNetns.FindStringSubmatch(e.Name()); m != nil {
			runs[m[1]] = append(runs[m[1]], e.Name())
		}
	}
	for _, names := range runs {
		slices.Sort(names)
	}
	return runs, nil
}

// PrefixPID returns the pid of the process that made the run with this
// prefix ("cilia-<pid>-<n>").
func PrefixPID(prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(prefix, "cilia-")
	if !ok {
		return 0, false
	}
	pidStr, n, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	if _, err := strconv.ParseUint(n, 10, 64); err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// Clean removes the netns of every run whose prefix match accepts (the CLI
// passes: the run's process is gone), and returns the names it removed,
// sorted. It carries on past a netns it cannot remove and reports all
// errors together.
func Clean(match func(prefix string) bool) ([]string, error) {
	runs, err := Runs()
	if err != nil {
		return nil, err
	}
	prefixes := make([]string, 0, len(runs))
	for p := range runs {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	var removed []string
	var errs []error
	for _, p := range prefixes {
		if !match(p) {
			continue
		}
		for _, name := range runs[p] {
			if err := deleteNamed(name); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}

// deleteNamed unmounts and removes the named netns name. A netns already
// gone is not an error; a file that is not mounted any more is removed.
func deleteNamed(name string) error {
	err := netns.DeleteNamed(name)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, unix.EINVAL): // not a mount point: a file left behind
		if err := os.Remove(NetnsPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove netns %s: %w", name, err)
		}
		return nil
	default:
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
}

// Do runs fn with the calling goroutine locked to its OS thread and that
// thread in the named netns netnsName, and moves the thread back to its
// netns afterwards. Goroutines fn starts do not run in the netns; sockets
// fn opens stay in it. If the thread cannot be moved back, it stays locked
// (the runtime ends it with the goroutine) and Do reports the error.
func Do(netnsName string, fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(NetnsPath(netnsName))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns %s: %w", netnsName, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", netnsName, err)
	}
	defer func() {
		if rerr := netns.Set(orig); rerr != nil {
			err = errors.Join(err, fmt.Errorf("leave netns %s: %w", netnsName, rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// space is one netns a topology made: its handle and a netlink handle in it.
type space struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
}

// sysctl is a setting of every netns; optional ones may be missing on
// older kernels.
type sysctl struct {
	path, value string
	optional    bool
}

// hostSysctls make every netns deterministic: no DAD, no router
// solicitations or RAs, no reverse-path filter, IPv6 on, MLD and IGMP
// reports at once.
// They are set before any device is made, so the "default" values apply
// to every device of the netns.
var hostSysctls = []sysctl{
	{path: "net/ipv6/conf/all/disable_ipv6", value: "0"},
	{path: "net/ipv6/conf/default/disable_ipv6", value: "0"},
	{path: "net/ipv6/conf/all/accept_dad", value: "0"},
	{path: "net/ipv6/conf/default/accept_dad", value: "0"},
	{path: "net/ipv6/conf/all/accept_ra", value: "0"},
	{path: "net/ipv6/conf/default/accept_ra", value: "0"},
	{path: "net/ipv6/conf/all/router_solicitations", value: "0"},
	{path: "net/ipv6/conf/default/router_solicitations", value: "0"},
	{path: "net/ipv4/conf/all/rp_filter", value: "0"},
	{path: "net/ipv4/conf/default/rp_filter", value: "0"},
	{path: "net/ipv4/conf/all/send_redirects", value: "0"},
	{path: "net/ipv4/conf/default/send_redirects", value: "0"},
	// MLD and IGMP reports (sent when a device joins its multicast
	// groups) go out within milliseconds, not over the first seconds.
	{path: "net/ipv6/conf/all/mldv1_unsolicited_report_interval", value: "1"},
	{path: "net/ipv6/conf/default/mldv1_unsolicited_report_interval", value: "1"},
	{path: "net/ipv6/conf/all/mldv2_unsolicited_report_interval", value: "1"},
	{path: "net/ipv6/conf/default/mldv2_unsolicited_report_interval", value: "1"},
	{path: "net/ipv4/conf/all/igmpv2_unsolicited_report_interval", value: "1"},
	{path: "net/ipv4/conf/default/igmpv2_unsolicited_report_interval", value: "1"},
	{path: "net/ipv4/conf/all/igmpv3_unsolicited_report_interval", value: "1"},
	{path: "net/ipv4/conf/default/igmpv3_unsolicited_report_interval", value: "1"},
}

// routerSysctls are added for the fabric and the nodes.
var routerSysctls = []sysctl{
	{path: "net/ipv4/ip_forward", value: "1"},
	{path: "net/ipv4/conf/all/forwarding", value: "1"},
	{path: "net/ipv4/conf/default/forwarding", value: "1"},
	{path: "net/ipv6/conf/all/forwarding", value: "1"},
	{path: "net/ipv6/conf/default/forwarding", value: "1"},
}

// netnsDirOnce prepares NetnsDir once per process.
var (
	netnsDirOnce sync.Once
	netnsDirErr  error
)

// prepareNetnsDir makes NetnsDir a shared mount point, as "ip netns add"
// does. Otherwise the first "ip netns add" on the machine bind-mounts the
// directory onto itself, over the netns mounted in it: removing one of
// those then unmounts the copy on top only, and the file stays busy. It
// does not bind a directory that already holds netns, for the same
// reason: they are someone else's.
func prepareNetnsDir() error {
	netnsDirOnce.Do(func() {
		if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
			netnsDirErr = fmt.Errorf("make %s: %w", NetnsDir, err)
			return
		}
		dir, err := filepath.EvalSymlinks(NetnsDir)
		if err != nil {
			netnsDirErr = fmt.Errorf("resolve %s: %w", NetnsDir, err)
			return
		}
		for bound := false; ; bound = true {
			err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
			if err == nil {
				return
			}
			if !errors.Is(err, unix.EINVAL) || bound {
				netnsDirErr = fmt.Errorf("make %s a shared mount: %w", dir, err)
				return
			}
			// Not a mount point yet: bind it onto itself first, unless
			// netns are mounted in it already.
			if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
				return
			}
			if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				netnsDirErr = fmt.Errorf("bind-mount %s onto itself: %w", dir, err)
				return
			}
		}
	})
	return netnsDirErr
}

// newSpace makes the named netns name, configures it (sysctls, lo up) and
// opens a netlink handle in it. A router forwards (fabric, nodes).
func newSpace(name string, router bool) (*space, error) {
	if err := prepareNetnsDir(); err != nil {
		return nil, err
	}
	type result struct {
		sp  *space
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the new netns and is never unlocked: the
		// runtime ends it with this goroutine, so no other goroutine ever
		// runs in the netns by accident.
		runtime.LockOSThread()
		sp, err := enterNewSpace(name, router)
		ch <- result{sp, err}
	}()
	r := <-ch
	return r.sp, r.err
}

// enterNewSpace does newSpace's work on a locked thread it leaves in the
// new netns.
func enterNewSpace(name string, router bool) (_ *space, err error) {
	ns, err := netns.NewNamed(name)
	if err != nil {
		if !errors.Is(err, fs.ErrExist) {
			// NewNamed leaves the file behind when the mount fails.
			_ = deleteNamed(name)
		}
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	sp := &space{name: name, ns: ns}
	defer func() {
		if err != nil {
			err = errors.Join(err, sp.remove())
		}
	}()
	settings := hostSysctls
	if router {
		settings = append(slices.Clone(hostSysctls), routerSysctls...)
	}
	for _, s := range settings {
		err := os.WriteFile("/proc/sys/"+s.path, []byte(s.value), 0o644)
		if err != nil && !(s.optional && errors.Is(err, fs.ErrNotExist)) {
			return nil, fmt.Errorf("set %s in netns %s: %w", strings.ReplaceAll(s.path, "/", "."), name, err)
		}
	}
	if sp.h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("open netlink in netns %s: %w", name, err)
	}
	lo, err := sp.h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo in netns %s: %w", name, err)
	}
	if err := sp.h.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("set lo up in netns %s: %w", name, err)
	}
	return sp, nil
}

// remove closes the handles and removes the netns; the kernel then
// destroys it with its devices (veths take their peers with them).
func (sp *space) remove() error {
	if sp.h != nil {
		sp.h.Close()
		sp.h = nil
	}
	if sp.ns.IsOpen() {
		sp.ns.Close()
	}
	return deleteNamed(sp.name)
}
