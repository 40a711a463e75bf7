package audit

import (
	"slices"
	"sync"

	"glasshouse.dev/glasshouse/core/profiling"
)

// maxCachedOpens bounds the opens repeats follows: twice what the kernel's
// caches can hold at once, so that only entries leaked by lost records can
// fill it.
const maxCachedOpens = 2 * cacheThreads * cacheSlots

// repeats follows the opens the kernel's per-thread open caches hold
// (struct gh_cache_ref in ebpf/include/glasshouse.h), so that the repeats
// the kernel counts in a slot reach the sessions of the record that took
// it. The kernel's counts only grow while a slot keeps its generation;
// each entry remembers how many were delivered, so reading a count twice
// (a stopping session reads live caches, and their records may follow)
// delivers nothing twice.
type repeats struct {
	mu sync.Mutex
	m  map[slotKey]*cachedOpen
}

type slotKey struct {
	tid, slot uint32
}

// cachedOpen is the open a slot holds: the event its record became, for
// the sessions it was delivered to.
type cachedOpen struct {
	gen       uint32
	delivered uint32
	sess      []uint32
	ev        profiling.Event
}

// give delivers n more times e's event to e's sessions.
type give func(e *cachedOpen, n int64)

func newRepeats() *repeats { return &repeats{m: make(map[slotKey]*cachedOpen)} }

// took handles the record r of an open that took a slot, which became ev:
// it delivers the repeats the slot's previous open counted and follows the
// new one. It returns false when the table is full and the new open is
// not followed: its repeats will not be counted.
func (rp *repeats) took(r *record, ev *profiling.Event, g give) bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	k := slotKey{r.TID, r.Ref.Slot}
	old := rp.m[k]
	if old != nil {
		if old.gen == r.Ref.PrevGen {
			rp.deliver(old, r.Ref.PrevCount, g)
		}
	} else if len(rp.m) >= maxCachedOpens {
		return false
	}
	e := &cachedOpen{gen: r.Ref.Gen, sess: slices.Clone(r.Sess), ev: *ev}
	e.ev.Count = 0
	rp.m[k] = e
	return true
}

// ended handles an evCounts record: thread r.TID's cache ended with the
// counts r carries.
func (rp *repeats) ended(r *record, g give) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for i, c := range r.Counts {
		k := slotKey{r.TID, uint32(i)}
		e := rp.m[k]
		if e == nil {
			continue
		}
		if e.gen == c.Gen {
			rp.deliver(e, c.Count, g)
		}
		delete(rp.m, k)
	}
}

// live delivers what the caches of threads still alive counted for
// session id: read returns thread tid's slots (generation | count << 32),
// or false if it has no cache.
func (rp *repeats) live(id uint32, read func(tid uint32) ([cacheSlots]uint64, bool), g give) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	type cache struct {
		slots [cacheSlots]uint64
		ok    bool
	}
	read1 := make(map[uint32]cache)
	for k, e := range rp.m {
		if !slices.Contains(e.sess, id) {
			continue
		}
		c, seen := read1[k.tid]
		if !seen {
			c.slots, c.ok = read(k.tid)
			read1[k.tid] = c
		}
		if c.ok && uint32(c.slots[k.slot]) == e.gen {
			rp.deliver(e, uint32(c.slots[k.slot]>>32), g)
		}
	}
}

// forget drops the opens of session id, which stopped, that no other
// active session (active) shares.
func (rp *repeats) forget(id uint32, active func(id uint32) bool) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for k, e := range rp.m {
		if slices.Contains(e.sess, id) && !slices.ContainsFunc(e.sess, func(s uint32) bool { return s != id && active(s) }) {
			delete(rp.m, k)
		}
	}
}

// deliver gives what count adds to what e delivered.
func (rp *repeats) deliver(e *cachedOpen, count uint32, g give) {
	if count > e.delivered {
		g(e, int64(count-e.delivered))
		e.delivered = count
	}
}
