#!/usr/bin/env bash
# Deterministic simulation of the ledger (sim/, docs/SIMULATION.md).
#
#   scripts/simulate.sh --seeds N [--seed S] [--jobs J] [other ledger-sim flags]
#
# Builds ledger-sim (release) and runs seeds S .. S+N-1 (S defaults to 1), split over J processes
# (default: the number of cores). Prints one line per failing seed, with the command that
# replays it, then `N seeds, F failures`; exits non-zero if a seed failed. A failing seed is read
# with `RUST_LOG=info scripts/simulate.sh --seeds 1 --seed S --report`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

seeds=1
first=1
jobs="$(nproc 2>/dev/null || echo 2)"
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --seed) first="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
for value in "$seeds" "$first" "$jobs"; do
  case "$value" in
    ''|*[!0-9]*) echo "simulate.sh: --seeds, --seed and --jobs take whole numbers" >&2; exit 2 ;;
  esac
done
[ "$jobs" -ge 1 ] || jobs=1
[ "$jobs" -le "$seeds" ] || jobs="$seeds"
[ "$seeds" -ge 1 ] || { echo "0 seeds, 0 failures"; exit 0; }

(cd "$root" && cargo build --release --locked --quiet -p ledger-sim --bin ledger-sim)
sim="${CARGO_TARGET_DIR:-$root/target}/release/ledger-sim"

out="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$out"
}
trap cleanup EXIT

# Contiguous slices: job j runs its share of the seeds in order.
start="$first"
for ((j = 0; j < jobs; j++)); do
  count=$(( seeds / jobs + (j < seeds % jobs ? 1 : 0) ))
  "$sim" --seeds "$count" --seed "$start" "${rest[@]}" > "$out/$j.out" 2> "$out/$j.err" &
  pids+=("$!")
  start=$(( start + count ))
done

status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
pids=()

ran=0
failures=0
for ((j = 0; j < jobs; j++)); do
  # Everything but the job's own summary line: failures (and reports, when asked).
  grep -v -E '^[0-9]+ seeds, [0-9]+ failures$' "$out/$j.out" || true
  sort -u "$out/$j.err" >&2
  summary="$(grep -E '^[0-9]+ seeds, [0-9]+ failures$' "$out/$j.out" | tail -1 || true)"
  if [ -z "$summary" ]; then
    echo "simulate.sh: job $j (seeds from its slice) ended without a summary" >&2
    status=1
    continue
  fi
  ran=$(( ran + ${summary%% seeds*} ))
  f="${summary#*, }"
  failures=$(( failures + ${f%% failures} ))
done
echo "$ran seeds, $failures failures"
[ "$failures" -eq 0 ] && [ "$status" -eq 0 ]
