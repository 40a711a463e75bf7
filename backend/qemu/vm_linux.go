//go:build linux

package qemu

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/guest/transport"
)

// portName is the virtio-serial port guest/init looks for.
const portName = "glasshouse.0"

// vmSpec is what a VM is booted with.
type vmSpec struct {
	accel       string
	memoryBytes int64
	// timeout bounds the boot, until the guest's Hello.
	timeout time.Duration
	// extraArgs are added to the kernel command line (after the
	// configured ones, so they win).
	extraArgs string
	// prewarm has the guest load Python before it reports ready (pooled
	// guests: the boot is off the run's path, the first run is faster).
	prewarm bool
	// eagerCollector has the guest load its eBPF collector before it
	// reports ready.
	eagerCollector bool
	// net gives the guest a network device: QEMU user-mode networking
	// (slirp), which needs no host privileges.
	net bool
	// template boots a snapshot template: its RAM lives in a shared file
	// in templateDir, and once the guest parks, QEMU saves its device
	// state there and the VM ends.
	template    bool
	templateDir string
	// zygote has a template start a Python zygote (glasshouse.zygote=1).
	zygote bool
	// restore restores the guest from a template instead of booting it.
	restore *snapshot
	// wakePrewarm has a restored guest run Python once before it is ready.
	wakePrewarm bool
}

// Phases are how long each step of a VM's life took.
type Phases struct {
	// Accel is the accelerator the VM ran with.
	Accel string
	// Warm says the VM came from the pool.
	Warm bool
	// VMMStart is from spawning QEMU to QEMU connecting its sockets.
	VMMStart time.Duration
	// KernelToInit is the guest's uptime when init started (firmware and
	// kernel boot).
	KernelToInit time.Duration
	// InitToReady is from init's start to its Hello (modules, disks,
	// cgroups, collector).
	InitToReady time.Duration
	// Boot is from spawning QEMU to the handshake's end, on the host clock.
	Boot time.Duration
	// Prepare is the whole of Prepare: pool take or boot.
	Prepare time.Duration
	// GuestStart is from the guest receiving the run to exec (the rest of
	// "init to Python").
	GuestStart time.Duration
	// Run is how long the workload ran, in the guest.
	Run time.Duration
	// Started is from sending the run to the guest's Started, on the host.
	Started time.Duration
	// Teardown is from killing QEMU after the guest's Done to its exit.
	Teardown time.Duration
	// Total is from Start to the result on the host.
	Total time.Duration
	// Restored says the guest was restored from a snapshot rather than
	// booted; Boot is then the restore, and Wake the guest's part of it
	// (reseed, clock, workspace mount, prewarm).
	Restored bool
	Wake     time.Duration
}

// machine is one booted guest waiting on its transport for a run.
type machine struct {
	id      string
	dir     string
	cmd     *exec.Cmd
	conn    *transport.Conn
	hello   transport.Hello
	accel   string
	memory  int64
	console *ring
	phases  Phases
	logDir  string
	maxLogs int

	exited  chan struct{}
	waitErr error
	// assigned is set once the machine serves a run.
	assigned atomic.Bool

	// untrack removes the machine from its backend's live set.
	untrack func()

	closeOnce sync.Once
	closeErr  error
}

