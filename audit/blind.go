package audit

import "fmt"

// maxBlind bounds the distinct blind-spot lines a session keeps, and
// maxBlindTracked the lines it remembers to count distinct ones.
const (
	maxBlind        = 32
	maxBlindTracked = 1024
)

// blindSet collects distinct blind-spot descriptions in arrival order,
// bounded to maxBlind lines plus a count of the rest. Not safe for
// concurrent use.
type blindSet struct {
	seen  map[string]bool
	lines []string
	more  int
}

func (b *blindSet) add(line string) {
	if b.seen[line] {
		return
	}
	if b.seen == nil {
		b.seen = make(map[string]bool)
	}
	if len(b.seen) < maxBlindTracked {
		b.seen[line] = true
	}
	if len(b.lines) < maxBlind {
		b.lines = append(b.lines, line)
		return
	}
	b.more++
}

func (b *blindSet) list() []string {
	out := append([]string(nil), b.lines...)
	if b.more > 0 {
		out = append(out, fmt.Sprintf("and %d more blind spots", b.more))
	}
	return out
}

// recentPIDs remembers the last pids that exited, so that a process whose
// last two threads exited together is reported once. Not safe for
// concurrent use.
type recentPIDs struct {
	ring [256]int64
	next int
	set  map[int64]int // pid -> number of ring entries holding it
}

func newRecentPIDs() *recentPIDs { return &recentPIDs{set: make(map[int64]int)} }

// add records pid and reports whether it was not already recent.
func (r *recentPIDs) add(pid int64) bool {
	if r.set[pid] > 0 {
		return false
	}
	if old := r.ring[r.next]; old != 0 {
		if r.set[old]--; r.set[old] <= 0 {
			delete(r.set, old)
		}
	}
	r.ring[r.next] = pid
	r.next = (r.next + 1) % len(r.ring)
	r.set[pid]++
	return true
}

// forget drops pid (reused by a new process).
func (r *recentPIDs) forget(pid int64) {
	if r.set[pid] == 0 {
		return
	}
	delete(r.set, pid)
	for i, p := range r.ring {
		if p == pid {
			r.ring[i] = 0
		}
	}
}
