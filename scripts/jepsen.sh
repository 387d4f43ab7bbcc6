#!/usr/bin/env bash
# The Jepsen-style suite on real processes (issue #10): builds the release binaries, then runs
# `ledger-jepsen run` with the given flags. Each run writes a report folder (seed, schedule,
# counts, latencies, verdicts, plot) under jepsen-runs/ unless --out says otherwise.
#
#   scripts/jepsen.sh --nemesis mixed --time 600            # ten minutes, every nemesis
#   scripts/jepsen.sh --nemesis partition --time 120 --seed 42   # replay a schedule
#   scripts/jepsen.sh --nemesis crash --time 60 --no-executors   # no sagas, no money check
#
# Nemeses: none, partition, crash, pause, cpu, clock, membership, snapshot, disk, partners, mixed.
# Exit code: 0 valid, 1 invalid, 2 unknown, 3 the harness failed; 0 with a "skipped" message when
# this machine cannot run it (not root, a tool missing) unless CI=true, where that is a failure.
#
# Needs root (network namespaces, nftables, cgroups), iproute2, nftables, util-linux, faketime
# and a C compiler (the slow-fsync shim is built at run time). Everything a run creates is named
# with the prefix "ljp" and removed at the end, also on failure or Ctrl-C (the harness's guards,
# and the trap below for a harness that died hard); a new run first removes leftovers of earlier
# ones.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target="${CARGO_TARGET_DIR:-$root/target}/release"

skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "jepsen: $1 (CI=true: this is a failure)" >&2
    exit 1
  fi
  echo "jepsen: skipped: $1" >&2
  exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, nftables, cgroups)"
missing=()
for tool in ip nft nsenter cc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || missing+=("faketime")
[ "${#missing[@]}" -eq 0 ] || skip "missing tools: ${missing[*]} (apt-get install iproute2 nftables util-linux faketime gcc)"

echo "== building ledger-node, ledger-partners and ledger-jepsen (release)"
(cd "$root" && cargo build --release --locked -p ledger-node -p ledger-partners -p ledger-jepsen)

# The harness removes what it made; this catches a harness killed before it could.
trap '"$target/ledger-jepsen" cleanup >/dev/null 2>&1 || true' EXIT INT TERM
cd "$root"
status=0
"$target/ledger-jepsen" run --node-bin "$target/ledger-node" --partners-bin "$target/ledger-partners" "$@" || status=$?
exit "$status"
