package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

// Wire format of ebpf/include/glasshouse.h. A test checks these against
// the bpf2go-generated layout.
const (
	evFork    = 1
	evExec    = 2
	evExit    = 3
	evSyscall = 4
	evMarker  = 5
	evCompat  = 6
	evCounts  = 7

	flagTrunc0    = 1 << 0
	flagAddr      = 1 << 4
	flagAddrKern  = 1 << 5
	flagSock      = 1 << 6
	flagResolved0 = 1 << 8
	flagPseudo0   = 1 << 9
	flagNotReg0   = 1 << 10
	flagCached    = 1 << 11

	numStrings = 4
	maxSess    = 4
	headerSize = 104
	cacheSlots = 8
	// cacheThreads is the number of open caches (GH_CACHE_THREADS).
	cacheThreads = 4096
	// countsSize is the size of an evCounts record: the header and a
	// struct gh_count per slot.
	countsSize = headerSize + 8*cacheSlots
	// maxRecord bounds a record: the BPF side never writes more.
	maxRecord = 32768
)

// x86_64 syscall numbers the collector traces.
const (
	sysOpen           = 2
	sysConnect        = 42
	sysAccept         = 43
	sysSendto         = 44
	sysSendmsg        = 46
	sysBind           = 49
	sysListen         = 50
	sysExecve         = 59
	sysTruncate       = 76
	sysFtruncate      = 77
	sysRename         = 82
	sysMkdir          = 83
	sysRmdir          = 84
	sysCreat          = 85
	sysLink           = 86
	sysUnlink         = 87
	sysSymlink        = 88
	sysChmod          = 90
	sysFchmod         = 91
	sysMknod          = 133
	sysPivotRoot      = 155
	sysMount          = 165
	sysUmount2        = 166
	sysOpenat         = 257
	sysMkdirat        = 258
	sysMknodat        = 259
	sysUnlinkat       = 263
	sysRenameat       = 264
	sysLinkat         = 265
	sysSymlinkat      = 266
	sysFchmodat       = 268
	sysAccept4        = 288
	sysOpenByHandleAt = 304
	sysSendmmsg       = 307
	sysRenameat2      = 316
	sysExecveat       = 322
	sysIOURingSetup   = 425
	sysMoveMount      = 429
	sysOpenat2        = 437
	sysFchmodat2      = 452
)

// mountCall names nr if it is a call that changes the mount tree paths
// are resolved in, else "".
func mountCall(nr uint16) string {
	switch nr {
	case sysMount:
		return "mount"
	case sysUmount2:
		return "umount2"
	case sysPivotRoot:
		return "pivot_root"
	case sysMoveMount:
		return "move_mount"
	}
	return ""
}

