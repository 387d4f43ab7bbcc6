#!/usr/bin/env bash
# Admissions with their sagas running (issue #15's target: >= 10,000 admissions/s for 60 s, every
# saga ending): a fresh local 3-node cluster with the executors on and the simulated partners at
# zero latency, a hot load of RATE requests/s for SECONDS seconds (`ledgerctl bench --shape hot`,
# 64 clients; BATCH > 1 sends SubmitBatch of BATCH, over deals of 20,000 seats), then every
# node's `ledger_sagas_open` polled until all its series are 0 (at most 10 minutes). Prints the
# load's report, the open sagas every 5 s, how long the sagas took to end after the load, and
# each node's admissions, runtime stalls and RSS. Past `--open-sagas-max` (100,000) open sagas the
# leader refuses submissions (RESOURCE_EXHAUSTED, nothing written): the bench's errors count them.
#
#   scripts/saga-throughput.sh [RATE] [SECONDS] [BATCH]     defaults: 10000 60 100
#
# Ports 7941-7943 (partners 7993, metrics 9941-9943), a temporary folder; stops everything it
# started, even on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rate=${1:-10000}
seconds=${2:-60}
batch=${3:-100}
for n in "$rate" "$seconds" "$batch"; do
  [[ $n =~ ^[1-9][0-9]{0,5}$ ]] || { echo "saga-throughput.sh: RATE, SECONDS and BATCH are whole numbers" >&2; exit 2; }
done
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-saga-throughput.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7941}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7993}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9941}
export LEDGER_EXECUTOR=true
for knob in PAYMENT DOCUMENTS EMAIL; do
  export "LEDGER_PARTNERS_${knob}_LATENCY_MS=0" "LEDGER_PARTNERS_${knob}_JITTER_MS=0"
done
bench=
cleanup() {
  [ -n "$bench" ] && kill "$bench" 2>/dev/null || true
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$root/scripts/cluster.sh" up >/dev/null
# shellcheck source=/dev/null
. "$LEDGER_CLUSTER_DIR/ledgerctl.env"
ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
metrics_ports=("$LEDGER_METRICS_BASE_PORT" $((LEDGER_METRICS_BASE_PORT + 1)) $((LEDGER_METRICS_BASE_PORT + 2)))
# The most open sagas any node reports (the sum of its series: by step and executor).
open_sagas() {
  for port in "${metrics_ports[@]}"; do
    curl -s "127.0.0.1:$port/metrics" | awk '/^ledger_sagas_open/ {sum += $2} END {print sum + 0}'
  done | sort -n | tail -1
}
seats=200
[ "$batch" -gt 1 ] && seats=20000
report=$LEDGER_CLUSTER_DIR/bench.json
echo "== $rate requests/s for $seconds s, hot, batch $batch, executors on, partners at 0 ms"
"$ledgerctl" --endpoints "$(cat "$LEDGER_CLUSTER_DIR/endpoints")" bench --clients 64 \
  --count $((rate * seconds)) --duration-s "$seconds" --rate "$rate" --batch "$batch" \
  --max-investors "$seats" --shape hot --quiet --out "$report" > "$LEDGER_CLUSTER_DIR/bench.txt" &
bench=$!
started=$SECONDS
while kill -0 "$bench" 2>/dev/null; do
  sleep 5
  echo "  t=$((SECONDS - started)) s: sagas open $(open_sagas)"
done
wait "$bench"
bench=
sed -n '1,3p' "$LEDGER_CLUSTER_DIR/bench.txt"
load_ended=$SECONDS
until [ "$(open_sagas)" = 0 ]; do
  [ $((SECONDS - load_ended)) -lt 600 ] || { echo "sagas still open 600 s after the load: $(open_sagas)"; break; }
  sleep 1
done
echo "every saga ended $((SECONDS - load_ended)) s after the load ($((SECONDS - started)) s from its start)"
for port in "${metrics_ports[@]}"; do
  curl -s "127.0.0.1:$port/metrics" | awk '
    /^ledger_admissions_total/ {adm += $2}
    /^ledger_runtime_stalls_total/ {stalls = $2}
    /^process_resident_memory_bytes/ {rss = $2}
    /^ledger_saga_compensations_total/ {comp += $2}
    END {printf "  node at metrics :%s: admissions %d, compensations %d, runtime stalls %d, RSS %.0f MB\n", "'"$port"'", adm, comp, stalls, rss / 1e6}'
done
