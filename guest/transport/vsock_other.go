//go:build !linux

package transport

import (
	"context"
	"net"
)

// HostCID is the vsock context id of the host.
const HostCID = 2

// ListenVsock is only supported on linux.
func ListenVsock(uint32) (net.Listener, error) { return nil, errNotLinux }

// AcceptOne is only supported on linux.
func AcceptOne(context.Context, net.Listener) (net.Conn, error) { return nil, errNotLinux }

// DialVsock is only supported on linux.
func DialVsock(context.Context, uint32, uint32) (net.Conn, error) { return nil, errNotLinux }
