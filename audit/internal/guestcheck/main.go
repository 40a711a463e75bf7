// Command guestcheck is PID 1 of a throwaway VM that checks the collector
// and the network guard on another kernel (Debian's 6.1 cloud kernel, as a
// microVM guest runs). scripts/check-ebpf-guest.sh packs it with the static
// tester into an initramfs and boots it under QEMU; it prints one line per
// check, then "GUESTCHECK PASS" or "GUESTCHECK FAIL", and powers off.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"glasshouse.dev/glasshouse/audit"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/ebpf/netguard"
)

func main() {
	ok := run()
	if ok {
		fmt.Println("GUESTCHECK PASS")
	} else {
		fmt.Println("GUESTCHECK FAIL")
	}
	syscall.Sync()
	if os.Getpid() == 1 {
		syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	}
}

func mounts() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := syscall.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

func check(name string, err error) bool {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", name, err)
		return false
	}
	fmt.Printf("ok   %s\n", name)
	return true
}

func run() bool {
	if !check("mount proc, sysfs, cgroup2", mounts()) {
		return false
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	fmt.Printf("kernel %s\n", int8s(uts.Release[:]))
	caps := audit.Probe()
	fmt.Printf("capabilities: btf=%v tracefs=%v types=%v missing=%v\n", caps.BTF, caps.Tracefs, caps.ProgramTypes, caps.Missing)
	start := time.Now()
	c, err := audit.Open(audit.Config{})
	if !check(fmt.Sprintf("load collector (%s, socket hooks on %q)", time.Since(start).Round(time.Millisecond), hooks(c)), err) {
		return false
	}
	defer c.Close()
	all := true
	cg := "/sys/fs/cgroup/check"
	if err := os.Mkdir(cg, 0o755); err != nil {
		return check("create cgroup", err)
	}
	var st syscall.Stat_t
	syscall.Stat(cg, &st)
	agg := receipt.NewAggregator(time.Now(), receipt.Caps{})
	s, err := c.Start(context.Background(), profiling.Target{CgroupID: st.Ino, CgroupPath: cg}, agg)
	if !check("start session", err) {
		return false
	}
	guard, err := netguard.Attach(cg, execution.NetworkNone)
	all = check("attach network guard (none)", err) && all
	os.Chdir("/tmp")
	for _, args := range [][]string{{"fsops"}, {"fork", "10"}, {"execfail"}, {"connect", "9"}, {"iouring"}, {"mountns"}} {
		out, err := runIn(cg, args...)
		if args[0] == "connect" {
			if strings.TrimSpace(out) != "EPERM" {
				err = fmt.Errorf("connect printed %q, want EPERM", out)
			} else {
				err = nil
			}
		}
		if args[0] == "execfail" || args[0] == "iouring" {
			err = nil // they exit non-zero on purpose
		}
		all = check("run tester "+strings.Join(args, " "), err) && all
	}
	// Repeated opens the kernel counts, in a directory of their own.
	err = os.Mkdir("/tmp/rep", 0o755)
	if err == nil {
		err = os.Chdir("/tmp/rep")
	}
	if err == nil {
		_, err = runIn(cg, "repeats")
		os.Chdir("/tmp")
	}
	all = check("run tester repeats", err) && all
	rep, err := s.Stop(context.Background())
	all = check(fmt.Sprintf("stop session: events=%d dropped=%d blind=%q", rep.Events, rep.Dropped, rep.Blind), err) && all
	if guard != nil {
		all = check("detach network guard", guard.Close()) && all
	}
	procs, files, nets, _ := agg.Sections()
	fmt.Printf("receipt: %d processes, %d files, %d network entries\n", len(procs), len(files), len(nets))
	want := map[string]bool{"rename /tmp/a": false, "symlink /tmp/c": false, "exec /nonexistent/prog ENOENT": false, "connect 127.0.0.1:9 EPERM": false,
		// Made without an open, and opened by handle (as root, allowed).
		"create /tmp/node": false, "create /tmp/fifo": false, "create /tmp/fifo EEXIST": false, "read /tmp/e": false}
	for _, f := range files {
		k := f.Op + " " + f.Path
		if f.Errno != "" {
			k += " " + f.Errno
		}
		if _, ok := want[k]; ok {
			want[k] = true
		}
	}
	for _, n := range nets {
		k := fmt.Sprintf("%s %s:%d %s", n.Op, n.Address, n.Port, n.Errno)
		if _, ok := want[k]; ok {
			want[k] = true
		}
	}
	counts := map[string]int64{"read /tmp/rep/a": 5, "read /tmp/rep/b": 5, "write /tmp/rep/b": 2, "read /tmp/rep/c": 4, "read /tmp/rep/d/f7": 9,
		"read /tmp/rep/e/x": 2, "read /tmp/rep/e2/x": 3}
	for _, f := range files {
		if n, ok := counts[f.Op+" "+f.Path]; ok {
			var err error
			if f.Count != n {
				err = fmt.Errorf("count %d, want %d", f.Count, n)
			}
			all = check(fmt.Sprintf("receipt counts %s %s", f.Op, f.Path), err) && all
			delete(counts, f.Op+" "+f.Path)
		}
	}
	for k := range counts {
		all = check("receipt has "+k, errors.New("missing from the receipt")) && all
	}
	for k, seen := range want {
		var err error
		if !seen {
			err = errors.New("missing from the receipt")
		}
		all = check("receipt has "+k, err) && all
	}
	if len(procs) < 12 {
		all = check("receipt processes", fmt.Errorf("%d, want at least 12", len(procs))) && all
	}
	all = check("io_uring reported blind", blindHas(rep.Blind, "io_uring")) && all
	all = check("mount reported blind", blindHas(rep.Blind, "mount by pid")) && all
	return all
}

func blindHas(lines []string, s string) error {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return nil
		}
	}
	return fmt.Errorf("blind %q lacks %q", lines, s)
}

func hooks(c *audit.Collector) string {
	if c == nil {
		return ""
	}
	return c.SocketHooks()
}

// runIn runs /tester with args inside the cgroup directory dir.
func runIn(dir string, args ...string) (string, error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return "", err
	}
	defer syscall.Close(fd)
	cmd := exec.Command("/tester", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	out, err := cmd.Output()
	return string(out), err
}

func int8s(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}
