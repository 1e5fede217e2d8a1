#!/usr/bin/env bash
# OSCORE (RFC 8613) against plain CoAP, one `corium serve` in one run:
#
#   corium bench coap://127.0.0.1:PORT/test                          (plain GET)
#   corium bench coap://127.0.0.1:PORT/test --credentials client.toml (OSCORE GET)
#
# alternated BENCH_ROUNDS times against the same server (started with the server side
# of the same context), each run BENCH_DURATION seconds; the median of each kind and
# their ratio are reported. Every OSCORE request is protected anew and every response
# verified by the load generator; the server verifies and protects each one (AES-CCM-
# 16-64-128, the default algorithm). Server and load are pinned to their own CPU when
# possible. The issue's target: OSCORE ≥ 0.6× plain.
#
# Output: a markdown report on stdout, also written to bench/results/oscore.md.
# Environment: BENCH_SOCKETS [1] BENCH_WINDOW [16] (sockets × window stays within the
#   server's replay window of 32) BENCH_DURATION [5] BENCH_WARMUP [1] BENCH_ROUNDS [3]
#   BENCH_PORT [57090] BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1]
#   BENCH_NO_BUILD [0] BENCH_OUT
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SOCKETS="${BENCH_SOCKETS:-1}"
WINDOW="${BENCH_WINDOW:-16}"
DURATION="${BENCH_DURATION:-5}"
WARMUP="${BENCH_WARMUP:-1}"
ROUNDS="${BENCH_ROUNDS:-3}"
PORT="${BENCH_PORT:-57090}"
OUT="${BENCH_OUT:-$REPO/bench/results/oscore.md}"
die() {
    echo "oscore.sh: ERROR: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p corium-cli >&2 || die "build failed"
CORIUM="${CARGO_TARGET_DIR:-$REPO/target}/release/corium"
pin_cpus "${BENCH_PIN:-auto}" "${BENCH_SERVER_CPU:-0}" "${BENCH_CLIENT_CPU:-1}" "load generator"
stop_server_on_exit
WORK="$(mktemp -d /tmp/corium-oscore-bench.XXXXXX)"

# One context, seen from both sides (RFC 8613 §3.1: the client's Sender ID is the
# server's Recipient ID). The server requires OSCORE on /protected only, so /test
# answers plain and protected requests alike.
SECRET=0102030405060708090a0b0c0d0e0f10
SALT=9e7ca92223786340
cat >"$WORK/server.toml" <<TOML
[[oscore]]
uri = "/protected"
sender_id = "01"
recipient_id = ""
master_secret = "$SECRET"
master_salt = "$SALT"
TOML
cat >"$WORK/client.toml" <<TOML
[[oscore]]
uri = "coap://127.0.0.1:$PORT/*"
sender_id = ""
recipient_id = "01"
master_secret = "$SECRET"
master_salt = "$SALT"
TOML

"${SERVER_PIN[@]}" "$CORIUM" serve --bind "127.0.0.1:$PORT" --credentials "$WORK/server.toml" \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "corium serving coap on" "$WORK/server.log" && break
    sleep 0.05
done
grep -q "corium serving coap on" "$WORK/server.log" || die "corium serve did not start: $(cat "$WORK/server.log")"

run() { # extra args...
    "${CLIENT_PIN[@]}" "$CORIUM" bench "coap://127.0.0.1:$PORT/test" --sockets "$SOCKETS" \
        --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" "$@" | grep '^RESULT' ||
        die "no RESULT line from corium bench $*"
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
plain_rps=()
oscore_rps=()
plain_last=""
oscore_last=""
for _ in $(seq "$ROUNDS"); do
    plain_last=$(run)
    oscore_last=$(run --credentials "$WORK/client.toml")
    [ "$(field "$oscore_last" lost)" = 0 ] || echo "oscore.sh: warning: lost requests: $oscore_last" >&2
    plain_rps+=("$(field "$plain_last" rps)")
    oscore_rps+=("$(field "$oscore_last" rps)")
done
stop_server
plain=$(printf '%s\n' "${plain_rps[@]}" | median)
oscore=$(printf '%s\n' "${oscore_rps[@]}" | median)
ratio=$(awk -v a="$oscore" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')

mkdir -p "$(dirname "$OUT")"
{
    echo "## OSCORE vs plain GET (bench/oscore.sh)"
    echo
    echo "Machine: $(nproc) cores, Linux $(uname -r); $PIN_NOTE; load generator on the same machine."
    echo "\`corium bench coap://127.0.0.1:$PORT/test --sockets $SOCKETS --window $WINDOW --duration $DURATION\`"
    echo "with and without \`--credentials\` (AES-CCM-16-64-128), $ROUNDS rounds alternated, median."
    echo
    echo "| | requests/s (median) | runs | p50 / p99 µs (last run) |"
    echo "|---|---|---|---|"
    echo "| plain | $plain | ${plain_rps[*]} | $(field "$plain_last" p50_us) / $(field "$plain_last" p99_us) |"
    echo "| OSCORE | $oscore | ${oscore_rps[*]} | $(field "$oscore_last" p50_us) / $(field "$oscore_last" p99_us) |"
    echo
    echo "OSCORE / plain: **${ratio}×** (target ≥ 0.6×)"
} | tee "$OUT"
