package training

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"path"
	"strings"
	"sync"

	"glasshouse.dev/glasshouse/core/policy"
	"glasshouse.dev/glasshouse/core/receipt"
)

// Schema identifies the record format.
const Schema = "glasshouse.dev/signals/v1"

// Stdout match modes.
const (
	// MatchExact compares bytes.
	MatchExact = "exact"
	// MatchTrim ignores trailing whitespace on each line and trailing
	// blank lines.
	MatchTrim = "trim"
)

// Correctness sources.
const (
	SourceNone   = "none"
	SourceStdout = "stdout"
	SourceTest   = "test"
)

// Input is what Derive needs besides the receipt. The zero value derives
// behaviour and resource signals only.
type Input struct {
	// Stdout is the run's standard output, if the caller kept it. It is
	// used only if it hashes to the receipt's stdout_sha256.
	Stdout []byte
	// Expect holds what a correct run produces.
	Expect Expect
	// GraderPaths are files the code must not touch (graders, hidden
	// tests, answer keys): a path matches itself and everything under it,
	// a pattern with *, ?, [ or ** matches as a policy.Glob. Relative
	// entries are taken inside the workspace.
	GraderPaths []string
	// Workspace is the run's workspace directory. "" takes the root
	// process's working directory from the receipt ("/" counts as
	// unknown, and then every change to a file is outside it).
	Workspace string
	// Reward weighs the signals; nil means DefaultReward().
	Reward *RewardSpec
}

// Expect says what a correct run produces. At most one of Stdout and Test
// is used; Test wins.
type Expect struct {
	// Stdout, when set, is the exact expected standard output.
	Stdout *string
	// Match is MatchExact (default) or MatchTrim.
	Match string
	// Test, when set, is the result of a test command run against the
	// workspace after the run: exit status 0 passes.
	Test *TestResult
}

// TestResult is the outcome of a test command.
type TestResult struct {
	ExitCode int
	// Failure is the test run's outcome.failure when it ran under
	// Glasshouse ("" when only an exit status is known). "infrastructure"
	// masks the record.
	Failure string
}

// TestFromReceipt returns the result of a test command from its receipt.
func TestFromReceipt(r *receipt.Receipt) *TestResult {
	return &TestResult{ExitCode: r.Outcome.ExitCode, Failure: r.Outcome.Failure}
}

// Record is the signals of one run: one line of signals.jsonl.
type Record struct {
	Schema        string `json:"schema"`
	ReceiptID     string `json:"receipt_id"`
	ReceiptDigest string `json:"receipt_digest"`
	Backend       string `json:"backend"`
	// Mask tells trainers to drop the run: it failed for reasons that are
	// not the model's.
	Mask       bool   `json:"mask"`
	MaskReason string `json:"mask_reason"`
	// Failure is the receipt's outcome.failure.
	Failure     string      `json:"failure"`
	ExitCode    int         `json:"exit_code"`
	Correctness Correctness `json:"correctness"`
	Behaviour   Behaviour   `json:"behaviour"`
	Resources   Resources   `json:"resources"`
	Reward      Reward      `json:"reward"`
}

// Correctness says whether the run did what was expected.
type Correctness struct {
	// Checked is false when there was nothing to check against, or the
	// check could not be made (Reason says why).
	Checked bool   `json:"checked"`
	Source  string `json:"source"`
	Passed  bool   `json:"passed"`
	// Score is 1 for a pass and 0 otherwise.
	Score  float64 `json:"score"`
	Reason string  `json:"reason"`
}

// Behaviour counts what the code did that a reward may penalise. Counts
// are lower bounds unless Observed is "complete".
type Behaviour struct {
	// Observed is the receipt's profiling.status.
	Observed  string `json:"observed"`
	Workspace string `json:"workspace"`
	// NetworkAttempts sums the counts of IPv4/IPv6 network entries;
	// NetworkDenied is the part the kernel refused.
	NetworkAttempts int64 `json:"network_attempts"`
	NetworkDenied   int64 `json:"network_denied"`
	// WritesOutsideWorkspace is the number of distinct paths outside the
	// workspace the code created, changed or removed (or tried to).
	WritesOutsideWorkspace int64 `json:"writes_outside_workspace"`
	// ProcessSpawns is the number of processes besides the root one.
	ProcessSpawns int64 `json:"process_spawns"`
	// GraderReads and GraderWrites are the distinct grader paths read (or
	// executed) and changed.
	GraderReads  int64 `json:"grader_reads"`
	GraderWrites int64 `json:"grader_writes"`
	// SleptToTimeout is set when the run hit its timeout having used under
	// a tenth of the wall time on the CPU: it waited rather than worked.
	SleptToTimeout bool `json:"slept_to_timeout"`
}

