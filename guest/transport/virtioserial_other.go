//go:build !linux

package transport

import (
	"context"
	"errors"
	"io"
)

// VirtioPortsDir is where the guest kernel lists virtio-serial ports.
const VirtioPortsDir = "/sys/class/virtio-ports"

var errNotLinux = errors.New("transport: virtio-serial and vsock guests need linux")

// FindVirtioPort is only supported on linux.
func FindVirtioPort(string, string) (string, error) { return "", errNotLinux }

// OpenVirtioSerial is only supported on linux.
func OpenVirtioSerial(context.Context, string) (io.ReadWriteCloser, error) { return nil, errNotLinux }
