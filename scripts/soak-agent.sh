#!/usr/bin/env bash
# Soak test of glasshouse-agent, in one invocation (run as root):
#
#   scripts/soak-agent.sh [SECONDS] [RATE]      # defaults: 60 s at 120000 calls/s
#
# A workload in a fresh cgroup makes RATE file-open syscalls per second, each
# on a distinct path (so millions of distinct file entries over the run),
# while the agent observes it with the no-network policy evaluated live and a
# rolling receipt every 10 s. It reports:
#   - events/s the collector read (from the agent's /metrics);
#   - the agent's RSS at 10 s and at the end, and the ratio (pass: within 20%);
#   - the agent's CPU use as a fraction of one core over the load;
#   - dropped events (goal 0; otherwise the figure);
#   - the workload's own throughput without and with the agent, measured in
#     this run, as a ratio (the observation overhead seen by the workload).
# Exit status is non-zero when the RSS bound fails or the rate target was
# not reached.
set -euo pipefail

SECS=${1:-60}
RATE=${2:-120000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
PARENT="gh-soak-$$"
CGDIR="$CG2/$PARENT/load"
PORT=$((20000 + $$ % 20000))
AGENT_PID=""

cleanup() {
	set +e
	[ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
	[ -d "$CGDIR" ] && { echo 1 > "$CGDIR/cgroup.kill" 2>/dev/null; sleep 0.2; rmdir "$CGDIR"; }
	rmdir "$CG2/$PARENT" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "soak-agent: run as root" >&2; exit 2; }
[ -n "$CG2" ] || { echo "soak-agent: no cgroup2 mount" >&2; exit 2; }

echo "== building"
(cd "$ROOT" && go build -o "$WORK/glasshouse-agent" ./cmd/glasshouse-agent && go build -o "$WORK/soakload" ./agent/internal/soakload)

# http_get URL: the body, or failure (python3 instead of curl, which a fresh
# machine may lack).
http_get() {
	python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1" 2> /dev/null
}
metric() { # metric NAME -> value (0 if absent)
	http_get "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2; found=1 } END { if (!found) print 0 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
run_load() { # run_load SECONDS RATE -> "calls N seconds S rate R"
	sh -c 'echo $$ > "$1/cgroup.procs" && exec "$2" -workers 2 -rate "$3" -duration "$4s"' _ "$CGDIR" "$WORK/soakload" "$2" "$1"
}

mkdir -p "$CG2/$PARENT"
mkdir "$CGDIR"
echo "== baseline: workload alone, as fast as it can, 5 s"
BASE=$(run_load 5 0 | awk '{ print $6 }')
rmdir "$CGDIR"

echo "== starting the agent (selector /$PARENT/*)"
"$WORK/glasshouse-agent" --select "/$PARENT/*" --policy no-network --roll-interval 10s \
	--output "file:$WORK/receipts.ndjson" --listen "127.0.0.1:$PORT" --log-level warn 2> "$WORK/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do http_get "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.1; done
http_get "http://127.0.0.1:$PORT/health" > /dev/null

mkdir "$CGDIR"
for _ in $(seq 100); do http_get "http://127.0.0.1:$PORT/workloads" | grep -q "/$PARENT/load" && break; sleep 0.05; done
echo "== observed: workload as fast as it can, 5 s"
OBSERVED=$(run_load 5 0 | awk '{ print $6 }')
rmdir "$CGDIR"
sleep 1

mkdir "$CGDIR"
for _ in $(seq 100); do http_get "http://127.0.0.1:$PORT/workloads" | grep -q "/$PARENT/load" && break; sleep 0.05; done
EV0=$(metric glasshouse_agent_events_total)
DR0=$(metric glasshouse_agent_dropped_events_total)
CPU0=$(cpu_ticks "$AGENT_PID")
RSS_START=$(rss_kib "$AGENT_PID")
T0=$(date +%s.%N)
echo "== soak: $RATE calls/s for $SECS s"
run_load "$SECS" "$RATE" > "$WORK/load.out" &
LOAD_PID=$!
sleep 10
RSS10=$(rss_kib "$AGENT_PID")
wait "$LOAD_PID"
T1=$(date +%s.%N)
CPU1=$(cpu_ticks "$AGENT_PID")
RSS_END=$(rss_kib "$AGENT_PID")
sleep 1
EV1=$(metric glasshouse_agent_events_total)
DR1=$(metric glasshouse_agent_dropped_events_total)
HZ=$(getconf CLK_TCK)

rmdir "$CGDIR" 2>/dev/null || true
for _ in $(seq 100); do grep -q '"final: ' "$WORK/receipts.ndjson" 2>/dev/null && [ "$(grep -c "cgroup /$PARENT/load" "$WORK/receipts.ndjson")" -ge 3 ] && break; sleep 0.1; done
sleep 1

python3 - "$WORK/receipts.ndjson" "$PARENT" <<'EOF' > "$WORK/receipts.summary"
import json, sys
path, parent = sys.argv[1], sys.argv[2]
rs = [json.loads(l) for l in open(path)]
rs = [r for r in rs if "cgroup /%s/load" % parent in r["backend"]["notes"]]
last = rs[-1]
files = sum(len(r["files"]) for r in rs)
omitted = sum(r["profiling"]["omitted"]["files"] for r in rs)
print("receipts %d (last: %s), file entries listed %d, file entries omitted %d, largest receipt %d bytes" % (
    len(rs), last["backend"]["notes"][1], files, omitted, max(len(json.dumps(r)) for r in rs)))
EOF

read -r _ CALLS _ _ _ LOADRATE < "$WORK/load.out"
STATUS=0
awk -v secs="$(awk -v a="$T0" -v b="$T1" 'BEGIN { print b - a }')" -v ev0="$EV0" -v ev1="$EV1" -v dr0="$DR0" -v dr1="$DR1" -v cpu="$((CPU1 - CPU0))" -v hz="$HZ" \
	-v rss0="$RSS_START" -v rss10="$RSS10" -v rss1="$RSS_END" -v calls="$CALLS" -v lrate="$LOADRATE" -v rate="$RATE" \
	-v base="$BASE" -v obs="$OBSERVED" '
BEGIN {
	ev = ev1 - ev0; dr = dr1 - dr0
	printf "workload calls        %d in %.1f s (%.0f/s, target %d/s)\n", calls, secs, lrate, rate
	printf "collector events      %d (%.0f events/s)\n", ev, ev / secs
	printf "dropped events        %d\n", dr
	printf "agent CPU             %.3f of one core\n", cpu / hz / secs
	printf "agent RSS             start %d KiB, at 10 s %d KiB, end %d KiB, end/10s %.3f\n", rss0, rss10, rss1, rss1 / rss10
	printf "workload max rate     alone %.0f/s, observed %.0f/s, ratio %.3f (baseline measured in this run)\n", base, obs, obs / base
	ok = 1
	if (rss1 > rss10 * 1.2 || rss1 < rss10 * 0.8) { print "FAIL: agent RSS at the end is not within 20% of its RSS at 10 s"; ok = 0 }
	if (ev / secs < 100000) { print "FAIL: fewer than 100k events/s"; ok = 0 }
	if (ok) print "PASS"
	exit !ok
}' || STATUS=$?
cat "$WORK/receipts.summary"
if grep -q '"level":"ERROR"' "$WORK/agent.log"; then echo "agent errors:"; grep '"level":"ERROR"' "$WORK/agent.log" | head -5; fi
exit $STATUS