// Linux constants used to classify what a record describes.
const (
	oAccMode    = 0o3
	oCreat      = 0o100
	oTrunc      = 0o1000
	atRemovedir = 0x200

	afUnix   = 1
	afInet   = 2
	afInet6  = 10
	afPacket = 17

	sockStream = 1
	sockDgram  = 2

	ipprotoTCP     = 6
	ipprotoUDP     = 17
	ipprotoUDPLite = 136
	ipprotoMPTCP   = 262
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("malformed record")

// record is one decoded ring buffer record, before it is turned into a
// portable event.
type record struct {
	KTime uint64
	Kind  uint32
	PID   uint32
	TID   uint32
	PPID  uint32
	UID   uint32
	Flags uint32
	Ret   int64
	Arg   uint64
	// Sess aliases sess, the record's own storage: decoding into a
	// reused record allocates nothing for it.
	Sess   []uint32
	sess   [maxSess]uint32
	NR     uint16
	Family uint16
	Port   uint16
	SoType uint16
	Proto  uint16
	Addr   [16]byte
	Str    [numStrings][]byte
	// Ref is the cache slot a successful open took (flagCached): its
	// struct gh_cache_ref, which the BPF side writes over Addr.
	Ref cacheRef
	// Counts are the slots of an evCounts record.
	Counts [cacheSlots]slotCount
}

// cacheRef is struct gh_cache_ref: slot Slot of the thread's open cache now
// holds generation Gen; it held PrevGen (0: nothing) with PrevCount
// repeats.
type cacheRef struct {
	Slot, Gen, PrevGen, PrevCount uint32
}

// slotCount is struct gh_count: the repeats slot generation Gen counted.
type slotCount struct {
	Gen, Count uint32
}

// decodeRecord parses raw into r, replacing what r held. raw is untrusted
// in the sense that it must never make the decoder panic or allocate
// without bound. The strings of r alias raw.
func decodeRecord(raw []byte, r *record) error {
	*r = record{}
	if len(raw) < headerSize {
		return fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", errMalformed, len(raw), headerSize)
	}
	if len(raw) > maxRecord {
		return fmt.Errorf("%w: %d bytes exceeds the limit of %d", errMalformed, len(raw), maxRecord)
	}
	le := binary.LittleEndian
	r.KTime = le.Uint64(raw[0:])
	r.Kind = le.Uint32(raw[8:])
	r.PID = le.Uint32(raw[12:])
	r.TID = le.Uint32(raw[16:])
	r.PPID = le.Uint32(raw[20:])
	r.UID = le.Uint32(raw[24:])
	r.Flags = le.Uint32(raw[28:])
	r.Ret = int64(le.Uint64(raw[32:]))
	r.Arg = le.Uint64(raw[40:])
	nsess := int(le.Uint16(raw[64:]))
	if nsess > maxSess {
		return fmt.Errorf("%w: %d sessions exceeds the limit of %d", errMalformed, nsess, maxSess)
	}
	r.Sess = r.sess[:nsess]
	for i := range r.Sess {
		r.Sess[i] = le.Uint32(raw[48+4*i:])
	}
	r.NR = le.Uint16(raw[66:])
	r.Family = le.Uint16(raw[76:])
	r.Port = le.Uint16(raw[78:])
	r.SoType = le.Uint16(raw[80:])
	r.Proto = le.Uint16(raw[82:])
	copy(r.Addr[:], raw[84:100])
	if r.Kind < evFork || r.Kind > evCounts {
		return fmt.Errorf("%w: unknown kind %d", errMalformed, r.Kind)
	}
	if r.Kind == evCounts {
		if len(raw) != countsSize {
			return fmt.Errorf("%w: a counts record of %d bytes, not %d", errMalformed, len(raw), countsSize)
		}
		for i := range r.Counts {
			r.Counts[i] = slotCount{Gen: le.Uint32(raw[headerSize+8*i:]), Count: le.Uint32(raw[headerSize+8*i+4:])}
		}
		return nil
	}
	if r.Flags&flagCached != 0 {
		r.Ref = cacheRef{Slot: le.Uint32(raw[84:]), Gen: le.Uint32(raw[88:]), PrevGen: le.Uint32(raw[92:]), PrevCount: le.Uint32(raw[96:])}
		if r.Kind != evSyscall || r.Ref.Slot >= cacheSlots || r.Ref.Gen == 0 {
			return fmt.Errorf("%w: bad cache reference %+v in a kind %d record", errMalformed, r.Ref, r.Kind)
		}
	}
	off := headerSize
	for i := range numStrings {
		n := int(le.Uint16(raw[68+2*i:]))
		if n > len(raw)-off {
			return fmt.Errorf("%w: string %d of %d bytes overruns the %d-byte record", errMalformed, i, n, len(raw))
		}
		r.Str[i] = raw[off : off+n : off+n]
		off += n
	}
	return nil
}

// pathTruncated reports whether a path of r was cut by the BPF side (too
// long or too deep). A cut argv is not counted: the receipt's subject has
// the full command, and the aggregator clips arguments anyway.
func (r *record) pathTruncated() bool {
	mask := uint32(0xf) * flagTrunc0
	if r.Kind == evExec {
		mask = flagTrunc0 | flagTrunc0<<2
	}
	return r.Flags&mask != 0
}

// toEvent turns r into a portable event in ev, whose previous content it
// replaces, with times converted by clock and paths taken from names (nil:
// fresh strings); it returns ev. It returns nil for records that describe
// nothing the receipt records (a netlink bind, say).
func (r *record) toEvent(ev *profiling.Event, clock func(uint64) time.Time, names *interner) *profiling.Event {
	*ev = profiling.Event{
		PID:  int64(r.PID),
		PPID: int64(r.PPID),
		UID:  int64(r.UID),
	}
	if r.KTime != 0 { // file and network records carry no time
		ev.Time = clock(r.KTime)
	}
	switch r.Kind {
	case evFork:
		ev.Kind = profiling.KindFork
	case evExec:
		ev.Kind = profiling.KindExec
		ev.Exe = string(r.Str[0])
		ev.Argv = splitArgv(r.Str[1])
		ev.Cwd = string(r.Str[2])
	case evExit:
		ev.Kind = profiling.KindExit
		status := r.Ret
		if sig := status & 0x7f; sig != 0 {
			ev.ExitCode, ev.Signal = -1, signalName(sig)
		} else {
			ev.ExitCode = (status >> 8) & 0xff
		}
	case evSyscall:
		return r.syscallEvent(ev, names)
	default:
		return nil
	}
	return ev
}

func (r *record) syscallEvent(ev *profiling.Event, names *interner) *profiling.Event {
	if r.Ret < 0 {
		ev.Errno = errnoName(-r.Ret)
	}
	switch r.NR {
	case sysExecve, sysExecveat:
		if r.Ret >= 0 {
			return nil // reported by sched_process_exec
		}
		ev.Kind = profiling.KindExecFailed
		ev.Exe = r.path(0, names)
		return ev
	case sysConnect, sysBind, sysListen, sysAccept, sysAccept4, sysSendto, sysSendmsg, sysSendmmsg:
		return r.netEvent(ev)
	case sysIOURingSetup, sysMount, sysUmount2, sysPivotRoot, sysMoveMount:
		return nil // blind spots, reported by the session
	}
	ev.Kind = profiling.KindFile
	ev.Path = r.path(0, names)
	switch r.NR {
	case sysOpen, sysCreat, sysOpenat, sysOpenat2, sysOpenByHandleAt:
		ev.Op = openOp(r.Arg, r.Flags&flagNotReg0 != 0)
	case sysMknod, sysMknodat:
		// A regular file, FIFO, socket or device node: created either way.
		ev.Op = receipt.OpCreate
	case sysUnlink:
		ev.Op = receipt.OpDelete
	case sysUnlinkat:
		ev.Op = receipt.OpDelete
		if r.Arg&atRemovedir != 0 {
			ev.Op = receipt.OpRmdir
		}
	case sysRmdir:
		ev.Op = receipt.OpRmdir
	case sysMkdir, sysMkdirat:
		ev.Op = receipt.OpMkdir
	case sysRename, sysRenameat, sysRenameat2:
		ev.Op, ev.Target = receipt.OpRename, r.path(2, names)
	case sysLink, sysLinkat:
		ev.Op, ev.Target = receipt.OpLink, r.path(2, names)
	case sysSymlink, sysSymlinkat:
		ev.Op, ev.Target = receipt.OpSymlink, string(r.Str[2])
	case sysChmod, sysFchmod, sysFchmodat, sysFchmodat2:
		ev.Op = receipt.OpChmod
	case sysTruncate, sysFtruncate:
		ev.Op = receipt.OpTruncate
	default:
		return nil
	}
	return ev
}

// openOp classifies an open by its flags. O_CREAT counts as a create
// unless the file opened is not a regular file (O_CREAT only ever creates
// regular files, so opening /dev/null that way is a write).
func openOp(flags uint64, notRegular bool) string {
	switch {
	case flags&oCreat != 0 && !notRegular:
		return receipt.OpCreate
	case flags&oAccMode != 0 || flags&oTrunc != 0:
		return receipt.OpWrite
	}
	return receipt.OpRead
}

// path returns string i as an absolute path: as the kernel resolved it
// (from names), or joined to its base directory (string i+1) when it was
// relative.
func (r *record) path(i int, names *interner) string {
	if i == 0 && r.Flags&flagResolved0 != 0 {
		return names.str(r.Str[i])
	}
	p := string(r.Str[i])
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	base := string(r.Str[i+1])
	if base == "" {
		return p // the base directory could not be read
	}
	return path.Join(base, p)
}

func splitArgv(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\x00")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\x00")
}

