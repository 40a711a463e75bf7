//go:build !lean

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/policy"
	"glasshouse.dev/glasshouse/core/receipt"
)

func init() {
	register(command{name: "policy", summary: fullOnly["policy"], run: policyCmd})
}

const policyUsage = `usage: glasshouse policy check --policy FILE|PACK[,...] [--json] RECEIPT...
       glasshouse policy list
       glasshouse policy show PACK`

// loadEvaluator loads a policy file or built-in pack.
func loadEvaluator(ref string) (execution.Evaluator, error) {
	return policy.Load(ref)
}

func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, policyUsage)
		return fail(stderr, "policy", usageErrorf("want check, list or show"))
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "list":
		if len(args) != 1 {
			return fail(stderr, "policy", usageErrorf("list takes no arguments"))
		}
		for _, p := range policy.Packs() {
			fmt.Fprintf(stdout, "%-22s %s\n", p.Name, p.Description)
		}
		return exitOK
	case "show":
		if len(args) != 2 {
			return fail(stderr, "policy", usageErrorf("want: glasshouse policy show PACK"))
		}
		src, err := policy.PackSource(args[1])
		if err != nil {
			return fail(stderr, "policy", usageErrorf("%v", err))
		}
		stdout.Write(src)
		return exitOK
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, policyUsage)
		return exitOK
	}
	fmt.Fprintln(stderr, policyUsage)
	return fail(stderr, "policy", usageErrorf("unknown subcommand %q (want check, list or show)", args[0]))
}

// policyCheck evaluates a policy over receipt files. Exit 0 when every
// receipt is allowed or warned, 1 when one is denied, 2 for usage errors
// and receipts that cannot be read or do not verify.
func policyCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy check")
	ref := fs.String("policy", "", "policy file or built-in pack, or a comma-separated list (see: glasshouse policy list)")
	asJSON := fs.Bool("json", false, "print each verdict as one JSON line: {receipt, policy}")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		if err != nil {
			fmt.Fprintln(stderr, policyUsage)
			return fail(stderr, "policy", err)
		}
		return exitOK
	}
	if *ref == "" {
		return fail(stderr, "policy", usageErrorf("--policy is required (%s)", policyUsage))
	}
	if fs.NArg() == 0 {
		return fail(stderr, "policy", usageErrorf("no receipt to check (%s)", policyUsage))
	}
	p, err := policy.Load(*ref)
	if err != nil {
		return fail(stderr, "policy", usageErrorf("--policy: %v", err))
	}
	code := exitOK
	for _, name := range fs.Args() {
		r, err := readVerifiedReceipt(name)
		if err != nil {
			fmt.Fprintf(stderr, "glasshouse policy: %s\n", oneLine(err.Error()))
			code = exitUsage
			continue
		}
		v, err := p.Evaluate(r)
		if err != nil {
			fmt.Fprintf(stderr, "glasshouse policy: %s: %s\n", name, oneLine(err.Error()))
			code = exitUsage
			continue
		}
		if *asJSON {
			line, _ := json.Marshal(struct {
				Receipt string          `json:"receipt"`
				Policy  *receipt.Policy `json:"policy"`
			}{name, v})
			fmt.Fprintf(stdout, "%s\n", line)
		} else {
			printVerdict(stdout, name, r, v)
		}
		if v.Verdict == receipt.VerdictDeny && code == exitOK {
			code = exitFailure
		}
	}
	return code
}

// readVerifiedReceipt reads a receipt file and checks its digest.
func readVerifiedReceipt(name string) (*receipt.Receipt, error) {
	doc, err := readReceiptFile(name)
	if err != nil {
		return nil, err
	}
	r, err := receipt.Decode(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

func printVerdict(w io.Writer, name string, r *receipt.Receipt, v *receipt.Policy) {
	fmt.Fprintf(w, "%s: %s (policy %s", name, v.Verdict, v.Name)
	if n := len(v.Violations); n > 0 {
		fmt.Fprintf(w, ", %d violation%s", n, map[bool]string{true: "", false: "s"}[n == 1])
	}
	fmt.Fprintln(w, ")")
	for _, vi := range v.Violations {
		fmt.Fprintf(w, "  %-4s %s: %s\n", vi.Severity, vi.Rule, vi.Message)
		for _, ptr := range vi.Evidence {
			fmt.Fprintf(w, "         %s%s\n", ptr, describePointer(r, ptr))
		}
	}
}

// describePointer summarises the receipt entry a pointer names.
func describePointer(r *receipt.Receipt, ptr string) string {
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	if len(parts) != 2 {
		return ""
	}
	i, err := strconv.Atoi(parts[1])
	if err != nil || i < 0 {
		return ""
	}
	switch parts[0] {
	case "files":
		if i < len(r.Files) {
			f := r.Files[i]
			s := "  " + f.Op + " " + f.Path
			if f.Target != "" {
				s += " -> " + f.Target
			}
			return s + entryResult(f.OK, f.Errno, f.PID)
		}
	case "network":
		if i < len(r.Network) {
			n := r.Network[i]
			return fmt.Sprintf("  %s %s %s port %d%s", n.Op, n.Family, n.Address, n.Port, entryResult(n.OK, n.Errno, n.PID))
		}
	case "processes":
		if i < len(r.Processes) {
			p := r.Processes[i]
			return fmt.Sprintf("  pid %d (parent %d) %s", p.PID, p.PPID, strings.Join(p.Argv, " "))
		}
	}
	return ""
}

func entryResult(ok bool, errno string, pid int64) string {
	if ok {
		return fmt.Sprintf(" (pid %d)", pid)
	}
	if errno == "" {
		errno = "failed"
	}
	return fmt.Sprintf(" (pid %d, %s)", pid, errno)
}
