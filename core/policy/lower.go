package policy

import (
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"

	"glasshouse.dev/glasshouse/core/receipt"
)

// Lowering compiles the part of CEL that per-entry conditions mostly use
// (field access on the entry, string and integer comparisons, membership in
// constant lists, startsWith/endsWith/contains/matches/size and the
// Glasshouse functions under/glob/inCIDR, joined by && || ! and ?:) into Go
// closures. Evaluating a closure costs a few nanoseconds instead of the
// interpreter's few hundred, which is what lets a policy scan thousands of
// receipt entries in microseconds.
//
// Lowered code is exact: every construct it accepts has the same result as
// in CEL and none of them can fail, so a lowered condition never needs the
// interpreter. A condition that does not lower entirely still uses its
// lowerable top-level conjuncts as a prefilter — `a && b` is false in CEL
// whenever a is false, even if b would fail — and runs the interpreter only
// on the entries that pass it. lower_test.go checks both against CEL.

// state is what one evaluation sees: the receipt's sections in canonical
// order and the values derived from them.
type state struct {
	r         *receipt.Receipt
	processes []receipt.Process
	files     []receipt.File
	network   []receipt.Net
	root      receipt.Process
	workspace string
	// subject and output are the receipt's, or sorted copies.
	subject *receipt.Subject
	output  *receipt.Output
}

type (
	boolFn func(s *state, i int) bool
	strFn  func(s *state, i int) string
	intFn  func(s *state, i int) int64
)

type kind int

const (
	kindBool kind = iota + 1
	kindString
	kindInt
	kindStrings // a constant list of strings
	kindInts    // a constant list of ints
)

// lowered is one compiled sub-expression.
type lowered struct {
	kind kind
	b    boolFn
	s    strFn
	n    intFn

	// constant values, for literals
	isConst bool
	cs      string
	strs    []string
	ints    []int64

	// field names the entry field a string node reads ("path"), so that
	// predicates over the same field can share a guard.
	field string
	// guard, on a bool node, is a necessary condition: the node is true
	// only if its field starts with one of the guard's prefixes.
	guard *guard
}

// guard is a set of prefixes one of which a field must start with for a
// predicate to hold. A disjunction of predicates over the same field
// checks the union once and skips every predicate for the (usual) entry
// that has none: one walk of a small trie instead of a dozen calls.
type guard struct {
	field    string
	get      strFn
	prefixes []string
}

func newGuard(of lowered, prefixes ...string) *guard {
	if of.field == "" {
		return nil
	}
	return &guard{field: of.field, get: of.s, prefixes: prefixes}
}

// lowerer compiles expressions of one `over` section.
type lowerer struct {
	section string
}

// lowerCondition returns the full compiled condition (full) or, failing
// that, a prefilter made of the lowerable top-level conjuncts (nil when
// there is none).
func lowerCondition(section string, e ast.Expr) (full, pre boolFn) {
	l := lowerer{section: section}
	if n, ok := l.lower(e); ok && n.kind == kindBool {
		return n.b, nil
	}
	var parts []boolFn
	for _, c := range conjuncts(e) {
		if n, ok := l.lower(c); ok && n.kind == kindBool {
			parts = append(parts, n.b)
		}
	}
	switch len(parts) {
	case 0:
		return nil, nil
	case 1:
		return nil, parts[0]
	}
	return nil, func(s *state, i int) bool {
		for _, p := range parts {
			if !p(s, i) {
				return false
			}
		}
		return true
	}
}

// conjuncts flattens a tree of && into its operands.
func conjuncts(e ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind {
		c := e.AsCall()
		if c.FunctionName() == operators.LogicalAnd && len(c.Args()) == 2 {
			return append(conjuncts(c.Args()[0]), conjuncts(c.Args()[1])...)
		}
		if c.FunctionName() == operators.LogicalAnd {
			var out []ast.Expr
			for _, a := range c.Args() {
				out = append(out, conjuncts(a)...)
			}
			return out
		}
	}
	return []ast.Expr{e}
}

func (l lowerer) lower(e ast.Expr) (lowered, bool) {
	switch e.Kind() {
	case ast.LiteralKind:
		return lowerLiteral(e)
	case ast.ListKind:
		return lowerList(e.AsList())
	case ast.IdentKind:
		if e.AsIdent() == "workspace" {
			return lowered{kind: kindString, s: func(s *state, _ int) string { return s.workspace }}, true
		}
	case ast.SelectKind:
		return l.lowerSelect(e.AsSelect())
	case ast.CallKind:
		return l.lowerCall(e.AsCall())
	}
	return lowered{}, false
}

