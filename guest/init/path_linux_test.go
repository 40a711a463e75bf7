//go:build linux

package main

import "testing"

func TestSandboxPath(t *testing.T) {
	for in, want := range map[string]string{
		"/rootfs/usr/bin/python3": "/usr/bin/python3",
		"/rootfs":                 "/",
		"/rootfsx/a":              "/rootfsx/a",
		"/proc/1/mem":             "/proc/1/mem",
		"":                        "",
		"relative":                "relative",
	} {
		if got := sandboxPath(in); got != want {
			t.Errorf("sandboxPath(%q) = %q, want %q", in, got, want)
		}
	}
}
