package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"glasshouse.dev/glasshouse/core/receipt"
)

// MaxEvidence bounds the pointers one violation lists; the message still
// counts every match.
const MaxEvidence = 256

// ErrNilReceipt means Evaluate was given no receipt.
var ErrNilReceipt = errors.New("no receipt to evaluate")

// Evaluate evaluates the policy over r and returns the verdict. It does not
// modify r. It implements execution.Evaluator.
func (p *Policy) Evaluate(r *receipt.Receipt) (*receipt.Policy, error) {
	return p.EvaluateContext(context.Background(), r)
}

// EvaluateContext is Evaluate with a context whose cancellation interrupts
// long-running conditions; the context's error is then returned.
func (p *Policy) EvaluateContext(ctx context.Context, r *receipt.Receipt) (*receipt.Policy, error) {
	if r == nil {
		return nil, ErrNilReceipt
	}
	st := newState(r)
	act := &activation{r: r, st: st}
	out := &receipt.Policy{Name: p.name, Verdict: receipt.VerdictAllow, Violations: []receipt.Violation{}}
	for _, ru := range p.rules {
		v, matched, err := ru.evaluate(ctx, st, act)
		if err != nil {
			return nil, err
		}
		if !matched {
			continue
		}
		out.Violations = append(out.Violations, v)
		switch {
		case ru.severity == SeverityDeny:
			out.Verdict = receipt.VerdictDeny
		case out.Verdict == receipt.VerdictAllow:
			out.Verdict = receipt.VerdictWarn
		}
	}
	return out, nil
}

// evaluate runs one rule. It returns an error only when ctx ends.
func (ru *rule) evaluate(ctx context.Context, st *state, act *activation) (receipt.Violation, bool, error) {
	v := receipt.Violation{Rule: ru.id, Severity: ru.severity, Message: ru.message, Evidence: []string{}}
	if ru.over == "" && ru.full != nil {
		if !ru.full(st, 0) {
			return v, false, nil
		}
		v.Evidence = append(v.Evidence, ru.evidence...)
		return v, true, nil
	}
	if ru.over == "" {
		act.entry = nil
		val, _, err := ru.prg.ContextEval(ctx, act)
		if err != nil {
			if ctx.Err() != nil {
				return v, false, ctx.Err()
			}
			v.Message = "evaluation error: " + oneLine(err.Error())
			return v, true, nil
		}
		matched, err := isTrue(val)
		if err != nil {
			v.Message = "evaluation error: " + err.Error()
			return v, true, nil
		}
		v.Evidence = append(v.Evidence, ru.evidence...)
		return v, matched, nil
	}

	n := st.size(ru.over)
	base := "/" + ru.over + "/"
	matches := 0
	var spent uint64
	for i := 0; i < n; i++ {
		if ru.full != nil {
			if !ru.full(st, i) {
				continue
			}
		} else {
			if ru.pre != nil && !ru.pre(st, i) {
				continue
			}
			act.entry = st.entry(ru.over, i)
			val, det, err := ru.prg.ContextEval(ctx, act)
			if det != nil && det.ActualCost() != nil {
				spent += *det.ActualCost()
			}
			if err == nil && spent > MaxCost {
				err = fmt.Errorf("rule exceeded its cost limit of %d over the receipt", MaxCost)
			}
			var matched bool
			if err == nil {
				matched, err = isTrue(val)
			}
			if err != nil {
				if ctx.Err() != nil {
					return v, false, ctx.Err()
				}
				v.Message = fmt.Sprintf("evaluation error at %s%d: %s", base, i, oneLine(err.Error()))
				v.Evidence = append(v.Evidence, base+strconv.Itoa(i))
				return v, true, nil
			}
			if !matched {
				continue
			}
		}
		matches++
		if len(v.Evidence) < MaxEvidence {
			v.Evidence = append(v.Evidence, base+strconv.Itoa(i))
		}
	}
	if matches == 0 {
		return v, false, nil
	}
	v.Message = fmt.Sprintf("%s Matched %d of %d entries in %s", v.Message, matches, n, ru.over)
	if matches > len(v.Evidence) {
		v.Message += fmt.Sprintf("; evidence lists the first %d", len(v.Evidence))
	}
	v.Message += "."
	return v, true, nil
}

func isTrue(val any) (bool, error) {
	b, ok := val.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition gave %v, not a bool", val)
	}
	return bool(b), nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// newState returns the sections of r in canonical order, sorting copies of
