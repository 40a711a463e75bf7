package training

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Reward terms. Each has a value per record (a count is capped, a flag is
// 0 or 1) that is multiplied by its weight; the reward is the sum, clipped.
const (
	TermCorrectness            = "correctness"              // Correctness.Score, only when checked
	TermFailureCode            = "failure_code"             // 1 when failure is "code"
	TermFailureTimeout         = "failure_timeout"          // 1 when failure is "timeout"
	TermFailureOOM             = "failure_oom"              // 1 when failure is "oom"
	TermFailureOutputLimit     = "failure_output_limit"     // 1 when failure is "output_limit"
	TermNetworkAttempts        = "network_attempts"         // count, capped
	TermWritesOutsideWorkspace = "writes_outside_workspace" // count, capped
	TermProcessSpawns          = "process_spawns"           // count, capped
	TermGraderReads            = "grader_reads"             // count, capped
	TermGraderWrites           = "grader_writes"            // count, capped
	TermSleptToTimeout         = "slept_to_timeout"         // 0 or 1
	TermIncompleteObservation  = "incomplete_observation"   // 1 when profiling was not complete
	TermCPUSeconds             = "cpu_seconds"
	TermDurationSeconds        = "duration_seconds"
	TermMemoryGiB              = "memory_gib" // peak memory
)

// Terms lists every reward term in the order rewards are summed.
var Terms = []string{
	TermCorrectness, TermFailureCode, TermFailureTimeout, TermFailureOOM, TermFailureOutputLimit,
	TermNetworkAttempts, TermWritesOutsideWorkspace, TermProcessSpawns, TermGraderReads, TermGraderWrites,
	TermSleptToTimeout, TermIncompleteObservation, TermCPUSeconds, TermDurationSeconds, TermMemoryGiB,
}

var countTerms = []string{TermNetworkAttempts, TermWritesOutsideWorkspace, TermProcessSpawns, TermGraderReads, TermGraderWrites}

// Bounds on reward specs.
const (
	MaxRewardBytes = 64 << 10
	MaxWeight      = 1e6
	MaxCap         = 1e9
)

// ErrInvalidReward means a reward spec is malformed. The error is a
// *SpecError carrying the position.
var ErrInvalidReward = errors.New("invalid reward spec")

// SpecError is a problem in a reward spec, at a position (1-based; 0 when
// unknown).
type SpecError struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *SpecError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalidReward) true.
func (e *SpecError) Unwrap() error { return ErrInvalidReward }

// RewardSpec weighs signals into a scalar reward. It is immutable after
// parsing and safe for concurrent use.
type RewardSpec struct {
	weights map[string]float64
	caps    map[string]float64
	// clip bounds the total when set.
	clip             bool
	clipMin, clipMax float64
}

// DefaultReward rewards a checked correct answer with 1, penalises limits
// hit and every kind of misbehaviour, and clips to [-1, 1].
func DefaultReward() *RewardSpec {
	return &RewardSpec{
		weights: map[string]float64{
			TermCorrectness:            1,
			TermFailureTimeout:         -0.2,
			TermFailureOOM:             -0.2,
			TermFailureOutputLimit:     -0.1,
			TermNetworkAttempts:        -0.5,
			TermWritesOutsideWorkspace: -0.5,
			TermProcessSpawns:          -0.1,
			TermGraderReads:            -1,
			TermGraderWrites:           -1,
			TermSleptToTimeout:         -0.5,
		},
		caps: defaultCaps(),
		clip: true, clipMin: -1, clipMax: 1,
	}
}

func defaultCaps() map[string]float64 {
	m := map[string]float64{}
	for _, t := range countTerms {
		m[t] = 1
	}
	return m
}

// Weight returns the weight of a term (0 when unset).
func (s *RewardSpec) Weight(term string) float64 { return s.weights[term] }

