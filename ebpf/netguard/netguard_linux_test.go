//go:build linux

package netguard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/internal/cgroup"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// The test binary doubles as the sandboxed program: with GH_NETGUARD_OP set
// it performs one socket operation and prints "ok" or the errno name.
func TestMain(m *testing.M) {
	if op := os.Getenv("GH_NETGUARD_OP"); op != "" {
		fmt.Print(helper(op, os.Getenv("GH_NETGUARD_ADDR")))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(op, addr string) string {
	ap, err := parseAddr(addr)
	if err != nil {
		return "bad address: " + err.Error()
	}
	family := syscall.AF_INET
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		family = syscall.AF_INET6
	}
	sotype := syscall.SOCK_STREAM
	if op == "sendto" {
		sotype = syscall.SOCK_DGRAM
	}
	fd, err := syscall.Socket(family, sotype, 0)
	if err != nil {
		return "socket: " + errName(err)
	}
	defer syscall.Close(fd)
	sa := sockaddr(ap)
	switch op {
	case "connect":
		err = syscall.Connect(fd, sa)
	case "sendto":
		err = syscall.Sendto(fd, []byte("x"), 0, sa)
	case "bind":
		err = syscall.Bind(fd, sa)
	case "listen":
		// Listen without bind: the kernel picks a port (no bind hook runs).
		if err = syscall.Listen(fd, 1); err == nil {
			var got syscall.Sockaddr
			if got, err = syscall.Getsockname(fd); err == nil {
				fmt.Printf("port %d\n", got.(*syscall.SockaddrInet4).Port)
				os.Stdout.Sync()
				// Wait for the test to try connecting.
				syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Sec: 2})
				var nfd int
				if nfd, _, err = syscall.Accept(fd); err == nil {
					syscall.Close(nfd)
					return "accepted"
				}
			}
		}
	default:
		return "unknown op " + op
	}
	if err != nil {
		return errName(err)
	}
	return "ok"
}

func errName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case syscall.EPERM:
			return "EPERM"
		case syscall.ECONNREFUSED:
			return "ECONNREFUSED"
		case syscall.EAGAIN:
			return "EAGAIN"
		}
		return fmt.Sprintf("errno %d", int(e))
	}
	return err.Error()
}

var groupSeq atomic.Int64

// newGroup makes a cgroup2 directory for the test, removed at cleanup.
func newGroup(t testing.TB) *cgroup.Group {
	t.Helper()
	testenv.RequireRoot(t)
	layout, err := cgroup.Detect()
	if err != nil {
		testenv.Skip(t, "cgroup2: "+err.Error())
	}
	name := fmt.Sprintf("netguard-%d-%d", os.Getpid(), groupSeq.Add(1))
	g, err := layout.Create("glasshouse-test", name, cgroup.Limits{})
	if err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		g.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.WaitEmpty(ctx)
		if err := g.Remove(); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
		// The shared parent goes too once no test uses it.
		os.Remove(filepath.Join(layout.Unified, "glasshouse-test"))
	})
	return g
}

// attach attaches mode to g, detached at cleanup.
func attach(t *testing.T, dir string, mode execution.Network) *Guard {
	t.Helper()
	guard, err := Attach(dir, mode)
	if err != nil {
		t.Fatalf("Attach(%s): %v", mode, err)
	}
	t.Cleanup(func() {
		if err := guard.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return guard
}

// runIn runs the helper operation in g and returns what it printed.
func runIn(t *testing.T, g *cgroup.Group, op, addr string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"GH_NETGUARD_OP=" + op, "GH_NETGUARD_ADDR=" + addr}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := g.StartInGroup(cmd); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper %s %s: %v", op, addr, err)
	}
	b, _ := os.ReadFile(out.Name())
	return string(b)
}

func TestNoneDeniesEverything(t *testing.T) {
	g := newGroup(t)
	attach(t, g.Path(), execution.NetworkNone)
	ln4 := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	ln6 := testenv.Listen(t, "tcp6", "[::1]:0")
	cases := []struct{ op, addr string }{
		{"connect", ln4.Addr().String()},
		{"connect", ln6.Addr().String()},
		{"sendto", "127.0.0.1:9"},
		{"sendto", "[::1]:9"},
		{"bind", "127.0.0.1:0"},
		{"bind", "[::1]:0"},
		{"connect", "192.0.2.1:80"},
	}
	for _, c := range cases {
		if got := runIn(t, g, c.op, c.addr); got != "EPERM" {
			t.Errorf("%s %s in network none: got %q, want EPERM", c.op, c.addr, got)
		}
	}
	if n := ln4.Accepted(1, 200*time.Millisecond) + ln6.Accepted(1, 200*time.Millisecond); n != 0 {
		t.Errorf("listeners outside the sandbox accepted %d connections", n)
	}
}

