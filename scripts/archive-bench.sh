#!/usr/bin/env bash
# What archiving gives back (issue #12 §3): every node's RSS and the leader's snapshot size on
# an empty ledger, after DEALS deals of PER_DEAL requests each (200 admitted per deal, sagas run
# against the simulated partners, the rest rejected), after exporting and archiving every deal,
# and after restarting the cluster on that state.
#
#   scripts/archive-bench.sh [DEALS] [PER_DEAL]      defaults: 100 5000
#
# Starts its own release cluster (ports 7921-7923, partners 7992) in a temporary folder, and
# stops everything it started, even on failure. Prints one line per stage and a summary.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deals=${1:-100}
per_deal=${2:-5000}
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-archive.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7921}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7992}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9921}
exports=$(mktemp -d /tmp/ledger-archive-exports.XXXXXX)
trap '"$root/scripts/cluster.sh" down --wipe >/dev/null; rm -rf "$exports"' EXIT

"$root/scripts/cluster.sh" up >/dev/null
ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
# shellcheck source=/dev/null
. "$LEDGER_CLUSTER_DIR/ledgerctl.env"
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"
ctl() { "$ledgerctl" --endpoints "$all" "$@"; }

leader() { ctl --json cluster status | python3 -c '
import json, sys
for node in json.load(sys.stdin):
    if node.get("role") == "leader":
        print(node["node_id"]); break'; }
pid_of() { awk -v n="node$1" '$2 == n { print $1 }' "$LEDGER_CLUSTER_DIR/pids"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$(pid_of "$1")/status"; }
anon_kib() { awk '/^Anonymous:/ { print $2 }' "/proc/$(pid_of "$1")/smaps_rollup"; }
snapshot_bytes() {
  ctl snapshot "$1" >/dev/null
  stat -c %s "$LEDGER_CLUSTER_DIR/node$1/snapshot.bin"
}
# Every node takes a snapshot first (which purges its log), then RSS is read: the leader's
# line, then each node's RSS and its anonymous part (heap, stacks; the rest is the mapped
# binary).
measure() { # stage
  local id bytes
  id=$(leader)
  for n in 1 2 3; do bytes[n]=$(snapshot_bytes "$n"); done
  printf '%-34s leader %s  RSS %8s KiB  snapshot %10s bytes\n' "$1" "$id" "$(rss_kib "$id")" "${bytes[id]}"
  for n in 1 2 3; do
    printf '    node%s RSS %8s KiB (anonymous %8s KiB)\n' "$n" "$(rss_kib "$n")" "$(anon_kib "$n")"
  done
}
wait_sagas() {
  for _ in $(seq 1 600); do
    open=$(ctl --json saga list --limit 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["open_total"])')
    [ "$open" = 0 ] && return 0
    sleep 1
  done
  echo "sagas still open after 600 s: $open" >&2
  return 1
}

measure "empty" | tee "$exports/summary"
ctl bench --quiet --clients 64 --count $((deals * per_deal)) --duration-s 900 --deals "$deals" \
  --max-investors 200 --deal-prefix arch >/dev/null
for d in $(seq 0 $((deals - 1))); do ctl deal close "arch-$d" >/dev/null; done
wait_sagas
measure "$deals deals x $per_deal, closed" | tee -a "$exports/summary"
for d in $(seq 0 $((deals - 1))); do
  ctl deal export "arch-$d" --out "$exports/arch-$d.jsonl" >/dev/null
  ctl deal archive "arch-$d" --export "$exports/arch-$d.jsonl" >/dev/null
  rm -f "$exports/arch-$d.jsonl" "$exports/arch-$d.jsonl.manifest.json"
done
measure "all $deals archived" | tee -a "$exports/summary"
# The same data after a restart: what a process that never held the archived deals uses.
"$root/scripts/cluster.sh" down >/dev/null
"$root/scripts/cluster.sh" up >/dev/null
measure "restarted on the archived state" | tee -a "$exports/summary"
