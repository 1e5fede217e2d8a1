#!/usr/bin/env bash
# Throughput vs. concurrency: each server is driven by `corium bench` with window sizes
# 1, 2, 4, ... 64 (requests in flight per socket) in one run, and a CSV line per point
# is written; then bench/plot (a separate crate, not in the main workspace) draws
# the PNG. Servers as in bench/peers.sh:
#
#   corium   `corium serve --bind 127.0.0.1:PORT`        path /test
#   libcoap  `coap-server-notls -A 127.0.0.1 -p PORT`   path /time
#   ceiling  `udp-ceiling --bind 127.0.0.1:PORT`        the machine's ceiling
#
# Each server is started once and every window size measured against it in turn
# (BENCH_REPEAT rounds over the sizes; the plot takes the median per point). Server on
# CPU BENCH_SERVER_CPU (0), load generator on BENCH_CLIENT_CPU (1), as peers.sh.
#
# Output: bench/results/window-sweep.csv (server,mode,sockets,window,rps,p50_us,p99_us,lost)
# and bench/results/window-sweep.png, plus a header with the machine and load average in
# bench/results/window-sweep.txt.
#
# Environment (defaults in brackets):
#   BENCH_WINDOWS ["1 2 4 8 16 32 64"] BENCH_SOCKETS [2] BENCH_DURATION [3]
#   BENCH_WARMUP [0.5] BENCH_REPEAT [1] BENCH_MODES ["CON"] (CON and/or NON)
#   BENCH_SERVERS ["corium libcoap ceiling"] BENCH_PORT_BASE [56860]
#   BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1]
#   BENCH_NO_BUILD [0] BENCH_NO_PLOT [0]
#   BENCH_CSV [bench/results/window-sweep.csv] BENCH_PNG [bench/results/window-sweep.png]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

WINDOWS="${BENCH_WINDOWS:-1 2 4 8 16 32 64}"
SOCKETS="${BENCH_SOCKETS:-2}"
DURATION="${BENCH_DURATION:-3}"
WARMUP="${BENCH_WARMUP:-0.5}"
REPEAT="${BENCH_REPEAT:-1}"
MODES="${BENCH_MODES:-CON}"
SERVERS="${BENCH_SERVERS:-corium libcoap ceiling}"
PORT_BASE="${BENCH_PORT_BASE:-56860}"
CSV="${BENCH_CSV:-$REPO/bench/results/window-sweep.csv}"
PNG="${BENCH_PNG:-$REPO/bench/results/window-sweep.png}"
HOST=127.0.0.1

die() {
    echo "window-sweep.sh: ERROR: $*" >&2
    exit 1
}

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p corium-cli -p udp-ceiling >&2 || die "release build failed"
fi
CORIUM="$TARGET_DIR/release/corium"
CEILING="$TARGET_DIR/release/udp-ceiling"
[ -x "$CORIUM" ] || die "$CORIUM not found"

# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
pin_cpus "${BENCH_PIN:-auto}" "${BENCH_SERVER_CPU:-0}" "${BENCH_CLIENT_CPU:-1}" "load generator"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/corium-sweep.XXXXXX")"
stop_server_on_exit

udp_bound() {
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$(dirname "$CSV")"
echo "server,mode,sockets,window,rps,p50_us,p99_us,lost" >"$CSV"

port=$PORT_BASE
for s in $SERVERS; do
    port=$((port + 1))
    case "$s" in
        corium) path=/test cmd=(env RUST_LOG=warn "$CORIUM" serve --bind "$HOST:$port") ;;
        libcoap) path=/time cmd=(coap-server-notls -A "$HOST" -p "$port") ;;
        ceiling) path=/ceiling cmd=("$CEILING" --bind "$HOST:$port") ;;
        *) die "unknown server '$s' (corium, libcoap, ceiling)" ;;
    esac
    echo "window-sweep.sh: [$s] ${cmd[*]}" >&2
    "${SERVER_PIN[@]}" "${cmd[@]}" >"$LOGDIR/$s-server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        udp_bound "$port" && break
        sleep 0.1
    done
    udp_bound "$port" || die "[$s] did not bind UDP $port"
    sleep 1
    for round in $(seq "$REPEAT"); do
        for mode in $MODES; do
            nonarg=()
            [ "$mode" = NON ] && nonarg=(--non)
            for w in $WINDOWS; do
                out="$LOGDIR/$s-$mode-w$w-r$round.log"
                timeout 60 "${CLIENT_PIN[@]}" "$CORIUM" bench "coap://$HOST:$port$path" \
                    --sockets "$SOCKETS" --window "$w" --duration "$DURATION" --warmup "$WARMUP" \
                    "${nonarg[@]}" >"$out" 2>&1 || true
                line="$(grep '^RESULT ' "$out" | tail -1 || true)"
                if [ -z "$line" ]; then
                    echo "window-sweep.sh: [$s] $mode window $w: no RESULT (see $out)" >&2
                    continue
                fi
                echo "$s,$mode,$SOCKETS,$w,$(kv rps "$line"),$(kv p50_us "$line"),$(kv p99_us "$line"),$(kv lost "$line")" >>"$CSV"
                echo "window-sweep.sh: [$s] $mode window $w: $(kv rps "$line") rps" >&2
            done
        done
    done
    stop_server
    SERVER_PID=""
done

{
    echo "window sweep, $(date -u +%FT%TZ)"
    echo "machine: $(nproc) CPUs, $(uname -sr); load average (1/5/15) before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "load: corium bench URI --sockets $SOCKETS --window W --duration $DURATION --warmup $WARMUP, W in $WINDOWS, modes $MODES, $REPEAT round(s); the load generator shares the machine"
    echo "pinning: $PIN_NOTE"
    echo "logs: $LOGDIR"
} >"${CSV%.csv}.txt"
cat "${CSV%.csv}.txt" >&2

if [ "${BENCH_NO_PLOT:-0}" != 1 ]; then
    # Its own workspace and target directory: plotters stays out of the main build.
    cargo run --release -q --manifest-path "$REPO/bench/plot/Cargo.toml" \
        --target-dir "$TARGET_DIR/bench-plot" -- "$CSV" "$PNG" ||
        die "bench/plot failed (CSV kept in $CSV)"
fi
