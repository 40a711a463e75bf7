package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Bounds on policy files. Longer inputs are rejected with an error naming
// the field and the limit.
const (
	MaxPolicyBytes    = 1 << 20
	MaxRules          = 512
	MaxConditionBytes = 16 << 10
	// MaxTotalConditionBytes bounds the conditions of one file together:
	// compiling CEL costs a few microseconds per byte, and a server compiles
	// inline policies per request.
	MaxTotalConditionBytes = 64 << 10
	MaxNameBytes           = 64
	MaxDescriptionBytes    = 4 << 10
	MaxVersionBytes        = 64
	// MaxErrors bounds how many problems one error lists.
	MaxErrors = 20
)

// Severities. A rule's severity is the verdict it forces when it matches.
const (
	SeverityDeny = "deny"
	SeverityWarn = "warn"
)

var namePattern = regexp.MustCompile(`\A[A-Za-z0-9][A-Za-z0-9._-]*\z`)

// Error is a problem in a policy file, at a position. Its Unwrap returns
// ErrInvalidPolicy.
type Error struct {
	// File is the path or name the policy was loaded from.
	File string
	// Line and Column are 1-based; 0 when the problem has no position.
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *Error) Unwrap() error { return ErrInvalidPolicy }

// pos is a 1-based position in a policy file.
type pos struct{ line, col int }

// problems collects positioned errors.
type problems struct {
	file string
	errs []error
}

