package policy

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
)

// MaxCost bounds the CEL cost (roughly, operations) one rule may spend on
// one receipt. A rule that exceeds it fails with an evaluation error, which
// counts as a violation of that rule.
const MaxCost = 1_000_000

// interruptEvery is how many comprehension iterations pass between checks
// of the evaluation context.
const interruptEvery = 64

// rule is one compiled rule.
type rule struct {
	id       string // qualified: policy/rule
	severity string
	message  string // the violation message: the description on one line
	over     string
	prg      cel.Program
	// full is the lowered condition of an `over` rule, when all of it
	// lowers; pre is a prefilter of lowerable conjuncts otherwise.
	full, pre boolFn
	// evidence lists, for a rule without `over`, JSON pointers to the
	// receipt fields its condition reads.
	evidence []string
}

// compileDocument compiles every rule of a parsed policy file.
func compileDocument(file string, doc *document) ([]*rule, error) {
	set, err := envs()
	if err != nil {
		return nil, err
	}
	probs := &problems{file: file}
	var rules []*rule
	for _, rs := range doc.rules {
		env := set.whole
		if rs.over != "" {
			env = set.over[rs.over]
		}
		r, ok := compileRule(env, doc.name, rs, probs)
		if ok {
			rules = append(rules, r)
		}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	return rules, nil
}

func compileRule(env *cel.Env, policyName string, rs ruleSource, probs *problems) (*rule, bool) {
	checked, iss := env.Compile(rs.condition)
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			at := rs.cond.at(e.Location.Line(), e.Location.Column())
			probs.add(at, "rule %q: condition: %s", rs.id, e.Message)
		}
		return nil, false
	}
	if t := checked.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		probs.add(rs.cond.pos, "rule %q: condition is a %s, want a bool", rs.id, t)
		return nil, false
	}
	native := checked.NativeRep()
	if !checkConstants(native, rs, probs) {
		return nil, false
	}
	prg, err := env.Program(checked,
		cel.CostLimit(MaxCost),
		cel.InterruptCheckFrequency(interruptEvery),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		probs.add(rs.cond.pos, "rule %q: condition: %v", rs.id, err)
		return nil, false
	}
	r := &rule{
		id:       policyName + "/" + rs.id,
		severity: rs.severity,
		message:  oneLine(rs.description),
		over:     rs.over,
		prg:      prg,
	}
	if r.message == "" {
		r.message = "rule " + r.id + " matched"
	}
	r.full, r.pre = lowerCondition(rs.over, native.Expr())
	if rs.over == "" {
		r.pre = nil // one evaluation per receipt: a prefilter saves nothing
		r.evidence = fieldPointers(native.Expr())
	}
	return r, true
}

// checkConstants reports malformed constant patterns of glob, inCIDR and
// matches at load time, where CEL would only fail (or, for inCIDR, quietly
// answer false) at evaluation.
func checkConstants(a *ast.AST, rs ruleSource, probs *problems) bool {
	ok := true
	visit(a.Expr(), func(e ast.Expr) {
		if e.Kind() != ast.CallKind {
			return
		}
		c := e.AsCall()
		args := c.Args()
		if len(args) == 0 || args[len(args)-1].Kind() != ast.LiteralKind {
			return
		}
		lit := args[len(args)-1]
		s, isStr := lit.AsLiteral().(types.String)
		if !isStr {
			return
		}
		var err error
		switch c.FunctionName() {
		case fnGlob:
			_, err = CompileGlob(string(s))
		case fnInCIDR:
			_, err = parseCIDR(string(s))
		case overloads.Matches:
			_, err = regexp.Compile(string(s))
		default:
			return
		}
		if err != nil {
			loc := a.SourceInfo().GetStartLocation(lit.ID())
			probs.add(rs.cond.at(loc.Line(), loc.Column()), "rule %q: %s: %v", rs.id, c.FunctionName(), err)
			ok = false
		}
	})
	return ok
}

// visit calls f on e and every expression under it.
func visit(e ast.Expr, f func(ast.Expr)) {
	if e == nil {
		return
	}
	f(e)
	switch e.Kind() {
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			visit(c.Target(), f)
		}
		for _, a := range c.Args() {
			visit(a, f)
		}
	case ast.SelectKind:
		visit(e.AsSelect().Operand(), f)
	case ast.ListKind:
		for _, el := range e.AsList().Elements() {
			visit(el, f)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			visit(me.Key(), f)
			visit(me.Value(), f)
		}
	case ast.StructKind:
		for _, fl := range e.AsStruct().Fields() {
			visit(fl.AsStructField().Value(), f)
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		visit(c.IterRange(), f)
		visit(c.AccuInit(), f)
		visit(c.LoopCondition(), f)
		visit(c.LoopStep(), f)
		visit(c.Result(), f)
	}
}

// fieldPointers returns JSON pointers to the receipt fields an expression
// reads, sorted: `profiling.status != "complete"` reads /profiling/status.
func fieldPointers(e ast.Expr) []string {
	set := map[string]bool{}
	var walk func(ast.Expr)
	walk = func(e ast.Expr) {
		if e == nil {
			return
		}
		if p, ok := receiptPath(e); ok {
			set["/"+strings.Join(p, "/")] = true
			return
		}
		switch e.Kind() {
		case ast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				walk(c.Target())
			}
			for _, a := range c.Args() {
				walk(a)
			}
		case ast.SelectKind:
			walk(e.AsSelect().Operand())
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				walk(en.AsMapEntry().Key())
				walk(en.AsMapEntry().Value())
			}
		case ast.StructKind:
			for _, fl := range e.AsStruct().Fields() {
				walk(fl.AsStructField().Value())
			}
		case ast.ComprehensionKind:
			c := e.AsComprehension()
			walk(c.IterRange())
			walk(c.AccuInit())
			walk(c.LoopCondition())
			walk(c.LoopStep())
			walk(c.Result())
		}
	}
	walk(e)
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// receiptPath returns the receipt path an expression names: a global
// variable followed by field selections and constant list indices.
func receiptPath(e ast.Expr) ([]string, bool) {
	switch e.Kind() {
	case ast.IdentKind:
		switch name := e.AsIdent(); name {
		case "root":
			return []string{"processes", "0"}, true
		case "workspace":
			return []string{"processes", "0", "cwd"}, true
		default:
			for _, v := range globalVars {
				if v.name == name {
					return []string{name}, true
				}
			}
		}
	case ast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			return nil, false
		}
		p, ok := receiptPath(s.Operand())
		if !ok {
			return nil, false
		}
		return append(p, s.FieldName()), true
	case ast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != operators.Index || len(c.Args()) != 2 || c.Args()[1].Kind() != ast.LiteralKind {
			return nil, false
		}
		idx, ok := c.Args()[1].AsLiteral().(types.Int)
		if !ok || idx < 0 {
			return nil, false
		}
		p, ok := receiptPath(c.Args()[0])
		if !ok {
			return nil, false
		}
		return append(p, strconv.FormatInt(int64(idx), 10)), true
	}
	return nil, false
}
