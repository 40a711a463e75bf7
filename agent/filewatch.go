package agent

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// PolicyFiles returns the files a policy reference names (the items that
// are paths rather than built-in pack names), for WatchFiles.
func PolicyFiles(ref string) []string {
	var out []string
	for _, item := range strings.Split(ref, ",") {
		item = strings.TrimSpace(item)
		if strings.ContainsRune(item, '/') || strings.HasSuffix(item, ".yaml") || strings.HasSuffix(item, ".yml") {
			out = append(out, item)
		}
	}
	return out
}

// fingerprint identifies a file's content cheaply: a Kubernetes ConfigMap
// update swaps a symlink, which changes the inode; an edit in place
// changes the size or the modification time.
func fingerprint(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	ino := uint64(0)
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = s.Ino
	}
	return fmt.Sprintf("%d/%d/%d", ino, st.Size(), st.ModTime().UnixNano())
}

// WatchFiles calls changed whenever one of the files paths() returns
// changes (or appears, or disappears), checking every interval, until ctx
// ends. It is how the daemon follows ConfigMap updates, where no one can
// send it SIGHUP. The first check only records the files' state.
func WatchFiles(ctx context.Context, interval time.Duration, paths func() []string, changed func()) {
	if interval <= 0 {
		return
	}
	state := func() string {
		var b strings.Builder
		for _, p := range paths() {
			b.WriteString(p)
			b.WriteByte('=')
			b.WriteString(fingerprint(p))
			b.WriteByte(';')
		}
		return b.String()
	}
	last := state()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := state(); now != last {
			last = now
			changed()
		}
	}
}
