# Shared helpers for the guest image build scripts (sourced, not run).
#
# Artifacts go to $GLASSHOUSE_ARTIFACTS (default: ./artifacts at the repo
# root). Each artifact has a stamp file "<artifact>.inputs" holding the
# sha256 of everything it was built from; a build is skipped when the stamp
# matches, so artifacts are rebuilt only when their inputs change.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARTIFACTS="${GLASSHOUSE_ARTIFACTS:-$REPO_ROOT/artifacts}"
mkdir -p "$ARTIFACTS"
ARTIFACTS="$(cd "$ARTIFACTS" && pwd)"

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# need CMD... fails with the apt package to install when a command is missing.
need() {
	local cmd pkg
	for cmd in "$@"; do
		pkg="${cmd#*:}"
		cmd="${cmd%%:*}"
		command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found (apt-get install -y $pkg)"
	done
}

# inputs_hash reads input descriptions on stdin and prints their sha256.
inputs_hash() { sha256sum | cut -d' ' -f1; }

# up_to_date ARTIFACT HASH succeeds when ARTIFACT exists and was built from HASH.
up_to_date() {
	[[ -e "$1" && -f "$1.inputs" && "$(cat "$1.inputs")" == "$2" ]]
}

# stamp ARTIFACT HASH records that ARTIFACT was built from HASH.
stamp() { printf '%s\n' "$2" >"$1.inputs"; }

# debian_mirror prints the Debian mirror apt uses here, or the default one.
debian_mirror() {
	if [[ -n "${GLASSHOUSE_DEBIAN_MIRROR:-}" ]]; then
		echo "$GLASSHOUSE_DEBIAN_MIRROR"
		return
	fi
	local m
	m="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
		grep -v security | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//' | awk '{print $1}' | head -n1 || true)"
	echo "${m:-http://deb.debian.org/debian}"
}
