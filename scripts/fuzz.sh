#!/usr/bin/env bash
# Builds and runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer), one at a time, each for a
# given time. See docs/SECURITY.md, "Fuzzing".
#
#   scripts/fuzz.sh [--time SECONDS] [--sanitizer address|none] [--keep-going] [--build-only]
#                   [TARGET...]
#
# --keep-going fuzzes on after a crash (libFuzzer's -fork=1 -ignore_crashes=1: one child process
# fuzzes at a time and is restarted after each crash), for targets with a known open crash.
# Without TARGET, every target of fuzz/Cargo.toml runs, one after the other. The corpus of each
# target grows in fuzz/corpus/TARGET (kept between runs), crashes land in fuzz/artifacts/TARGET,
# and the libFuzzer log of each run in fuzz/artifacts/TARGET/run-DATE.log. The exit status is
# non-zero if any target crashed or failed to run.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module); this project
# builds on the stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
# cargo-fuzz is installed with `cargo install` if missing. Builds and runs are niced: a fuzzer
# uses a whole core.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
time_s=600
sanitizer=address
build_only=false
keep_going=()
targets=()

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --time)
            time_s="${2:?--time needs a number of seconds}"
            shift 2
            ;;
        --time=*)
            time_s="${1#--time=}"
            shift
            ;;
        --sanitizer | -s)
            sanitizer="${2:?--sanitizer needs address or none}"
            shift 2
            ;;
        --sanitizer=*)
            sanitizer="${1#--sanitizer=}"
            shift
            ;;
        --build-only)
            build_only=true
            shift
            ;;
        --keep-going)
            keep_going=(-fork=1 -ignore_crashes=1)
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown option $1" >&2
            usage >&2
            exit 2
            ;;
        *)
            targets+=("$1")
            shift
            ;;
    esac
done

if ! [[ "$time_s" =~ ^[0-9]+$ ]] || [[ "$time_s" -lt 1 ]]; then
    echo "fuzz.sh: --time must be a positive number of seconds, not '$time_s'" >&2
    exit 2
fi
case "$sanitizer" in
    address | none) ;;
    *)
        echo "fuzz.sh: --sanitizer must be address or none, not '$sanitizer'" >&2
        exit 2
        ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install)" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"

if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz.sh: building ${targets[*]} (sanitizer: $sanitizer)" >&2
for target in "${targets[@]}"; do
    nice -n 10 cargo fuzz build --debug-assertions --sanitizer "$sanitizer" "$target"
done
if $build_only; then
    exit 0
fi

# The fuzzers run as built, not through `cargo fuzz run`: after a run with crashes, cargo-fuzz
# re-runs every crash input through `cargo run` to print it, which can take longer than the run.
host="$(rustc -vV | sed -n 's/^host: //p')"
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target/run-$(date -u +%Y%m%dT%H%M%SZ).log"
    echo "fuzz.sh: running $target for ${time_s}s (log: fuzz/$log)" >&2
    # One fuzzing process at a time (no -jobs/-workers: libFuzzer fuzzes in this process, or in
    # one child at a time with --keep-going).
    if ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}" nice -n 10 \
        "target/$host/release/$target" -artifact_prefix="$root/fuzz/artifacts/$target/" \
        -max_total_time="$time_s" -print_final_stats=1 -rss_limit_mb=4096 -timeout=20 \
        "${keep_going[@]}" "$root/fuzz/corpus/$target" 2>&1 | tee "$log"; then
        :
    else
        failed+=("$target")
    fi
    # The last status line: executions, coverage, features, corpus.
    grep -E '^#[0-9]+' "$log" | tail -n 1 >&2 || true
    grep -cE 'ERROR: (libFuzzer|AddressSanitizer)' "$log" | sed 's/^/crashes: /' >&2 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" >&2 || true
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: FAILED (crash or error): ${failed[*]}; inputs in fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}" >&2