// those that are not sorted already.
func newState(r *receipt.Receipt) *state {
	st := &state{
		r:         r,
		processes: r.Processes,
		files:     r.Files,
		network:   r.Network,
	}
	if !sorted(st.processes, compareProcesses) {
		st.processes = slices.Clone(st.processes)
		receipt.SortProcesses(st.processes)
	}
	if !sorted(st.files, compareFiles) {
		st.files = slices.Clone(st.files)
		receipt.SortFiles(st.files)
	}
	if !sorted(st.network, compareNetwork) {
		st.network = slices.Clone(st.network)
		receipt.SortNetwork(st.network)
	}
	st.subject, st.output = &r.Subject, &r.Output
	if !sorted(r.Subject.Files, compareArtifacts) {
		sub := r.Subject
		sub.Files = slices.Clone(sub.Files)
		slices.SortFunc(sub.Files, func(a, b receipt.Artifact) int { return compareArtifacts(&a, &b) })
		st.subject = &sub
	}
	if !sorted(r.Output.Files, compareArtifacts) {
		out := r.Output
		out.Files = slices.Clone(out.Files)
		slices.SortFunc(out.Files, func(a, b receipt.Artifact) int { return compareArtifacts(&a, &b) })
		st.output = &out
	}
	if len(st.processes) > 0 {
		st.root = st.processes[0]
	}
	if cwd := st.root.Cwd; cwd != "/" {
		st.workspace = cwd
	}
	return st
}

func (st *state) size(section string) int {
	switch section {
	case OverProcesses:
		return len(st.processes)
	case OverFiles:
		return len(st.files)
	}
	return len(st.network)
}

func (st *state) entry(section string, i int) any {
	switch section {
	case OverProcesses:
		return &st.processes[i]
	case OverFiles:
		return &st.files[i]
	}
	return &st.network[i]
}

// sorted is slices.IsSortedFunc without copying entries.
func sorted[T any](s []T, cmp func(a, b *T) int) bool {
	for i := 1; i < len(s); i++ {
		if cmp(&s[i-1], &s[i]) > 0 {
			return false
		}
	}
	return true
}

// The comparators mirror receipt's sort orders; compare_test.go checks they
// agree. They only decide whether a list is already sorted: sorting itself
// is left to package receipt.

func compareProcesses(a, b *receipt.Process) int {
	if c := compareInts(a.StartOffsetMS, b.StartOffsetMS); c != 0 {
		return c
	}
	return compareInts(a.PID, b.PID)
}

func compareFiles(a, b *receipt.File) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	if c := strings.Compare(a.Op, b.Op); c != 0 {
		return c
	}
	if c := strings.Compare(a.Target, b.Target); c != 0 {
		return c
	}
	if c := compareInts(a.PID, b.PID); c != 0 {
		return c
	}
	if c := compareBools(a.OK, b.OK); c != 0 {
		return c
	}
	if c := strings.Compare(a.Errno, b.Errno); c != 0 {
		return c
	}
	return compareInts(a.Count, b.Count)
}

func compareNetwork(a, b *receipt.Net) int {
	if c := strings.Compare(a.Op, b.Op); c != 0 {
		return c
	}
	if c := strings.Compare(a.Address, b.Address); c != 0 {
		return c
	}
	if c := compareInts(a.Port, b.Port); c != 0 {
		return c
	}
	if c := strings.Compare(a.Family, b.Family); c != 0 {
		return c
	}
	if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
		return c
	}
	if c := compareInts(a.PID, b.PID); c != 0 {
		return c
	}
	if c := compareBools(a.OK, b.OK); c != 0 {
		return c
	}
	if c := strings.Compare(a.Errno, b.Errno); c != 0 {
		return c
	}
	return compareInts(a.Count, b.Count)
}

func compareArtifacts(a, b *receipt.Artifact) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return strings.Compare(a.SHA256, b.SHA256)
}

func compareBools(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// activation resolves condition variables against one receipt. It is used
// by one evaluation at a time.
type activation struct {
	r     *receipt.Receipt
	st    *state
	entry any
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case entryVar:
		return a.entry, a.entry != nil
	case "subject":
		return a.st.subject, true
	case "backend":
		return &a.r.Backend, true
	case "host":
		return &a.r.Host, true
	case "limits":
		return &a.r.Limits, true
	case "outcome":
		return &a.r.Outcome, true
	case "output":
		return a.st.output, true
	case "resources":
		return &a.r.Resources, true
	case "profiling":
		return &a.r.Profiling, true
	case "processes":
		return a.st.processes, true
	case "files":
		return a.st.files, true
	case "network":
		return a.st.network, true
	case "root":
		return &a.st.root, true
	case "workspace":
		return a.st.workspace, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }
