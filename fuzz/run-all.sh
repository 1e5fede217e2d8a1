#!/usr/bin/env bash
# Runs every cargo-fuzz target for N seconds (default 20) and exits non-zero if any
# target crashes, leaks, times out or fails to build.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# Environment:
#   SANITIZER  address (default) | none | leak | memory | thread   (cargo fuzz -s)
#
# Works with a stable toolchain: RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz
# passes to rustc. New corpus entries go to fuzz/target/corpus/<target>/ (not checked
# in); the seeds in fuzz/corpus/<target>/ are only read. Crashes land in
# fuzz/artifacts/<target>/.
set -uo pipefail

cd "$(dirname "$0")"
SECS="${1:-20}"
shift || true
SANITIZER="${SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
mkdir -p target

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

echo "building ${TARGETS[*]} (sanitizer: $SANITIZER)"
if ! cargo fuzz build -s "$SANITIZER" >target/fuzz-build.log 2>&1; then
    tail -n 30 target/fuzz-build.log >&2
    echo "build failed" >&2
    exit 2
fi

failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "target/corpus/$t" "corpus/$t"
    log="target/fuzz-$t.log"
    echo "== $t: ${SECS}s"
    cargo fuzz run -s "$SANITIZER" "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    # A summary: the last status line and libFuzzer's final stats.
    grep -E '^#[0-9]+' "$log" | tail -n 1
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb):' "$log" | tr '\n' ' '
    echo
    if [ "$rc" -ne 0 ]; then
        echo "!! $t FAILED (exit $rc); log: fuzz/$log" >&2
        grep -E -m 5 'panicked at|ERROR: |SUMMARY: |Test unit written to' "$log" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "all targets ran ${SECS}s without crashes"
