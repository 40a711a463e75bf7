#!/usr/bin/env bash
# Measures what the process backend costs a run, in one invocation:
#   - wall time of `glasshouse run --backend process -- python3 -c pass`
#     against bare `python3 -c pass`, interleaved, as medians and a ratio,
#     and the ratio of a Go program that does nothing but run the same
#     command and wait (go-wrapper-ratio: the least any Go CLI costs),
#     and of the same program in C (c-wrapper-ratio: the least any parent
#     process costs);
#   - what any CLI invocation pays before it does anything: /bin/true, a
#     hello-world Go binary and `glasshouse version`, interleaved;
#   - the engine alone (in-process, as the server runs it) against bare;
#   - the CPU time the engine's own process spends per run (everything but
#     the workload), profiling off and on: less sensitive to other load
#     on the machine than wall time;
#   - creating a run's cgroup with limits (the "cgroup setup" figure).
# Needs root (cgroups; BPF for the profiled line). N=200 by default.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
N="${N:-200}"

echo "== host: load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times)"
echo "== CLI: glasshouse run --backend process -- python3 -c pass vs python3 -c pass (N=$N)"
go test -run '^$' -bench 'BenchmarkRunOverhead$' -benchtime "${N}x" ./cmd/glasshouse/ | grep -E '^Benchmark'
echo "== CLI start: /bin/true vs hello-world Go vs glasshouse version (N=$N)"
go test -run '^$' -bench 'BenchmarkStartup$' -benchtime "${N}x" ./cmd/glasshouse/ | grep -E '^Benchmark'
echo "== engine in-process: Engine.Run(python3 -c pass) vs exec python3 -c pass (N=$N)"
go test -run '^$' -bench 'BenchmarkEngineOverhead$' -benchtime "${N}x" ./backend/process/ | grep -E '^Benchmark'
echo "== engine CPU per run (this process, not the workload), profiling off and on (N=$N)"
go test -run '^$' -bench 'BenchmarkEngineCPU' -benchtime "${N}x" ./backend/process/ | grep -E '^Benchmark'
echo "== cgroup setup: create a run cgroup with memory, pids and CPU limits (N=$N)"
go test -run '^$' -bench 'BenchmarkSetup$' -benchtime "${N}x" ./internal/cgroup/ | grep -E '^Benchmark'
echo "== host: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
