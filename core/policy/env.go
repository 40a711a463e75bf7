package policy

import (
	"fmt"
	"reflect"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"

	"glasshouse.dev/glasshouse/core/receipt"
)

// Sections a rule may iterate with `over`.
const (
	OverProcesses = "processes"
	OverFiles     = "files"
	OverNetwork   = "network"
)

// Variables every condition sees. Each is a section of the receipt, named
// and shaped as in receipt v1; lists are in canonical (sorted) order.
var globalVars = []struct {
	name string
	typ  *cel.Type
}{
	{"subject", cel.ObjectType("receipt.Subject")},
	{"backend", cel.ObjectType("receipt.Backend")},
	{"host", cel.ObjectType("receipt.Host")},
	{"limits", cel.ObjectType("receipt.Limits")},
	{"outcome", cel.ObjectType("receipt.Outcome")},
	{"output", cel.ObjectType("receipt.Output")},
	{"resources", cel.ObjectType("receipt.Resources")},
	{"profiling", cel.ObjectType("receipt.Profiling")},
	{"processes", cel.ListType(cel.ObjectType("receipt.Process"))},
	{"files", cel.ListType(cel.ObjectType("receipt.File"))},
	{"network", cel.ListType(cel.ObjectType("receipt.Net"))},
	// root is the first process of the run (processes[0]), or an empty
	// process when none was observed.
	{"root", cel.ObjectType("receipt.Process")},
	// workspace is the run's working directory: the cwd of the root
	// process, or "" when it is unknown or "/".
	{"workspace", cel.StringType},
}

// entryTypes maps an `over` section to the CEL type of its entries.
var entryTypes = map[string]*cel.Type{
	OverProcesses: cel.ObjectType("receipt.Process"),
	OverFiles:     cel.ObjectType("receipt.File"),
	OverNetwork:   cel.ObjectType("receipt.Net"),
}

// entryVar is the name of the entry variable in an `over` rule.
const entryVar = "e"

// envs are built on first use: building a CEL environment costs
// milliseconds, which a CLI that never evaluates a policy must not pay.
var envs = sync.OnceValues(buildEnvs)

type envSet struct {
	whole *cel.Env
	over  map[string]*cel.Env
}

func buildEnvs() (*envSet, error) {
	opts := []cel.EnvOption{
		ext.NativeTypes(
			reflect.TypeFor[receipt.Subject](),
			reflect.TypeFor[receipt.Artifact](),
			reflect.TypeFor[receipt.Backend](),
			reflect.TypeFor[receipt.Host](),
			reflect.TypeFor[receipt.Limits](),
			reflect.TypeFor[receipt.Outcome](),
			reflect.TypeFor[receipt.Output](),
			reflect.TypeFor[receipt.Resources](),
			reflect.TypeFor[receipt.Profiling](),
			reflect.TypeFor[receipt.Omitted](),
			reflect.TypeFor[receipt.Process](),
			reflect.TypeFor[receipt.File](),
			reflect.TypeFor[receipt.Net](),
			ext.ParseStructTag("json"),
		),
		ext.Strings(),
		cel.Function(fnUnder,
			cel.MemberOverload("string_under_string",
				[]*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(stringPredicate(Under))),
			cel.MemberOverload("string_under_list",
				[]*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(anyPredicate(Under)))),
		cel.Function(fnGlob,
			cel.MemberOverload("string_glob_string",
				[]*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(globBinding)),
			cel.MemberOverload("string_glob_list",
				[]*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(globListBinding))),
		cel.Function(fnInCIDR,
			cel.MemberOverload("string_in_cidr_string",
				[]*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(stringPredicate(InCIDR))),
			cel.MemberOverload("string_in_cidr_list",
				[]*cel.Type{cel.StringType, cel.ListType(cel.StringType)}, cel.BoolType,
				cel.BinaryBinding(anyPredicate(InCIDR)))),
		cel.ParserExpressionSizeLimit(MaxConditionBytes),
	}
	for _, v := range globalVars {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	whole, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	set := &envSet{whole: whole, over: map[string]*cel.Env{}}
	for name, typ := range entryTypes {
		env, err := whole.Extend(cel.Variable(entryVar, typ))
		if err != nil {
			return nil, fmt.Errorf("build CEL environment for %s: %w", name, err)
		}
		set.over[name] = env
	}
	return set, nil
}

// Names of the functions Glasshouse adds to CEL.
const (
	fnUnder  = "under"
	fnGlob   = "glob"
	fnInCIDR = "inCIDR"
)

func stringPredicate(f func(a, b string) bool) func(lhs, rhs ref.Val) ref.Val {
	return func(lhs, rhs ref.Val) ref.Val {
		a, ok1 := lhs.(types.String)
		b, ok2 := rhs.(types.String)
		if !ok1 || !ok2 {
			return types.MaybeNoSuchOverloadErr(lhs)
		}
		return types.Bool(f(string(a), string(b)))
	}
}

// anyPredicate applies f to a string and each string of a list, true when
// any is.
func anyPredicate(f func(a, b string) bool) func(lhs, rhs ref.Val) ref.Val {
	return func(lhs, rhs ref.Val) ref.Val {
		a, ok := lhs.(types.String)
		if !ok {
			return types.MaybeNoSuchOverloadErr(lhs)
		}
		items, err := stringList(rhs)
		if err != nil {
			return err
		}
		for _, b := range items {
			if f(string(a), b) {
				return types.True
			}
		}
		return types.False
	}
}

func stringList(v ref.Val) ([]string, ref.Val) {
	l, ok := v.(traits.Lister)
	if !ok {
		return nil, types.MaybeNoSuchOverloadErr(v)
	}
	var out []string
	for it := l.Iterator(); it.HasNext() == types.True; {
		s, ok := it.Next().(types.String)
		if !ok {
			return nil, types.NewErr("list must hold strings")
		}
		out = append(out, string(s))
	}
	return out, nil
}

func globListBinding(lhs, rhs ref.Val) ref.Val {
	a, ok := lhs.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(lhs)
	}
	items, errVal := stringList(rhs)
	if errVal != nil {
		return errVal
	}
	// Every pattern is checked, so a malformed one fails even when an
	// earlier one matches, as a constant list is rejected at load time.
	matched := false
	for _, p := range items {
		g, err := cachedGlob(p)
		if err != nil {
			return types.NewErr("%v", err)
		}
		matched = matched || g.Match(string(a))
	}
	return types.Bool(matched)
}

func globBinding(lhs, rhs ref.Val) ref.Val {
	a, ok1 := lhs.(types.String)
	b, ok2 := rhs.(types.String)
	if !ok1 || !ok2 {
		return types.MaybeNoSuchOverloadErr(lhs)
	}
	g, err := cachedGlob(string(b))
	if err != nil {
		return types.NewErr("%v", err)
	}
	return types.Bool(g.Match(string(a)))
}
