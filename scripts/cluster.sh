#!/usr/bin/env bash
# A local admission-ledger cluster on 127.0.0.1, with the simulated partners.
#
#   scripts/cluster.sh up [-n N] [--insecure]
#                                  build, start N nodes (default 3) and the partners, initialize,
#                                  wait for a leader, print the endpoints. Mutual TLS by default,
#                                  with throwaway certificates and tokens made in $dir/certs
#                                  (`ledgerctl certs`); --insecure: plaintext, no identity checks
#                                  (development only). `source $dir/ledgerctl.env` sets up
#                                  ledgerctl as the operator `local`.
#   scripts/cluster.sh status      role, term, applied index and digest of every node
#   scripts/cluster.sh down [--wipe]  stop exactly the processes `up` started (recorded pids);
#                                  --wipe also deletes the data folder
#
# Environment: LEDGER_CLUSTER_DIR (default .cluster in the repo), LEDGER_BASE_PORT (7801),
# LEDGER_METRICS_BASE_PORT (9801), LEDGER_PARTNERS_PORT (7700), LEDGER_PROFILE (release | debug),
# LEDGER_PARTNERS_ARGS (extra flags for ledger-partners, e.g. "--decline-rate 0.2"),
# LEDGER_WORKER_THREADS (async worker threads per node; 1 by default here, because all nodes
# share this machine's cores: measured, it cut saga overhead p99 from ~140 ms to ~50 ms).
# LEDGER_PARTNERS_HTTP2 (true by default here: the nodes call the simulated partners over
# cleartext HTTP/2; false for HTTP/1.1, the node's own default).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${LEDGER_CLUSTER_DIR:-$root/.cluster}
base_port=${LEDGER_BASE_PORT:-7801}
partners_port=${LEDGER_PARTNERS_PORT:-7700}
metrics_port=${LEDGER_METRICS_BASE_PORT:-9801}
export LEDGER_WORKER_THREADS=${LEDGER_WORKER_THREADS:-1}
profile=${LEDGER_PROFILE:-release}
bin=${CARGO_TARGET_DIR:-$root/target}/$profile

die() { echo "cluster.sh: $*" >&2; exit 1; }

# A recorded pid is ours only if it still runs one of our binaries (pids get reused).
ours() {
  local pid=$1
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'ledger-\(node\|partners\)'
}

endpoints() { cat "$dir/endpoints"; }