func TestNoneDropsPacketsOfImplicitSockets(t *testing.T) {
	g := newGroup(t)
	attach(t, g.Path(), execution.NetworkNone)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"GH_NETGUARD_OP=listen", "GH_NETGUARD_ADDR=0.0.0.0:0"}
	var out bytes.Buffer
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := g.StartInGroup(cmd); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	line := strings.TrimSpace(string(buf[:n]))
	port, err := strconv.Atoi(strings.TrimPrefix(line, "port "))
	if err != nil {
		t.Fatalf("helper said %q, want its port", line)
	}
	// The SYN is dropped on the way in, so this cannot complete.
	c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 500*time.Millisecond)
	if err == nil {
		c.Close()
		t.Errorf("connected to a socket in a network-none sandbox")
	}
	// Had the SYN got through, the helper would have printed "accepted"
	// before we stop it.
	cmd.Process.Kill()
	rest, _ := readAll(r)
	out.Write(rest)
	cmd.Wait()
	if strings.Contains(out.String(), "accepted") {
		t.Errorf("sandboxed listener accepted a connection: %q", out.String())
	}
}

func readAll(f *os.File) ([]byte, error) {
	defer f.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.Bytes(), err
}

func TestLoopbackAllowsOnlyLoopback(t *testing.T) {
	g := newGroup(t)
	attach(t, g.Path(), execution.NetworkLoopback)
	ln4 := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	ln6 := testenv.Listen(t, "tcp6", "[::1]:0")
	cases := []struct{ op, addr, want string }{
		{"connect", ln4.Addr().String(), "ok"},
		{"connect", ln6.Addr().String(), "ok"},
		{"sendto", "127.0.0.1:9", "ok"},
		{"sendto", "[::1]:9", "ok"},
		{"bind", "127.0.0.1:0", "ok"},
		{"bind", "[::1]:0", "ok"},
		{"connect", "192.0.2.1:80", "EPERM"},
		{"connect", "[2001:db8::1]:80", "EPERM"},
		{"sendto", "192.0.2.1:53", "EPERM"},
		{"bind", "0.0.0.0:0", "EPERM"},
		{"bind", "[::]:0", "EPERM"},
	}
	for _, c := range cases {
		if got := runIn(t, g, c.op, c.addr); got != c.want {
			t.Errorf("%s %s in network loopback: got %q, want %q", c.op, c.addr, got, c.want)
		}
	}
	if n := ln4.Accepted(1, 2*time.Second) + ln6.Accepted(1, 2*time.Second); n != 2 {
		t.Errorf("listeners accepted %d connections, want 2", n)
	}
}

