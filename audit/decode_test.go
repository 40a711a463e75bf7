package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

// encode builds a record as the BPF side writes it.
func encode(r record) []byte {
	n := headerSize
	for _, s := range r.Str {
		n += len(s)
	}
	b := make([]byte, n)
	le := binary.LittleEndian
	le.PutUint64(b[0:], r.KTime)
	le.PutUint32(b[8:], r.Kind)
	le.PutUint32(b[12:], r.PID)
	le.PutUint32(b[16:], r.TID)
	le.PutUint32(b[20:], r.PPID)
	le.PutUint32(b[24:], r.UID)
	le.PutUint32(b[28:], r.Flags)
	le.PutUint64(b[32:], uint64(r.Ret))
	le.PutUint64(b[40:], r.Arg)
	for i, s := range r.Sess {
		le.PutUint32(b[48+4*i:], s)
	}
	le.PutUint16(b[64:], uint16(len(r.Sess)))
	le.PutUint16(b[66:], r.NR)
	le.PutUint16(b[76:], r.Family)
	le.PutUint16(b[78:], r.Port)
	le.PutUint16(b[80:], r.SoType)
	le.PutUint16(b[82:], r.Proto)
	copy(b[84:100], r.Addr[:])
	off := headerSize
	for i, s := range r.Str {
		le.PutUint16(b[68+2*i:], uint16(len(s)))
		off += copy(b[off:], s)
	}
	return b
}

// encodeCounts builds an evCounts record.
func encodeCounts(tid uint32, sess []uint32, counts [cacheSlots]slotCount) []byte {
	b := encode(record{Kind: evCounts, TID: tid, Sess: sess})
	b = append(b, make([]byte, 8*cacheSlots)...)
	for i, c := range counts {
		binary.LittleEndian.PutUint32(b[headerSize+8*i:], c.Gen)
		binary.LittleEndian.PutUint32(b[headerSize+8*i+4:], c.Count)
	}
	return b
}

// cachedOpen returns an open record that took cache slot ref.
func cachedOpenRecord(ref cacheRef) record {
	r := record{Kind: evSyscall, NR: sysOpenat, Flags: flagCached | flagResolved0, Sess: []uint32{1}, Str: strs("/etc/hosts")}
	le := binary.LittleEndian
	le.PutUint32(r.Addr[0:], ref.Slot)
	le.PutUint32(r.Addr[4:], ref.Gen)
	le.PutUint32(r.Addr[8:], ref.PrevGen)
	le.PutUint32(r.Addr[12:], ref.PrevCount)
	return r
}

func strs(s ...string) (out [numStrings][]byte) {
	for i, v := range s {
		out[i] = []byte(v)
	}
	return out
}

var epoch = time.Unix(1700000000, 0).UTC()

func clock(k uint64) time.Time { return epoch.Add(time.Duration(k)) }

func ipv4(a, b, c, d byte) (out [16]byte) {
	out[0], out[1], out[2], out[3] = a, b, c, d
	return out
}

func ipv6Loopback() (out [16]byte) {
	out[15] = 1
	return out
}

