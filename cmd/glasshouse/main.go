// Command glasshouse runs code in a sandbox and writes a receipt of what it
// did; it also shows, verifies, signs and evaluates receipts.
//
// It builds two ways. The full build (the default) does everything. The
// lean build (-tags lean), which scripts/setup.sh installs as
// bin/glasshouse beside the full one as bin/glasshouse-full, leaves out
// policy evaluation, signing and signals: their libraries' package
// initialisation (cel-go's protobuf registry above all) costs every
// invocation about 4 ms, a fifth of a short run. It hands those commands,
// and runs that ask for --policy or --sign, to glasshouse-full with the
// same arguments.
//
// Exit codes: the workload's own exit code for `run` (128+signal when it
// was killed), 2 for usage errors, 125 when Glasshouse itself failed, 126
// when the command cannot be executed and 127 when it is not found.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Exit codes shared by the subcommands.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitGlasshouse  = 125
	exitNotFound    = 127
	exitSignalShift = 128
)

// command is one subcommand. run returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

// fullOnly are the commands of the full build only, with their summaries.
var fullOnly = map[string]string{
	"keygen":  "make an ed25519 key pair for signing receipts",
	"policy":  "check receipts against a policy; list or show the built-in packs",
	"sign":    "sign receipt files with an ed25519 key (writes FILE.dsse.json)",
	"signals": "derive training signals (JSONL) from receipts",
	"verify":  "verify signed receipts (FILE.dsse.json) against a public key",
}

// fullName is the full build's file name, looked up beside this one.
const fullName = "glasshouse-full"

// delegate replaces this process with the full build running args. It
// returns only when that cannot be done.
func delegate(args []string, stderr io.Writer) int {
	full := fullName
	self, err := os.Executable()
	if err == nil {
		full = filepath.Join(filepath.Dir(self), fullName)
		err = syscall.Exec(full, append([]string{full}, args...), os.Environ())
	}
	fmt.Fprintf(stderr, "glasshouse %s: this lean build hands it to %s (scripts/setup.sh builds both): %s\n", args[0], full, oneLine(err.Error()))
	return exitGlasshouse
}

func register(c command) { commands[c.name] = c }

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "glasshouse: unknown command %q (run 'glasshouse help')\n", args[0])
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: glasshouse COMMAND [ARGS]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// errUsage marks an error as the caller's fault (exit code 2).
var errUsage = errors.New("usage")

// usageErrorf returns an error that fails with exit code 2.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints nothing by itself.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args, turning flag errors into one-line usage errors.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "usage: glasshouse %s [FLAGS] [ARGS]\n", fs.Name())
			fs.PrintDefaults()
			return true, nil
		}
		return false, fmt.Errorf("%w: %s", errUsage, oneLine(err.Error()))
	}
	return false, nil
}

// fail prints err as one line and returns the exit code its kind calls for.
func fail(stderr io.Writer, name string, err error) int {
	msg := strings.TrimPrefix(oneLine(err.Error()), errUsage.Error()+": ")
	fmt.Fprintf(stderr, "glasshouse %s: %s\n", name, msg)
	if errors.Is(err, errUsage) {
		return exitUsage
	}
	return exitFailure
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
