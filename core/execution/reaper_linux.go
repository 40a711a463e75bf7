package execution

import (
	"errors"
	"strconv"
	"strings"
	"syscall"
)

// OwnerDead reports whether name is prefix + pid + "-" + anything, with pid
// a process that no longer exists: the names backends give what a run
// leaves on the host (os.MkdirTemp(dir, prefix+pid+"-")), so that a
// Reaper can tell a dead owner's leftovers from a live one's. Names of
// other formats are never reported dead.
func OwnerDead(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
