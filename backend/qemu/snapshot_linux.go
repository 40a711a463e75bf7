//go:build linux

package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/guest/transport"
)

// Snapshot restore.
//
// Booting a guest under emulation takes seconds: the kernel decompresses
// and initialises, init loads modules, mounts the rootfs, loads Python
// into the page cache and the eBPF collector into the kernel. A snapshot
// template does all that once: it boots with its RAM in a shared file
// (memory-backend-file, share=on), parks on the transport, and QEMU saves
// its device state with the x-ignore-shared migration capability, which
// leaves the RAM in the file. Each guest then starts QEMU with the same
// devices, maps that file privately (share=off: copy-on-write, so the
// template is never written and idle guests share its pages) and loads the
// device state with -incoming. The restored guest goes on from where the
// template parked: its first input is the host's Wake, with fresh entropy
// for the kernel's random number generator (restored guests would
// otherwise share the template's random state) and the host's clock, and
// answers Awake. Its workspace disk is a copy of the template's, which the
// template mounted before the save: disk and memory agree.
//
// A template is keyed by everything its memory depends on: the content of
// the kernel, initramfs, rootfs and QEMU binary, the accelerator, the
// machine (memory, vCPUs, translation cache, workspace size), the kernel
// command line and the variant (network device, eBPF collector). It is
// built at first use, under a lock shared by every process using the same
// snapshot directory, and checked against the artifacts' identity before
// every restore: a rebuilt artifact makes a new template.

// snapshotFormat changes whenever the meaning of a template changes.
const snapshotFormat = "glasshouse-qemu-snapshot/2"

// Files in a template directory.
const (
	snapMemFile   = "mem"
	snapStateFile = "state"
	snapWorkFile  = "work.img"
	snapMetaFile  = "meta.json"
)

// maxSnapshots bounds the templates kept in a snapshot directory; the
// least recently used go first.
const maxSnapshots = 8

// snapshotRetry is how long a failed template build is not retried; runs
// boot meanwhile.
const snapshotRetry = time.Minute

// variant is what distinguishes templates of one backend.
type variant struct {
	// memory is the guest RAM: qemu.memory, or for runs that need more,
	// the first power-of-two multiple of it that fits (see memoryClass).
	memory int64
	// net gives the guest a network device (runs with network "full").
	net bool
	// collector loads the guest's eBPF collector before the snapshot.
	collector bool
}

func (v variant) String() string {
	return fmt.Sprintf("memory=%dMiB,net=%t,collector=%t", v.memory>>20, v.net, v.collector)
}

// snapshot is a template guests are restored from.
type snapshot struct {
	key, dir string
	v        variant
	memory   int64
	hello    transport.Hello
	// idents are the identities of the files the template was built from,
	// checked before every restore.
	idents map[string]fileIdent
}

func (s *snapshot) path(name string) string { return filepath.Join(s.dir, name) }

// snapMeta is a template's meta.json.
type snapMeta struct {
	Format  string          `json:"format"`
	Key     string          `json:"key"`
	Variant string          `json:"variant"`
	Memory  int64           `json:"memory"`
	Hello   transport.Hello `json:"hello"`
	Created time.Time       `json:"created"`
	BuildMS int64           `json:"build_ms"`
}

// snapState is one variant's template, built or being built.
type snapState struct {
	done chan struct{}
	s    *snapshot
	err  error
	at   time.Time
}

// fileIdent identifies a file's version without reading it.
type fileIdent struct {
	Dev, Ino     uint64
	Size, MtimeN int64
}

