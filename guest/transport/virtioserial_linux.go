//go:build linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VirtioPortsDir is where the guest kernel lists virtio-serial ports.
const VirtioPortsDir = "/sys/class/virtio-ports"

// FindVirtioPort returns the device path (/dev/vportNpM) of the
// virtio-serial port named name, looked up by name because the vportNpM
// index depends on device order.
func FindVirtioPort(sysDir, name string) (string, error) {
	entries, err := os.ReadDir(sysDir)
	if err != nil {
		return "", fmt.Errorf("find virtio port %q: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return "/dev/" + e.Name(), nil
		}
	}
	return "", fmt.Errorf("find virtio port %q: %w", name, os.ErrNotExist)
}

// OpenVirtioSerial opens the guest end of the virtio-serial port named
// name (QEMU: -device virtserialport,name=NAME), waiting until ctx is done
// for the port and its device node to appear.
func OpenVirtioSerial(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	for {
		dev, err := FindVirtioPort(VirtioPortsDir, name)
		if err == nil {
			var f *os.File
			if f, err = os.OpenFile(dev, os.O_RDWR, 0); err == nil {
				return f, nil
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open virtio port %q: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open virtio port %q: %w (%v)", name, ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
