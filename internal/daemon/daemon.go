// Package daemon is the command-line prologue Glasshouse's daemons
// (glasshouse-server, glasshouse-agent) share: --log-level, --log-format
// and --version, stray arguments refused, and the slog logger built from
// the flags, so both accept the same values and answer bad ones alike.
package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"glasshouse.dev/glasshouse/core/version"
)

// Flags are the shared flags, registered on a daemon's flag set.
type Flags struct {
	name        string
	logLevel    *string
	logFormat   *string
	showVersion *bool
}

// Register adds --log-level, --log-format and --version to fs, for the
// daemon called name.
func Register(fs *flag.FlagSet, name string) *Flags {
	return &Flags{
		name:        name,
		logLevel:    fs.String("log-level", "info", "debug, info, warn or error"),
		logFormat:   fs.String("log-format", "json", "json or text"),
		showVersion: fs.Bool("version", false, "print the version and exit"),
	}
}

// Parse parses args into fs and returns the daemon's logger. When the
// process should exit instead (--help, --version, a bad flag or argument,
// a bad log setting) it returns a nil logger and the exit code, having
// written what there is to say.
func (f *Flags) Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (*slog.Logger, int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return nil, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", f.name, fs.Arg(0))
		return nil, 2
	}
	if *f.showVersion {
		fmt.Fprintf(stdout, "%s %s (%s)\n", f.name, version.Version, runtime.Version())
		return nil, 0
	}
	log, err := NewLogger(stderr, *f.logLevel, *f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", f.name, err)
		return nil, 2
	}
	return log, 0
}

// NewLogger returns a logger writing to w at level (debug, info, warn,
// error, with slog's +N/-N offsets) in format json or text.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}