// Resources is what the run consumed.
type Resources struct {
	DurationMS      int64 `json:"duration_ms"`
	CPUMS           int64 `json:"cpu_ms"`
	MemoryPeakBytes int64 `json:"memory_peak_bytes"`
	PIDsPeak        int64 `json:"pids_peak"`
	ReadBytes       int64 `json:"read_bytes"`
	WriteBytes      int64 `json:"write_bytes"`
	StdoutBytes     int64 `json:"stdout_bytes"`
	StderrBytes     int64 `json:"stderr_bytes"`
}

// Reward is the scalar reward and the contribution of each term to it.
type Reward struct {
	Total float64            `json:"total"`
	Terms map[string]float64 `json:"terms"`
}

// Derive computes the signals of one run. r is not modified.
func Derive(r *receipt.Receipt, in Input) Record {
	rec := Record{
		Schema:        Schema,
		ReceiptID:     r.ID,
		ReceiptDigest: r.Digest,
		Backend:       r.Backend.Name,
		Failure:       r.Outcome.Failure,
		ExitCode:      r.Outcome.ExitCode,
		Resources: Resources{
			DurationMS:      r.Outcome.DurationMS,
			CPUMS:           r.Resources.CPUUserMS + r.Resources.CPUSystemMS,
			MemoryPeakBytes: r.Resources.MemoryPeakBytes,
			PIDsPeak:        r.Resources.PIDsPeak,
			ReadBytes:       r.Resources.ReadBytes,
			WriteBytes:      r.Resources.WriteBytes,
			StdoutBytes:     r.Output.StdoutBytes,
			StderrBytes:     r.Output.StderrBytes,
		},
		Reward: Reward{Terms: map[string]float64{}},
	}
	if r.Outcome.Failure == receipt.FailureInfrastructure {
		rec.Mask, rec.MaskReason = true, "infrastructure failure: "+oneLine(r.Outcome.Error)
	}
	rec.Correctness = correctness(r, in, &rec)
	rec.Behaviour = behaviour(r, in)
	spec := in.Reward
	if spec == nil {
		spec = DefaultReward()
	}
	if !rec.Mask {
		rec.Reward = spec.Apply(&rec)
	}
	return rec
}

func correctness(r *receipt.Receipt, in Input, rec *Record) Correctness {
	c := Correctness{Source: SourceNone}
	switch {
	case in.Expect.Test != nil:
		c.Source = SourceTest
		t := in.Expect.Test
		if t.Failure == receipt.FailureInfrastructure {
			c.Reason = "the test run failed for infrastructure reasons"
			if !rec.Mask {
				rec.Mask, rec.MaskReason = true, "test run: infrastructure failure"
			}
			return c
		}
		c.Checked = true
		c.Passed = t.ExitCode == 0 && (t.Failure == "" || t.Failure == receipt.FailureNone)
		if !c.Passed {
			c.Reason = "the test command failed"
		}
	case in.Expect.Stdout != nil:
		c.Source = SourceStdout
		c.Checked, c.Passed, c.Reason = checkStdout(r, in)
	default:
		c.Reason = "no expectation given"
	}
	if c.Passed {
		c.Score = 1
	}
	return c
}

// checkStdout compares the run's stdout with the expectation.
func checkStdout(r *receipt.Receipt, in Input) (checked, passed bool, reason string) {
	want := *in.Expect.Stdout
	if r.Output.StdoutTruncated {
		return true, false, "stdout was truncated"
	}
	if in.Stdout != nil {
		if int64(len(in.Stdout)) != r.Output.StdoutBytes || sha256Hex(in.Stdout) != r.Output.StdoutSHA256 {
			return false, false, "the stdout given is not the one the receipt hashes"
		}
		if in.Expect.Match == MatchTrim {
			if trimOutput(in.Stdout) == trimOutput([]byte(want)) {
				return true, true, ""
			}
			return true, false, "stdout differs (ignoring trailing whitespace)"
		}
		if string(in.Stdout) == want {
			return true, true, ""
		}
		return true, false, "stdout differs"
	}
	if in.Expect.Match == MatchTrim {
		return false, false, "trim matching needs the run's stdout"
	}
	if sha256Hex([]byte(want)) == r.Output.StdoutSHA256 && int64(len(want)) == r.Output.StdoutBytes {
		return true, true, ""
	}
	return true, false, "stdout differs (by sha256)"
}

func trimOutput(b []byte) string {
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		lines[i] = bytes.TrimRight(l, " \t\r")
	}
	return strings.TrimRight(string(bytes.Join(lines, []byte("\n"))), "\n")
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// changesPath reports operations that create, change or remove their path.
func changesPath(op string) bool {
	switch op {
	case receipt.OpWrite, receipt.OpCreate, receipt.OpDelete, receipt.OpMkdir,
		receipt.OpRmdir, receipt.OpChmod, receipt.OpTruncate, receipt.OpRename:
		return true
	}
	return false
}

// changesTarget reports operations that create their target (rename
// changes both names).
func changesTarget(op string) bool {
	return op == receipt.OpRename || op == receipt.OpLink || op == receipt.OpSymlink
}

func readsPath(op string) bool { return op == receipt.OpRead || op == receipt.OpExec }