func lowerLiteral(e ast.Expr) (lowered, bool) {
	switch v := e.AsLiteral().(type) {
	case types.String:
		s := string(v)
		return lowered{kind: kindString, isConst: true, cs: s, s: func(*state, int) string { return s }}, true
	case types.Int:
		n := int64(v)
		return lowered{kind: kindInt, isConst: true, n: func(*state, int) int64 { return n }}, true
	case types.Bool:
		b := bool(v)
		return lowered{kind: kindBool, isConst: true, b: func(*state, int) bool { return b }}, true
	}
	return lowered{}, false
}

func lowerList(list ast.ListExpr) (lowered, bool) {
	if len(list.OptionalIndices()) > 0 || list.Size() == 0 {
		return lowered{}, false
	}
	var strs []string
	var ints []int64
	for _, el := range list.Elements() {
		if el.Kind() != ast.LiteralKind {
			return lowered{}, false
		}
		switch v := el.AsLiteral().(type) {
		case types.String:
			strs = append(strs, string(v))
		case types.Int:
			ints = append(ints, int64(v))
		default:
			return lowered{}, false
		}
	}
	switch {
	case len(strs) == list.Size():
		return lowered{kind: kindStrings, isConst: true, strs: strs}, true
	case len(ints) == list.Size():
		return lowered{kind: kindInts, isConst: true, ints: ints}, true
	}
	return lowered{}, false
}

func (l lowerer) lowerSelect(sel ast.SelectExpr) (lowered, bool) {
	if sel.IsTestOnly() {
		return lowered{}, false
	}
	if sel.Operand().Kind() != ast.IdentKind {
		return lowerReceiptField(sel)
	}
	field := sel.FieldName()
	switch sel.Operand().AsIdent() {
	case entryVar:
		switch l.section {
		case OverFiles:
			return fileField(field)
		case OverNetwork:
			return netField(field)
		case OverProcesses:
			return processField(field, true, func(s *state, i int) *receipt.Process { return &s.processes[i] })
		}
	case "root":
		return processField(field, false, func(s *state, _ int) *receipt.Process { return &s.root })
	}
	return lowerReceiptField(sel)
}

// sectionFields maps the object variables to their place in a receipt.
var sectionFields = map[string]func(r *receipt.Receipt) any{
	"subject":   func(r *receipt.Receipt) any { return &r.Subject }, // only scalar fields are lowered
	"backend":   func(r *receipt.Receipt) any { return &r.Backend },
	"host":      func(r *receipt.Receipt) any { return &r.Host },
	"limits":    func(r *receipt.Receipt) any { return &r.Limits },
	"outcome":   func(r *receipt.Receipt) any { return &r.Outcome },
	"output":    func(r *receipt.Receipt) any { return &r.Output }, // only scalar fields are lowered
	"resources": func(r *receipt.Receipt) any { return &r.Resources },
	"profiling": func(r *receipt.Receipt) any { return &r.Profiling },
}

