package agent

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

// windowSink is a workload's profiling.Sink. It folds events into the
// current window's aggregator; roll swaps in the next window atomically
// with respect to Add, so that no event is lost or counted twice.
type windowSink struct {
	caps receipt.Caps

	mu     sync.Mutex
	agg    *receipt.Aggregator
	events int64 // in the current window

	// total counts events over the session; dirty says events arrived
	// since the last live policy evaluation.
	total atomic.Int64
	dirty atomic.Bool
}

func newWindowSink(start time.Time, caps receipt.Caps) *windowSink {
	return &windowSink{caps: caps, agg: receipt.NewAggregator(start, caps)}
}

// Add implements profiling.Sink.
func (s *windowSink) Add(ev *profiling.Event) {
	s.mu.Lock()
	s.agg.Add(ev)
	s.events++
	s.mu.Unlock()
	s.total.Add(1)
	s.dirty.Store(true)
}

// seed adds a process found already running, described at seenAt.
func (s *windowSink) seed(p receipt.Process, seenAt time.Time) {
	s.mu.Lock()
	s.agg.Seed(p, seenAt)
	s.mu.Unlock()
	s.dirty.Store(true)
}

// sections is a window's content.
type sections struct {
	procs   []receipt.Process
	files   []receipt.File
	net     []receipt.Net
	omitted receipt.Omitted
	events  int64
}

// peek returns the current window's content without ending it.
func (s *windowSink) peek() sections {
	s.mu.Lock()
	agg, n := s.agg, s.events
	s.mu.Unlock()
	ps, fs, ns, om := agg.Sections()
	return sections{procs: ps, files: fs, net: ns, omitted: om, events: n}
}

// roll ends the current window and starts the next at start. Processes
// still alive are carried over (seeded into the next window) so that their
// later forks, execs and exits resolve. It returns the ended window.
func (s *windowSink) roll(start time.Time) sections {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps, fs, ns, om := s.agg.Sections()
	old := sections{procs: ps, files: fs, net: ns, omitted: om, events: s.events}
	next := receipt.NewAggregator(start, s.caps)
	for _, p := range ps {
		if p.EndOffsetMS == -1 {
			p.StartOffsetMS = 0
			next.Seed(p, start)
		}
	}
	s.agg, s.events = next, 0
	return old
}

// end returns the current window's content for the final receipt. Call
// it after the session stopped.
func (s *windowSink) end() sections { return s.peek() }

// snapshot is everything a receipt of one window is built from.
type snapshot struct {
	workloadID string
	path       string
	kube       KubeRef
	isKube     bool
	seq        int
	// final is set for the last receipt of a workload; endReason says why
	// it ended (exited, removed, deselected, agent stopped).
	final     bool
	endReason string
	start     time.Time
	end       time.Time
	sec       sections
	// dropped is the collector's count for the session (final receipts);
	// hostDropped the host-wide drops during the window (rolling ones).
	dropped     int64
	hostDropped uint64
	blind       []string
	seeded      int
	rolled      bool // receipts were written for earlier windows
	cpuUserUS   int64
	cpuSysUS    int64
	host        receipt.Host
	// owner is the workload, for reporting each violation once.
	owner *workload
}

// Reasons a workload's observation ended.
const (
	EndExited       = "exited"
	EndRemoved      = "removed"
	EndDeselected   = "deselected"
	EndAgentStopped = "agent stopped"
)

// emptySHA256 is the sha256 of no bytes: the agent does not capture
// workloads' output.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// BackendName is the backend name in the agent's receipts.
const BackendName = "agent"

// buildReceipt turns a window into an unsealed receipt. id is the
// receipt's id. It is pure: the same snapshot gives the same receipt.
func buildReceipt(id string, s *snapshot) *receipt.Receipt {
	r := &receipt.Receipt{
		ID:         id,
		StartedAt:  receipt.At(s.start),
		FinishedAt: receipt.At(s.end),
		Host:       s.host,
		Backend: receipt.Backend{
			Name:        BackendName,
			Isolation:   receipt.IsolationNone,
			Version:     s.host.GlasshouseVersion,
			Containment: "cgroup",
		},
		Limits:    receipt.Limits{Network: receipt.NetworkFull},
		Output:    receipt.Output{StdoutSHA256: emptySHA256, StderrSHA256: emptySHA256},
		Processes: s.sec.procs,
		Files:     s.sec.files,
		Network:   s.sec.net,
		Resources: receipt.Resources{CPUUserMS: max(0, s.cpuUserUS/1000), CPUSystemMS: max(0, s.cpuSysUS/1000)},
	}
	dur := s.end.Sub(s.start).Milliseconds()
	r.Outcome = receipt.Outcome{Failure: receipt.FailureNone, DurationMS: max(0, dur)}

	kind := "rolling"
	if s.final {
		kind = "final: " + s.endReason
	}
	notes := []string{
		"observed by glasshouse-agent; not launched by Glasshouse: limits, output and exit status are not under its control, and output is not captured",
		fmt.Sprintf("workload %s receipt %d (%s)", s.workloadID, s.seq, kind),
		"cgroup " + s.path,
	}
	if s.isKube {
		k := fmt.Sprintf("kubernetes pod %s qos %s", s.kube.PodUID, s.kube.QoS)
		if s.kube.ContainerID != "" {
			k += " container " + s.kube.ContainerID
		}
		if s.kube.Runtime != "" {
			k += " runtime " + s.kube.Runtime
		}
		notes = append(notes, k)
	}

	root, exit := rootProcess(s.sec.procs)
	if root != nil {
		r.Subject.Argv = append([]string(nil), root.Argv...)
		if s.final && exit.EndOffsetMS >= 0 {
			r.Outcome.ExitCode = int(exit.ExitCode)
			r.Outcome.Signal = exit.Signal
			if exit.ExitCode != 0 || exit.Signal != "" {
				r.Outcome.Failure = receipt.FailureCode
			}
			notes = append(notes, fmt.Sprintf("outcome from the workload's first process, pid %d", exit.PID))
		}
	}
	if s.final && (root == nil || exit.EndOffsetMS < 0) {
		notes = append(notes, "no exit of the workload's first process was observed")
	}
	r.Backend.Notes = notes

	var reasons []string
	p := receipt.Profiling{
		Mode:      receipt.ModeRequired,
		Status:    receipt.StatusComplete,
		Collector: receipt.CollectorEBPFHost,
		Events:    s.sec.events,
		Dropped:   s.dropped,
		Omitted:   s.sec.omitted,
	}
	if s.dropped > 0 {
		msg := fmt.Sprintf("the collector dropped %d events of this workload", s.dropped)
		if s.rolled {
			msg += " (counted over its whole observation, earlier receipts included)"
		}
		reasons = append(reasons, msg)
	}
	if s.hostDropped > 0 {
		reasons = append(reasons, fmt.Sprintf("the collector dropped %d events host-wide during this window; per-workload drops are only counted when a workload ends", s.hostDropped))
	}
	if s.seeded > 0 {
		reasons = append(reasons, fmt.Sprintf("%d processes were already running when the agent began observing this workload (described from /proc); what they did before was not seen", s.seeded))
	}
	if om := s.sec.omitted; om.Total() > 0 {
		reasons = append(reasons, fmt.Sprintf("entries cut to bound the receipt: %d processes, %d files, %d network", om.Processes, om.Files, om.Network))
	}
	reasons = append(reasons, s.blind...)
	if len(reasons) > 0 {
		p.Status = receipt.StatusPartial
		p.Reason = strings.Join(reasons, "; ")
	}
	r.Profiling = p
	return r
}

