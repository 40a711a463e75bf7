//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/guest/transport"
)

// guestClock sets the guest's wall clock from the host's and remembers by
// how much it moved it in all, so that event times taken with an earlier
// calibration can be corrected.
type guestClock struct {
	mu    sync.Mutex
	total time.Duration
}

// set sets the wall clock to hostNS (Unix ns) and returns the step.
func (c *guestClock) set(hostNS int64) (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	step := time.Duration(hostNS - time.Now().UnixNano())
	tv := unix.NsecToTimeval(hostNS)
	if err := unix.Settimeofday(&tv); err != nil {
		return 0, fmt.Errorf("set the clock: %w", err)
	}
	c.total += step
	return step, nil
}

// shift is how far the clock was stepped in all.
func (c *guestClock) shift() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// awaitWake waits for the host's Wake after a snapshot restore: it mixes
// the host's entropy into the kernel's pool and forces a reseed (every guest
// restored from one snapshot shares the template's random state), sets the
// clock, runs warm when the host asks for a prewarm, and answers Awake.
func awaitWake(log *slog.Logger, conn *transport.Conn, clock *guestClock, warm func() error) error {
	if err := conn.Send(&transport.Parked{ReadyNS: boottime()}); err != nil {
		return fmt.Errorf("park: %w", err)
	}
	f, err := conn.ReadFrame()
	if err != nil {
		return fmt.Errorf("wait for wake: %w", err)
	}
	start := time.Now()
	var w transport.Wake
	if err := transport.Decode(f, &w); err != nil {
		sendError(conn, transport.CodeInvalid, err)
		return err
	}
	var a transport.Awake
	if err := reseed(w.Entropy); err != nil {
		a.ReseedError = clipMessage(err.Error())
	}
	if _, err := clock.set(w.HostTimeNS); err != nil {
		a.ClockError = clipMessage(err.Error())
	}
	// Time spent after the clock is set is measured on the new clock.
	start = time.Now()
	if w.Prewarm {
		p := time.Now()
		if err := warm(); err != nil {
			log.Warn("warmup run", "err", err)
		}
		a.PrewarmNS = time.Since(p).Nanoseconds()
	}
	a.WakeNS = time.Since(start).Nanoseconds()
	log.Info("glasshouse init awake", "prewarm_ms", a.PrewarmNS/1e6, "reseed_error", a.ReseedError)
	return conn.Send(&a)
}

// reseed credits entropy to the kernel's input pool (RNDADDENTROPY) and
// makes the kernel's CRNG reseed from it at once (RNDRESEEDCRNG), so that
// no two restored guests produce the same random numbers.
func reseed(entropy []byte) error {
	if len(entropy) < transport.MinWakeEntropy {
		return fmt.Errorf("reseed: %d bytes of entropy is too few", len(entropy))
	}
	fd, err := unix.Open("/dev/urandom", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reseed: %w", err)
	}
	defer unix.Close(fd)
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+(len(entropy)+3)&^3)
	binary.NativeEndian.PutUint32(info[0:], uint32(len(entropy)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	copy(info[8:], entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("reseed: RNDADDENTROPY: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("reseed: RNDRESEEDCRNG: %w", e)
	}
	return nil
}

func clipMessage(s string) string {
	if len(s) > transport.MaxMessageLen {
		return s[:transport.MaxMessageLen]
	}
	return s
}

// warmupScript is what a warmup run executes: a small script like a run's
// main.py, importing common modules and printing.
const warmupScript = "import json, os, re, sys\nprint(json.dumps({'warm': [1, 2]}), 2 + 2)\n"

// warmup sends a throwaway workload down the path a run takes (its script
// and Run as frames, decoded and written as serve does, cgroup limits, the
// chrooted sandbox-user interpreter with output pipes, the wait, the
// encoding of what a run reports, and the cleanup), in a cgroup of its own
// that it then removes, with its output discarded and its script deleted.
// A guest restored from a snapshot starts with none of its code (init's or
// Python's) translated by the emulator; translating it here, before the
// guest is pooled, takes that cost off the run's path. (QEMU keys
// translations by guest virtual address: emulated guests run without user
// ASLR so that the warmup's translations fit the run.) The template's
// Python zygote, if any, has its memory prefaulted first.
func (s *session) warmup() error {
	if s.zygote != nil {
		start := time.Now()
		n, err := s.zygote.prefault()
		if err != nil {
			s.log.Warn("prefault the python zygote", "err", err)
		}
		s.log.Debug("python zygote prefaulted", "bytes", n, "ms", time.Since(start).Milliseconds())
	}
	const name = ".glasshouse-warmup.py"
	chunk := transport.AppendFileChunk(nil, &transport.FileChunk{Path: name, Data: []byte(warmupScript), Last: true})
	if err := s.writeInput(map[string]*os.File{}, transport.Frame{Type: transport.TypeFile, Payload: chunk}); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(rootDir+workspaceDir, name))
	f, err := transport.Encode(&transport.Run{
		Argv:      []string{"python3", name},
		Env:       []string{"HOME=" + workspaceDir, "LANG=C.UTF-8", "PATH=" + defaultPath},
		TimeoutMS: 30_000, MemoryBytes: 256 << 20, PIDs: 64, OutputBytes: 1 << 20, Network: "none",
	})
	if err != nil {
		return err
	}
	r := &transport.Run{}
	if err := transport.Decode(f, r); err != nil {
		return err
	}
	cg, err := newCgroup("warmup")
	if err != nil {
		return err
	}
	defer cg.remove()
	prog, err := lookPath(r.Argv[0], r.Env)
	if err != nil {
		return err
	}
	if _, err := cg.apply(r); err != nil {
		return err
	}
	cg.excludeUsage() // what resuming a zygote does, for its translation
	w, err := s.startIn(r, prog, cg, true)
	if err != nil {
		return err
	}
	exit := w.wait(r)
	if exit.ExitCode != 0 || exit.Signal != "" {
		return fmt.Errorf("warmup run ended with status %d %s", exit.ExitCode, exit.Signal)
	}
	for _, m := range []any{&transport.Started{PID: w.cmd.Process.Pid}, exit, &transport.Done{}} {
		if _, err := transport.Encode(m); err != nil {
			return err
		}
	}
	return nil
}
