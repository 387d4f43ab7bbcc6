#!/usr/bin/env bash
# What a short disk stall costs a client: one sequential client of `ledgerctl bench` against a
# fresh local cluster whose nodes all have the slow-fsync shim preloaded (`ledger-jepsen shim`),
# with BLIPS stalls of MS milliseconds on every fsync of every node (as when the VM's shared disk
# hiccups), each lasting 150 ms, one every 6 s. Prints the run's latencies, every call slower
# than 40 ms (when it was sent, its latency), and how often openraft backed off from a peer.
# Issue #15, docs/performance.md "The tail".
#
#   scripts/fsync-blips.sh [BLIPS] [MS]     defaults: 3 blips of 250 ms; about 30 s
#
# Environment: as scripts/cluster.sh; the cluster lives in a fresh temporary folder (or
# LEDGER_CLUSTER_DIR) and is torn down at the end, also on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
blips=${1:-3}
ms=${2:-250}
[[ $blips =~ ^[1-9]$ ]] || { echo "fsync-blips.sh: BLIPS must be 1-9" >&2; exit 2; }
[[ $ms =~ ^[1-9][0-9]{0,3}$ ]] || { echo "fsync-blips.sh: MS must be 1-9999" >&2; exit 2; }
work=$(mktemp -d)
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$work/cluster}
bin=${CARGO_TARGET_DIR:-$root/target}/release
blipper=
cleanup() {
  [ -n "$blipper" ] && kill "$blipper" 2>/dev/null || true
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && cargo build --quiet --release -p ledger-jepsen -p ledger-node -p ledger-partners -p ledgerctl)
shim=$("$bin/ledger-jepsen" shim "$work/shim")
delay=$work/fsync-delay-ms
echo 0 > "$delay"
LD_PRELOAD=$shim LJP_SLOW_FSYNC_FILE=$delay "$root/scripts/cluster.sh" up >/dev/null
# shellcheck disable=SC1091
. "$LEDGER_CLUSTER_DIR/ledgerctl.env"

( for _ in $(seq "$blips"); do
    sleep 6
    echo "$ms" > "$delay"
    sleep 0.15
    echo 0 > "$delay"
  done ) &
blipper=$!
"$bin/ledgerctl" --endpoints "$(cat "$LEDGER_CLUSTER_DIR/endpoints")" bench --clients 1 \
  --count 1000000 --duration-s $((6 * blips + 6)) --shape reject --quiet \
  --slow-log "$work/slow.txt" --slow-ms 40 | sed -n 1,2p
wait "$blipper"
blipper=
echo "calls slower than 40 ms (sent at s, latency ms):"
sed 's/ [0-9]*$//; s/^/  /' "$work/slow.txt"
logs=("$LEDGER_CLUSTER_DIR"/node*.log)
echo "openraft backoffs from a peer: $(cat "${logs[@]}" | grep -c backoff_drain || true)"
echo "slow fsyncs logged: $(cat "${logs[@]}" | grep -c 'slow log fsync' || true)"
