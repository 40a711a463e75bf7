package qemu

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// consoleLimit bounds the console output kept per VM: a guest cannot fill
// the host's memory or disk through its serial port.
const consoleLimit = 256 << 10

// ring keeps the last consoleLimit bytes written to it.
type ring struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64
}

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if over := len(r.buf) - consoleLimit; over > 0 {
		r.dropped += int64(over)
		r.buf = append(r.buf[:0], r.buf[over:]...)
	}
	return len(p), nil
}

func (r *ring) Bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.buf)
}

// tail returns the last n lines of the console, for error messages.
func (r *ring) tail(n int) string {
	lines := strings.Split(strings.TrimRight(string(r.Bytes()), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, " | ")
}

// readConsole copies a console stream into r until it ends.
func readConsole(c io.ReadCloser, r *ring) {
	defer c.Close()
	_, _ = io.Copy(r, c)
}

// keepConsole writes the console of a failed VM to dir/<id>.console.log and
// prunes the oldest logs beyond max. It returns the log's path.
func keepConsole(dir, id string, r *ring, max int) (string, error) {
	if max == 0 {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keep console log: %w", err)
	}
	path := filepath.Join(dir, id+".console.log")
	data := r.Bytes()
	if r.dropped > 0 {
		data = append([]byte(fmt.Sprintf("[%d earlier bytes dropped]\n", r.dropped)), data...)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("keep console log: %w", err)
	}
	pruneLogs(dir, max)
	return path, nil
}

func pruneLogs(dir string, max int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type logFile struct {
		name string
		mod  int64
	}
	var logs []logFile
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".console.log") {
			continue
		}
		if info, err := e.Info(); err == nil {
			logs = append(logs, logFile{e.Name(), info.ModTime().UnixNano()})
		}
	}
	if len(logs) <= max {
		return
	}
	slices.SortFunc(logs, func(a, b logFile) int { return cmp.Compare(a.mod, b.mod) })
	for _, l := range logs[:len(logs)-max] {
		_ = os.Remove(filepath.Join(dir, l.name))
	}
}