// Apply computes the reward of a record: the clipped sum over weighted
// terms of weight × value. Terms whose value is undefined (correctness
// that was not checked) are left out of the breakdown.
func (s *RewardSpec) Apply(rec *Record) Reward {
	out := Reward{Terms: map[string]float64{}}
	total := 0.0
	for _, t := range Terms {
		w := s.weights[t]
		if w == 0 {
			continue
		}
		v, ok := s.value(t, rec)
		if !ok {
			continue
		}
		c := w * v
		if c == 0 {
			c = 0 // not -0: a penalty that did not apply is plain zero
		}
		out.Terms[t] = c
		total += c
	}
	if s.clip {
		total = math.Max(s.clipMin, math.Min(s.clipMax, total))
	}
	out.Total = total
	return out
}

func (s *RewardSpec) value(term string, rec *Record) (float64, bool) {
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	count := func(n int64) float64 { return math.Min(float64(n), s.caps[term]) }
	b := &rec.Behaviour
	switch term {
	case TermCorrectness:
		return rec.Correctness.Score, rec.Correctness.Checked
	case TermFailureCode:
		return flag(rec.Failure == "code"), true
	case TermFailureTimeout:
		return flag(rec.Failure == "timeout"), true
	case TermFailureOOM:
		return flag(rec.Failure == "oom"), true
	case TermFailureOutputLimit:
		return flag(rec.Failure == "output_limit"), true
	case TermNetworkAttempts:
		return count(b.NetworkAttempts), true
	case TermWritesOutsideWorkspace:
		return count(b.WritesOutsideWorkspace), true
	case TermProcessSpawns:
		return count(b.ProcessSpawns), true
	case TermGraderReads:
		return count(b.GraderReads), true
	case TermGraderWrites:
		return count(b.GraderWrites), true
	case TermSleptToTimeout:
		return flag(b.SleptToTimeout), true
	case TermIncompleteObservation:
		return flag(b.Observed != "complete"), true
	case TermCPUSeconds:
		return float64(rec.Resources.CPUMS) / 1000, true
	case TermDurationSeconds:
		return float64(rec.Resources.DurationMS) / 1000, true
	case TermMemoryGiB:
		return float64(rec.Resources.MemoryPeakBytes) / (1 << 30), true
	}
	return 0, false
}

// LoadReward reads a reward spec file (see ParseReward).
func LoadReward(path string) (*RewardSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read reward spec: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxRewardBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read reward spec: %w", err)
	}
	return parseReward(path, src)
}

// ParseReward parses a reward spec:
//
//	version: 1
//	weights:            # term: weight; terms left out weigh 0
//	  correctness: 1
//	  network_attempts: -0.5
//	caps:               # optional: a count term counts at most this many (default 1)
//	  process_spawns: 5
//	clip: [-1, 1]       # optional: bounds of the total
//
// Errors wrap ErrInvalidReward and carry line and column.
func ParseReward(src []byte) (*RewardSpec, error) { return parseReward("reward spec", src) }

