//go:build linux

package execution

import "golang.org/x/sys/unix"

// kernelRelease returns the running kernel's release ("6.1.0-18-amd64").
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
