//go:build !lean

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/training"
)

func init() {
	register(command{name: "signals", summary: fullOnly["signals"], run: signalsCmd})
}

const signalsUsage = `usage: glasshouse signals [--reward R.yaml] [--expect-stdout FILE [--match exact|trim]]
                          [--stdout FILE] [--test-receipt FILE | --test-exit N]
                          [--grader PATH]... [--workspace DIR] RECEIPT... > signals.jsonl
A RECEIPT file holds one receipt (as written by glasshouse run) or many, one
compact receipt per line.`

type signalsFlags struct {
	reward       string
	expectStdout string
	match        string
	stdout       string
	testReceipt  string
	testExit     int
	graders      listFlag
	workspace    string
	noVerify     bool
}

// signalsCmd writes one JSON line of signals per receipt. Exit 0 when
// every receipt was read, 1 when one could not be, 2 for usage errors.
func signalsCmd(args []string, stdout, stderr io.Writer) int {
	var f signalsFlags
	fs := newFlagSet("signals")
	fs.StringVar(&f.reward, "reward", "", "reward spec (YAML weights); default: the built-in spec")
	fs.StringVar(&f.expectStdout, "expect-stdout", "", "file holding the expected stdout of every run")
	fs.StringVar(&f.match, "match", training.MatchExact, "stdout comparison: exact or trim (trim needs --stdout)")
	fs.StringVar(&f.stdout, "stdout", "", "file holding the run's own stdout (one receipt only)")
	fs.StringVar(&f.testReceipt, "test-receipt", "", "receipt of a test command run after the run; its exit status is the verdict (one receipt only)")
	fs.IntVar(&f.testExit, "test-exit", -1, "exit status of a test command run after the run, 0 passes (one receipt only)")
	fs.Var(&f.graders, "grader", "grader or test path the code must not touch; globs allowed; relative to the workspace unless absolute (repeatable)")
	fs.StringVar(&f.workspace, "workspace", "", "the runs' workspace directory (default: the root process's working directory)")
	fs.BoolVar(&f.noVerify, "no-verify", false, "skip checking each receipt's digest (faster, for receipts from a trusted store)")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		if err != nil {
			fmt.Fprintln(stderr, signalsUsage)
			return fail(stderr, "signals", err)
		}
		return exitOK
	}
	in, err := f.input(fs.NArg())
	if err != nil {
		return fail(stderr, "signals", err)
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	code := exitOK
	for _, name := range fs.Args() {
		var werr error
		err := eachReceipt(name, !f.noVerify, func(r *receipt.Receipt) error {
			werr = training.WriteJSONL(w, training.Derive(r, in))
			return werr
		})
		if werr != nil {
			fmt.Fprintf(stderr, "glasshouse signals: write: %s\n", oneLine(werr.Error()))
			return exitFailure
		}
		if err != nil {
			fmt.Fprintf(stderr, "glasshouse signals: %s\n", oneLine(err.Error()))
			code = exitFailure
		}
	}
	return code
}

func (f *signalsFlags) input(receipts int) (training.Input, error) {
	in := training.Input{GraderPaths: f.graders, Workspace: f.workspace}
	if receipts == 0 {
		return in, usageErrorf("no receipt given (%s)", signalsUsage)
	}
	if err := training.ValidateGraders(f.graders); err != nil {
		return in, usageErrorf("--grader: %v", err)
	}
	if f.match != training.MatchExact && f.match != training.MatchTrim {
		return in, usageErrorf("--match %q: want exact or trim", f.match)
	}
	in.Expect.Match = f.match
	if f.reward != "" {
		spec, err := training.LoadReward(f.reward)
		if err != nil {
			return in, usageErrorf("--reward: %v", err)
		}
		in.Reward = spec
	}
	perRun := f.stdout != "" || f.testReceipt != "" || f.testExit >= 0
	if perRun && receipts != 1 {
		return in, usageErrorf("--stdout, --test-receipt and --test-exit describe one run: give exactly one receipt")
	}
	if f.testReceipt != "" && f.testExit >= 0 {
		return in, usageErrorf("give either --test-receipt or --test-exit, not both")
	}
	if f.expectStdout != "" {
		b, err := readInput(f.expectStdout, receipt.MaxSize)
		if err != nil {
			return in, usageErrorf("--expect-stdout: %v", err)
		}
		s := string(b)
		in.Expect.Stdout = &s
	}
	if f.stdout != "" {
		b, err := readInput(f.stdout, receipt.MaxSize)
		if err != nil {
			return in, usageErrorf("--stdout: %v", err)
		}
		in.Stdout = b
	}
	if f.testReceipt != "" {
		r, err := readVerifiedReceipt(f.testReceipt)
		if err != nil {
			return in, usageErrorf("--test-receipt: %v", err)
		}
		in.Expect.Test = training.TestFromReceipt(r)
	}
	if f.testExit >= 0 {
		in.Expect.Test = &training.TestResult{ExitCode: f.testExit}
	}
	return in, nil
}

// eachReceipt reads a file of one stored receipt, or a stream of compact
// receipts one per line (of any total size), verifying each unless verify
// is false, and calls f on each in order. It stops at the first error.
func eachReceipt(name string, verify bool, f func(*receipt.Receipt) error) error {
	fh, err := os.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	decode := receipt.Decode
	if !verify {
		decode = receipt.Parse
	}
	br := bufio.NewReaderSize(fh, 1<<20)
	if head, _ := br.Peek(2); bytes.Equal(head, []byte("{\n")) {
		doc, err := io.ReadAll(io.LimitReader(br, receipt.MaxSize+1))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(doc) > receipt.MaxSize {
			return fmt.Errorf("%s: larger than the %d byte limit for receipts", name, receipt.MaxSize)
		}
		r, err := decode(doc)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return f(r)
	}
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		for {
			chunk, err := br.ReadSlice('\n')
			if len(line)+len(chunk) > receipt.MaxSize {
				return fmt.Errorf("%s:%d: line longer than the %d byte limit for receipts", name, n, receipt.MaxSize)
			}
			line = append(line, chunk...)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if len(bytes.TrimSpace(line)) == 0 {
					return nil
				}
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			break
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, err := decode(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if err := f(r); err != nil {
			return err
		}
	}
}
