package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/execution"
)

func TestConfigFrom(t *testing.T) {
	c, err := configFrom(execution.Options{StateDir: "/s", Settings: map[string]string{
		"qemu.pool": "3", "qemu.memory": "768MiB", "qemu.workspace": "2G", "qemu.accel": "tcg",
		"qemu.boot_timeout": "90s", "other.key": "ignored",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize != 3 || c.MemoryBytes != 768<<20 || c.Workspace != 2<<30 || c.Accel != "tcg" || c.LogDir != "/s/glasshouse-vm-logs" {
		t.Fatalf("got %+v", c)
	}
	for k, v := range map[string]string{
		"qemu.pool": "-1", "qemu.memory": "1M", "qemu.accel": "hvf", "qemu.cpus": "0", "qemu.nope": "1",
		"qemu.boot_timeout": "forever", "qemu.workspace": "1K", "qemu.kernel_args": "a\nb", "qemu.max_boots": "0",
	} {
		if _, err := configFrom(execution.Options{Settings: map[string]string{k: v}}); err == nil {
			t.Errorf("%s=%q accepted", k, v)
		} else if !strings.Contains(err.Error(), strings.TrimPrefix(k, "")) {
			t.Errorf("%s=%q: error %q does not name the setting", k, v, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "4K": 4 << 10, "3MiB": 3 << 20, "2GiB": 2 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1T", "x", "99999999999999999999G"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestMissingArtifactsNameTheScript(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, KernelFile), []byte("k"), 0o644)
	_, err := findArtifacts(dir)
	if !errors.Is(err, execution.ErrBackendUnavailable) {
		t.Fatalf("got %v, want ErrBackendUnavailable", err)
	}
	for _, want := range []string{"initramfs.cpio", "scripts/build-guest.sh", "rootfs.ext4", "scripts/build-minimal-rootfs.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	for _, f := range []string{InitramfsFile, RootfsFile} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	a, err := findArtifacts(dir)
	if err != nil || a.kernel != filepath.Join(dir, KernelFile) {
		t.Fatalf("got %+v, %v", a, err)
	}
}

func TestRingKeepsTheTail(t *testing.T) {
	var r ring
	r.Write([]byte(strings.Repeat("a", consoleLimit)))
	r.Write([]byte("\nlast line\n"))
	if len(r.Bytes()) != consoleLimit || r.dropped != 11 {
		t.Fatalf("kept %d bytes, dropped %d", len(r.Bytes()), r.dropped)
	}
	if got := r.tail(1); got != "last line" {
		t.Fatalf("tail = %q", got)
	}
}

func TestKeepConsolePrunes(t *testing.T) {
	dir := t.TempDir()
	var r ring
	r.Write([]byte("boot\n"))
	for i := 0; i < 5; i++ {
		if _, err := keepConsole(dir, "vm"+string(rune('a'+i)), &r, 3); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("kept %d logs, want 3", len(entries))
	}
}