// decodeCases pair records with the event they must become.
var decodeCases = []struct {
	name string
	rec  record
	want *profiling.Event
}{
	{
		name: "fork",
		rec:  record{Kind: evFork, KTime: 5, PID: 10, TID: 10, PPID: 9, UID: 1000, Sess: []uint32{1}},
		want: &profiling.Event{Kind: profiling.KindFork, Time: clock(5), PID: 10, PPID: 9, UID: 1000},
	},
	{
		name: "exec",
		rec:  record{Kind: evExec, PID: 10, PPID: 9, Sess: []uint32{1}, Str: strs("/usr/bin/python3.11", "python3\x00-c\x00print(1)\x00", "/work")},
		want: &profiling.Event{Kind: profiling.KindExec, PID: 10, PPID: 9, Exe: "/usr/bin/python3.11", Argv: []string{"python3", "-c", "print(1)"}, Cwd: "/work"},
	},
	{
		name: "exec with an empty argument",
		rec:  record{Kind: evExec, PID: 10, Sess: []uint32{1}, Str: strs("/bin/echo", "echo\x00\x00x\x00", "/")},
		want: &profiling.Event{Kind: profiling.KindExec, PID: 10, Exe: "/bin/echo", Argv: []string{"echo", "", "x"}, Cwd: "/"},
	},
	{
		name: "exit code",
		rec:  record{Kind: evExit, PID: 10, Ret: 3 << 8, Sess: []uint32{1}},
		want: &profiling.Event{Kind: profiling.KindExit, PID: 10, ExitCode: 3},
	},
	{
		name: "exit by signal",
		rec:  record{Kind: evExit, PID: 10, Ret: 9, Sess: []uint32{1}},
		want: &profiling.Event{Kind: profiling.KindExit, PID: 10, ExitCode: -1, Signal: "SIGKILL"},
	},
	{
		name: "open resolved by the kernel",
		rec:  record{Kind: evSyscall, NR: sysOpenat, Ret: 3, Arg: 0, Flags: flagResolved0, PID: 7, Sess: []uint32{1}, Str: strs("/etc/hostname")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpRead, Path: "/etc/hostname"},
	},
	{
		name: "open for create",
		rec:  record{Kind: evSyscall, NR: sysOpenat, Ret: 3, Arg: oCreat | 1, Flags: flagResolved0, PID: 7, Sess: []uint32{1}, Str: strs("/w/out.txt")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpCreate, Path: "/w/out.txt"},
	},
	{
		name: "O_CREAT on a device is a write",
		rec:  record{Kind: evSyscall, NR: sysOpen, Ret: 3, Arg: oCreat | 1, Flags: flagResolved0 | flagNotReg0, PID: 7, Sess: []uint32{1}, Str: strs("/dev/null")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpWrite, Path: "/dev/null"},
	},
	{
		name: "creat",
		rec:  record{Kind: evSyscall, NR: sysCreat, Ret: 3, Arg: oCreat | 1 | oTrunc, Flags: flagResolved0, PID: 7, Sess: []uint32{1}, Str: strs("/w/c")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpCreate, Path: "/w/c"},
	},
	{
		name: "failed relative open joins its base",
		rec:  record{Kind: evSyscall, NR: sysOpenat, Ret: -2, Arg: 2, PID: 7, Sess: []uint32{1}, Str: strs("../x/missing", "/w/sub")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpWrite, Path: "/w/x/missing", Errno: "ENOENT"},
	},
	{
		name: "failed absolute open is cleaned",
		rec:  record{Kind: evSyscall, NR: sysOpen, Ret: -13, PID: 7, Sess: []uint32{1}, Str: strs("/etc//shadow/.")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpRead, Path: "/etc/shadow", Errno: "EACCES"},
	},
	{
		name: "mknodat of a FIFO is a create",
		rec:  record{Kind: evSyscall, NR: sysMknodat, Arg: 0o010644, PID: 7, Sess: []uint32{1}, Str: strs("fifo", "/w")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpCreate, Path: "/w/fifo"},
	},
	{
		name: "failed mknod",
		rec:  record{Kind: evSyscall, NR: sysMknod, Ret: -17, Arg: 0o100644, PID: 7, Sess: []uint32{1}, Str: strs("/w/node")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpCreate, Path: "/w/node", Errno: "EEXIST"},
	},
	{
		name: "open_by_handle_at names the file opened",
		rec:  record{Kind: evSyscall, NR: sysOpenByHandleAt, Ret: 4, Arg: 2, Flags: flagResolved0, PID: 7, Sess: []uint32{1}, Str: strs("/etc/shadow")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpWrite, Path: "/etc/shadow"},
	},
	{
		name: "refused open_by_handle_at names its mount's directory",
		rec:  record{Kind: evSyscall, NR: sysOpenByHandleAt, Ret: -1, PID: 7, Sess: []uint32{1}, Str: strs("", "/w")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpRead, Path: "/w", Errno: "EPERM"},
	},
	{
		name: "rename with both bases",
		rec:  record{Kind: evSyscall, NR: sysRenameat2, PID: 7, Sess: []uint32{1}, Str: strs("a", "/w", "b", "/w/d")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpRename, Path: "/w/a", Target: "/w/d/b"},
	},
	{
		name: "symlink keeps its content verbatim",
		rec:  record{Kind: evSyscall, NR: sysSymlinkat, PID: 7, Sess: []uint32{1}, Str: strs("l", "/w", "../../etc/passwd")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpSymlink, Path: "/w/l", Target: "../../etc/passwd"},
	},
	{
		name: "unlinkat AT_REMOVEDIR is rmdir",
		rec:  record{Kind: evSyscall, NR: sysUnlinkat, Arg: atRemovedir, PID: 7, Sess: []uint32{1}, Str: strs("/w/d")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpRmdir, Path: "/w/d"},
	},
	{
		name: "ftruncate resolved",
		rec:  record{Kind: evSyscall, NR: sysFtruncate, Flags: flagResolved0, PID: 7, Sess: []uint32{1}, Str: strs("/w/f")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpTruncate, Path: "/w/f"},
	},
	{
		name: "failed exec",
		rec:  record{Kind: evSyscall, NR: sysExecve, Ret: -2, PID: 7, Sess: []uint32{1}, Str: strs("prog", "/w")},
		want: &profiling.Event{Kind: profiling.KindExecFailed, PID: 7, Exe: "/w/prog", Errno: "ENOENT"},
	},
	{
		name: "successful execve is left to sched_process_exec",
		rec:  record{Kind: evSyscall, NR: sysExecve, Ret: 0, PID: 7, Sess: []uint32{1}, Str: strs("/bin/true")},
	},
	{
		name: "denied connect",
		rec:  record{Kind: evSyscall, NR: sysConnect, Ret: -1, PID: 7, Sess: []uint32{1}, Flags: flagAddr | flagAddrKern, Family: afInet, SoType: sockStream, Proto: ipprotoTCP, Port: 443, Addr: ipv4(93, 184, 216, 34)},
		want: &profiling.Event{Kind: profiling.KindNet, PID: 7, Op: receipt.NetConnect, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "93.184.216.34", Port: 443, Errno: "EPERM"},
	},
	{
		name: "udp sendto over IPv6",
		rec:  record{Kind: evSyscall, NR: sysSendto, Ret: 4, PID: 7, Sess: []uint32{1}, Flags: flagAddr, Family: afInet6, SoType: sockDgram, Port: 53, Addr: ipv6Loopback()},
		want: &profiling.Event{Kind: profiling.KindNet, PID: 7, Op: receipt.NetSendto, Family: receipt.FamilyInet6, Protocol: receipt.ProtoUDP, Address: "::1", Port: 53},
	},
	{
		name: "abstract unix connect",
		rec:  record{Kind: evSyscall, NR: sysConnect, Ret: -111, PID: 7, Sess: []uint32{1}, Flags: flagAddr, Family: afUnix, SoType: sockStream, Str: strs("\x00dbus\x00")},
		want: &profiling.Event{Kind: profiling.KindNet, PID: 7, Op: receipt.NetConnect, Family: receipt.FamilyUnix, Address: "@dbus@", Errno: "ECONNREFUSED"},
	},
	{
		name: "unix path connect",
		rec:  record{Kind: evSyscall, NR: sysConnect, Ret: -2, PID: 7, Sess: []uint32{1}, Flags: flagAddr, Family: afUnix, SoType: sockStream, Str: strs("/run/nscd/socket\x00\x00")},
		want: &profiling.Event{Kind: profiling.KindNet, PID: 7, Op: receipt.NetConnect, Family: receipt.FamilyUnix, Address: "/run/nscd/socket", Errno: "ENOENT"},
	},
	{
		name: "accept4 on its local endpoint",
		rec:  record{Kind: evSyscall, NR: sysAccept4, Ret: 5, PID: 7, Sess: []uint32{1}, Flags: flagAddr | flagSock, Family: afInet, SoType: sockStream, Proto: ipprotoTCP, Port: 8080, Addr: ipv4(127, 0, 0, 1)},
		want: &profiling.Event{Kind: profiling.KindNet, PID: 7, Op: receipt.NetAccept, Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "127.0.0.1", Port: 8080},
	},
	{
		name: "netlink bind is not network",
		rec:  record{Kind: evSyscall, NR: sysBind, PID: 7, Sess: []uint32{1}, Family: 16},
	},
	{
		name: "io_uring_setup is a blind spot, not an event",
		rec:  record{Kind: evSyscall, NR: sysIOURingSetup, Ret: 3, PID: 7, Sess: []uint32{1}},
	},
	{
		name: "unknown errno keeps its number",
		rec:  record{Kind: evSyscall, NR: sysMkdir, Ret: -4000, PID: 7, Sess: []uint32{1}, Str: strs("/w/d")},
		want: &profiling.Event{Kind: profiling.KindFile, PID: 7, Op: receipt.OpMkdir, Path: "/w/d", Errno: "E4000"},
	},
}

