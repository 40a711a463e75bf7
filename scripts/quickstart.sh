#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to Python running in a sandbox,
# with its receipt: installs what is needed, builds Glasshouse and the
# microVM guest, runs print(2+2) with kernel-level profiling, and shows the
# receipt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --guest

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo 'print(2+2)' > "$out/main.py"

echo "== backends on this machine" >&2
bin/glasshouse backends >&2

backend=auto
if ! bin/glasshouse run --backend auto --timeout 60s -- true 2>"$out/err"; then
	echo "WARNING: no isolating backend works here ($(tr -d '\n' <"$out/err"))." >&2
	echo "WARNING: falling back to --backend process: the code runs on this host without isolation." >&2
	backend=process
fi

echo "== glasshouse run --backend $backend --profile --python main.py" >&2
bin/glasshouse run --backend "$backend" --profile --receipt receipt.json --python "$out/main.py"

echo "== glasshouse receipt show receipt.json" >&2
bin/glasshouse receipt show receipt.json
bin/glasshouse receipt verify receipt.json