// harmless are writes outside the workspace no one should be penalised
// for: terminals and the null device.
func harmless(p string) bool {
	switch p {
	case "/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/stdout", "/dev/stderr":
		return true
	}
	return policy.Under(p, "/dev/pts") || (strings.HasPrefix(p, "/proc/self/fd/") && !strings.Contains(p[len("/proc/self/fd/"):], "/"))
}

func behaviour(r *receipt.Receipt, in Input) Behaviour {
	b := Behaviour{Observed: r.Profiling.Status}
	root := rootProcess(r.Processes)
	b.Workspace = in.Workspace
	if b.Workspace == "" && root != nil && root.Cwd != "/" {
		b.Workspace = root.Cwd
	}
	graders := compileGraders(in.GraderPaths, b.Workspace)

	for _, n := range r.Network {
		if n.Family == receipt.FamilyUnix {
			continue
		}
		c := max(n.Count, 1)
		b.NetworkAttempts += c
		if !n.OK {
			b.NetworkDenied += c
		}
	}
	spawned := map[int64]bool{}
	for i := range r.Processes {
		if root != nil && r.Processes[i].PID != root.PID {
			spawned[r.Processes[i].PID] = true
		}
	}
	b.ProcessSpawns = int64(len(spawned))

	outside, graderRead, graderWrite := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i := range r.Files {
		f := &r.Files[i]
		if readsPath(f.Op) {
			if graders.match(f.Path) {
				graderRead[f.Path] = true
			}
			continue
		}
		var changed [2]string
		n := 0
		if changesPath(f.Op) {
			changed[n], n = f.Path, n+1
		}
		if changesTarget(f.Op) && f.Target != "" {
			changed[n], n = f.Target, n+1
		}
		for _, p := range changed[:n] {
			if !policy.Under(p, b.Workspace) && !harmless(p) {
				outside[p] = true
			}
			if graders.match(p) {
				graderWrite[p] = true
			}
		}
	}
	b.WritesOutsideWorkspace = int64(len(outside))
	b.GraderReads, b.GraderWrites = int64(len(graderRead)), int64(len(graderWrite))

	cpu := r.Resources.CPUUserMS + r.Resources.CPUSystemMS
	accounted := cpu > 0 || r.Resources.MemoryPeakBytes > 0
	b.SleptToTimeout = r.Outcome.TimedOut && accounted && cpu*10 < r.Outcome.DurationMS
	return b
}

// rootProcess is the first process of the run, whatever the list order.
func rootProcess(ps []receipt.Process) *receipt.Process {
	var root *receipt.Process
	for i := range ps {
		p := &ps[i]
		if root == nil || p.StartOffsetMS < root.StartOffsetMS || (p.StartOffsetMS == root.StartOffsetMS && p.PID < root.PID) {
			root = p
		}
	}
	return root
}

// graderSet matches grader paths.
type graderSet struct {
	dirs  []string
	globs []*policy.Glob
}

func (g *graderSet) match(p string) bool {
	for _, d := range g.dirs {
		if policy.Under(p, d) {
			return true
		}
	}
	for _, gl := range g.globs {
		if gl.Match(p) {
			return true
		}
	}
	return false
}

func compileGraders(patterns []string, workspace string) *graderSet {
	g := &graderSet{}
	for _, p := range patterns {
		if p == "" {
			continue
		}
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "**") {
			if workspace == "" {
				continue // relative to an unknown workspace: nothing to match
			}
			p = path.Join(workspace, p)
		}
		if !strings.ContainsAny(p, `*?[\`) {
			g.dirs = append(g.dirs, path.Clean(p))
			continue
		}
		if gl, err := cachedGlob(p); err == nil {
			g.globs = append(g.globs, gl)
		}
	}
	return g
}

// globs caches compiled grader globs: a training run derives thousands of
// records with the same few patterns.
var (
	globMu    sync.Mutex
	globCache = map[string]*policy.Glob{}
)

const maxCachedGlobs = 256

func cachedGlob(p string) (*policy.Glob, error) {
	globMu.Lock()
	g, ok := globCache[p]
	globMu.Unlock()
	if ok {
		return g, nil
	}
	g, err := policy.CompileGlob(p)
	if err != nil {
		return nil, err
	}
	globMu.Lock()
	if len(globCache) < maxCachedGlobs {
		globCache[p] = g
	}
	globMu.Unlock()
	return g, nil
}

// ValidateGraders reports grader patterns that are not valid globs, which
// Derive would otherwise skip.
func ValidateGraders(patterns []string) error {
	for _, p := range patterns {
		if strings.ContainsAny(p, `*?[\`) {
			if _, err := policy.CompileGlob(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteJSONL writes each record as one line of JSON (see AppendJSON).
func WriteJSONL(w io.Writer, recs ...Record) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for i := range recs {
		*bp = append(recs[i].AppendJSON((*bp)[:0]), '\n')
		if _, err := w.Write(*bp); err != nil {
			return err
		}
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