// rootProcess returns the workload's first process: the earliest one
// whose parent is not in the workload. Of an exec chain it returns the
// first image, whose argv is the workload's command, and the last, whose
// exit is the process's. procs are in canonical order.
func rootProcess(procs []receipt.Process) (first, last *receipt.Process) {
	if len(procs) == 0 {
		return nil, nil
	}
	pids := make(map[int64]bool, len(procs))
	for _, p := range procs {
		pids[p.PID] = true
	}
	r := 0
	for i := range procs {
		if !pids[procs[i].PPID] || procs[i].PPID == procs[i].PID {
			r = i
			break
		}
	}
	l := r
	for i := r + 1; i < len(procs); i++ {
		if procs[i].PID == procs[r].PID {
			l = i
		}
	}
	return &procs[r], &procs[l]
}

// violationKey identifies a violation across evaluations and windows: the
// rule and what its evidence points at (entry content without counts and
// offsets, which change as the window grows), not the pointers, whose
// indexes shift as entries are added.
func violationKey(r *receipt.Receipt, v receipt.Violation) string {
	parts := make([]string, 0, len(v.Evidence))
	for _, ptr := range v.Evidence {
		parts = append(parts, evidenceKey(r, ptr))
	}
	sort.Strings(parts)
	return v.Rule + "\x00" + strings.Join(parts, "\x00")
}

func evidenceKey(r *receipt.Receipt, ptr string) string {
	segs := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	if len(segs) < 2 {
		return ptr
	}
	i, err := strconv.Atoi(segs[1])
	if err != nil || i < 0 {
		return ptr
	}
	switch segs[0] {
	case "processes":
		if i < len(r.Processes) {
			p := r.Processes[i]
			return fmt.Sprintf("p|%d|%s|%q", p.PID, p.Exe, p.Argv)
		}
	case "files":
		if i < len(r.Files) {
			f := r.Files[i]
			return fmt.Sprintf("f|%s|%s|%s|%d|%t|%s", f.Path, f.Op, f.Target, f.PID, f.OK, f.Errno)
		}
	case "network":
		if i < len(r.Network) {
			n := r.Network[i]
			return fmt.Sprintf("n|%s|%s|%s|%s|%d|%d|%t|%s", n.Op, n.Family, n.Protocol, n.Address, n.Port, n.PID, n.OK, n.Errno)
		}
	}
	return ptr
}

// evidenceSummary describes a violation's first evidence entry for a log
// line ("connect inet tcp 10.0.0.1:443 by pid 42").
func evidenceSummary(r *receipt.Receipt, v receipt.Violation) string {
	if len(v.Evidence) == 0 {
		return ""
	}
	ptr := v.Evidence[0]
	segs := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	if len(segs) >= 2 {
		if i, err := strconv.Atoi(segs[1]); err == nil && i >= 0 {
			switch {
			case segs[0] == "network" && i < len(r.Network):
				n := r.Network[i]
				return fmt.Sprintf("%s %s %s %s by pid %d", n.Op, n.Family, n.Protocol, netAddr(n), n.PID)
			case segs[0] == "files" && i < len(r.Files):
				f := r.Files[i]
				return fmt.Sprintf("%s %s by pid %d", f.Op, f.Path, f.PID)
			case segs[0] == "processes" && i < len(r.Processes):
				p := r.Processes[i]
				return fmt.Sprintf("process %d %s %q", p.PID, p.Exe, p.Argv)
			}
		}
	}
	return ptr
}

func netAddr(n receipt.Net) string {
	if n.Family == receipt.FamilyInet6 {
		return "[" + n.Address + "]:" + strconv.FormatInt(n.Port, 10)
	}
	if n.Family == receipt.FamilyUnix {
		return n.Address
	}
	return n.Address + ":" + strconv.FormatInt(n.Port, 10)
}
