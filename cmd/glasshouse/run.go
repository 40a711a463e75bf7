package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
)

func init() {
	register(command{name: "run", summary: "run a command or Python code in a sandbox and write its receipt", run: runCmd})
}

type runFlags struct {
	backend     string
	timeout     time.Duration
	memory      sizeFlag
	pids        int64
	cpu         float64
	outputLimit sizeFlag
	network     string
	env         envFlag
	files       listFlag
	collect     listFlag
	outDir      string
	stdin       string
	python      string
	receipt     string
	profile     optionalFlag
	policy      string
	sign        string
	verbose     bool
}

func runCmd(args []string, stdout, stderr io.Writer) int {
	f := runFlags{profile: optionalFlag{def: string(profiling.BestEffort), value: string(profiling.Off)}}
	fs := newFlagSet("run")
	fs.StringVar(&f.backend, "backend", "auto", "backend: auto (the most isolating one available) or one of "+strings.Join(execution.Registered(), ", ")+"; the unisolated process backend is only used when named")
	fs.DurationVar(&f.timeout, "timeout", execution.DefaultTimeout, "wall-clock limit; the whole process tree is killed when it expires")
	fs.Var(&f.memory, "memory", "memory limit, e.g. 256MiB (default 512MiB)")
	fs.Int64Var(&f.pids, "pids", 0, "limit on processes and threads (default 256)")
	fs.Float64Var(&f.cpu, "cpu", 0, "CPU limit in cores, e.g. 0.5 (default unlimited)")
	fs.Var(&f.outputLimit, "output-limit", "cap on each of stdout and stderr (default 1MiB)")
	fs.StringVar(&f.network, "network", "none", "network access: none, loopback or full")
	fs.Var(&f.env, "env", "set NAME=VALUE, or copy NAME from the host (repeatable)")
	fs.Var(&f.files, "file", "put host file SRC in the workspace as DST: DST=SRC (repeatable)")
	fs.Var(&f.collect, "collect", "workspace PATH to copy out after the run (repeatable)")
	fs.StringVar(&f.outDir, "out-dir", ".", "directory that collected files are written to")
	fs.StringVar(&f.stdin, "stdin", "", "file to feed to the workload's stdin ('-' for this process's stdin)")
	fs.StringVar(&f.python, "python", "", "run Python code from FILE ('-' for stdin) instead of a command")
	fs.StringVar(&f.receipt, "receipt", "", "write the receipt to FILE (default receipt.json when profiling)")
	fs.Var(&f.profile, "profile", "observe the run: --profile (best-effort) or --profile=required")
	fs.StringVar(&f.policy, "policy", "", "evaluate a policy file or built-in pack over the receipt and print the verdict; the exit code stays the workload's (gate on verdicts with 'glasshouse policy check')")
	fs.StringVar(&f.sign, "sign", "", "sign the receipt with the ed25519 private key in FILE, writing RECEIPT.dsse.json beside it")
	fs.BoolVar(&f.verbose, "verbose", false, "log what the engine does to stderr")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		if err != nil {
			return fail(stderr, "run", err)
		}
		return exitOK
	}
	if loadExtras == nil && (f.policy != "" || f.sign != "") {
		// Before anything is read (--python - reads stdin): the full
		// build starts over with the same arguments.
		return delegate(append([]string{"run"}, args...), stderr)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	spec, err := f.spec(fs.Args(), set)
	if err != nil {
		return fail(stderr, "run", err)
	}
	spec.Stdout, spec.Stderr = stdout, stderr
	return f.execute(spec, stderr)
}

