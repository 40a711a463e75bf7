package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"glasshouse.dev/glasshouse/core/receipt"
)

func init() {
	register(command{name: "receipt", summary: "show or verify a receipt file", run: receiptCmd})
}

const receiptUsage = "usage: glasshouse receipt show|verify FILE"

func receiptCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stdout, receiptUsage)
		return exitOK
	}
	if len(args) != 2 || (args[0] != "show" && args[0] != "verify") {
		return fail(stderr, "receipt", usageErrorf("want show or verify and one FILE (%s)", receiptUsage))
	}
	doc, err := readReceiptFile(args[1])
	if err != nil {
		return fail(stderr, "receipt", usageErrorf("%v", err))
	}
	if args[0] == "verify" && validateSchema == nil {
		return delegate(append([]string{"receipt"}, args...), stderr)
	}
	if args[0] == "verify" {
		return verifyReceipt(args[1], doc, stdout, stderr)
	}
	r, err := receipt.Parse(doc)
	if err != nil {
		return fail(stderr, "receipt", err)
	}
	showReceipt(stdout, r)
	if err := receipt.Verify(doc); err != nil {
		fmt.Fprintf(stdout, "\nWARNING: %s does not verify: %s\n", args[1], oneLine(err.Error()))
		return exitFailure
	}
	return exitOK
}

func readReceiptFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, receipt.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > receipt.MaxSize {
		return nil, fmt.Errorf("%s: larger than the %d byte limit for receipts", name, receipt.MaxSize)
	}
	return b, nil
}

// validateSchema checks a receipt against the JSON Schema. The full build
// sets it; the lean build, which does not link the validator, hands
// `receipt verify` to the full one.
var validateSchema func(doc []byte) error

// verifyReceipt checks the schema and the digest; exit 0 when both hold.
func verifyReceipt(name string, doc []byte, stdout, stderr io.Writer) int {
	if err := validateSchema(doc); err != nil {
		fmt.Fprintf(stderr, "glasshouse receipt: %s: %s\n", name, oneLine(err.Error()))
		return exitFailure
	}
	r, err := receipt.Decode(doc)
	if err != nil {
		fmt.Fprintf(stderr, "glasshouse receipt: %s: %s\n", name, oneLine(err.Error()))
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: OK (schema %s, %s)\n", name, r.Schema, r.Digest)
	return exitOK
}

// showReceipt prints a summary a person can read at a glance.
func showReceipt(w io.Writer, r *receipt.Receipt) {
	o := r.Outcome
	fmt.Fprintf(w, "run       %s\n", r.ID)
	fmt.Fprintf(w, "command   %s\n", strings.Join(r.Subject.Argv, " "))
	if r.Subject.Language != "" {
		fmt.Fprintf(w, "code      %s sha256:%s\n", r.Subject.Language, r.Subject.CodeSHA256)
	}
	backend := r.Backend.Name + " (isolation " + r.Backend.Isolation
	if r.Backend.Accel != "" {
		backend += ", " + r.Backend.Accel
	}
	if r.Backend.Containment != "" {
		backend += ", contained by " + r.Backend.Containment
	}
	fmt.Fprintf(w, "backend   %s)\n", backend)
	for _, n := range r.Backend.Notes {
		fmt.Fprintf(w, "  note    %s\n", n)
	}
	fmt.Fprintf(w, "outcome   %s, exit %d", o.Failure, o.ExitCode)
	if o.Signal != "" {
		fmt.Fprintf(w, ", %s", o.Signal)
	}
	fmt.Fprintf(w, ", %d ms\n", o.DurationMS)
	if o.Error != "" {
		fmt.Fprintf(w, "  error   %s\n", o.Error)
	}
	fmt.Fprintf(w, "output    stdout %d B%s, stderr %d B%s\n",
		r.Output.StdoutBytes, truncMark(r.Output.StdoutTruncated), r.Output.StderrBytes, truncMark(r.Output.StderrTruncated))
	res := r.Resources
	fmt.Fprintf(w, "resources cpu %d+%d ms, memory peak %s, pids peak %d\n",
		res.CPUUserMS, res.CPUSystemMS, humanBytes(res.MemoryPeakBytes), res.PIDsPeak)
	p := r.Profiling
	fmt.Fprintf(w, "profiling %s (mode %s, collector %s, %d events, %d dropped)\n", p.Status, p.Mode, p.Collector, p.Events, p.Dropped)
	if p.Reason != "" {
		fmt.Fprintf(w, "  reason  %s\n", p.Reason)
	}
	if len(r.Processes) > 0 {
		fmt.Fprintf(w, "\nprocesses (%d)\n", len(r.Processes))
		for _, pr := range r.Processes {
			end := "running"
			if pr.EndOffsetMS >= 0 {
				end = fmt.Sprintf("exit %d", pr.ExitCode)
				if pr.Signal != "" {
					end = pr.Signal
				}
			}
			fmt.Fprintf(w, "  %6d <- %-6d %s  [%s]\n", pr.PID, pr.PPID, strings.Join(pr.Argv, " "), end)
		}
	}
	if len(r.Network) > 0 {
		fmt.Fprintf(w, "\nnetwork (%d)\n", len(r.Network))
		for _, n := range r.Network {
			kind := n.Family
			if n.Protocol != "" {
				kind += "/" + n.Protocol
			}
			fmt.Fprintf(w, "  %-8s %s %s  x%d %s  pid %d\n", n.Op, kind, endpoint(n), n.Count, result(n.OK, n.Errno), n.PID)
		}
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(w, "\nfiles (%d)\n", len(r.Files))
		for _, f := range r.Files {
			target := ""
			if f.Target != "" {
				target = " -> " + f.Target
			}
			fmt.Fprintf(w, "  %-8s %s%s  x%d %s  pid %d\n", f.Op, f.Path, target, f.Count, result(f.OK, f.Errno), f.PID)
		}
	}
	if r.Policy != nil {
		fmt.Fprintf(w, "\npolicy    %s: %s\n", r.Policy.Name, r.Policy.Verdict)
		for _, v := range r.Policy.Violations {
			fmt.Fprintf(w, "  %s [%s] %s %s\n", v.Rule, v.Severity, v.Message, strings.Join(v.Evidence, " "))
		}
	}
	fmt.Fprintf(w, "\ndigest    %s\n", r.Digest)
}

// endpoint writes a network entry's address as its family does: a unix
// socket's path (or "unnamed"), host:port, [host]:port for inet6.
func endpoint(n receipt.Net) string {
	switch {
	case n.Family == receipt.FamilyUnix && n.Address == "":
		return "unnamed"
	case n.Family == receipt.FamilyUnix:
		return n.Address
	}
	return net.JoinHostPort(n.Address, strconv.FormatInt(n.Port, 10))
}

func truncMark(t bool) string {
	if t {
		return " (truncated)"
	}
	return ""
}

func result(ok bool, errno string) string {
	if ok {
		return "ok"
	}
	return "FAILED " + errno
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
