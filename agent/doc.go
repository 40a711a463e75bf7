// Package agent is the logic of glasshouse-agent, the per-node daemon that
// observes workloads Glasshouse did not launch (other sandboxes, CI jobs,
// Kubernetes pods) with one loaded host eBPF collector, and writes a
// receipt for each of them.
//
// The agent selects cgroups by path glob, by Kubernetes pod UID or
// container id (parsed from the kubelet's cgroup naming, see ParseKube), or
// everything; it follows cgroups that appear and disappear (inotify on the
// cgroup2 tree, with periodic rescans as a safety net); for each selected
// cgroup it writes a receipt when the workload exits and a rolling receipt
// every configured interval while it runs; it evaluates policies as events
// arrive and reports each violation once, at once (log line, metric, and
// the receipt's policy section); and it serves /health and /metrics.
//
// Each receipt covers one window of a workload's life: from when the agent
// found it (or from the previous receipt) to the next rolling receipt or
// its end. Receipts of one workload share a workload id in backend.notes.
// Memory is bounded whatever the event volume: each window aggregates into
// a capped receipt.Aggregator whose cuts are counted in profiling.omitted.
//
// New returns an *Agent; Run observes until its context ends, then writes
// final receipts for every workload still tracked. Reload swaps the
// selection and the policy (the daemon calls it on SIGHUP). An Agent is
// safe for concurrent use; the caller owns (and closes) the controller and
// the sinks it passes in Config.
package agent