// spec turns flags and the command line into a validated spec.
func (f *runFlags) spec(cmdline []string, set map[string]bool) (execution.Spec, error) {
	var spec execution.Spec
	switch {
	case f.python != "" && len(cmdline) > 0:
		return spec, usageErrorf("give either --python or a command, not both")
	case f.python == "" && len(cmdline) == 0:
		return spec, usageErrorf("no command to run (want: glasshouse run [FLAGS] -- CMD [ARGS...])")
	case f.python != "":
		code, err := readInput(f.python, int64(execution.Bounds.MaxCodeBytes))
		if err != nil {
			return spec, usageErrorf("--python: %v", err)
		}
		spec.Code, spec.Language = string(code), execution.LanguagePython
	default:
		spec.Command = cmdline
	}
	mode, err := profiling.ParseMode(f.profile.value)
	if err != nil {
		return spec, usageErrorf("--profile: %v", err)
	}
	network, err := execution.ParseNetwork(f.network)
	if err != nil {
		return spec, usageErrorf("--network %q: want none, loopback or full", f.network)
	}
	if f.timeout <= 0 {
		return spec, usageErrorf("--timeout %s: must be positive", f.timeout)
	}
	if f.cpu < 0 {
		return spec, usageErrorf("--cpu %g: must not be negative", f.cpu)
	}
	if f.pids < 0 {
		return spec, usageErrorf("--pids %d: must not be negative", f.pids)
	}
	for _, name := range []string{"memory", "pids", "output-limit"} {
		if set[name] && limitValue(name, f) == 0 {
			return spec, usageErrorf("--%s 0: must be positive", name)
		}
	}
	spec.Env = f.env.env
	spec.Timeout = f.timeout
	spec.Profile = mode
	spec.Limits = execution.Limits{
		MemoryBytes: f.memory.n,
		PIDs:        f.pids,
		CPUMillis:   int64(f.cpu * 1000),
		OutputBytes: f.outputLimit.n,
		Network:     network,
	}
	for _, fl := range f.files {
		dst, src, ok := splitFileFlag(fl)
		if !ok {
			return spec, usageErrorf("--file %q: want DST=SRC", fl)
		}
		content, err := readInput(src, execution.Bounds.MaxFileBytes)
		if err != nil {
			return spec, usageErrorf("--file %s: %v", dst, err)
		}
		spec.Files = append(spec.Files, execution.File{Path: dst, Content: content})
	}
	spec.Collect = f.collect
	if f.stdin != "" {
		in, err := readInput(f.stdin, int64(execution.Bounds.MaxStdinBytes))
		if err != nil {
			return spec, usageErrorf("--stdin: %v", err)
		}
		spec.Stdin = in
	}
	full := spec.WithDefaults()
	if err := full.Validate(); err != nil {
		return spec, usageErrorf("%v", err)
	}
	return spec, nil
}

// limitValue returns the numeric value of a limit flag.
func limitValue(name string, f *runFlags) int64 {
	switch name {
	case "memory":
		return f.memory.n
	case "pids":
		return f.pids
	}
	return f.outputLimit.n
}

func splitFileFlag(v string) (dst, src string, ok bool) {
	for i := 0; i < len(v); i++ {
		if v[i] == '=' {
			return v[:i], v[i+1:], v[:i] != "" && v[i+1:] != ""
		}
	}
	return "", "", false
}

// readInput reads a file, or stdin for "-", refusing more than max bytes.
func readInput(name string, max int64) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		fh, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than the limit of %d bytes", max)
	}
	return b, nil
}

func (f *runFlags) execute(spec execution.Spec, stderr io.Writer) int {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	backend, err := selectBackend(f.backend, log)
	if err != nil {
		if errors.Is(err, execution.ErrUnknownBackend) {
			return fail(stderr, "run", usageErrorf("--backend: %v", err))
		}
		fmt.Fprintf(stderr, "glasshouse run: %s\n", oneLine(err.Error()))
		return exitGlasshouse
	}
	cfg := execution.Config{Backend: backend, Logger: log}
	if spec.Profile != profiling.Off {
		ctrl, closeFn, err := openProfiler(log)
		if err != nil && spec.Profile == profiling.Required {
			fmt.Fprintf(stderr, "glasshouse run: profiling required but unavailable: %s\n", oneLine(err.Error()))
			return exitGlasshouse
		}
		if err != nil {
			log.Warn("profiling unavailable", "err", err)
		}
		if closeFn != nil {
			defer closeFn()
		}
		cfg.Profiler = ctrl
	}
	var opts []execution.RunOption
	var signer receiptSigner
	if f.policy != "" || f.sign != "" {
		ev, sg, err := loadExtras(f.policy, f.sign)
		if err != nil {
			return fail(stderr, "run", err)
		}
		if ev != nil {
			opts = append(opts, execution.WithPolicy(ev))
		}
		signer = sg
	}
	engine, err := execution.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "glasshouse run: %s\n", oneLine(err.Error()))
		return exitGlasshouse
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run, err := engine.Run(ctx, spec, opts...)
	if err != nil {
		return runError(stderr, err)
	}
	r := run.Receipt
	for _, fl := range run.Result.Files {
		if err := writeCollected(f.outDir, fl); err != nil {
			fmt.Fprintf(stderr, "glasshouse run: collect %s: %s\n", fl.Path, oneLine(err.Error()))
			return exitGlasshouse
		}
	}
	receiptPath := f.receipt
	if receiptPath == "" && (spec.Profile != profiling.Off || f.sign != "") {
		receiptPath = "receipt.json"
	}
	if receiptPath != "" {
		if err := writeReceipt(receiptPath, r, signer); err != nil {
			fmt.Fprintf(stderr, "glasshouse run: %s\n", oneLine(err.Error()))
			return exitGlasshouse
		}
		fmt.Fprintf(stderr, "glasshouse: receipt %s (failure=%s profiling=%s)\n", receiptPath, r.Outcome.Failure, r.Profiling.Status)
	}
	if p := r.Policy; p != nil {
		fmt.Fprintf(stderr, "glasshouse: policy %s: %s%s\n", p.Name, p.Verdict, violationSummary(p.Violations))
	}
	return exitCode(r, stderr)
}

