#!/usr/bin/env bash
# Load test of glasshouse-server, in one invocation (issue 5):
#   16 concurrent clients POST {"code": "print(2+2)"} with profiling on for
#   60 s; throughput, p50/p95/p99 and errors by status; then every receipt
#   is fetched and its digest verified; the server's VmRSS, with its Python
#   fork server's, is sampled every second; and the same code is run as bare `python3 -c` with the same
#   parallelism in the same script (half the duration before the server
#   phase, half after, to cancel drift), giving the ratio
#   server throughput / bare throughput (goal >= 0.8).
#
# Environment: CLIENTS (16), DURATION (60, seconds), BACKEND (process: the
# figure compares against bare python3 on this host; auto or qemu also work),
# PROFILE (best-effort), MAX_CONCURRENCY (server default: 2 x CPUs),
# EXTRA_SERVER_FLAGS, OUT (directory for the raw results; a temp dir).
# Until an isolating backend is usable here the server runs with
# --allow-unisolated (the process backend). Run as root so runs get cgroups.
#
# Exit status: 0 when there were zero errors, every receipt verified and
# memory stayed flat; 1 otherwise. The throughput ratio is reported against
# its goal but does not fail the script.
set -euo pipefail

CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-60}
BACKEND=${BACKEND:-process}
PROFILE=${PROFILE:-best-effort}
MAX_CONCURRENCY=${MAX_CONCURRENCY:-}
EXTRA_SERVER_FLAGS=${EXTRA_SERVER_FLAGS:-}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/glasshouse-loadtest.XXXXXX)
OUT=${OUT:-$work/out}
mkdir -p "$OUT"
server_pid=""
sampler_pid=""
cleanup() {
	[ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work/data" "$work/bin"
	if [ -n "${bare_cg:-}" ]; then
		for _ in 1 2 3 4 5; do rmdir "$bare_cg" 2>/dev/null && break; sleep 0.2; done
	fi
}
trap cleanup EXIT

command -v python3 >/dev/null || { echo "loadtest: python3 is required" >&2; exit 2; }
[ "$(id -u)" = 0 ] || echo "loadtest: not root: runs fall back to rlimits instead of cgroups" >&2

fetch() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }

echo "== building"
mkdir -p "$work/bin"
(cd "$root" && go build -o "$work/bin/glasshouse-server" ./cmd/glasshouse-server && go build -o "$work/bin/glasshouse-bench" ./cmd/glasshouse-bench)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
url="http://127.0.0.1:$port"
flags=(--listen "127.0.0.1:$port" --data-dir "$work/data" --backend "$BACKEND" --allow-unisolated --log-level warn --profile "$PROFILE")
[ -n "$MAX_CONCURRENCY" ] && flags+=(--max-concurrency "$MAX_CONCURRENCY")
# shellcheck disable=SC2206
flags+=($EXTRA_SERVER_FLAGS)

echo "== starting glasshouse-server ${flags[*]}"
"$work/bin/glasshouse-server" "${flags[@]}" 2>"$OUT/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
	fetch "$url/health" >"$OUT/health.json" 2>/dev/null && break
	kill -0 "$server_pid" 2>/dev/null || { echo "loadtest: server exited:" >&2; cat "$OUT/server.log" >&2; exit 1; }
	sleep 0.1
done
python3 - "$OUT/health.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
print(f"   status {h['status']}; backend {h['default_backend']['name']} ({h['default_backend']['isolation']}); "
      f"profiler {h['profiler']['status']} {h['profiler'].get('reason','')}; slots {h['queue']['slots']}")
PY

half=$(( (DURATION + 1) / 2 ))
bench=("$work/bin/glasshouse-bench" --clients "$CLIENTS" --code 'print(2+2)' --json)

# The server's runs share one CPU weight: the process backend puts every
# run's cgroup under one parent ("glasshouse"), which the scheduler weighs
# like a single task against everything else on the host. Bare python3
# processes would each weigh as much, so on a busy host the comparison
# would measure the host's other load, not the sandbox. The baseline's
# processes therefore share one cgroup too (BARE_CGROUP=0 turns this off);
# on an idle host it changes nothing.
BARE_CGROUP=${BARE_CGROUP:-1}
bare_cg=""
if [ "$BARE_CGROUP" = 1 ] && [ "$(id -u)" = 0 ]; then
	for base in /sys/fs/cgroup/cpu /sys/fs/cgroup; do
		if [ -f "$base/cgroup.procs" ] && { [ -f "$base/cpu.shares" ] || [ -f "$base/cgroup.subtree_control" ]; }; then
			bare_cg="$base/glasshouse-loadtest-$$"
			mkdir -p "$bare_cg"
			break
		fi
	done
fi
bare() {
	if [ -n "$bare_cg" ]; then
		sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$bare_cg" "${bench[@]}" --mode bare "$@"
	else
		"${bench[@]}" --mode bare "$@"
	fi
}

echo "== baseline: bare python3 -c, $CLIENTS parallel, ${half}s${bare_cg:+, in one cgroup ($bare_cg)}"
bare --duration "${half}s" >"$OUT/bare1.json" || true

