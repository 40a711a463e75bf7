//go:build linux

package process

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// assignIdentity picks the uid and gid the workload runs as. With per-run
// identities, a slot of Config.RunUIDs is claimed with an flock on a file
// under the state directory: the lock is held until Cleanup, and the
// kernel drops it if this process dies, so concurrent Glasshouse processes
// never hand one identity to two live runs.
func (i *instance) assignIdentity() error {
	cfg := &i.b.cfg
	if !i.runsAsOther() {
		return nil
	}
	if !cfg.perRun() {
		i.uid, i.gid = cfg.UID, cfg.GID
		return nil
	}
	dir := filepath.Join(cfg.StateDir, ".glasshouse-uids")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("claim run identity: %w", err)
	}
	n := cfg.RunUIDs.Count
	start := rand.Uint32N(n)
	for try := uint32(0); try < 256 && try < n; try++ {
		slot := (start + try) % n
		f, err := os.OpenFile(filepath.Join(dir, strconv.FormatUint(uint64(slot), 10)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("claim run identity: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		i.uid, i.gid = cfg.RunUIDs.Base+slot, cfg.RunUIDs.Base+slot
		i.onCleanup(f.Close)
		return nil
	}
	return fmt.Errorf("claim run identity: no free id in %d+%d after 256 tries", cfg.RunUIDs.Base, n)
}
