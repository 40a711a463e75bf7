// Package policy evaluates declarative policies over receipts.
//
// A policy is a YAML file with a name, a version and rules. Each rule has an
// id, a severity (deny or warn), a description and a condition written in
// CEL over the receipt. A rule either looks at the whole receipt
//
//	rules:
//	  - id: incomplete
//	    severity: deny
//	    description: The run was not fully observed.
//	    condition: profiling.status != "complete"
//
// or, with `over`, tests one section entry by entry, bound to `e`:
//
//	rules:
//	  - id: outside-workspace
//	    severity: deny
//	    description: A file was written outside the workspace.
//	    over: files
//	    condition: e.op == "write" && !e.path.under(workspace)
//
// Every condition sees the receipt's sections as variables named as in
// receipt v1 (subject, backend, host, limits, outcome, output, resources,
// profiling, processes, files, network), plus root (the first process) and
// workspace (its working directory, "" when unknown or "/"). Besides
// standard CEL and the cel-go strings extension there are three functions:
// path.under(dir), path.glob(pattern) (see Glob) and address.inCIDR(range).
//
// Evaluate returns allow, warn or deny with one violation per matching
// rule. A violation's evidence are JSON pointers into the receipt: the
// matching entries of an `over` rule ("/files/3"), or the fields a
// whole-receipt condition reads ("/profiling/status"). Pointers index the
// receipt in its canonical order (the order receipt.Seal leaves it in):
// evaluation sorts any list that is not already sorted, so the order in
// which entries arrive never changes a verdict.
//
// Evaluation is deterministic: no clock, no I/O, programs compiled once at
// Load or Parse, costs bounded (MaxCost per rule per receipt), and the same
// receipt and policy always give byte-identical results. A rule whose
// condition fails to evaluate counts as matched, with the error as its
// message, so a policy fails closed.
//
// Built-in packs (see Packs) are loaded by name. A *Policy is immutable and
// safe for concurrent use; nothing it returns needs releasing.
package policy
