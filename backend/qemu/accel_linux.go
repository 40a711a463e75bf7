//go:build linux

package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// probeTimeout bounds the KVM probe boot. A guest that boots under KVM
// reaches init well within it; on hosts where KVM only runs PVM-aware
// kernels the stock guest kernel hangs, and the probe gives up.
const probeTimeout = 10 * time.Second

// accelFor returns the accelerator VMs use: the configured one, or with
// "auto" KVM if a probe boot succeeds on this host and TCG otherwise. The
// probe runs once per process and its result is cached on disk per host.
func (b *Backend) accelFor(ctx context.Context) string {
	b.accelOnce.Do(func() {
		b.accel, b.accelWhy = b.chooseAccel(context.WithoutCancel(ctx))
		b.log.Info("accelerator chosen", "accel", b.accel, "why", b.accelWhy)
	})
	return b.accel
}

// Accel returns the accelerator this backend's VMs use and why, probing if
// that was not done yet.
func (b *Backend) Accel(ctx context.Context) (accel, why string) {
	b.accelFor(ctx)
	return b.accel, b.accelWhy
}

func (b *Backend) chooseAccel(ctx context.Context) (string, string) {
	if b.cfg.Accel != "auto" {
		return b.cfg.Accel, "qemu.accel=" + b.cfg.Accel
	}
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "tcg", "no usable /dev/kvm: " + err.Error()
	}
	unix.Close(fd)
	key, err := b.probeKey()
	if err != nil {
		return "tcg", "cannot key the kvm probe: " + err.Error()
	}
	cache := probeCachePath()
	if accel, why, ok := readProbeCache(cache, key); ok {
		return accel, why + " (cached)"
	}
	accel, why := "kvm", "a probe boot under kvm reached guest init"
	m, err := b.bootVM(ctx, vmSpec{accel: "kvm", memoryBytes: 256 << 20, timeout: probeTimeout})
	if err != nil {
		accel, why = "tcg", "a probe boot under kvm failed: "+firstLine(err.Error())
	} else {
		m.Close()
	}
	writeProbeCache(cache, key, accel, why)
	return accel, why
}

// probeKey identifies what a probe result depends on: the host kernel, the
// QEMU binary and the guest artifacts.
func (b *Backend) probeKey() (string, error) {
	a, err := findArtifacts(b.cfg.ArtifactsDir)
	if err != nil {
		return "", err
	}
	bin, err := exec.LookPath(b.cfg.Binary)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s %d %d\n%s\n%s\n", unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]),
		bin, st.Size(), st.ModTime().UnixNano(), stamp(a.kernel), stamp(a.initramfs))
	return hex.EncodeToString(h.Sum(nil)), nil
}

func probeCachePath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "glasshouse", "qemu-accel.json")
}

type probeResult struct {
	Accel string `json:"accel"`
	Why   string `json:"why"`
}

func readProbeCache(path, key string) (string, string, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) > 1<<20 {
		return "", "", false
	}
	var m map[string]probeResult
	if json.Unmarshal(b, &m) != nil {
		return "", "", false
	}
	r, ok := m[key]
	if !ok || (r.Accel != "kvm" && r.Accel != "tcg") {
		return "", "", false
	}
	return r.Accel, r.Why, true
}

func writeProbeCache(path, key, accel, why string) {
	m := map[string]probeResult{}
	if b, err := os.ReadFile(path); err == nil && len(b) <= 1<<20 {
		_ = json.Unmarshal(b, &m)
	}
	if len(m) > 64 {
		m = map[string]probeResult{}
	}
	m[key] = probeResult{Accel: accel, Why: why}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
	}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
