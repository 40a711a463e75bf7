//go:build lean

package main

import "io"

// The lean build leaves out the commands that link cel-go and the signing
// libraries and hands them, and runs with --policy or --sign, to the full
// build installed beside it.
func init() {
	for name, summary := range fullOnly {
		register(command{name: name, summary: summary, run: func(args []string, _, stderr io.Writer) int {
			return delegate(append([]string{name}, args...), stderr)
		}})
	}
}