// Alive implements vmpool.Machine.
func (m *machine) Alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Close implements vmpool.Machine: it kills QEMU, reaps it and removes the
// VM's directory (sockets and workspace image). It is idempotent.
func (m *machine) Close() error {
	m.closeOnce.Do(func() {
		var errs []error
		if m.conn != nil {
			m.conn.Close()
		}
		if m.cmd != nil && m.cmd.Process != nil {
			if m.Alive() {
				if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
					errs = append(errs, fmt.Errorf("kill qemu: %w", err))
				}
			}
			<-m.exited
		}
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove vm dir: %w", err))
		}
		if m.untrack != nil {
			m.untrack()
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}

// fail keeps the console log and returns an infrastructure error that
// carries its tail and path.
func (m *machine) fail(what string, err error) error {
	path, kerr := keepConsole(m.logDir, m.id, m.console, m.maxLogs)
	where := "console log " + path
	if kerr != nil {
		where = kerr.Error()
	} else if path == "" {
		where = "console log not kept (qemu.max_logs=0)"
	}
	state := "running"
	if !m.Alive() {
		state = "exited: " + exitString(m.waitErr)
	}
	return fmt.Errorf("%w: vm %s (%s, qemu %s): %s: %w; %s; console: %s",
		execution.ErrInfrastructure, m.id, m.accel, state, what, err, where, m.console.tail(6))
}

func exitString(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// kernelCmdline is the guest kernel command line: a quiet serial console,
// reboot on panic (which -no-reboot turns into QEMU exiting), and
// guest/init's transport. mitigations=off: the guest kernel runs one
// sandbox and is itself the boundary; the host's kernel and QEMU keep
// their own mitigations, and the guest's would only slow emulation.
func kernelCmdline(extra ...string) string {
	args := []string{
		"console=ttyS0", "quiet", "loglevel=3", "panic=-1", "reboot=t", "edd=off",
		"8250.nr_uarts=1", "i8042.noaux", "i8042.nokbd", "i8042.nopnp",
		"cryptomgr.notests", "random.trust_cpu=on", "audit=0", "nowatchdog",
		"mitigations=off", "tsc=reliable", "no_timer_check",
		"glasshouse.port=" + portName,
	}
	for _, e := range extra {
		if e = strings.TrimSpace(e); e != "" {
			args = append(args, e)
		}
	}
	return strings.Join(args, " ")
}

// cmdline is the kernel command line a VM of vs boots with.
func (b *Backend) cmdline(vs vmSpec) string {
	var words []string
	if vs.accel == "tcg" {
		// Under emulation the guest's TSC runs at the host's rate, and the
		// kernel's PIT calibration of it fails when the host is busy, which
		// can stall the boot: tell the guest the rate instead.
		if khz := hostTSCkHz(); khz > 0 {
			words = append(words, "tsc_early_khz="+strconv.FormatInt(khz, 10))
		}
		// No user-space ASLR in emulated guests: QEMU keys translated code
		// by virtual address, so randomized mappings make every Python
		// process translate the interpreter afresh, and a pooled guest's
		// prewarm would not carry over to the run (about a third of a
		// warm Python start). The workload is arbitrary code by design,
		// and the rootfs is mounted nosuid, so no privileged process in
		// the guest's user space has a layout to hide; the guest kernel
		// keeps KASLR.
		words = append(words, "norandmaps")
	}
	if vs.prewarm {
		words = append(words, "glasshouse.prewarm=1")
	}
	if vs.eagerCollector {
		words = append(words, "glasshouse.collector=eager")
	}
	if vs.net {
		words = append(words, "glasshouse.net=1")
	}
	if vs.template {
		words = append(words, "glasshouse.snapshot=1")
	}
	if vs.zygote {
		words = append(words, "glasshouse.zygote=1")
	}
	return kernelCmdline(strings.Join(words, " "), b.cfg.KernelArgs, vs.extraArgs)
}

// qemuOpt escapes a value for QEMU's comma-separated option syntax.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// qemuArgs builds QEMU's command line for one VM. A template and the
// guests restored from it get the same machine and devices, in the same
// order; only file paths and the RAM's sharing differ.
func qemuArgs(a artifacts, vs vmSpec, cpus, tbMiB int, dir, cmdline string) []string {
	cpu, accel := "max", vs.accel
	if vs.accel == "kvm" {
		cpu = "host"
	}
	if vs.accel == "tcg" && tbMiB > 0 {
		// The translation cache is the bulk of an emulated VM's own memory.
		accel += ",tb-size=" + strconv.Itoa(tbMiB)
	}
	mib := (vs.memoryBytes + (1 << 20) - 1) >> 20
	machine := "microvm,acpi=on,rtc=on"
	work := filepath.Join(dir, "work.img")
	var pre, post []string
	switch {
	case vs.template:
		machine += ",memory-backend=ram"
		pre = []string{"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%dM,mem-path=%s,share=on", mib, qemuOpt(filepath.Join(vs.templateDir, snapMemFile)))}
		work = filepath.Join(vs.templateDir, snapWorkFile)
	case vs.restore != nil:
		machine += ",memory-backend=ram"
		pre = []string{"-object", fmt.Sprintf("memory-backend-file,id=ram,size=%dM,mem-path=%s,share=off", mib, qemuOpt(vs.restore.path(snapMemFile)))}
		post = []string{"-incoming", "defer"}
	}
	args := append([]string{
		"-M", machine,
		"-accel", accel, "-cpu", cpu,
		"-m", strconv.FormatInt(mib, 10), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
	}, pre...)
	args = append(args,
		"-chardev", "socket,id=con,path="+qemuOpt(filepath.Join(dir, "con.sock")),
		"-serial", "chardev:con",
		"-kernel", a.kernel, "-initrd", a.initramfs, "-append", cmdline,
		"-drive", "id=root,file="+qemuOpt(a.rootfs)+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=root,serial=ghroot",
		"-drive", "id=work,file="+qemuOpt(work)+",format=raw,if=none,cache=unsafe",
		"-device", "virtio-blk-device,drive=work,serial=ghwork",
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=ctl,path="+qemuOpt(filepath.Join(dir, "ctl.sock")),
		"-device", "virtserialport,chardev=ctl,name="+portName,
	)
	if vs.net {
		// User-mode networking: the guest is 10.0.2.15 behind a NAT in
		// QEMU, the host is reachable as 10.0.2.2, DNS is 10.0.2.3.
		args = append(args, "-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0")
	}
	if vs.template || vs.restore != nil {
		args = append(args, "-chardev", "socket,id=mon,path="+qemuOpt(filepath.Join(dir, "qmp.sock")), "-mon", "chardev=mon,mode=control")
	}
	return append(args, post...)
}

// makeWorkspace creates the VM's empty workspace disk: a sparse ext4 image
// owned by the sandbox user, without a journal (it lives for one run).
func makeWorkspace(ctx context.Context, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-O", "^has_journal",
		"-E", "root_owner=1000:1000,lazy_itable_init=1,nodiscard", "-L", "ghwork", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// accept accepts one connection on l, giving up when ctx is done or QEMU
// exits.
func accept(ctx context.Context, l net.Listener, exited <-chan struct{}) (net.Conn, error) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
		case <-exited:
		case <-stop:
			return
		}
		l.Close()
	}()
	c, err := l.Accept()
	if err != nil {
		select {
		case <-exited:
			return nil, errors.New("qemu exited before connecting")
		default:
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return c, nil
}

// vmDirPrefix starts the name of every VM directory: the prefix, the
// owning process's pid, "-", random (see Reap).
const vmDirPrefix = "glasshouse-qemu-"

// bootVM starts QEMU and waits until the guest is ready for a run: booted
// and past the handshake, or restored from a template and awake. With
// vs.template it boots a template and saves it instead; the machine it
// returns has exited. The returned machine must be closed. Errors wrap
// execution.ErrInfrastructure.
func (b *Backend) bootVM(ctx context.Context, vs vmSpec) (_ *machine, err error) {
	a, err := findArtifacts(b.cfg.ArtifactsDir)
	if err != nil {
		return nil, err
	}
	// The directory is created and tracked under one lock, so that a check
	// for strays never sees one without the other.
	b.liveMu.Lock()
	dir, err := os.MkdirTemp(b.cfg.StateDir, vmDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		b.liveMu.Unlock()
		return nil, fmt.Errorf("%w: create vm dir: %v", execution.ErrInfrastructure, err)
	}
	m := &machine{id: filepath.Base(dir), dir: dir, accel: vs.accel, memory: vs.memoryBytes, console: &ring{},
		exited: make(chan struct{}), logDir: b.cfg.LogDir, maxLogs: b.cfg.MaxLogs}
	m.phases.Accel = vs.accel
	b.live[m.id] = m
	b.liveMu.Unlock()
	m.untrack = func() { b.untrack(m) }
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if len(filepath.Join(dir, "ctl.sock")) > maxSocketPath {
		return nil, fmt.Errorf("%w: state dir %q is too long for unix sockets (max %d bytes)", execution.ErrInfrastructure, b.cfg.StateDir, maxSocketPath)
	}
	switch {
	case vs.template:
		// The template's blank workspace is in its directory already.
	case vs.restore != nil:
		// A copy of the template's workspace disk as it was saved, which
		// the template had mounted: it matches the restored guest's caches.
		if err := copySparse(vs.restore.path(snapWorkFile), filepath.Join(dir, "work.img")); err != nil {
			return nil, fmt.Errorf("%w: copy workspace disk: %v", execution.ErrInfrastructure, err)
		}
	default:
		if err := makeWorkspace(ctx, filepath.Join(dir, "work.img"), b.cfg.Workspace); err != nil {
			return nil, fmt.Errorf("%w: create workspace disk: %v", execution.ErrInfrastructure, err)
		}
	}
	listen := func(name string) (net.Listener, error) {
		l, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("%w: listen: %v", execution.ErrInfrastructure, err)
		}
		return l, nil
	}
	conL, err := listen("con.sock")
	if err != nil {
		return nil, err
	}
	defer conL.Close()
	ctlL, err := listen("ctl.sock")
	if err != nil {
		return nil, err
	}
	defer ctlL.Close()
	var qmpL net.Listener
	if vs.template || vs.restore != nil {
		if qmpL, err = listen("qmp.sock"); err != nil {
			return nil, err
		}
		defer qmpL.Close()
	}

	m.cmd = exec.Command(b.cfg.Binary, qemuArgs(a, vs, b.cfg.CPUs, b.cfg.TBMiB, dir, b.cmdline(vs))...)
	// QEMU gets nothing from the host environment, and dies with us.
	m.cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	m.cmd.Dir = dir
	m.cmd.Stdout, m.cmd.Stderr = m.console, m.console
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if b.orphanQEMU {
		m.cmd.SysProcAttr.Pdeathsig = 0
	}
	if vs.restore != nil {
		// The boot's messages are in the template's console, not here.
		fmt.Fprintf(m.console, "[glasshouse: restoring snapshot template %s (%s)]\n", vs.restore.key[:16], vs.restore.v)
		// The saved device state, read by QEMU as fd 3 ("fd:3").
		state, err := os.Open(vs.restore.path(snapStateFile))
		if err != nil {
			return nil, fmt.Errorf("%w: open snapshot state: %v", execution.ErrInfrastructure, err)
		}
		defer state.Close()
		m.cmd.ExtraFiles = []*os.File{state}
	}
	// Boots compete for the same CPUs, and under emulation each one slows
	// the others; queue them instead. The boot timeout starts once a slot
	// is taken.
	select {
	case b.boots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: wait for a boot slot: %v", execution.ErrInfrastructure, ctx.Err())
	}
	defer func() { <-b.boots }()
	spawned := time.Now()
	if err := m.cmd.Start(); err != nil {
		m.cmd = nil
		return nil, fmt.Errorf("%w: start %s: %v", execution.ErrInfrastructure, b.cfg.Binary, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()

	bctx, cancel := context.WithTimeout(ctx, vs.timeout)
	defer cancel()
	con, err := accept(bctx, conL, m.exited)
	if err != nil {
		return nil, m.fail("connect console", err)
	}
	go readConsole(con, m.console)
	ctl, err := accept(bctx, ctlL, m.exited)
	if err != nil {
		return nil, m.fail("connect transport", err)
	}
	m.conn = transport.NewConn(ctl, 0)
	var q *qmpConn
	if qmpL != nil {
		mon, err := accept(bctx, qmpL, m.exited)
		if err != nil {
			return nil, m.fail("connect monitor", err)
		}
		defer mon.Close()
		if q, err = newQMP(bctx, mon); err != nil {
			return nil, m.fail("monitor", err)
		}
	}
	m.phases.VMMStart = time.Since(spawned)
	// Until the guest is ready, the boot's deadline or QEMU's exit closes
	// the transport, failing whatever waits on it.
	stop := context.AfterFunc(bctx, func() { m.conn.Close() })
	go func() {
		select {
		case <-m.exited:
			m.conn.Close()
		case <-bctx.Done():
		}
	}()
	what := "handshake"
	if vs.restore != nil {
		what = "restore"
		err = b.wake(bctx, m, q, vs)
	} else {
		err = b.handshake(bctx, m, vs)
		if err == nil && vs.template {
			what = "save template"
			err = b.saveTemplate(bctx, m, q, vs)
		}
	}
	stopped := stop()
	if err != nil {
		if !m.Alive() && !vs.template {
			err = fmt.Errorf("%w (qemu exited)", err)
		} else if bctx.Err() != nil {
			err = fmt.Errorf("guest did not answer within %s: %w", vs.timeout, bctx.Err())
		}
		return nil, m.fail(what, err)
	}
	if !vs.template && (!stopped || !m.Alive()) {
		return nil, m.fail(what, errors.New("the transport closed"))
	}
	m.phases.Boot = time.Since(spawned)
	return m, nil
}

// handshake waits for a booted guest's Hello and answers it.
func (b *Backend) handshake(ctx context.Context, m *machine, vs vmSpec) error {
	hello, version, err := transport.HostHandshake(ctx, m.conn)
	if err != nil {
		return err
	}
	if vs.template && version < 2 {
		return fmt.Errorf("the guest speaks transport version %d; snapshots need 2 (rebuild the initramfs: scripts/build-guest.sh)", version)
	}
	m.hello = hello
	m.phases.KernelToInit = time.Duration(hello.InitStartNS)
	m.phases.InitToReady = time.Duration(hello.ReadyNS - hello.InitStartNS)
	return nil
}

// saveTemplate waits for a template guest to park, saves its device state
// next to its RAM with x-ignore-shared (the RAM stays in its shared file)
// and ends QEMU.
func (b *Backend) saveTemplate(ctx context.Context, m *machine, q *qmpConn, vs vmSpec) error {
	f, err := m.conn.ReadFrame()
	if err != nil {
		return fmt.Errorf("wait for the template to park: %w", err)
	}
	var p transport.Parked
	if err := transport.Decode(f, &p); err != nil {
		return fmt.Errorf("wait for the template to park: %w", err)
	}
	if _, err := q.execute(ctx, "migrate-set-capabilities", ignoreShared); err != nil {
		return err
	}
	// The save runs while the guest waits on its transport; QEMU stops the
	// VM for the last step, so the RAM file and the state agree.
	uri := "exec:cat > " + quoteShell(filepath.Join(vs.templateDir, snapStateFile))
	if _, err := q.execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return err
	}
	if err := q.waitMigration(ctx); err != nil {
		return err
	}
	_, _ = q.execute(ctx, "quit", nil)
	select {
	case <-m.exited:
	case <-ctx.Done():
		return fmt.Errorf("qemu did not quit after the save: %w", ctx.Err())
	}
	return nil
}

// ignoreShared is the migration capability that leaves RAM in shared
// memory backends out of the migration stream.
var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// wakeEntropy is how many random bytes a restored guest gets.
const wakeEntropy = 64

// wake loads a template's device state into a fresh QEMU (its RAM is the
// template's file, mapped copy-on-write), which then resumes the guest, and
// wakes the guest: fresh entropy, the host's clock, its own workspace.
func (b *Backend) wake(ctx context.Context, m *machine, q *qmpConn, vs vmSpec) error {
	if _, err := q.execute(ctx, "migrate-set-capabilities", ignoreShared); err != nil {
		return err
	}
	if _, err := q.execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:3"}); err != nil {
		return err
	}
	w := transport.Wake{Entropy: make([]byte, wakeEntropy), HostTimeNS: time.Now().UnixNano(), Prewarm: vs.wakePrewarm}
	if _, err := rand.Read(w.Entropy); err != nil {
		return fmt.Errorf("entropy: %w", err)
	}
	if err := m.conn.Send(&w); err != nil {
		return fmt.Errorf("send wake: %w", err)
	}
	f, err := m.conn.ReadFrame()
	if err != nil {
		return fmt.Errorf("wait for the guest to wake: %w", err)
	}
	if f.Type == transport.TypeError {
		var e transport.Error
		if err := transport.Decode(f, &e); err != nil {
			return err
		}
		return fmt.Errorf("guest: %s", e.Message)
	}
	var awake transport.Awake
	if err := transport.Decode(f, &awake); err != nil {
		return err
	}
	// A guest that kept the template's random state or clock is refused.
	if awake.ReseedError != "" {
		return fmt.Errorf("guest could not reseed its random number generator: %s", awake.ReseedError)
	}
	if awake.ClockError != "" {
		return fmt.Errorf("guest could not set its clock: %s", awake.ClockError)
	}
	m.hello = vs.restore.hello
	m.phases.Restored = true
	m.phases.Wake = time.Duration(awake.WakeNS)
	m.phases.InitToReady = time.Duration(awake.WakeNS)
	return nil
}

var (
	tscOnce sync.Once
	tscKHz  int64
)

// hostTSCkHz returns the host CPU's clock in kHz from /proc/cpuinfo, or 0.
func hostTSCkHz() int64 {
	tscOnce.Do(func() {
		b, err := os.ReadFile("/proc/cpuinfo")
		if err != nil {
			return
		}
		tscKHz = parseCPUMHz(string(b))
	})
	return tscKHz
}

// parseCPUMHz returns the first "cpu MHz" of a /proc/cpuinfo in kHz, or 0.
func parseCPUMHz(cpuinfo string) int64 {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz < 100 || mhz > 100000 {
			return 0
		}
		return int64(mhz * 1000)
	}
	return 0
}
