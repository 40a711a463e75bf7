//go:build linux

package audit

import (
	"testing"
	"unsafe"

	"glasshouse.dev/glasshouse/ebpf/collector"
)

// The decoder's offsets must match the struct the BPF side writes, as
// bpf2go generated it from ebpf/include/glasshouse.h.
func TestLayoutMatchesBPF(t *testing.T) {
	var e collector.BPFGhEvent
	if got := unsafe.Sizeof(e); got != headerSize {
		t.Errorf("sizeof(struct gh_event) = %d, decoder assumes %d", got, headerSize)
	}
	offsets := []struct {
		name      string
		got, want uintptr
	}{
		{"ktime", unsafe.Offsetof(e.Ktime), 0},
		{"kind", unsafe.Offsetof(e.Kind), 8},
		{"pid", unsafe.Offsetof(e.Pid), 12},
		{"tid", unsafe.Offsetof(e.Tid), 16},
		{"ppid", unsafe.Offsetof(e.Ppid), 20},
		{"uid", unsafe.Offsetof(e.Uid), 24},
		{"flags", unsafe.Offsetof(e.Flags), 28},
		{"ret", unsafe.Offsetof(e.Ret), 32},
		{"arg", unsafe.Offsetof(e.Arg), 40},
		{"sess", unsafe.Offsetof(e.Sess), 48},
		{"nsess", unsafe.Offsetof(e.Nsess), 64},
		{"nr", unsafe.Offsetof(e.Nr), 66},
		{"len", unsafe.Offsetof(e.Len), 68},
		{"family", unsafe.Offsetof(e.Family), 76},
		{"port", unsafe.Offsetof(e.Port), 78},
		{"sotype", unsafe.Offsetof(e.Sotype), 80},
		{"proto", unsafe.Offsetof(e.Proto), 82},
		{"addr", unsafe.Offsetof(e.Addr), 84},
	}
	for _, o := range offsets {
		if o.got != o.want {
			t.Errorf("offset of %s = %d, decoder assumes %d", o.name, o.got, o.want)
		}
	}
	if len(e.Sess) != maxSess || len(e.Len) != numStrings {
		t.Errorf("%d sessions and %d strings per record, decoder assumes %d and %d", len(e.Sess), len(e.Len), maxSess, numStrings)
	}
	var fc collector.BPFFcache
	if len(fc.S) != cacheSlots {
		t.Errorf("%d slots per open cache, decoder assumes %d", len(fc.S), cacheSlots)
	}
	spec, err := collector.LoadBPF()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps[collector.BPFMapFcaches].MaxEntries; n != cacheThreads {
		t.Errorf("%d open caches, the reader assumes %d", n, cacheThreads)
	}
}
