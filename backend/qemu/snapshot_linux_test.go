//go:build linux

package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeArtifacts writes small stand-ins for the guest artifacts.
func fakeArtifacts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{KernelFile, InitramfsFile, RootfsFile} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("content of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSnapshotKey checks that a template's key changes with everything its
// memory depends on, and that check notices a changed artifact.
func TestSnapshotKey(t *testing.T) {
	arts := fakeArtifacts(t)
	newB := func(mutate func(*Config)) *Backend {
		cfg := DefaultConfig()
		cfg.Binary, cfg.ArtifactsDir, cfg.StateDir = "/bin/true", arts, t.TempDir()
		if mutate != nil {
			mutate(&cfg)
		}
		b, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, err := findArtifacts(arts)
	if err != nil {
		t.Fatal(err)
	}
	key := func(b *Backend, accel string, v variant) string {
		k, _, err := b.snapshotKey(a, accel, v)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := newB(nil)
	v0 := variant{memory: 1 << 30}
	k0 := key(base, "tcg", v0)
	if k := key(newB(nil), "tcg", v0); k != k0 {
		t.Fatal("the key is not stable")
	}
	for name, k := range map[string]string{
		"accel":     key(base, "kvm", v0),
		"net":       key(base, "tcg", variant{memory: 1 << 30, net: true}),
		"collector": key(base, "tcg", variant{memory: 1 << 30, collector: true}),
		"memory":    key(base, "tcg", variant{memory: 2 << 30}),
		"cpus":      key(newB(func(c *Config) { c.CPUs = 2 }), "tcg", v0),
		"workspace": key(newB(func(c *Config) { c.Workspace = 64 << 20 }), "tcg", v0),
		"cmdline":   key(newB(func(c *Config) { c.KernelArgs = "x=1" }), "tcg", v0),
	} {
		if k == k0 {
			t.Errorf("changing the %s keeps the key", name)
		}
	}
	_, idents, err := base.snapshotKey(a, "tcg", v0)
	if err != nil {
		t.Fatal(err)
	}
	s := &snapshot{idents: idents}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	// A rebuilt initramfs: new content, new file.
	tmp := a.initramfs + ".new"
	if err := os.WriteFile(tmp, []byte("another initramfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, a.initramfs); err != nil {
		t.Fatal(err)
	}
	if err := s.check(); err == nil {
		t.Error("check missed the rebuilt initramfs")
	}
	if k := key(base, "tcg", v0); k == k0 {
		t.Error("the key did not change with the initramfs")
	}
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 20, 40<<20 + 123, size - 5} {
		if _, err := f.WriteAt([]byte("data!"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if err := copySparse(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs")
	}
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 4<<20 {
		t.Errorf("the copy allocates %d bytes: holes were filled", st.Blocks*512)
	}
	if err := copySparse(src, dst); err == nil {
		t.Error("copySparse overwrote an existing file")
	}
}

func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	if err := privateDir(filepath.Join(base, "new")); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(open); err == nil {
		t.Error("a world-writable directory was accepted")
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(filepath.Join(base, "new"), link); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(link); err == nil {
		t.Error("a symlink was accepted")
	}
}

func TestMemoryClass(t *testing.T) {
	b := &Backend{cfg: Config{MemoryBytes: 1 << 30}}
	for need, want := range map[int64]int64{
		1:                  1 << 30,
		1 << 30:            1 << 30,
		1<<30 + 1:          2 << 30,
		3 << 30:            4 << 30,
		maxMemory:          maxMemory,
		maxMemory/2 + 4096: maxMemory,
	} {
		if got := b.memoryClass(need); got != want {
			t.Errorf("memoryClass(%d) = %d, want %d", need, got, want)
		}
	}
}