func TestCloseDetachesAndDescendantsAreGuarded(t *testing.T) {
	g := newGroup(t)
	guard := attach(t, g.Path(), execution.NetworkNone)
	layout, err := cgroup.Detect()
	if err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(g.Path(), layout.Unified+"/")
	child, err := layout.Create(rel, "child", cgroup.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Remove()
	ln := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	if got := runIn(t, child, "connect", ln.Addr().String()); got != "EPERM" {
		t.Errorf("connect from a nested cgroup: got %q, want EPERM", got)
	}
	if err := guard.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := guard.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := runIn(t, child, "connect", ln.Addr().String()); got != "ok" {
		t.Errorf("connect after Close: got %q, want ok", got)
	}
}

func TestFullAttachesNothing(t *testing.T) {
	guard, err := Attach("/nonexistent/cgroup", execution.NetworkFull)
	if err != nil {
		t.Fatalf("Attach(full): %v", err)
	}
	if err := guard.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestAttachRejectsBadInput(t *testing.T) {
	if _, err := Attach("/sys/fs/cgroup", "internet"); !errors.Is(err, ErrInvalidMode) {
		t.Errorf("bad mode: got %v, want ErrInvalidMode", err)
	}
	if _, err := Attach("relative/dir", execution.NetworkNone); !errors.Is(err, ErrInvalidMode) {
		t.Errorf("relative dir: got %v, want ErrInvalidMode", err)
	}
	testenv.RequireRoot(t)
	if _, err := Attach("/nonexistent/cgroup", execution.NetworkNone); err == nil {
		t.Errorf("missing cgroup: got nil error")
	}
}

func BenchmarkAttachClose(b *testing.B) {
	g := newGroup(b)
	for b.Loop() {
		guard, err := Attach(g.Path(), execution.NetworkNone)
		if err != nil {
			b.Fatal(err)
		}
		guard.Close()
	}
}

func parseAddr(s string) (netip.AddrPort, error) { return netip.ParseAddrPort(s) }

func sockaddr(ap netip.AddrPort) syscall.Sockaddr {
	if ap.Addr().Is4() {
		return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// Enforce is idempotent: a second call attaches nothing more, whatever the
// length of the program names (the kernel truncates them to 15 bytes).
func TestEnforceAttachesOnce(t *testing.T) {
	g := newGroup(t)
	for i := 0; i < 3; i++ {
		if err := Enforce(g.Path(), execution.NetworkNone); err != nil {
			t.Fatalf("Enforce #%d: %v", i+1, err)
		}
	}
	requireAttachedOnce(t, g, "three Enforce calls")
	ln := testenv.Listen(t, "tcp4", "127.0.0.1:0")
	if got := runIn(t, g, "connect", ln.Addr().String()); got != "EPERM" {
		t.Errorf("connect under Enforce(none): got %q, want EPERM", got)
	}
}

func TestSameName(t *testing.T) {
	cases := []struct {
		reported, name string
		want           bool
	}{
		{"ng_deny_connect4", "ng_deny_connect4", true},
		{"ng_deny_connect", "ng_deny_connect4", true},
		{"ng_deny_connect", "ng_deny_connect6", true},
		{"ng_lo_bind4", "ng_lo_bind4", true},
		{"ng_lo_bind", "ng_lo_bind4", false},
		{"ng_deny_connect6", "ng_deny_connect4", false},
	}
	for _, c := range cases {
		if got := sameName(c.reported, c.name); got != c.want {
			t.Errorf("sameName(%q, %q) = %v", c.reported, c.name, got)
		}
	}
}

// TestProgNameMatchesInfo checks the cheap name lookup Enforce uses against
// cilium/ebpf's ProgramInfo for every program of both modes.
func TestProgNameMatchesInfo(t *testing.T) {
	for _, mode := range []execution.Network{execution.NetworkNone, execution.NetworkLoopback} {
		g := newGroup(t)
		attach(t, g.Path(), mode)
		f, err := os.Open(g.Path())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range modes[mode] {
			res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: p.attach})
			if err != nil || len(res.Programs) != 1 {
				t.Fatalf("%s: query: %v (%d programs)", p.name, err, len(res.Programs))
			}
			fd, err := progFDByID(uint32(res.Programs[0].ID))
			if err != nil {
				t.Fatal(err)
			}
			got, err := progName(fd)
			unix.Close(fd)
			if err != nil {
				t.Fatal(err)
			}
			want := infoName(t, res.Programs[0].ID)
			if len(want) > unix.BPF_OBJ_NAME_LEN-1 {
				want = want[:unix.BPF_OBJ_NAME_LEN-1]
			}
			if got != want || !sameName(got, p.name) {
				t.Errorf("%s: progName = %q, ProgramInfo name (truncated) = %q", p.name, got, want)
			}
		}
	}
	if _, err := progFDByID(0); err == nil {
		t.Error("progFDByID(0) succeeded")
	}
}

// infoName is the program's name as cilium/ebpf's ProgramInfo reports it:
// the check Enforce made before it read names directly.
func infoName(tb testing.TB, id ebpf.ProgramID) string {
	tb.Helper()
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		tb.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		tb.Fatal(err)
	}
	return info.Name
}

// TestEnforceDetachesDuplicates attaches the policy twice, as versions
// before Enforce compared names correctly did, and expects Enforce to
// leave one copy of each program.
func TestEnforceDetachesDuplicates(t *testing.T) {
	g := newGroup(t)
	attach(t, g.Path(), execution.NetworkNone)
	attach(t, g.Path(), execution.NetworkNone)
	if err := Enforce(g.Path(), execution.NetworkNone); err != nil {
		t.Fatal(err)
	}
	requireAttachedOnce(t, g, "Enforce")
}

// BenchmarkEnforce measures Enforce on a cgroup where the policy is already
// in force: what every CLI run pays. "info" is the same check reading names
// through ebpf.Program.Info, as Enforce did before: the baseline.
//
//	go test ./ebpf/netguard -run '^$' -bench BenchmarkEnforce
func BenchmarkEnforce(b *testing.B) {
	g := newGroup(b)
	if err := Enforce(g.Path(), execution.NetworkNone); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if err := Enforce(g.Path(), execution.NetworkNone); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("info", func(b *testing.B) {
		f, err := os.Open(g.Path())
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for b.Loop() {
			for _, p := range modes[execution.NetworkNone] {
				res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: p.attach})
				if err != nil {
					b.Fatal(err)
				}
				found := false
				for _, ap := range res.Programs {
					found = found || sameName(infoName(b, ap.ID), p.name)
				}
				if !found {
					b.Fatalf("%s not attached", p.name)
				}
			}
		}
	})
}

// requireAttachedOnce checks that g has exactly one program of each of
// network none's attach types, after what the test did.
func requireAttachedOnce(t *testing.T, g *cgroup.Group, after string) {
	t.Helper()
	f, err := os.Open(g.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range modes[execution.NetworkNone] {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: p.attach})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res.Programs); n != 1 {
			t.Errorf("%s: %d programs attached after %s, want 1", p.name, n, after)
		}
	}
}