// violationSummary lists the rules that matched, for one line of output.
func violationSummary(vs []receipt.Violation) string {
	if len(vs) == 0 {
		return ""
	}
	rules := make([]string, len(vs))
	for i, v := range vs {
		rules[i] = v.Rule
	}
	return fmt.Sprintf(" (%d violations: %s)", len(vs), strings.Join(rules, ", "))
}

// runError maps an engine error (no receipt) to an exit code.
func runError(stderr io.Writer, err error) int {
	msg := oneLine(err.Error())
	fmt.Fprintf(stderr, "glasshouse run: %s\n", msg)
	switch {
	case errors.Is(err, execution.ErrCommandNotFound):
		return exitNotFound
	case errors.Is(err, execution.ErrInvalidSpec):
		return exitUsage
	}
	return exitGlasshouse
}

// exitCode is the workload's exit code, 128+signal when it was killed, and
// 125 when Glasshouse failed to carry out the run.
func exitCode(r *receipt.Receipt, stderr io.Writer) int {
	o := r.Outcome
	switch {
	case o.Failure == receipt.FailureInfrastructure:
		fmt.Fprintf(stderr, "glasshouse run: infrastructure failure: %s\n", oneLine(o.Error))
		return exitGlasshouse
	case o.TimedOut:
		fmt.Fprintf(stderr, "glasshouse run: timed out after %d ms\n", r.Limits.TimeoutMS)
	case o.OOMKilled:
		fmt.Fprintln(stderr, "glasshouse run: killed: out of memory")
	case o.Failure == receipt.FailureOutputLimit:
		fmt.Fprintf(stderr, "glasshouse run: stopped: output exceeded %d bytes\n", r.Limits.OutputBytes)
	}
	if o.Signal != "" {
		return exitSignalShift + signalNumber(o.Signal)
	}
	return o.ExitCode
}

func writeCollected(dir string, f execution.File) error {
	p := filepath.Join(dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, f.Content, 0o644)
}

// receiptSigner returns the signed envelope of a receipt.
type receiptSigner func(*receipt.Receipt) ([]byte, error)

// loadExtras loads what --policy and --sign name. The full build sets it;
// the lean build hands such runs to the full build before they start.
var loadExtras func(policyRef, keyPath string) (execution.Evaluator, receiptSigner, error)

func writeReceipt(path string, r *receipt.Receipt, signer receiptSigner) error {
	b, err := receipt.Marshal(r)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write receipt: %w", err)
	}
	if signer == nil {
		return nil
	}
	env, err := signer(r)
	if err != nil {
		return fmt.Errorf("sign receipt: %w", err)
	}
	if err := os.WriteFile(path+".dsse.json", env, 0o644); err != nil {
		return fmt.Errorf("write signed receipt: %w", err)
	}
	return nil
}

func signalNumber(name string) int {
	if n := unix.SignalNum(name); n != 0 {
		return int(n)
	}
	return int(syscall.SIGKILL)
}