// lowerReceiptField lowers a chain of field selections from an object
// variable (outcome.failure, profiling.omitted.files) that ends in a
// string, integer or bool, read by reflection.
func lowerReceiptField(sel ast.SelectExpr) (lowered, bool) {
	var names []string
	var e ast.Expr = nil
	for cur := sel; ; {
		if cur.IsTestOnly() {
			return lowered{}, false
		}
		names = append([]string{cur.FieldName()}, names...)
		e = cur.Operand()
		if e.Kind() != ast.SelectKind {
			break
		}
		cur = e.AsSelect()
	}
	if e.Kind() != ast.IdentKind {
		return lowered{}, false
	}
	section, ok := sectionFields[e.AsIdent()]
	if !ok {
		return lowered{}, false
	}
	t := reflect.TypeOf(section(&receipt.Receipt{})).Elem()
	var index []int
	for _, name := range names {
		if t.Kind() != reflect.Struct {
			return lowered{}, false
		}
		f, ok := fieldByJSONName(t, name)
		if !ok {
			return lowered{}, false
		}
		index = append(index, f.Index...)
		t = f.Type
	}
	get := func(s *state) reflect.Value {
		return reflect.ValueOf(section(s.r)).Elem().FieldByIndex(index)
	}
	switch t.Kind() {
	case reflect.String:
		return str(func(s *state, _ int) string { return get(s).String() })
	case reflect.Int, reflect.Int64, reflect.Int32:
		return num(func(s *state, _ int) int64 { return get(s).Int() })
	case reflect.Bool:
		return flag(func(s *state, _ int) bool { return get(s).Bool() })
	}
	return lowered{}, false
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func str(f strFn) (lowered, bool)   { return lowered{kind: kindString, s: f}, true }
func num(f intFn) (lowered, bool)   { return lowered{kind: kindInt, n: f}, true }
func flag(f boolFn) (lowered, bool) { return lowered{kind: kindBool, b: f}, true }

// entryStr is a string field of the entry.
func entryStr(name string, f strFn) (lowered, bool) {
	return lowered{kind: kindString, s: f, field: name}, true
}

func fileField(name string) (lowered, bool) {
	switch name {
	case "path":
		return entryStr(name, func(s *state, i int) string { return s.files[i].Path })
	case "op":
		return entryStr(name, func(s *state, i int) string { return s.files[i].Op })
	case "target":
		return entryStr(name, func(s *state, i int) string { return s.files[i].Target })
	case "errno":
		return entryStr(name, func(s *state, i int) string { return s.files[i].Errno })
	case "pid":
		return num(func(s *state, i int) int64 { return s.files[i].PID })
	case "count":
		return num(func(s *state, i int) int64 { return s.files[i].Count })
	case "ok":
		return flag(func(s *state, i int) bool { return s.files[i].OK })
	}
	return lowered{}, false
}

func netField(name string) (lowered, bool) {
	switch name {
	case "op":
		return entryStr(name, func(s *state, i int) string { return s.network[i].Op })
	case "family":
		return entryStr(name, func(s *state, i int) string { return s.network[i].Family })
	case "protocol":
		return entryStr(name, func(s *state, i int) string { return s.network[i].Protocol })
	case "address":
		return entryStr(name, func(s *state, i int) string { return s.network[i].Address })
	case "errno":
		return entryStr(name, func(s *state, i int) string { return s.network[i].Errno })
	case "port":
		return num(func(s *state, i int) int64 { return s.network[i].Port })
	case "pid":
		return num(func(s *state, i int) int64 { return s.network[i].PID })
	case "count":
		return num(func(s *state, i int) int64 { return s.network[i].Count })
	case "ok":
		return flag(func(s *state, i int) bool { return s.network[i].OK })
	}
	return lowered{}, false
}

func processField(name string, entry bool, p func(*state, int) *receipt.Process) (lowered, bool) {
	text := str
	if entry {
		text = func(f strFn) (lowered, bool) { return entryStr(name, f) }
	}
	switch name {
	case "exe":
		return text(func(s *state, i int) string { return p(s, i).Exe })
	case "cwd":
		return text(func(s *state, i int) string { return p(s, i).Cwd })
	case "signal":
		return text(func(s *state, i int) string { return p(s, i).Signal })
	case "pid":
		return num(func(s *state, i int) int64 { return p(s, i).PID })
	case "ppid":
		return num(func(s *state, i int) int64 { return p(s, i).PPID })
	case "uid":
		return num(func(s *state, i int) int64 { return p(s, i).UID })
	case "start_offset_ms":
		return num(func(s *state, i int) int64 { return p(s, i).StartOffsetMS })
	case "end_offset_ms":
		return num(func(s *state, i int) int64 { return p(s, i).EndOffsetMS })
	case "exit_code":
		return num(func(s *state, i int) int64 { return p(s, i).ExitCode })
	}
	return lowered{}, false
}

func (l lowerer) lowerCall(c ast.CallExpr) (lowered, bool) {
	fn := c.FunctionName()
	if fn == operators.LogicalAnd || fn == operators.LogicalOr {
		return l.lowerLogical(fn, c)
	}
	args := c.Args()
	if c.IsMemberFunction() {
		args = append([]ast.Expr{c.Target()}, args...)
	}
	if fn == overloads.Size && len(args) == 1 && args[0].Kind() == ast.IdentKind {
		switch args[0].AsIdent() {
		case OverProcesses:
			return num(func(s *state, _ int) int64 { return int64(len(s.processes)) })
		case OverFiles:
			return num(func(s *state, _ int) int64 { return int64(len(s.files)) })
		case OverNetwork:
			return num(func(s *state, _ int) int64 { return int64(len(s.network)) })
		}
	}
	ops := make([]lowered, len(args))
	for i, a := range args {
		n, ok := l.lower(a)
		if !ok {
			return lowered{}, false
		}
		ops[i] = n
	}
	switch {
	case len(ops) == 1:
		return lowerUnary(fn, ops[0])
	case len(ops) == 2:
		return lowerBinary(fn, ops[0], ops[1])
	case len(ops) == 3 && fn == operators.Conditional:
		return lowerConditional(ops[0], ops[1], ops[2])
	}
	return lowered{}, false
}

// chain flattens a tree of one logical operator into its operands.
func chain(fn string, e ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind && e.AsCall().FunctionName() == fn {
		var out []ast.Expr
		for _, a := range e.AsCall().Args() {
			out = append(out, chain(fn, a)...)
		}
		return out
	}
	return []ast.Expr{e}
}

// lowerLogical lowers a chain of && or ||. The operands run in order and
// stop at the first that decides, as CEL's do when none fails.
func (l lowerer) lowerLogical(fn string, c ast.CallExpr) (lowered, bool) {
	var terms []ast.Expr
	for _, a := range c.Args() {
		terms = append(terms, chain(fn, a)...)
	}
	fs := make([]boolFn, len(terms))
	var guards []*guard
	for i, t := range terms {
		n, ok := l.lower(t)
		if !ok || n.kind != kindBool {
			return lowered{}, false
		}
		fs[i] = n.b
		guards = append(guards, n.guard)
	}
	if fn == operators.LogicalAnd {
		out := lowered{kind: kindBool, b: allOf(fs)}
		for _, g := range guards {
			if g != nil {
				out.guard = g
				break
			}
		}
		return out, true
	}
	out := lowered{kind: kindBool, b: anyOf(fs)}
	// A disjunction over one field is true only if one of its terms' guards
	// admits the field: check their union first.
	var union []string
	for _, g := range guards {
		if g == nil || g.field != guards[0].field {
			return out, true
		}
		union = append(union, g.prefixes...)
	}
	g := &guard{field: guards[0].field, get: guards[0].get, prefixes: union}
	set, body, get := newPrefixSet(union), out.b, g.get
	if set.all {
		return out, true
	}
	out.b = func(s *state, i int) bool { return set.admits(get(s, i)) && body(s, i) }
	out.guard = g
	return out, true
}

func allOf(fs []boolFn) boolFn {
	if len(fs) == 2 {
		a, b := fs[0], fs[1]
		return func(s *state, i int) bool { return a(s, i) && b(s, i) }
	}
	return func(s *state, i int) bool {
		for _, f := range fs {
			if !f(s, i) {
				return false
			}
		}
		return true
	}
}

func anyOf(fs []boolFn) boolFn {
	if len(fs) == 2 {
		a, b := fs[0], fs[1]
		return func(s *state, i int) bool { return a(s, i) || b(s, i) }
	}
	return func(s *state, i int) bool {
		for _, f := range fs {
			if f(s, i) {
				return true
			}
		}
		return false
	}
}

func lowerUnary(fn string, a lowered) (lowered, bool) {
	switch {
	case fn == operators.LogicalNot && a.kind == kindBool:
		f := a.b
		return flag(func(s *state, i int) bool { return !f(s, i) })
	case fn == overloads.Size && a.kind == kindString:
		f := a.s
		return num(func(s *state, i int) int64 { return int64(utf8.RuneCountInString(f(s, i))) })
	}
	return lowered{}, false
}

func lowerBinary(fn string, a, b lowered) (lowered, bool) {
	switch fn {
	case operators.Equals, operators.NotEquals, operators.Less, operators.LessEquals,
		operators.Greater, operators.GreaterEquals:
		return lowerCompare(fn, a, b)
	case operators.In:
		return lowerIn(a, b)
	}
	if a.kind != kindString {
		return lowered{}, false
	}
	if b.kind == kindStrings {
		return lowerListPredicate(fn, a, b)
	}
	if b.kind != kindString {
		return lowered{}, false
	}
	x, y := a.s, b.s
	switch fn {
	case overloads.StartsWith:
		if b.isConst {
			p := b.cs
			n, _ := flag(func(s *state, i int) bool { return strings.HasPrefix(x(s, i), p) })
			n.guard = newGuard(a, p)
			return n, true
		}
		return flag(func(s *state, i int) bool { return strings.HasPrefix(x(s, i), y(s, i)) })
	case overloads.EndsWith:
		return flag(func(s *state, i int) bool { return strings.HasSuffix(x(s, i), y(s, i)) })
	case overloads.Contains:
		return flag(func(s *state, i int) bool { return strings.Contains(x(s, i), y(s, i)) })
	case overloads.Matches:
		if !b.isConst {
			return lowered{}, false
		}
		re, err := regexp.Compile(b.cs)
		if err != nil {
			return lowered{}, false
		}
		return flag(func(s *state, i int) bool { return re.MatchString(x(s, i)) })
	case fnUnder:
		if b.isConst {
			return lowerListPredicate(fn, a, lowered{kind: kindStrings, isConst: true, strs: []string{b.cs}})
		}
		return flag(func(s *state, i int) bool { return Under(x(s, i), y(s, i)) })
	case fnGlob, fnInCIDR:
		if !b.isConst {
			return lowered{}, false
		}
		return lowerListPredicate(fn, a, lowered{kind: kindStrings, isConst: true, strs: []string{b.cs}})
	}
	return lowered{}, false
}

// lowerListPredicate lowers under, glob and inCIDR against a constant
// list (a single constant is a list of one).
func lowerListPredicate(fn string, a, b lowered) (lowered, bool) {
	x := a.s
	switch fn {
	case fnUnder:
		var dirs, prefixes []string
		for _, d := range b.strs {
			if d == "" {
				continue // under("") is never true
			}
			if d != "/" {
				d = strings.TrimSuffix(d, "/")
			}
			dirs = append(dirs, d)
			prefixes = append(prefixes, d)
		}
		n, _ := flag(func(s *state, i int) bool {
			v := x(s, i)
			for _, d := range dirs {
				if Under(v, d) {
					return true
				}
			}
			return false
		})
		n.guard = newGuard(a, prefixes...)
		return n, true
	case fnGlob:
		globs := make([]*Glob, len(b.strs))
		prefixes := make([]string, len(b.strs))
		for i, p := range b.strs {
			g, err := CompileGlob(p)
			if err != nil {
				return lowered{}, false
			}
			globs[i], prefixes[i] = g, g.prefix
			if g.literal {
				prefixes[i] = g.pattern
			}
		}
		n, _ := flag(func(s *state, i int) bool {
			v := x(s, i)
			for _, g := range globs {
				if g.Match(v) {
					return true
				}
			}
			return false
		})
		n.guard = newGuard(a, prefixes...)
		return n, true
	case fnInCIDR:
		var ranges []netip.Prefix
		for _, c := range b.strs {
			// CEL answers false for an unparsable range; so do we.
			if p, err := parseCIDR(c); err == nil {
				ranges = append(ranges, p)
			}
		}
		return flag(func(s *state, i int) bool {
			v := x(s, i)
			if !mayBeIP(v) {
				return false
			}
			addr, err := netip.ParseAddr(v)
			if err != nil {
				return false
			}
			addr = addr.WithZone("").Unmap()
			for _, p := range ranges {
				if p.Contains(addr) {
					return true
				}
			}
			return false
		})
	}
	return lowered{}, false
}

func lowerCompare(fn string, a, b lowered) (lowered, bool) {
	if a.kind != b.kind {
		return lowered{}, false
	}
	switch a.kind {
	case kindString:
		x, y := a.s, b.s
		if b.isConst && fn == operators.Equals {
			c := b.cs
			n, _ := flag(func(s *state, i int) bool { return x(s, i) == c })
			n.guard = newGuard(a, c)
			return n, true
		}
		if b.isConst && fn == operators.NotEquals {
			c := b.cs
			return flag(func(s *state, i int) bool { return x(s, i) != c })
		}
		return flag(func(s *state, i int) bool { return order(fn, compareStrings(x(s, i), y(s, i))) })
	case kindInt:
		x, y := a.n, b.n
		return flag(func(s *state, i int) bool { return order(fn, compareInts(x(s, i), y(s, i))) })
	case kindBool:
		if fn != operators.Equals && fn != operators.NotEquals {
			return lowered{}, false
		}
		x, y, want := a.b, b.b, fn == operators.Equals
		return flag(func(s *state, i int) bool { return (x(s, i) == y(s, i)) == want })
	}
	return lowered{}, false
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func compareInts(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func order(fn string, c int) bool {
	switch fn {
	case operators.Equals:
		return c == 0
	case operators.NotEquals:
		return c != 0
	case operators.Less:
		return c < 0
	case operators.LessEquals:
		return c <= 0
	case operators.Greater:
		return c > 0
	}
	return c >= 0
}

func lowerIn(a, b lowered) (lowered, bool) {
	switch {
	case a.kind == kindString && b.kind == kindStrings:
		x := a.s
		var n lowered
		if len(b.strs) > 8 {
			set := make(map[string]struct{}, len(b.strs))
			for _, v := range b.strs {
				set[v] = struct{}{}
			}
			n, _ = flag(func(s *state, i int) bool { _, ok := set[x(s, i)]; return ok })
		} else {
			list := b.strs
			n, _ = flag(func(s *state, i int) bool {
				v := x(s, i)
				for _, c := range list {
					if v == c {
						return true
					}
				}
				return false
			})
		}
		n.guard = newGuard(a, b.strs...)
		return n, true
	case a.kind == kindInt && b.kind == kindInts:
		x, list := a.n, b.ints
		return flag(func(s *state, i int) bool {
			v := x(s, i)
			for _, c := range list {
				if v == c {
					return true
				}
			}
			return false
		})
	}
	return lowered{}, false
}

func lowerConditional(c, a, b lowered) (lowered, bool) {
	if c.kind != kindBool || a.kind != b.kind {
		return lowered{}, false
	}
	cond := c.b
	switch a.kind {
	case kindBool:
		x, y := a.b, b.b
		return flag(func(s *state, i int) bool {
			if cond(s, i) {
				return x(s, i)
			}
			return y(s, i)
		})
	case kindString:
		x, y := a.s, b.s
		return str(func(s *state, i int) string {
			if cond(s, i) {
				return x(s, i)
			}
			return y(s, i)
		})
	case kindInt:
		x, y := a.n, b.n
		return num(func(s *state, i int) int64 {
			if cond(s, i) {
				return x(s, i)
			}
			return y(s, i)
		})
	}
	return lowered{}, false
}

// prefixSet answers whether a string starts with any of a set of
// prefixes, walking a byte trie: a path that leaves the trie at its second
// byte costs two steps whatever the size of the set.
type prefixSet struct {
	root trieNode
	// all is set when the empty prefix is in the set.
	all bool
}

type trieNode struct {
	end  bool
	keys []byte
	kids []*trieNode
	// dense replaces keys and kids on nodes with many children.
	dense *[256]*trieNode
}

// denseFrom is the number of children from which a node gets a table.
const denseFrom = 4

func (n *trieNode) densify() {
	if len(n.keys) >= denseFrom {
		n.dense = new([256]*trieNode)
		for j, k := range n.keys {
			n.dense[k] = n.kids[j]
		}
	}
	for _, k := range n.kids {
		k.densify()
	}
}

func newPrefixSet(prefixes []string) *prefixSet {
	ps := &prefixSet{}
	for _, p := range prefixes {
		if p == "" {
			ps.all = true
		}
		n := &ps.root
		for i := 0; i < len(p) && !n.end; i++ {
			n = n.child(p[i])
		}
		n.end = true
		n.keys, n.kids = nil, nil // a shorter prefix makes longer ones moot
	}
	ps.root.densify()
	return ps
}

func (n *trieNode) child(c byte) *trieNode {
	for j, k := range n.keys {
		if k == c {
			return n.kids[j]
		}
	}
	kid := &trieNode{}
	n.keys = append(n.keys, c)
	n.kids = append(n.kids, kid)
	return kid
}

func (ps *prefixSet) admits(s string) bool {
	n := &ps.root
	for i := 0; ; i++ {
		if n.end {
			return true
		}
		if i == len(s) {
			return false
		}
		var next *trieNode
		c := s[i]
		if n.dense != nil {
			next = n.dense[c]
		} else {
			for j, k := range n.keys {
				if k == c {
					next = n.kids[j]
					break
				}
			}
		}
		if next == nil {
			return false
		}
		n = next
	}
}

// mayBeIP is false for strings netip.ParseAddr certainly rejects, such as
// unix socket paths, sparing the error it would allocate.
func mayBeIP(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':'
}