func identOf(path string) (fileIdent, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileIdent{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return fileIdent{Dev: st.Dev, Ino: st.Ino, Size: st.Size, MtimeN: st.Mtim.Nano()}, nil
}

// snapshotFor returns the template for v, building it if needed. Builds run
// in the background, detached from ctx (other runs wait for them too);
// ctx only bounds the wait. A failed build is not retried for
// snapshotRetry.
func (b *Backend) snapshotFor(ctx context.Context, accel string, v variant) (*snapshot, error) {
	b.snapMu.Lock()
	st := b.snaps[v]
	if st != nil && st.s != nil && isDone(st.done) {
		if err := st.s.check(); err != nil {
			b.log.Info("snapshot template out of date; rebuilding", "variant", v, "why", err)
			st = nil
		}
	}
	if st == nil || (st.err != nil && time.Since(st.at) > snapshotRetry) {
		st = &snapState{done: make(chan struct{})}
		b.snaps[v] = st
		b.bg.Add(1)
		go func() {
			defer b.bg.Done()
			bctx, cancel := context.WithTimeout(b.bgCtx, b.cfg.BootTimeout+time.Minute)
			defer cancel()
			s, err := b.loadOrBuild(bctx, accel, v)
			if err != nil {
				b.log.Warn("snapshot template unavailable; guests boot instead", "variant", v, "err", err)
			}
			b.snapMu.Lock()
			st.s, st.err, st.at = s, err, time.Now()
			b.snapMu.Unlock()
			close(st.done)
		}()
	}
	b.snapMu.Unlock()
	select {
	case <-st.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b.snapMu.Lock()
	defer b.snapMu.Unlock()
	return st.s, st.err
}

// dropSnapshot forgets a template a guest could not be restored from and
// removes it; it is rebuilt after snapshotRetry.
func (b *Backend) dropSnapshot(v variant, s *snapshot, why error) {
	b.snapMu.Lock()
	if st := b.snaps[v]; st != nil && st.s == s {
		st.s, st.err, st.at = nil, why, time.Now()
	}
	b.snapMu.Unlock()
	_ = os.RemoveAll(s.dir)
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// check reports whether the files the template was built from changed.
func (s *snapshot) check() error {
	for path, want := range s.idents {
		got, err := identOf(path)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s changed", path)
		}
	}
	return nil
}

// snapshotKey returns the template key of v and the files it depends on.
func (b *Backend) snapshotKey(a artifacts, accel string, v variant) (string, map[string]fileIdent, error) {
	bin, err := exec.LookPath(b.cfg.Binary)
	if err != nil {
		return "", nil, err
	}
	files := []string{a.kernel, a.initramfs, a.rootfs, bin}
	idents := map[string]fileIdent{}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", snapshotFormat)
	for _, f := range files {
		sum, id, err := b.hashes.sum(f)
		if err != nil {
			return "", nil, err
		}
		idents[f] = id
		fmt.Fprintf(h, "%s %s\n", filepath.Base(f), sum)
	}
	vs := b.templateSpec(accel, v)
	fmt.Fprintf(h, "accel=%s memory=%d cpus=%d tb=%d workspace=%d variant=%s\ncmdline=%s\n",
		accel, vs.memoryBytes, b.cfg.CPUs, b.cfg.TBMiB, b.cfg.Workspace, v, b.cmdline(vs))
	return hex.EncodeToString(h.Sum(nil)), idents, nil
}

// templateSpec is how a template of v boots.
func (b *Backend) templateSpec(accel string, v variant) vmSpec {
	return vmSpec{accel: accel, memoryBytes: v.memory, timeout: b.cfg.BootTimeout,
		prewarm: true, eagerCollector: v.collector, net: v.net, template: true, zygote: b.cfg.PythonZygote}
}

// memoryClass is the guest RAM of a run that needs need bytes: qemu.memory
// doubled until it fits, so that runs with large memory limits share a few
// templates rather than each booting. (Guest RAM is mapped lazily: the
// rounding costs host memory only when the guest uses it.)
func (b *Backend) memoryClass(need int64) int64 {
	m := b.cfg.MemoryBytes
	for m < need && m <= maxMemory/2 {
		m *= 2
	}
	return max(m, need)
}

// loadOrBuild returns the template of v from the snapshot directory,
// building it there when it is missing.
func (b *Backend) loadOrBuild(ctx context.Context, accel string, v variant) (*snapshot, error) {
	a, err := findArtifacts(b.cfg.ArtifactsDir)
	if err != nil {
		return nil, err
	}
	// Before anything is read from it: the artifact hash cache lives there.
	if err := privateDir(b.cfg.SnapshotDir); err != nil {
		return nil, err
	}
	key, idents, err := b.snapshotKey(a, accel, v)
	if err != nil {
		return nil, fmt.Errorf("snapshot key: %w", err)
	}
	dir := filepath.Join(b.cfg.SnapshotDir, key)
	if s, err := loadSnapshot(dir, key, v, idents); err == nil {
		touch(dir)
		return s, nil
	}
	unlock, err := lockDir(ctx, b.cfg.SnapshotDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if s, err := loadSnapshot(dir, key, v, idents); err == nil {
		touch(dir)
		return s, nil
	}
	return b.buildSnapshot(ctx, accel, v, key, idents)
}

// buildSnapshot boots a template, saves it and moves it into place. The
// caller holds the snapshot directory's lock.
func (b *Backend) buildSnapshot(ctx context.Context, accel string, v variant, key string, idents map[string]fileIdent) (_ *snapshot, err error) {
	begin := time.Now()
	build, err := os.MkdirTemp(b.cfg.SnapshotDir, fmt.Sprintf("%s%d-", buildPrefix, os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("snapshot build dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(build)
		}
	}()
	if err := makeWorkspace(ctx, filepath.Join(build, snapWorkFile), b.cfg.Workspace); err != nil {
		return nil, fmt.Errorf("snapshot workspace: %w", err)
	}
	vs := b.templateSpec(accel, v)
	vs.templateDir = build
	m, err := b.bootVM(ctx, vs)
	if err != nil {
		return nil, fmt.Errorf("boot snapshot template: %w", err)
	}
	m.Close()
	for _, f := range []string{snapMemFile, snapStateFile, snapWorkFile} {
		if err := syncFile(filepath.Join(build, f)); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	meta := snapMeta{Format: snapshotFormat, Key: key, Variant: v.String(), Memory: vs.memoryBytes, Hello: m.hello,
		Created: time.Now().UTC(), BuildMS: time.Since(begin).Milliseconds()}
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	if err := writeSynced(filepath.Join(build, snapMetaFile), mb); err != nil {
		return nil, fmt.Errorf("snapshot meta: %w", err)
	}
	dir := filepath.Join(b.cfg.SnapshotDir, key)
	_ = os.RemoveAll(dir) // an unreadable leftover of the same key
	if err := os.Rename(build, dir); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	syncDir(b.cfg.SnapshotDir)
	b.log.Info("snapshot template built", "variant", v, "dir", dir, "ms", meta.BuildMS)
	pruneSnapshots(b.cfg.SnapshotDir, maxSnapshots)
	return loadSnapshot(dir, key, v, idents)
}

// buildPrefix starts the names of template build directories: the prefix,
// the owner's pid, "-", random.
const buildPrefix = "build-"

// loadSnapshot reads a built template.
func loadSnapshot(dir, key string, v variant, idents map[string]fileIdent) (*snapshot, error) {
	mb, err := os.ReadFile(filepath.Join(dir, snapMetaFile))
	if err != nil {
		return nil, err
	}
	var meta snapMeta
	if len(mb) > 1<<20 || json.Unmarshal(mb, &meta) != nil || meta.Format != snapshotFormat || meta.Key != key {
		return nil, fmt.Errorf("snapshot %s: bad meta.json", dir)
	}
	for _, f := range []string{snapMemFile, snapStateFile, snapWorkFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("snapshot %s: missing %s", dir, f)
		}
	}
	return &snapshot{key: key, dir: dir, v: v, memory: meta.Memory, hello: meta.Hello, idents: idents}, nil
}

// touch marks a template as used, for pruning.
func touch(dir string) {
	now := time.Now()
	_ = os.Chtimes(dir, now, now)
}

// pruneSnapshots removes the least recently used templates beyond max.
// Guests restored from a removed template keep running: their memory is
// mapped and their state was read at start.
func pruneSnapshots(dir string, max int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type snap struct {
		name string
		used int64
	}
	var snaps []snap
	for _, e := range entries {
		if !e.IsDir() || len(e.Name()) != 64 {
			continue
		}
		if info, err := e.Info(); err == nil {
			snaps = append(snaps, snap{e.Name(), info.ModTime().UnixNano()})
		}
	}
	if len(snaps) <= max {
		return
	}
	slices.SortFunc(snaps, func(a, b snap) int { return int(b.used - a.used) })
	for _, s := range snaps[max:] {
		_ = os.RemoveAll(filepath.Join(dir, s.name))
	}
}

// privateDir creates dir if needed and checks that only this user can
// change it: guests run whatever a template's files say, so a directory
// another user could write to (say, one planted under a shared /tmp) is
// refused.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot dir: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("snapshot dir: %w", err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("snapshot dir %s is not a directory", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("snapshot dir %s belongs to uid %d, not %d", dir, st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("snapshot dir %s is writable by others (mode %o)", dir, st.Mode&0o777)
	}
	return nil
}

// lockDir takes an exclusive flock on dir/.lock, waiting while ctx allows.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("snapshot lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("snapshot lock: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		f.Close()
	}
}

