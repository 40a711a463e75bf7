package main

import (
	"bytes"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

// TestShowEntries checks how show writes network and file entries: each
// family's address as it is written elsewhere, and the pid that tells
// apart entries that are otherwise the same.
func TestShowEntries(t *testing.T) {
	r := &receipt.Receipt{
		Network: []receipt.Net{
			{Op: "connect", Family: receipt.FamilyUnix, Address: "/run/nscd/socket", PID: 7, Count: 2, Errno: "ENOENT"},
			{Op: "bind", Family: receipt.FamilyUnix, PID: 8, Count: 1, OK: true},
			{Op: "connect", Family: receipt.FamilyInet, Protocol: receipt.ProtoTCP, Address: "127.0.0.1", Port: 8080, PID: 7, Count: 1, OK: true},
			{Op: "sendto", Family: receipt.FamilyInet6, Protocol: receipt.ProtoUDP, Address: "::1", Port: 53, PID: 9, Count: 3, Errno: "EPERM"},
		},
		Files: []receipt.File{
			{Path: "/w/a", Op: "rename", Target: "/w/b", PID: 7, Count: 1, OK: true},
		},
	}
	var out bytes.Buffer
	showReceipt(&out, r)
	for _, want := range []string{
		"  connect  unix /run/nscd/socket  x2 FAILED ENOENT  pid 7\n",
		"  bind     unix unnamed  x1 ok  pid 8\n",
		"  connect  inet/tcp 127.0.0.1:8080  x1 ok  pid 7\n",
		"  sendto   inet6/udp [::1]:53  x3 FAILED EPERM  pid 9\n",
		"  rename   /w/a -> /w/b  x1 ok  pid 7\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, out.String())
		}
	}
}
