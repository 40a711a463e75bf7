package agent

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Parsers of the kernel's text files (/proc/PID/stat, /proc/PID/status,
// cgroup.events, cpu.stat). They are pure so that they can be fuzzed; the
// readers that feed them live in the _linux files.

// errParse means a kernel file did not have the expected form.
var errParse = errors.New("unexpected file format")

// procStat holds the fields of /proc/PID/stat the agent uses.
type procStat struct {
	PPID int64
	// StartTicks is the process start time in clock ticks after boot.
	StartTicks uint64
}

// parseProcStat parses /proc/PID/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so the fields
// after it are found from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 || bytes.IndexByte(b, '(') < 0 {
		return procStat{}, fmt.Errorf("stat: %w: no command name", errParse)
	}
	// Fields after the name start at field 3 (state).
	f := strings.Fields(string(b[end+1:]))
	// ppid is field 4, starttime field 22: indexes 1 and 19 here.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("stat: %w: %d fields after the name, want at least 20", errParse, len(f))
	}
	ppid, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || ppid < 0 {
		return procStat{}, fmt.Errorf("stat: %w: ppid %q", errParse, f[1])
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: %w: starttime %q", errParse, f[19])
	}
	return procStat{PPID: ppid, StartTicks: start}, nil
}

// parseStatusUID returns the real uid from /proc/PID/status.
func parseStatusUID(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		uid, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || uid < 0 || uid > 1<<32-1 {
			return 0, fmt.Errorf("status: %w: uid %q", errParse, f[0])
		}
		return uid, nil
	}
	return 0, fmt.Errorf("status: %w: no Uid line", errParse)
}

// splitCmdline splits /proc/PID/cmdline (NUL-separated, NUL-terminated)
// into at most max arguments.
func splitCmdline(b []byte, max int) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	if len(parts) > max {
		parts = parts[:max]
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

// parseKeyed parses a "key value" file (cgroup.events, cpu.stat).
// Malformed lines are an error; unknown keys are kept.
func parseKeyed(b []byte) (map[string]int64, error) {
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("%w: line %q has no value", errParse, line)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: line %q: %v", errParse, line, err)
		}
		m[k] = n
	}
	return m, nil
}

// parseProcs parses cgroup.procs: one pid a line.
func parseProcs(b []byte, max int) ([]int, error) {
	var pids []int
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pid, err := strconv.Atoi(line)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("cgroup.procs: %w: %q", errParse, line)
		}
		if len(pids) < max {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
