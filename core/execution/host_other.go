//go:build !linux

package execution

// kernelRelease is empty off Linux, where no backend runs workloads.
func kernelRelease() string { return "" }
