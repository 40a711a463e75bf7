#!/usr/bin/env bash
# Measures what the process backend costs a run, in one invocation:
#   - wall time of `glasshouse run --backend process -- python3 -c pass`
#     against bare `python3 -c pass`, interleaved, as medians and a ratio;
#   - the engine alone (in-process, as the server runs it) against bare;
#   - creating a run's cgroup with limits (the "cgroup setup" figure).
# Needs root (cgroups). N=200 by default.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="/usr/local/go/bin:$PATH"
N="${N:-200}"

echo "== CLI: glasshouse run --backend process -- python3 -c pass vs python3 -c pass (N=$N)"
go test -run '^$' -bench 'BenchmarkRunOverhead$' -benchtime "${N}x" ./cmd/glasshouse/ | grep -E '^Benchmark'
echo "== engine in-process: Engine.Run(python3 -c pass) vs exec python3 -c pass (N=$N)"
go test -run '^$' -bench 'BenchmarkEngineOverhead$' -benchtime "${N}x" ./backend/process/ | grep -E '^Benchmark'
echo "== cgroup setup: create a run cgroup with memory, pids and CPU limits (N=$N)"
go test -run '^$' -bench 'BenchmarkSetup$' -benchtime "${N}x" ./internal/cgroup/ | grep -E '^Benchmark'
