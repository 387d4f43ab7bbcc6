#!/usr/bin/env bash
# Throughput and latency of admission decisions on fresh local 3-node clusters (fsync on every
# node, mutual TLS), measured by `ledgerctl bench` on the same machine.
#
#   scripts/bench.sh [--quick] [--peers] [--out DIR]   the standard matrix (docs/performance.md)
#   scripts/bench.sh CLIENTS COUNT DEALS               one run, shape spread, as before the matrix
#
# The matrix: shapes hot, spread and reject × Submit and SubmitBatch of 100 × flat out and
# 500 requests/s, 64 clients, each run on a cluster of its own (started, measured, wiped), with
# the saga executors off (decisions only, as the peers in docs/performance.md were measured).
# Every run is bounded by a count and a duration. It writes DIR/results.md (one Markdown table,
# the rows docs/performance.md shows), one JSON report per run, and the machine it ran on;
# DIR defaults to target/bench/DATE. --quick runs each cell for a fifth of the requests.
#
# --peers: every cell also runs against what a team would build instead, with the same shapes,
# clients and bounds (`ledgerctl bench --peer`, ledgerctl/src/peers.rs): Redis, one node,
# `appendfsync always`, a Lua script per request; PostgreSQL, fsync and synchronous commit on, a
# function per request locking the deal's row (SELECT ... FOR UPDATE). Installs redis-server and
# postgresql with apt-get when missing (as root), starts them on loopback (ports 7985 and 7986)
# in a folder of their own while no ledger node runs, and ends with DIR/ratios.md: the ledger's
# decisions/s and p99 over each peer's, cell by cell.
#
# Ports 7901-7903 (partners 7990, metrics 9901-9903). Stops everything it started, even on
# failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export LEDGER_CLUSTER_DIR=${LEDGER_CLUSTER_DIR:-$(mktemp -d /tmp/ledger-bench.XXXXXX)}
export LEDGER_BASE_PORT=${LEDGER_BASE_PORT:-7901}
export LEDGER_PARTNERS_PORT=${LEDGER_PARTNERS_PORT:-7990}
export LEDGER_METRICS_BASE_PORT=${LEDGER_METRICS_BASE_PORT:-9901}
peers_dir=""
redis_pid=""
stop_all() {
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ -n "$peers_dir" ] && [ -f "$peers_dir/pg/data/postmaster.pid" ]; then
    as_postgres "$pg_bin/pg_ctl" -D "$peers_dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  [ -n "$peers_dir" ] && rm -rf "$peers_dir"
  return 0
}
trap stop_all EXIT

ledgerctl="${CARGO_TARGET_DIR:-$root/target}/release/ledgerctl"
all="127.0.0.1:$LEDGER_BASE_PORT,127.0.0.1:$((LEDGER_BASE_PORT + 1)),127.0.0.1:$((LEDGER_BASE_PORT + 2))"

fresh_cluster() {
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
  "$root/scripts/cluster.sh" up >/dev/null
  # The operator credentials `cluster.sh up` made.
  # shellcheck source=/dev/null
  . "$LEDGER_CLUSTER_DIR/ledgerctl.env"
}

# The single run of earlier versions: scripts/bench.sh CLIENTS COUNT DEALS.
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  clients=${1:-64}
  count=${2:-20000}
  deals=${3:-10}
  fresh_cluster
  echo "== $clients clients, $count submits over $deals deals (the client library sends them to the leader)"
  "$ledgerctl" --endpoints "$all" bench --clients "$clients" --count "$count" --deals "$deals"
  echo
  "$ledgerctl" --endpoints "$all" cluster status
  exit 0
fi

quick=false
peers=false
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=true; shift ;;
    --peers) peers=true; shift ;;
    --out) out=${2:?--out needs a folder}; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${out:-$root/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
table="$out/results.md"
rm -f "$table"

# Decisions only: no executors, so no saga steps or heartbeats in the log.
export LEDGER_EXECUTOR=false
scale=1
$quick && scale=5

{
  echo "# scripts/bench.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(grep MemTotal /proc/meminfo | awk '{print $2/1024/1024 " GiB"}'), kernel $(uname -r)"
} > "$out/machine.txt"

redis_port=7985
pg_port=7986
# PostgreSQL refuses to run as root: as root, its tools run as the `postgres` user.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_peers() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "bench.sh --peers: install ${missing[*]} first" >&2; exit 1; }
    echo "== installing ${missing[*]}"
    apt-get update -qq
    # Debian's packages would start their own services; nothing here wants them.
    RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  peers_dir=$(mktemp -d /tmp/ledger-bench-peers.XXXXXX)
  chmod 755 "$peers_dir"
  mkdir -p "$peers_dir/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$peers_dir/redis" --save "" \
    --appendonly yes --appendfsync always --daemonize no --logfile "$peers_dir/redis/log" &
  redis_pid=$!
  install -d -o "$(id -un postgres 2>/dev/null || id -un)" "$peers_dir/pg"
  as_postgres "$pg_bin/initdb" -D "$peers_dir/pg/data" -A trust -U postgres >/dev/null
  as_postgres "$pg_bin/pg_ctl" -D "$peers_dir/pg/data" -l "$peers_dir/pg/log" -w -o \
    "-p $pg_port -k $peers_dir/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
    start >/dev/null
  local deadline=$((SECONDS + 30))
  until redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG; do
    [ $SECONDS -lt $deadline ] || { echo "bench.sh: Redis did not start" >&2; exit 1; }
    sleep 0.2
  done
  {
    echo "redis: $(redis-server --version | cut -d' ' -f3), appendfsync always"
    echo "postgresql: $("$pg_bin/postgres" --version | awk '{print $3}'), fsync on, synchronous_commit on"
  } >> "$out/machine.txt"
}