echo "== server: $CLIENTS clients, ${DURATION}s, profile $PROFILE (sampling VmRSS every second)"
(
	start=$(date +%s%N)
	while kill -0 "$server_pid" 2>/dev/null; do
		rss=$(awk '/^VmRSS/{print $2}' "/proc/$server_pid/status" 2>/dev/null || true)
		# The fork server is the server's child that runs no workload.
		for kid in $(cat /proc/"$server_pid"/task/*/children 2>/dev/null); do
			if grep -q _glasshouse_forkserver "/proc/$kid/cmdline" 2>/dev/null; then
				k=$(awk '/^VmRSS/{print $2}' "/proc/$kid/status" 2>/dev/null || true)
				[ -n "$rss" ] && [ -n "$k" ] && rss=$((rss + k))
			fi
		done
		now=$(date +%s%N)
		[ -n "$rss" ] && echo "$(( (now - start) / 1000000 )) $rss"
		sleep 1
	done
) >"$OUT/rss.txt" &
sampler_pid=$!
"${bench[@]}" --mode server --url "$url" --profile "$PROFILE" --duration "${DURATION}s" --server-pid "$server_pid" >"$OUT/server.json" || true
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""

echo "== baseline again: bare python3 -c, ${half}s"
bare --duration "${half}s" >"$OUT/bare2.json" || true

fetch "$url/metrics" >"$OUT/metrics.txt" || true
kill -TERM "$server_pid"
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=""

python3 - "$OUT" "$DURATION" "$server_rc" <<'PY'
import json, sys
out, duration, server_rc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b1, b2 = (json.load(open(f"{out}/bare{i}.json")) for i in (1, 2))
s = json.load(open(f"{out}/server.json"))
bare_tp = (b1["ok"] + b2["ok"]) / (b1["seconds"] + b2["seconds"])
ratio = s["throughput"] / bare_tp if bare_tp else 0
rss = [(float(a) / 1000, float(b)) for a, b in (l.split() for l in open(f"{out}/rss.txt") if len(l.split()) == 2)]
# Memory must be flat from minute 1 to the end; for runs shorter than two
# minutes the reference is taken after a quarter of the run (warm-up).
ref_t = 60 if duration >= 120 else duration / 4
ref = next((kb for t, kb in rss if t >= ref_t), rss[0][1] if rss else 0)
# The end of the load; the samples after it cover fetching the receipts.
load = [(t, kb) for t, kb in rss if t <= s["seconds"]] or rss
end = load[-1][1] if load else 0
peak = max((kb for _, kb in load), default=0)
after = rss[-1][1] if rss else 0
growth = (end - ref) / ref if ref else 0
errors = sum(s["errors"].values()) + sum(b["errors"].get(k, 0) for b in (b1, b2) for k in b["errors"])
verified_all = s["verified"] == s["requests"] and not s.get("verify_errors")
flat = (end - ref) <= max(0.10 * ref, 8 * 1024)
print()
print(f"server  : {s['throughput']:.1f} runs/s  p50 {s['p50_ms']:.0f} ms  p95 {s['p95_ms']:.0f} ms  p99 {s['p99_ms']:.0f} ms  "
      f"({s['requests']} requests, {s['clients']} clients, {s['seconds']:.0f} s)")
print(f"          errors {s['errors'] or 'none'}; outcomes {s['failures']}; profiling {s.get('profiling')}")
print(f"          receipts verified {s['verified']} of {sum(s['failures'].values())}; verify errors {s.get('verify_errors') or 'none'}")
print(f"bare    : {b1['throughput']:.1f} and {b2['throughput']:.1f} runs/s before/after (p50 {b1['p50_ms']:.0f}/{b2['p50_ms']:.0f} ms); "
      f"mean {bare_tp:.1f} runs/s; errors {b1['errors'] or 'none'} / {b2['errors'] or 'none'}")
print(f"ratio   : server/bare throughput = {ratio:.2f} (goal >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
# CPU per run is less sensitive than throughput to other load on the
# machine: on an otherwise idle, CPU-bound host their ratio predicts the
# throughput ratio.
bare_cpu = sum(b["cpu_seconds"] + b["children_cpu_seconds"] for b in (b1, b2)) / max(1, b1["ok"] + b2["ok"])
srv_cpu = s.get("server_cpu_seconds", 0) / max(1, s["ok"])
cli_cpu = s["cpu_seconds"] / max(1, s["ok"])
if srv_cpu:
    work_cpu = s.get("workload_cpu_seconds", 0) / max(1, s["ok"])
    print(f"cpu/run : bare {bare_cpu*1000:.1f} ms; server {srv_cpu*1000:.1f} ms = workload {work_cpu*1000:.1f} + server process "
          f"{(srv_cpu-work_cpu)*1000:.1f} (load client {cli_cpu*1000:.1f} ms more); bare/server = {bare_cpu/srv_cpu:.2f}")
with open("/proc/loadavg") as f:
    print(f"host    : load average {' '.join(f.read().split()[:3])} at the end (other work on the machine skews throughput)")
print(f"memory  : VmRSS (server and fork server) {ref/1024:.1f} MiB at {ref_t:.0f} s, {end/1024:.1f} MiB at the end of the load, peak {peak/1024:.1f} MiB; "
      f"growth {growth*100:+.1f}% ({'flat' if flat else 'GROWING'}); {after/1024:.1f} MiB after fetching every receipt")
print(f"shutdown: SIGTERM exit code {server_rc}")
ok = errors == 0 and verified_all and flat and server_rc == 0
print("result  :", "PASS" if ok else "FAIL", f"(raw results in {out})")
sys.exit(0 if ok else 1)
PY