func (r *record) netEvent(ev *profiling.Event) *profiling.Event {
	ev.Kind = profiling.KindNet
	switch r.NR {
	case sysConnect:
		ev.Op = receipt.NetConnect
	case sysBind:
		ev.Op = receipt.NetBind
	case sysListen:
		ev.Op = receipt.NetListen
	case sysAccept, sysAccept4:
		ev.Op = receipt.NetAccept
	default:
		ev.Op = receipt.NetSendto
	}
	switch r.Family {
	case afInet:
		ev.Family = receipt.FamilyInet
		if r.Flags&flagAddr != 0 {
			ev.Address = netip.AddrFrom4([4]byte(r.Addr[:4])).String()
			ev.Port = int64(r.Port)
		}
	case afInet6:
		ev.Family = receipt.FamilyInet6
		if r.Flags&flagAddr != 0 {
			ev.Address = netip.AddrFrom16(r.Addr).String()
			ev.Port = int64(r.Port)
		}
	case afUnix:
		ev.Family = receipt.FamilyUnix
		ev.Address = unixAddress(r.Str[0])
	default:
		return nil // netlink and other local families are not network
	}
	ev.Protocol = protocol(r.Family, r.SoType, r.Proto)
	return ev
}

// unixAddress renders a sun_path: a path, or "@name" for an abstract
// socket (leading NUL), as ss(8) does.
func unixAddress(b []byte) string {
	if len(b) > 0 && b[0] == 0 {
		return "@" + strings.ReplaceAll(string(b[1:]), "\x00", "@")
	}
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func protocol(family, sotype, proto uint16) string {
	if family != afInet && family != afInet6 {
		return ""
	}
	switch proto {
	case ipprotoTCP, ipprotoMPTCP:
		return receipt.ProtoTCP
	case ipprotoUDP, ipprotoUDPLite:
		return receipt.ProtoUDP
	case 0:
		switch sotype {
		case sockStream:
			return receipt.ProtoTCP
		case sockDgram:
			return receipt.ProtoUDP
		}
	}
	return ""
}

// interner hands out one string per distinct short byte string it has
// seen, so that a path a workload opens again and again is neither
// allocated again nor, in the aggregator's map, compared byte by byte (Go
// compares strings that share their bytes by pointer). It is bounded: it
// keeps strings of at most internMaxLen bytes and forgets them all when it
// holds internMax. The string it handed out last is checked first, before
// the map: a loop on one file asks for it again and again, and comparing
// costs less than hashing. A nil interner returns fresh strings. Not safe
// for concurrent use: the collector's reader owns it.
type interner struct {
	m    map[string]string
	last string
}

const (
	internMax    = 4096
	internMaxLen = 256
)

func newInterner() *interner { return &interner{m: make(map[string]string)} }

func (in *interner) str(b []byte) string {
	if in == nil || len(b) > internMaxLen {
		return string(b)
	}
	if string(b) == in.last {
		return in.last
	}
	s, ok := in.m[string(b)]
	if !ok {
		if len(in.m) >= internMax {
			clear(in.m)
		}
		s = string(b)
		in.m[s] = s
	}
	in.last = s
	return s
}