wait_for_line() { # file pattern seconds
  local file=$1 pattern=$2 deadline=$((SECONDS + $3))
  until grep -q "$pattern" "$file" 2>/dev/null; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

up() {
  local n=3 insecure=false
  while [ $# -gt 0 ]; do
    case $1 in
      -n) n=${2:?-n needs a number}; shift 2 ;;
      --insecure) insecure=true; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [[ $n =~ ^[1-9][0-9]?$ ]] || die "-n must be between 1 and 99"
  if [ -f "$dir/pids" ]; then
    while read -r pid _; do
      ours "$pid" && die "a cluster is already running from $dir (pid $pid); run 'scripts/cluster.sh down' first"
    done < "$dir/pids"
    rm -f "$dir/pids"
  fi
  local cargo_profile=()
  [ "$profile" = release ] && cargo_profile=(--release)
  echo "building ($profile)..."
  (cd "$root" && cargo build --quiet "${cargo_profile[@]}" -p ledger-node -p ledger-partners -p ledgerctl)
  mkdir -p "$dir"
  local certs="$dir/certs" security=()
  if $insecure; then
    echo "cluster.sh: --insecure: PLAINTEXT, NO IDENTITY CHECKS; anyone reaching these ports can take the cluster over" >&2
    printf 'export LEDGER_INSECURE=true\nunset LEDGER_CA LEDGER_CERT LEDGER_KEY\n' > "$dir/ledgerctl.env"
  else
    # Throwaway certificates for this machine: a CA, one certificate per node, an operator and a
    # client, and one token per role. Kept across restarts of the same data folder.
    if [ ! -f "$certs/ca.pem" ]; then
      "$bin/ledgerctl" certs init --dir "$certs" --cluster-id admission-ledger >/dev/null
      "$bin/ledgerctl" certs issue --dir "$certs" operator local >/dev/null
      "$bin/ledgerctl" certs issue --dir "$certs" client local >/dev/null
      "$bin/ledgerctl" certs token "$certs/admin.token" >/dev/null
      "$bin/ledgerctl" certs token "$certs/client.token" >/dev/null
    fi
    for i in $(seq 1 "$n"); do
      [ -f "$certs/node-$i.pem" ] || "$bin/ledgerctl" certs issue --dir "$certs" node "$i" >/dev/null
    done
    security=(--admin-token-file "$certs/admin.token" --client-token-file "$certs/client.token")
    {
      echo "export LEDGER_CA='$certs/ca.pem'"
      echo "export LEDGER_CERT='$certs/operator-local.pem'"
      echo "export LEDGER_KEY='$certs/operator-local-key.pem'"
      echo "unset LEDGER_INSECURE"
    } > "$dir/ledgerctl.env"
  fi
  # shellcheck source=/dev/null
  . "$dir/ledgerctl.env"
  : > "$dir/pids"
  local started_ms
  started_ms=$(date +%s%3N)

  # shellcheck disable=SC2086 # LEDGER_PARTNERS_ARGS is a list of flags
  "$bin/ledger-partners" --listen "127.0.0.1:$partners_port" ${LEDGER_PARTNERS_ARGS:-} > "$dir/partners.log" 2>&1 &
  echo "$! partners" >> "$dir/pids"
  wait_for_line "$dir/partners.log" "listening on" 20 || die "partners did not start; see $dir/partners.log"

  local members=() list=()
  for i in $(seq 1 "$n"); do
    local addr="127.0.0.1:$((base_port + i - 1))"
    local tls=(--insecure)
    $insecure || tls=(--tls-cert "$certs/node-$i.pem" --tls-key "$certs/node-$i-key.pem" --tls-ca "$certs/ca.pem" "${security[@]}")
    "$bin/ledger-node" --id "$i" --listen "$addr" --data-dir "$dir/node$i" \
      --metrics-listen "127.0.0.1:$((metrics_port + i - 1))" "${tls[@]}" \
      --partners-url "http://127.0.0.1:$partners_port" --partners-http2 "${LEDGER_PARTNERS_HTTP2:-true}" \
      > "$dir/node$i.log" 2>&1 &
    echo "$! node$i" >> "$dir/pids"
    members+=("$i=$addr")
    list+=("$addr")
  done
  (IFS=,; echo "${list[*]}") > "$dir/endpoints"
  for i in $(seq 1 "$n"); do
    wait_for_line "$dir/node$i.log" "listening on" 20 || die "node $i did not start; see $dir/node$i.log"
  done

  local init_out
  if ! init_out=$("$bin/ledgerctl" --endpoints "${list[0]}" cluster init --members "$(IFS=,; echo "${members[*]}")" 2>&1); then
    # A restart on existing data is already initialized; anything else is an error.
    echo "$init_out" | grep -q "already initialized" || die "init failed: $init_out"
    echo "cluster already initialized (existing data in $dir)"
  fi

  local deadline=$((SECONDS + 10))
  until "$bin/ledgerctl" --endpoints "$(endpoints)" --json cluster status 2>/dev/null | grep -q '"role": "leader"'; do
    [ $SECONDS -lt "$deadline" ] || die "no leader within 10 s; see $dir/node*.log"
    sleep 0.1
  done
  local elapsed_ms=$(( $(date +%s%3N) - started_ms ))
  echo "cluster up: $n nodes with a leader $((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000))) s after start; data and logs in $dir"
  echo "  endpoints: $(endpoints)"
  echo "  partners:  http://127.0.0.1:$partners_port"
  echo "  metrics:   http://127.0.0.1:$metrics_port/metrics (node 1; one port per node)"
  if $insecure; then
    echo "  security:  NONE (--insecure)"
  else
    echo "  security:  mutual TLS; CA, certificates and tokens in $certs"
  fi
  echo "  try:       source $dir/ledgerctl.env; $bin/ledgerctl --endpoints $(endpoints) cluster status"
}

down() {
  local wipe=0
  [ "${1:-}" = "--wipe" ] && wipe=1
  [ -f "$dir/pids" ] || { echo "no cluster recorded in $dir"; [ $wipe = 1 ] && rm -rf "$dir"; return 0; }
  local pids=()
  while read -r pid name; do
    if ours "$pid"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid") && echo "stopping $name (pid $pid)"
    fi
  done < "$dir/pids"
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while ours "$pid"; do
      if [ $SECONDS -ge "$deadline" ]; then
        echo "pid $pid did not stop in 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
  rm -f "$dir/pids"
  if [ $wipe = 1 ]; then rm -rf "$dir"; echo "removed $dir"; fi
}

status() {
  [ -f "$dir/endpoints" ] || die "no cluster recorded in $dir"
  # shellcheck source=/dev/null
  . "$dir/ledgerctl.env"
  "$bin/ledgerctl" --endpoints "$(endpoints)" cluster status
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  status) status ;;
  *) sed -n '2,19p' "$0"; exit 2 ;;
esac
