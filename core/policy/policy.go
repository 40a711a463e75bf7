package policy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrInvalidPolicy means a policy file is malformed: bad YAML, a
	// missing or unknown field, a bad value or a CEL condition that does
	// not compile. The error is an *Error (or several joined) carrying the
	// file, line and column.
	ErrInvalidPolicy = errors.New("invalid policy")
	// ErrUnknownPack means a policy reference is neither a built-in pack
	// nor a file.
	ErrUnknownPack = errors.New("unknown policy pack")
	// ErrNoPolicy means a policy reference names nothing.
	ErrNoPolicy = errors.New("empty policy reference")
	// ErrDuplicatePolicy means one policy was given twice in a combined
	// reference.
	ErrDuplicatePolicy = errors.New("policy given twice")
)

// Policy is a compiled policy, or several combined. It is immutable and
// safe for concurrent use.
type Policy struct {
	name  string
	rules []*rule
}

// Name returns the policy's name; a combined policy's name is its parts'
// names joined by commas.
func (p *Policy) Name() string { return p.name }

// RuleIDs returns the qualified ids ("policy/rule") of the policy's rules,
// in evaluation order.
func (p *Policy) RuleIDs() []string {
	ids := make([]string, len(p.rules))
	for i, r := range p.rules {
		ids[i] = r.id
	}
	return ids
}

// Parse compiles one policy from YAML source. file names the source in
// error messages. Errors wrap ErrInvalidPolicy.
func Parse(file string, src []byte) (*Policy, error) {
	doc, err := parseDocument(file, src)
	if err != nil {
		return nil, err
	}
	rules, err := compileDocument(file, doc)
	if err != nil {
		return nil, err
	}
	return &Policy{name: doc.name, rules: rules}, nil
}

// Load loads a policy by reference: the name of a built-in pack, the path
// of a YAML file, or a comma-separated list of those, combined into one
// policy whose rules run in the order given. A reference that is not a
// pack name is read as a file; write ./NAME for a file that shares a
// pack's name. Errors wrap ErrUnknownPack, ErrInvalidPolicy, ErrNoPolicy,
// ErrDuplicatePolicy or the file system's error.
func Load(ref string) (*Policy, error) {
	var parts []*Policy
	for _, item := range strings.Split(ref, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := loadOne(item)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoPolicy, ref)
	}
	return Combine(parts...)
}

// Combine returns one policy that runs the rules of ps in order. Its name
// is their names joined by commas.
func Combine(ps ...*Policy) (*Policy, error) {
	if len(ps) == 0 {
		return nil, ErrNoPolicy
	}
	if len(ps) == 1 {
		return ps[0], nil
	}
	var names []string
	out := &Policy{}
	for _, p := range ps {
		if slices.Contains(names, p.name) {
			return nil, fmt.Errorf("%w: %s", ErrDuplicatePolicy, p.name)
		}
		names = append(names, p.name)
		out.rules = append(out.rules, p.rules...)
	}
	out.name = strings.Join(names, ",")
	return out, nil
}

func loadOne(ref string) (*Policy, error) {
	if isPack(ref) {
		return pack(ref)
	}
	looksLikeFile := strings.ContainsRune(ref, os.PathSeparator) || strings.ContainsRune(ref, '/') ||
		strings.HasSuffix(ref, ".yaml") || strings.HasSuffix(ref, ".yml")
	src, err := readBounded(ref)
	if err != nil {
		if !looksLikeFile && errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w %q: not a file either (packs: %s)", ErrUnknownPack, ref, strings.Join(packNames(), ", "))
		}
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(ref, src)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxPolicyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxPolicyBytes {
		return nil, &Error{File: path, Msg: fmt.Sprintf("policy is over the limit of %d bytes", MaxPolicyBytes)}
	}
	return src, nil
}
