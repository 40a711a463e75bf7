//go:build !linux

// Command init is the PID 1 of Glasshouse microVM guests; it only runs on
// linux.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "glasshouse init: only supported on linux")
	os.Exit(2)
}