func (p *problems) add(at pos, format string, args ...any) {
	if len(p.errs) >= MaxErrors {
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: at.line, Column: at.col, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	switch len(p.errs) {
	case 0:
		return nil
	case 1:
		return p.errs[0]
	}
	return errors.Join(p.errs...)
}

// document is a policy file as written, with positions.
type document struct {
	name, version, description string
	namePos                    pos
	rules                      []ruleSource
}

// ruleSource is one rule as written.
type ruleSource struct {
	id, severity, description, over string
	at, idPos, overPos              pos
	condition                       string
	cond                            scalarPos
}

// scalarPos maps positions inside a scalar's value back to the file.
type scalarPos struct {
	pos
	// block is set for literal (|) and folded (>) block scalars, whose
	// content starts on the line after the indicator at indent+1.
	block  bool
	folded bool
	indent int
	// quoted is set for '...' and "..." scalars: content starts one
	// column after the quote.
	quoted bool
}

// at maps a 1-based line and 0-based column inside the value to the file.
// Positions inside folded or multi-line flow scalars are approximated by
// the start of their line.
func (s scalarPos) at(line, col int) pos {
	switch {
	case s.block && !s.folded:
		return pos{s.line + line, s.indent + col + 1}
	case s.block:
		return pos{s.line + 1, s.indent + 1}
	case line == 1 && s.quoted:
		return pos{s.line, s.col + col + 1}
	case line == 1:
		return pos{s.line, s.col + col}
	}
	return s.pos
}

func tokenPos(tk *token.Token) pos {
	if tk == nil || tk.Position == nil {
		return pos{}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

func nodePos(n ast.Node) pos {
	if n == nil {
		return pos{}
	}
	return tokenPos(n.GetToken())
}

// parseDocument parses and validates the structure of a policy file. It
// never panics: a panic in the YAML parser is reported as an error.
func parseDocument(file string, src []byte) (doc *document, err error) {
	probs := &problems{file: file}
	if len(src) > MaxPolicyBytes {
		probs.add(pos{}, "policy is %d bytes, over the limit of %d", len(src), MaxPolicyBytes)
		return nil, probs.err()
	}
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, &Error{File: file, Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	f, perr := parser.ParseBytes(src, 0)
	if perr != nil {
		var ye yaml.Error
		if errors.As(perr, &ye) {
			probs.add(tokenPos(ye.GetToken()), "YAML: %s", ye.GetMessage())
		} else {
			probs.add(pos{}, "YAML: %v", perr)
		}
		return nil, probs.err()
	}
	var bodies []ast.Node
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			bodies = append(bodies, d.Body)
		}
	}
	switch {
	case len(bodies) == 0:
		probs.add(pos{1, 1}, "empty policy: want a mapping with name, version and rules")
		return nil, probs.err()
	case len(bodies) > 1:
		probs.add(nodePos(bodies[1]), "more than one YAML document")
		return nil, probs.err()
	}
	lines := strings.Split(string(src), "\n")
	doc = &document{}
	pairs, ok := mappingPairs(bodies[0])
	if !ok {
		probs.add(nodePos(bodies[0]), "a policy must be a mapping with name, version and rules")
		return nil, probs.err()
	}
	seen := map[string]bool{}
	for _, kv := range pairs {
		key, kpos, ok := mappingKey(kv, probs)
		if !ok {
			continue
		}
		if seen[key] {
			probs.add(kpos, "%q given twice", key)
			continue
		}
		seen[key] = true
		switch key {
		case "name":
			doc.name, _ = scalar(kv.Value, "name", MaxNameBytes, probs)
			doc.namePos = nodePos(kv.Value)
			if doc.name != "" && !namePattern.MatchString(doc.name) {
				probs.add(doc.namePos, "name %q: want letters, digits, '.', '_' or '-', starting with a letter or digit", doc.name)
			}
		case "version":
			doc.version, _ = scalar(kv.Value, "version", MaxVersionBytes, probs)
		case "description":
			doc.description, _ = scalar(kv.Value, "description", MaxDescriptionBytes, probs)
		case "rules":
			doc.rules = parseRules(kv.Value, lines, probs)
		default:
			probs.add(kpos, "unknown field %q (want name, version, description, rules)", key)
		}
	}
	at := startPos(bodies[0])
	for _, req := range []string{"name", "version", "rules"} {
		if !seen[req] {
			probs.add(at, "missing %q", req)
		}
	}
	if seen["name"] && doc.name == "" {
		probs.add(doc.namePos, "name is empty")
	}
	if seen["version"] && doc.version == "" {
		probs.add(at, "version is empty")
	}
	if seen["rules"] && len(doc.rules) == 0 && len(probs.errs) == 0 {
		probs.add(at, "rules is empty: a policy needs at least one rule")
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return doc, nil
}

func parseRules(n ast.Node, lines []string, probs *problems) []ruleSource {
	seq, ok := unwrap(n).(*ast.SequenceNode)
	if !ok {
		probs.add(nodePos(n), "rules must be a list")
		return nil
	}
	if len(seq.Values) > MaxRules {
		probs.add(nodePos(n), "%d rules, over the limit of %d", len(seq.Values), MaxRules)
		return nil
	}
	var rules []ruleSource
	ids := map[string]pos{}
	total := 0
	for _, item := range seq.Values {
		r, ok := parseRule(item, lines, probs)
		if !ok {
			continue
		}
		if total += len(r.condition); total > MaxTotalConditionBytes {
			probs.add(r.cond.pos, "conditions total over %d bytes, the limit for one policy", MaxTotalConditionBytes)
			return nil
		}
		if prev, dup := ids[r.id]; dup {
			probs.add(r.idPos, "rule id %q already used at line %d", r.id, prev.line)
			continue
		}
		ids[r.id] = r.idPos
		rules = append(rules, r)
	}
	return rules
}

func parseRule(n ast.Node, lines []string, probs *problems) (ruleSource, bool) {
	r := ruleSource{at: startPos(n)}
	pairs, ok := mappingPairs(n)
	if !ok {
		probs.add(nodePos(n), "a rule must be a mapping with id, severity, description and condition")
		return r, false
	}
	before := len(probs.errs)
	seen := map[string]bool{}
	for _, kv := range pairs {
		key, kpos, ok := mappingKey(kv, probs)
		if !ok {
			continue
		}
		if seen[key] {
			probs.add(kpos, "%q given twice", key)
			continue
		}
		seen[key] = true
		vpos := nodePos(kv.Value)
		switch key {
		case "id":
			r.id, _ = scalar(kv.Value, "id", MaxNameBytes, probs)
			r.idPos = vpos
			if r.id != "" && !namePattern.MatchString(r.id) {
				probs.add(vpos, "id %q: want letters, digits, '.', '_' or '-', starting with a letter or digit", r.id)
			}
		case "severity":
			r.severity, _ = scalar(kv.Value, "severity", MaxNameBytes, probs)
			if r.severity != SeverityDeny && r.severity != SeverityWarn && r.severity != "" {
				probs.add(vpos, "severity %q: want deny or warn", r.severity)
			}
		case "description":
			r.description, _ = scalar(kv.Value, "description", MaxDescriptionBytes, probs)
		case "over":
			r.over, _ = scalar(kv.Value, "over", MaxNameBytes, probs)
			r.overPos = vpos
			if _, ok := entryTypes[r.over]; !ok && r.over != "" {
				probs.add(vpos, "over %q: want processes, files or network", r.over)
			}
		case "condition":
			r.condition, _ = scalar(kv.Value, "condition", MaxConditionBytes, probs)
			r.cond = conditionPos(kv.Value, lines)
		default:
			probs.add(kpos, "unknown rule field %q (want id, severity, description, over, condition)", key)
		}
	}
	for _, req := range []string{"id", "severity", "condition"} {
		if !seen[req] {
			probs.add(r.at, "rule is missing %q", req)
		}
	}
	if seen["id"] && r.id == "" {
		probs.add(r.idPos, "rule id is empty")
	}
	if seen["severity"] && r.severity == "" {
		probs.add(r.at, "rule %q: severity is empty (want deny or warn)", r.id)
	}
	if seen["condition"] && strings.TrimSpace(r.condition) == "" {
		probs.add(r.cond.pos, "rule %q: condition is empty", r.id)
	}
	return r, len(probs.errs) == before
}

// unwrap skips comment wrappers; anchors, aliases and tags are left for the
// caller to reject.
func unwrap(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.CommentGroupNode:
			return nil
		case *ast.DocumentNode:
			n = v.Body
		default:
			return n
		}
	}
}

// startPos is the position of a mapping's first key, where a reader sees
// it begin.
func startPos(n ast.Node) pos {
	if pairs, ok := mappingPairs(n); ok && len(pairs) > 0 {
		return nodePos(pairs[0].Key)
	}
	return nodePos(n)
}

func mappingPairs(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch v := unwrap(n).(type) {
	case *ast.MappingNode:
		return v.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{v}, true
	}
	return nil, false
}

func mappingKey(kv *ast.MappingValueNode, probs *problems) (string, pos, bool) {
	at := nodePos(kv.Key)
	k, ok := kv.Key.(*ast.StringNode)
	if !ok {
		probs.add(at, "keys must be plain strings")
		return "", at, false
	}
	return k.Value, at, true
}

// scalar returns a scalar's text. Numbers and booleans are taken as
// written; anchors, aliases, tags, lists and mappings are errors.
func scalar(n ast.Node, field string, max int, probs *problems) (string, bool) {
	var s string
	switch v := unwrap(n).(type) {
	case nil, *ast.NullNode:
		return "", true
	case *ast.StringNode:
		s = v.Value
	case *ast.LiteralNode:
		s = v.Value.Value
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		s = v.GetToken().Value
	case *ast.AnchorNode, *ast.AliasNode, *ast.TagNode:
		probs.add(nodePos(n), "%s: anchors, aliases and tags are not allowed in policies", field)
		return "", false
	default:
		probs.add(nodePos(n), "%s must be a string", field)
		return "", false
	}
	if len(s) > max {
		probs.add(nodePos(n), "%s is %d bytes, over the limit of %d", field, len(s), max)
		return "", false
	}
	return s, true
}

func conditionPos(n ast.Node, lines []string) scalarPos {
	sp := scalarPos{pos: nodePos(n)}
	switch v := unwrap(n).(type) {
	case *ast.LiteralNode:
		sp.pos = tokenPos(v.Start)
		sp.block = true
		sp.folded = v.Start != nil && strings.HasPrefix(v.Start.Value, ">")
		sp.indent = blockIndent(lines, sp.line)
	case *ast.StringNode:
		if tk := v.GetToken(); tk != nil {
			sp.quoted = tk.Type == token.DoubleQuoteType || tk.Type == token.SingleQuoteType
		}
	}
	return sp
}

// blockIndent returns the indentation of the first non-blank line after
// the indicator line (1-based).
func blockIndent(lines []string, indicator int) int {
	for i := indicator; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		return len(l) - len(strings.TrimLeft(l, " "))
	}
	return 0
}
