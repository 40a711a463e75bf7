package execution

import "context"

// Reaper is implemented by backends that can tear down what runs of a
// previous, dead process left behind: processes, cgroups, workspaces, VMs.
// A server calls Reap once at start, before it accepts runs, so a crash
// (kill -9) of the server does not leak sandboxes. Reap returns how many
// leftover runs it removed.
type Reaper interface {
	Reap(ctx context.Context) (int, error)
}