func TestDecode(t *testing.T) {
	for _, c := range decodeCases {
		t.Run(c.name, func(t *testing.T) {
			var r record
			err := decodeRecord(encode(c.rec), &r)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(r.Sess, c.rec.Sess) {
				t.Errorf("sessions %v, want %v", r.Sess, c.rec.Sess)
			}
			got := r.toEvent(new(profiling.Event), clock, nil)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("event\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encode(record{Kind: evSyscall, NR: sysOpen, Sess: []uint32{1}, Str: strs("/a", "", "b")})
	cases := map[string][]byte{
		"empty":          nil,
		"short header":   good[:headerSize-1],
		"string overrun": good[:len(good)-1],
		"too long":       make([]byte, maxRecord+1),
	}
	bad := append([]byte(nil), good...)
	binary.LittleEndian.PutUint16(bad[64:], maxSess+1)
	cases["too many sessions"] = bad
	bad = append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bad[8:], 99)
	cases["unknown kind"] = bad
	for name, raw := range cases {
		if err := decodeRecord(raw, new(record)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: got %v, want errMalformed", name, err)
		}
	}
}

func TestDecodeCache(t *testing.T) {
	var counts [cacheSlots]slotCount
	counts[2] = slotCount{Gen: 9, Count: 40000}
	counts[7] = slotCount{Gen: 1 << 31, Count: 1}
	var r record
	if err := decodeRecord(encodeCounts(55, []uint32{3, 4}, counts), &r); err != nil {
		t.Fatalf("counts: %v", err)
	}
	if r.Kind != evCounts || r.TID != 55 || r.Counts != counts || len(r.Sess) != 2 {
		t.Errorf("counts record decoded as %+v", r)
	}
	if ev := r.toEvent(new(profiling.Event), clock, nil); ev != nil {
		t.Errorf("a counts record became an event: %+v", ev)
	}
	ref := cacheRef{Slot: 5, Gen: 12, PrevGen: 11, PrevCount: 300}
	if err := decodeRecord(encode(cachedOpenRecord(ref)), &r); err != nil {
		t.Fatalf("cached open: %v", err)
	}
	if r.Ref != ref {
		t.Errorf("cache reference %+v, want %+v", r.Ref, ref)
	}
	if ev := r.toEvent(new(profiling.Event), clock, nil); ev == nil || ev.Path != "/etc/hosts" || ev.Address != "" {
		t.Errorf("cached open became %+v", ev)
	}

	bad := map[string][]byte{
		"counts too short":  encodeCounts(1, nil, counts)[:countsSize-1],
		"counts too long":   append(encodeCounts(1, nil, counts), 0),
		"slot out of range": encode(cachedOpenRecord(cacheRef{Slot: cacheSlots, Gen: 1})),
		"generation 0":      encode(cachedOpenRecord(cacheRef{Slot: 1})),
	}
	exec := cachedOpenRecord(cacheRef{Slot: 1, Gen: 1})
	exec.Kind = evExec
	bad["cached exec"] = encode(exec)
	for name, raw := range bad {
		if err := decodeRecord(raw, new(record)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: got %v, want errMalformed", name, err)
		}
	}
}

func TestPathTruncated(t *testing.T) {
	exec := record{Kind: evExec, Flags: flagTrunc0 << 1}
	if exec.pathTruncated() {
		t.Errorf("a cut argv counts as a cut path")
	}
	exec.Flags = flagTrunc0 << 2
	if !exec.pathTruncated() {
		t.Errorf("a cut cwd does not count")
	}
	sc := record{Kind: evSyscall, Flags: flagTrunc0 << 3}
	if !sc.pathTruncated() {
		t.Errorf("a cut rename target does not count")
	}
}

func TestNames(t *testing.T) {
	cases := map[string]string{
		errnoName(1): "EPERM", errnoName(111): "ECONNREFUSED", errnoName(0): "E0",
		signalName(9): "SIGKILL", signalName(34): "SIGRTMIN+0", signalName(99): "SIG99",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestBlindSet(t *testing.T) {
	var b blindSet
	for i := 0; i < maxBlind+5; i++ {
		b.add(strings.Repeat("x", i+1))
		b.add(strings.Repeat("x", i+1))
	}
	got := b.list()
	if len(got) != maxBlind+1 || got[maxBlind] != "and 5 more blind spots" {
		t.Errorf("list has %d lines, last %q", len(got), got[len(got)-1])
	}
}

func TestRecentPIDs(t *testing.T) {
	r := newRecentPIDs()
	if !r.add(5) || r.add(5) {
		t.Fatalf("a pid is reported twice")
	}
	r.forget(5)
	if !r.add(5) {
		t.Fatalf("a reused pid is not reported")
	}
	for i := int64(100); i < 100+int64(len(r.ring)); i++ {
		r.add(i)
	}
	if !r.add(5) {
		t.Fatalf("a pid older than the ring is still remembered")
	}
	if len(r.set) > len(r.ring) {
		t.Fatalf("set grew to %d entries", len(r.set))
	}
}

func TestParseCgroup2Mount(t *testing.T) {
	const hybrid = `25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
33 25 0:29 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
34 33 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
35 33 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`
	if got := parseCgroup2Mount(strings.NewReader(hybrid)); got != "/sys/fs/cgroup/unified" {
		t.Errorf("hybrid: %q", got)
	}
	if got := parseCgroup2Mount(strings.NewReader(`1 0 0:1 / /my\040cg rw - cgroup2 none rw`)); got != "/my cg" {
		t.Errorf("escaped: %q", got)
	}
	if got := parseCgroup2Mount(strings.NewReader("garbage\n")); got != "" {
		t.Errorf("garbage: %q", got)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, c := range decodeCases {
		f.Add(encode(c.rec))
	}
	f.Add([]byte{})
	f.Add(encodeCounts(3, []uint32{1}, [cacheSlots]slotCount{{Gen: 1, Count: 2}}))
	f.Add(encode(cachedOpenRecord(cacheRef{Slot: 2, Gen: 3, PrevGen: 1, PrevCount: 4})))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r record
		err := decodeRecord(raw, &r)
		if err != nil {
			return
		}
		total := headerSize
		for _, s := range r.Str {
			total += len(s)
		}
		if total > len(raw) || len(r.Sess) > maxSess {
			t.Fatalf("decoded %d bytes of strings from %d", total, len(raw))
		}
		if r.Kind == evCounts && len(raw) != countsSize {
			t.Fatalf("a counts record of %d bytes decoded", len(raw))
		}
		if r.Flags&flagCached != 0 && r.Kind != evCounts && (r.Ref.Slot >= cacheSlots || r.Ref.Gen == 0) {
			t.Fatalf("cache reference %+v decoded", r.Ref)
		}
		ev := r.toEvent(new(profiling.Event), clock, nil)
		if ev != nil && ev.Kind == profiling.KindFile && r.Flags&flagResolved0 == 0 && strings.HasPrefix(ev.Path, "/") && strings.Contains(ev.Path, "/../") {
			t.Fatalf("path %q was not cleaned", ev.Path)
		}
		// Interned strings are the same strings.
		if ev2 := r.toEvent(new(profiling.Event), clock, newInterner()); !reflect.DeepEqual(ev, ev2) {
			t.Fatalf("with an interner: %+v, without: %+v", ev2, ev)
		}
		r.pathTruncated()
	})
}

func FuzzParseCgroup2Mount(f *testing.F) {
	f.Add("34 33 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n")
	f.Add(`1 0 0:1 / /my\040cg rw - cgroup2 none rw`)
	f.Add(`1 0 0:1 / /x\0 rw - cgroup2 none rw`)
	f.Fuzz(func(t *testing.T, s string) {
		parseCgroup2Mount(strings.NewReader(s))
	})
}

// BenchmarkDecode decodes a resolved open as the collector's reader does:
// into a reused record, with an interner.
func BenchmarkDecode(b *testing.B) {
	raw := encode(decodeCases[6].rec)
	b.SetBytes(int64(len(raw)))
	var ev profiling.Event
	var r record
	names := newInterner()
	for b.Loop() {
		if err := decodeRecord(raw, &r); err != nil {
			b.Fatal(err)
		}
		if r.toEvent(&ev, clock, names) == nil {
			b.Fatal("no event")
		}
	}
}

func TestInterner(t *testing.T) {
	in := newInterner()
	a, b := in.str([]byte("/usr/lib/python3.11/os.py")), in.str([]byte("/usr/lib/python3.11/os.py"))
	if a != "/usr/lib/python3.11/os.py" || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Errorf("the same bytes gave %q at %p and %q at %p, want one string", a, unsafe.StringData(a), b, unsafe.StringData(b))
	}
	long := bytes.Repeat([]byte("x"), internMaxLen+1)
	if s := in.str(long); s != string(long) || len(in.m) != 1 {
		t.Errorf("a %d-byte string: got %d bytes, interner holds %d strings, want it not kept", len(long), len(s), len(in.m))
	}
	for i := range internMax + 10 {
		in.str([]byte(strconv.Itoa(i)))
	}
	if len(in.m) > internMax {
		t.Errorf("interner holds %d strings, limit %d", len(in.m), internMax)
	}
	for _, want := range []string{"/a", "/a", "/b", "/a", "", "/a"} { // the last string first, then the map
		if got := in.str([]byte(want)); got != want {
			t.Errorf("str(%q) = %q", want, got)
		}
	}
	if s := (*interner)(nil).str([]byte("/x")); s != "/x" {
		t.Errorf("nil interner gave %q", s)
	}
}