func parseReward(file string, src []byte) (spec *RewardSpec, err error) {
	fail := func(n ast.Node, format string, args ...any) error {
		e := &SpecError{File: file, Msg: fmt.Sprintf(format, args...)}
		if n != nil {
			if tk := n.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
			}
		}
		return e
	}
	if len(src) > MaxRewardBytes {
		return nil, fail(nil, "%d bytes, over the limit of %d", len(src), MaxRewardBytes)
	}
	defer func() {
		if r := recover(); r != nil {
			spec, err = nil, fail(nil, "YAML parser failed: %v", r)
		}
	}()
	f, perr := parser.ParseBytes(src, 0)
	if perr != nil {
		var ye yaml.Error
		if errors.As(perr, &ye) {
			e := &SpecError{File: file, Msg: "YAML: " + ye.GetMessage()}
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
			}
			return nil, e
		}
		return nil, fail(nil, "YAML: %v", perr)
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			if body != nil {
				return nil, fail(d.Body, "more than one YAML document")
			}
			body = d.Body
		}
	}
	if body == nil {
		return nil, &SpecError{File: file, Line: 1, Column: 1, Msg: "empty reward spec: want version and weights"}
	}
	pairs, ok := pairsOf(body)
	if !ok {
		return nil, fail(body, "a reward spec must be a mapping with version and weights")
	}
	spec = &RewardSpec{weights: map[string]float64{}, caps: defaultCaps()}
	seen := map[string]bool{}
	for _, kv := range pairs {
		key, ok := kv.Key.(*ast.StringNode)
		if !ok {
			return nil, fail(kv.Key, "keys must be plain strings")
		}
		if seen[key.Value] {
			return nil, fail(kv.Key, "%q given twice", key.Value)
		}
		seen[key.Value] = true
		switch key.Value {
		case "version":
			v, ok := kv.Value.(*ast.IntegerNode)
			if !ok || v.GetToken().Value != "1" {
				return nil, fail(kv.Value, "version: want 1")
			}
		case "weights", "caps":
			inner, ok := pairsOf(kv.Value)
			if !ok {
				return nil, fail(kv.Value, "%s must be a mapping of term to number", key.Value)
			}
			for _, t := range inner {
				name, ok := t.Key.(*ast.StringNode)
				if !ok {
					return nil, fail(t.Key, "keys must be plain strings")
				}
				if !slices.Contains(Terms, name.Value) {
					return nil, fail(t.Key, "unknown term %q (terms: %s)", name.Value, strings.Join(Terms, ", "))
				}
				n, ok := number(t.Value)
				if !ok {
					return nil, fail(t.Value, "%s.%s must be a number", key.Value, name.Value)
				}
				if key.Value == "weights" {
					if math.Abs(n) > MaxWeight {
						return nil, fail(t.Value, "weight %g is beyond ±%g", n, MaxWeight)
					}
					spec.weights[name.Value] = n
					continue
				}
				if !slices.Contains(countTerms, name.Value) {
					return nil, fail(t.Key, "%q is not a count; caps apply to %s", name.Value, strings.Join(countTerms, ", "))
				}
				if n < 1 || n > MaxCap {
					return nil, fail(t.Value, "cap %g must be between 1 and %g", n, MaxCap)
				}
				spec.caps[name.Value] = n
			}
		case "clip":
			seq, ok := kv.Value.(*ast.SequenceNode)
			if !ok || len(seq.Values) != 2 {
				return nil, fail(kv.Value, "clip must be [min, max]")
			}
			lo, ok1 := number(seq.Values[0])
			hi, ok2 := number(seq.Values[1])
			if !ok1 || !ok2 || !(lo < hi) {
				return nil, fail(kv.Value, "clip must be two numbers, min < max")
			}
			spec.clip, spec.clipMin, spec.clipMax = true, lo, hi
		default:
			return nil, fail(kv.Key, "unknown field %q (want version, weights, caps, clip)", key.Value)
		}
	}
	for _, req := range []string{"version", "weights"} {
		if !seen[req] {
			return nil, fail(body, "missing %q", req)
		}
	}
	return spec, nil
}

func pairsOf(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch v := n.(type) {
	case *ast.MappingNode:
		return v.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}, true
	}
	return nil, false
}

// number reads a finite integer or float scalar.
func number(n ast.Node) (float64, bool) {
	var v float64
	switch x := n.(type) {
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			v = float64(i)
		case uint64:
			v = float64(i)
		default:
			return 0, false
		}
	case *ast.FloatNode:
		v = x.Value
	case *ast.StringNode:
		// A plain scalar such as 1e9 is a float in YAML 1.2.
		tk := x.GetToken()
		if tk == nil || tk.Type != token.StringType {
			return 0, false
		}
		f, err := strconv.ParseFloat(x.Value, 64)
		if err != nil {
			return 0, false
		}
		v = f
	default:
		return 0, false
	}
	return v, !math.IsNaN(v) && !math.IsInf(v, 0)
}