// copySparse copies src to a new file dst, keeping holes (the workspace
// images are sparse: a 1 GiB disk holds a few hundred KiB of ext4
// metadata).
func copySparse(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	size := st.Size()
	if err := out.Truncate(size); err != nil {
		return err
	}
	inFd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(inFd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(inFd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return fmt.Errorf("copy: %w", err)
		}
		off = hole
	}
	return nil
}

// hashCache remembers artifacts' content hashes by file identity, in
// memory and in the snapshot directory, so that a process hashes a
// file once per version of it.
type hashCache struct {
	mu   sync.Mutex
	path string
	mem  map[string]string
}

func hashCacheKey(path string, id fileIdent) string {
	return path + "|" + strconv.FormatUint(id.Dev, 10) + "|" + strconv.FormatUint(id.Ino, 10) + "|" +
		strconv.FormatInt(id.Size, 10) + "|" + strconv.FormatInt(id.MtimeN, 10)
}

// sum returns path's sha256 and identity.
func (c *hashCache) sum(path string) (string, fileIdent, error) {
	id, err := identOf(path)
	if err != nil {
		return "", id, err
	}
	k := hashCacheKey(path, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil {
		c.mem = map[string]string{}
		if b, err := os.ReadFile(c.path); err == nil && len(b) < 1<<20 {
			_ = json.Unmarshal(b, &c.mem)
		}
	}
	if s, ok := c.mem[k]; ok && len(s) == 64 {
		return s, id, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", id, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", id, fmt.Errorf("hash %s: %w", path, err)
	}
	s := hex.EncodeToString(h.Sum(nil))
	if after, err := identOf(path); err != nil || after != id {
		return "", id, fmt.Errorf("hash %s: the file changed while it was read", path)
	}
	if len(c.mem) > 256 {
		c.mem = map[string]string{}
	}
	c.mem[k] = s
	if b, err := json.Marshal(c.mem); err == nil && os.MkdirAll(filepath.Dir(c.path), 0o700) == nil {
		tmp := c.path + "." + strconv.Itoa(os.Getpid())
		if os.WriteFile(tmp, b, 0o600) == nil && os.Rename(tmp, c.path) != nil {
			_ = os.Remove(tmp)
		}
	}
	return s, id, nil
}

// quoteShell quotes a path for /bin/sh. Paths holding a quote are refused
// by Config.Validate.
func quoteShell(p string) string { return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'" }
