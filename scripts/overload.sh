#!/usr/bin/env bash
# Back-pressure at twice saturation (issue #15 §3, docs/performance.md "Back-pressure"): what
# the cluster does with twice the load it can decide.
#
#   scripts/overload.sh [--seconds S] [--out DIR]      about 4 minutes with the default 20 s
#
# On fresh local 3-node clusters (scripts/cluster.sh: mutual TLS, fsync, executors off), hot
# shape, 64 clients:
#   1. capacity: `Submit` and `SubmitBatch` × 100, flat out, closed loop (each client sends its
#      next call when the last is answered);
#   2. twice that capacity, open loop (`ledgerctl bench --open-loop --rate 2C`: each call sent
#      when due whatever the answers, latency counted from when it was due), one attempt per
#      call (`--attempts 1`: a refusal is reported, not retried), with the leader's bound by
#      time off (`--proposal-delay-max-ms 0`: only the count bound, `--proposal-queue-max`) and
#      at its default (200 ms);
#   3. the same at the default bound with the client library's own retries (`--attempts 0`).
# Writes DIR/overload.md (decided/s, latency of decided requests, refusals and their latency)
# and one JSON report per run; DIR defaults to target/bench/overload-DATE. Ports 7901-7903
# (partners 7990, metrics 9901-9903). Stops everything it started, even on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=20
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    *) echo "usage: scripts/overload.sh [--seconds S] [--out DIR]" >&2; exit 2 ;;
  esac
done
out=${out:-$root/target/bench/overload-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-overload.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7901}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7990}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9901}
# Decisions only, as in the matrix (scripts/bench.sh).
export LEDGER_EXECUTOR=false
trap '"$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true' EXIT

ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"

run() { # NAME DELAY_MS, then ledgerctl bench flags
  local name=$1 delay=$2
  shift 2
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
  LEDGER_PROPOSAL_DELAY_MAX_MS=$delay "$root/scripts/cluster.sh" up >/dev/null
  # shellcheck source=/dev/null
  . "$LEDGER_CLUSTER_DIR/ledgerctl.env"
  echo "== $name (--proposal-delay-max-ms $delay): $*"
  "$ledgerctl" --endpoints "$all" bench --quiet --shape hot --clients 64 \
    --duration-s "$seconds" --out "$out/$name.json" "$@" | sed -n '1,2p'
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
}

decided_rate() { # JSON report: decisions/s, rounded
  python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["decisions_per_second"]))' "$1"
}

# Deals of 20,000 seats for batches, as in the matrix: 64 batches of 100 in flight would fill
# a 200-seat deal many times over.
run unary-capacity 200 --count 400000
unary=$(decided_rate "$out/unary-capacity.json")
run batch-capacity 200 --batch 100 --max-investors 20000 --count 6000000
batch=$(decided_rate "$out/batch-capacity.json")

for delay in 0 200; do
  run "unary-2x-delay$delay" "$delay" --open-loop --attempts 1 --rate $((2 * unary)) \
    --count $((2 * unary * seconds))
  run "batch-2x-delay$delay" "$delay" --open-loop --attempts 1 --rate $((2 * batch)) \
    --batch 100 --max-investors 20000 --count $((2 * batch * seconds))
done
run unary-2x-retrying 200 --open-loop --rate $((2 * unary)) --count $((2 * unary * seconds))
run batch-2x-retrying 200 --open-loop --rate $((2 * batch)) --batch 100 --max-investors 20000 \
  --count $((2 * batch * seconds))

python3 - "$out" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'EOF' > "$out/overload.md"
import json, os, sys
out, commit = sys.argv[1], sys.argv[2]
names = ["unary-capacity", "unary-2x-delay0", "unary-2x-delay200", "unary-2x-retrying",
         "batch-capacity", "batch-2x-delay0", "batch-2x-delay200", "batch-2x-retrying"]
print(f"scripts/overload.sh at {commit}; hot shape, 64 clients, executors off\n")
print("| run | calls | offered/s | loop | attempts | decided/s | p50 ms | p99 ms | max ms "
      "| refused | refused p99 ms | other errors | sent late p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in names:
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    lat, err = r["latency_ms"], r.get("error_latency_ms", {})
    errors = dict(r["errors"])
    refused = errors.pop("RESOURCE_EXHAUSTED", 0)
    other = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"
    calls = "Submit" if r["batch"] == 1 else f"SubmitBatch × {r['batch']}"
    offered = r["target_rate"] or "flat out"
    loop = "open" if r.get("open_loop") else "closed"
    attempts = r.get("attempts", 0) or "until deadline"
    print(f"| {name} | {calls} | {offered} | {loop} | {attempts} | "
          f"{r['decisions_per_second']:.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | "
          f"{lat['max']:.2f} | {refused} | {err.get('p99', 0):.2f} | {other} | "
          f"{r.get('send_lag_ms', {}).get('p99', 0):.2f} |")
EOF
cat "$out/overload.md"