run() { # NAME, then ledgerctl bench flags
  local name=$1
  shift
  fresh_cluster
  echo "== $name: $*"
  "$ledgerctl" --endpoints "$all" bench --quiet --clients 64 --out "$out/$name.json" --table "$table" "$@" \
    | sed -n '1,2p'
  "$root/scripts/cluster.sh" down --wipe >/dev/null 2>&1 || true
  if $peers; then
    redis-cli -p "$redis_port" flushall >/dev/null
    echo "== $name, redis"
    "$ledgerctl" bench --quiet --clients 64 --peer redis --peer-addr "127.0.0.1:$redis_port" \
      --out "$out/$name.redis.json" --table "$peer_table" "$@" | sed -n '1,2p'
    echo "== $name, postgres"
    "$ledgerctl" bench --quiet --clients 64 --peer postgres --peer-addr "127.0.0.1:$pg_port" \
      --out "$out/$name.postgres.json" --table "$peer_table" "$@" | sed -n '1,2p'
  fi
}

peer_table="$out/peers.md"
rm -f "$peer_table" "$out/ratios.md"
if $peers; then
  (cd "$root" && cargo build --quiet --release -p ledgerctl)
  start_peers
fi

for shape in hot spread reject; do
  run "$shape-unary-flat" --shape "$shape" --count $((40000 / scale)) --duration-s 30
  # A hot deal of 200 seats is full before one round of 64 batches of 100 is decided: batches
  # get deals of 20,000 seats, so that most of their requests are admitted too.
  seats=()
  [ "$shape" = hot ] && seats=(--max-investors 20000)
  run "$shape-batch100-flat" --shape "$shape" --batch 100 "${seats[@]}" --count $((400000 / scale)) --duration-s 30
  run "$shape-unary-500" --shape "$shape" --rate 500 --count $((10000 / scale)) --duration-s 30
  run "$shape-batch100-500" --shape "$shape" --batch 100 "${seats[@]}" --rate 500 --count $((10000 / scale)) --duration-s 30
done

echo
cat "$out/machine.txt"
echo
cat "$table"
if $peers; then
  # One row per cell: the ledger's figures over each peer's, from the three tables' rows
  # (columns: 2 shape, 3 calls, 4 target rate, 7 decisions/s, 10 p99 ms).
  awk -F'|' '
    function trim(s) { gsub(/^ +| +$/, "", s); return s }
    FNR <= 2 { next }
    {
      shape = trim($2); system_ = "ledger"
      if (match(shape, / \((redis|postgres)\)$/)) {
        system_ = substr(shape, RSTART + 2, RLENGTH - 3); shape = substr(shape, 1, RSTART - 1)
      }
      key = shape "|" trim($3) "|" trim($4)
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      rate[key, system_] = trim($7); p99[key, system_] = trim($10)
    }
    END {
      print "| shape | calls | target rate | ledger /s | redis /s | postgres /s | ledger ÷ redis | ledger ÷ postgres | p99 ms ledger / redis / postgres |"
      print "|---|---|---|---|---|---|---|---|---|"
      for (i = 1; i <= n; i++) {
        k = order[i]; split(k, part, "|")
        r = rate[k, "redis"] + 0; p = rate[k, "postgres"] + 0; l = rate[k, "ledger"] + 0
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s |\n", part[1], part[2], part[3],
          rate[k, "ledger"], rate[k, "redis"], rate[k, "postgres"],
          (r > 0 ? sprintf("%.2f", l / r) : "-"), (p > 0 ? sprintf("%.2f", l / p) : "-"),
          p99[k, "ledger"], p99[k, "redis"], p99[k, "postgres"]
      }
    }' "$table" "$peer_table" > "$out/ratios.md"
  echo
  cat "$peer_table"
  echo
  echo "side by side (one run, same machine, same clients):"
  cat "$out/ratios.md"
fi
echo
echo "reports in $out"
