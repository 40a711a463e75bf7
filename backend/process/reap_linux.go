//go:build linux

package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
)

// runPrefix starts every workspace and cgroup name: runPrefix + owner pid
// + "-" + random.
const runPrefix = "glasshouse-"

// Reap implements execution.Reaper: it kills and removes the cgroups and
// workspaces of runs whose owning process is gone (a crashed server or
// CLI), and leaves alone those of live processes. It returns the number of
// runs it removed.
func (b *Backend) Reap(ctx context.Context) (int, error) {
	seen := map[string]bool{}
	var errs []error
	if b.layout != nil {
		parents := []string{b.cfg.CgroupParent}
		modes, _ := filepath.Glob(filepath.Join(b.layout.Unified, b.cfg.CgroupParent, "net-*"))
		for _, m := range modes {
			parents = append(parents, filepath.Join(b.cfg.CgroupParent, filepath.Base(m)))
		}
		for _, parent := range parents {
			ents, err := os.ReadDir(filepath.Join(b.layout.Unified, parent))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			for _, e := range ents {
				if !e.IsDir() || !execution.OwnerDead(e.Name(), runPrefix) {
					continue
				}
				if err := b.reapGroup(ctx, parent, e.Name()); err != nil {
					errs = append(errs, err)
				}
				seen[e.Name()] = true
			}
		}
	}
	ents, err := os.ReadDir(b.cfg.StateDir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range ents {
		if !e.IsDir() || !execution.OwnerDead(e.Name(), runPrefix) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(b.cfg.StateDir, e.Name())); err != nil {
			errs = append(errs, err)
		}
		seen[e.Name()] = true
	}
	return len(seen), errors.Join(errs...)
}

// reapGroup kills whatever is left in a dead owner's run cgroup and removes
// it from every hierarchy, inner directories first.
func (b *Backend) reapGroup(ctx context.Context, parent, name string) error {
	dir := filepath.Join(b.layout.Unified, parent, name)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reap %s: %w", name, err)
	}
	dirs := []string{dir}
	for _, mnt := range b.layout.V1 {
		dirs = append(dirs, filepath.Join(mnt, parent, name))
	}
	var errs []error
	for _, d := range dirs {
		err := removeTree(ctx, d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("reap %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a cgroup directory and its sub-cgroups, deepest first,
// retrying while killed tasks are released.
func removeTree(ctx context.Context, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(ctx, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for {
		err := unix.Rmdir(dir)
		if err == nil || !errors.Is(err, unix.EBUSY) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
