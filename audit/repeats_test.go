package audit

import (
	"testing"

	"glasshouse.dev/glasshouse/core/profiling"
)

// delivered records what a give callback was handed, per path.
type delivered map[string]int64

func (d delivered) give(e *cachedOpen, n int64) { d[e.ev.Path] += n }

func openRecord(tid, slot, gen, prevGen, prevCount uint32, sess ...uint32) *record {
	return &record{Kind: evSyscall, TID: tid, Flags: flagCached, Sess: sess,
		Ref: cacheRef{Slot: slot, Gen: gen, PrevGen: prevGen, PrevCount: prevCount}}
}

func fileEvent(path string) *profiling.Event {
	return &profiling.Event{Kind: profiling.KindFile, Op: "read", Path: path}
}

func TestRepeatsTookAndEnded(t *testing.T) {
	rp, got := newRepeats(), delivered{}
	rp.took(openRecord(7, 3, 10, 0, 0, 1), fileEvent("/a"), got.give)
	// The slot goes to /b: the record carries /a's 4 repeats.
	rp.took(openRecord(7, 3, 11, 10, 4, 1), fileEvent("/b"), got.give)
	// Another thread's slot 3 is another slot.
	rp.took(openRecord(8, 3, 12, 0, 0, 1), fileEvent("/c"), got.give)
	// A record that names a previous generation the table does not hold
	// (a thread id reused after a lost record) delivers nothing.
	rp.took(openRecord(8, 3, 13, 99, 50, 1), fileEvent("/d"), got.give)
	if got["/a"] != 4 || got["/b"] != 0 || got["/c"] != 0 {
		t.Fatalf("after took: %v", got)
	}
	var end record
	end.Kind, end.TID = evCounts, 7
	end.Counts[3] = slotCount{Gen: 11, Count: 6}
	end.Counts[5] = slotCount{Gen: 40, Count: 9} // a slot the table never saw
	rp.ended(&end, got.give)
	if got["/b"] != 6 {
		t.Errorf("/b: %d repeats delivered, want 6", got["/b"])
	}
	if len(rp.m) != 1 {
		t.Errorf("%d opens followed after thread 7 ended, want 1 (thread 8's)", len(rp.m))
	}
	// A stale count for a slot that has moved on delivers nothing.
	end.TID = 8
	end.Counts[3] = slotCount{Gen: 12, Count: 5}
	rp.ended(&end, got.give)
	if got["/c"] != 0 || got["/d"] != 0 || len(rp.m) != 0 {
		t.Errorf("after thread 8 ended with a stale count: %v, %d followed", got, len(rp.m))
	}
}

func TestRepeatsLive(t *testing.T) {
	rp, got := newRepeats(), delivered{}
	rp.took(openRecord(7, 0, 10, 0, 0, 1), fileEvent("/a"), got.give)
	rp.took(openRecord(7, 1, 11, 0, 0, 1, 2), fileEvent("/b"), got.give)
	rp.took(openRecord(9, 0, 12, 0, 0, 2), fileEvent("/c"), got.give)
	kernel := map[uint32][cacheSlots]uint64{7: {10 | 3<<32, 11 | 5<<32}}
	reads := 0
	read := func(tid uint32) ([cacheSlots]uint64, bool) {
		reads++
		s, ok := kernel[tid]
		return s, ok
	}
	rp.live(1, read, got.give)
	if got["/a"] != 3 || got["/b"] != 5 || got["/c"] != 0 {
		t.Fatalf("live: %v", got)
	}
	if reads != 1 {
		t.Errorf("thread 7's cache read %d times, want once", reads)
	}
	// Read again: what was delivered is remembered.
	kernel[7] = [cacheSlots]uint64{10 | 4<<32, 11 | 5<<32}
	rp.live(1, read, got.give)
	if got["/a"] != 4 || got["/b"] != 5 {
		t.Fatalf("live again: %v", got)
	}
	// Session 1 stops: /a had session 1 only and is forgotten; /b is also
	// session 2's, still active, and kept.
	rp.forget(1, func(id uint32) bool { return id == 2 })
	if len(rp.m) != 2 {
		t.Fatalf("%d opens followed after session 1 stopped, want 2", len(rp.m))
	}
	var end record
	end.Kind, end.TID = evCounts, 7
	end.Counts[1] = slotCount{Gen: 11, Count: 8}
	rp.ended(&end, got.give)
	if got["/b"] != 8 {
		t.Errorf("/b: %d repeats in all, want 8 (5 read live, 3 more at the end)", got["/b"])
	}
}

func TestRepeatsFull(t *testing.T) {
	rp, got := newRepeats(), delivered{}
	for i := range maxCachedOpens {
		if !rp.took(openRecord(uint32(i/cacheSlots), uint32(i%cacheSlots), uint32(i+1), 0, 0, 1), fileEvent("/f"), got.give) {
			t.Fatalf("took refused entry %d of %d", i, maxCachedOpens)
		}
	}
	if rp.took(openRecord(1<<30, 0, 1, 0, 0, 1), fileEvent("/g"), got.give) {
		t.Fatal("took followed an open past the cap")
	}
	// A slot already followed can still change hands.
	if !rp.took(openRecord(0, 0, 1<<31, 1, 2, 1), fileEvent("/h"), got.give) || got["/f"] != 2 {
		t.Errorf("a followed slot changing hands at the cap: %v", got)
	}
}
