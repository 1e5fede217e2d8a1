#!/usr/bin/env bash
# Resource Directory (RFC 9176) at scale: BENCH_ENDPOINTS endpoints with BENCH_LINKS links
# each registered over CoAP/UDP loopback, then filtered lookups; see BENCHMARKS.md "RD".
#
#   server     the RD with its redb store in a fresh temp dir, pinned to BENCH_SERVER_CPU:
#              `corium rd --bind 127.0.0.1:PORT --data DIR` when that binary has a
#              `--max-registrations` option, else `rd_load serve` (the example in
#              crates/corium-rd/examples/rd_load.rs: the same ResourceDirectory + RedbStore +
#              corium Server as `corium rd`, with RdConfig::max_registrations and
#              ::max_total_payload set from BENCH_MAX_REGISTRATIONS / BENCH_MAX_TOTAL_PAYLOAD,
#              which `corium rd` does not expose). BENCH_SERVER=corium|example forces one.
#   generator  `rd_load run` pinned to BENCH_CLIENT_CPU: registrations (POST /rd?ep=…&d=bench
#              &lt=86400, link-format payload) with BENCH_CONCURRENCY in flight over
#              BENCH_SOCKETS sockets, then BENCH_LOOKUPS resource lookups
#              (/rd-lookup/res?rt=tJ-gG, 10 matching links) and as many endpoint lookups
#              (/rd-lookup/ep?ep=NAME), one at a time.
#   memory     VmRSS of the server idle before registering, after registering, after the
#              lookups; VmHWM at the end.
#   disk       du of the data directory (and the database file's apparent size).
#   restart    the RD started again on the same data: time until it serves, and its RSS.
#
# Environment (defaults in brackets):
#   BENCH_ENDPOINTS [100000] BENCH_LINKS [10] BENCH_CONCURRENCY [64] BENCH_SOCKETS [8]
#   BENCH_LOOKUPS [100] BENCH_MAX_REGISTRATIONS [max(10000, BENCH_ENDPOINTS)]
#   BENCH_MAX_TOTAL_PAYLOAD [max(64 MiB, 2 KiB x BENCH_ENDPOINTS)] BENCH_SERVER [auto]
#   BENCH_PORT [56990] BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1]
#   BENCH_NO_BUILD [0] BENCH_KEEP [0: remove the data dir at the end] BENCH_OUT
#   [bench/results/rd.md]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ENDPOINTS="${BENCH_ENDPOINTS:-100000}"
LINKS="${BENCH_LINKS:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
SOCKETS="${BENCH_SOCKETS:-8}"
LOOKUPS="${BENCH_LOOKUPS:-100}"
MAX_REG="${BENCH_MAX_REGISTRATIONS:-$((ENDPOINTS > 10000 ? ENDPOINTS : 10000))}"
MAX_PAYLOAD_DEFAULT=$((64 * 1024 * 1024))
MAX_PAYLOAD="${BENCH_MAX_TOTAL_PAYLOAD:-$((ENDPOINTS * 2048 > MAX_PAYLOAD_DEFAULT ? ENDPOINTS * 2048 : MAX_PAYLOAD_DEFAULT))}"
SERVER="${BENCH_SERVER:-auto}"
PORT="${BENCH_PORT:-56990}"
PIN="${BENCH_PIN:-auto}"
SERVER_CPU="${BENCH_SERVER_CPU:-0}"
CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
OUT="${BENCH_OUT:-$REPO/bench/results/rd.md}"

die() {
    echo "rd.sh: ERROR: $*" >&2
    exit 1
}

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
LOAD="$TARGET_DIR/release/examples/rd_load"
CORIUM="$TARGET_DIR/release/corium"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "rd.sh: cargo build --release -p corium-rd --example rd_load" >&2
    cargo build --release -q -p corium-rd --example rd_load >&2 || die "release build failed"
    if [ "$SERVER" != example ]; then
        echo "rd.sh: cargo build --release -p corium-cli" >&2
        cargo build --release -q -p corium-cli >&2 || die "release build of corium failed"
    fi
fi
[ -x "$LOAD" ] || die "$LOAD not found"

if [ "$SERVER" = auto ]; then
    if [ -x "$CORIUM" ] && "$CORIUM" rd --help 2>/dev/null | grep -q -- '--max-registrations'; then
        SERVER=corium
    else
        SERVER=example
    fi
fi

# shellcheck source=bench/lib.sh disable=SC1091
. "$REPO/bench/lib.sh"
pin_cpus "$PIN" "$SERVER_CPU" "$CLIENT_CPU" "load generator"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/corium-rd-bench.XXXXXX")"
DATA="$WORK/data"
stop_server_on_exit

LIMITS="max_registrations=$MAX_REG, max_total_payload=$MAX_PAYLOAD (defaults 10000 and 67108864)"
case "$SERVER" in
corium)
    [ -x "$CORIUM" ] || die "$CORIUM not found"
    SERVER_CMD=("$CORIUM" rd --bind "127.0.0.1:$PORT" --data "$DATA")
    if "$CORIUM" rd --help 2>/dev/null | grep -q -- '--max-registrations'; then
        SERVER_CMD+=(--max-registrations "$MAX_REG")
        if "$CORIUM" rd --help 2>/dev/null | grep -q -- '--max-total-payload'; then
            SERVER_CMD+=(--max-total-payload "$MAX_PAYLOAD")
        else
            LIMITS="max_registrations=$MAX_REG, max_total_payload at its default (67108864)"
        fi
    else
        LIMITS="the defaults of corium rd (max_registrations 10000, max_total_payload 67108864)"
    fi
    READY="corium rd serving coap on "
    ;;
example)
    SERVER_CMD=("$LOAD" serve --bind "127.0.0.1:$PORT" --data "$DATA"
        --max-registrations "$MAX_REG" --max-total-payload "$MAX_PAYLOAD")
    READY="rd_load serving coap on "
    ;;
*) die "BENCH_SERVER must be auto, corium or example" ;;
esac

kib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$SERVER_PID/status"; }
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_server LOG: starts SERVER_CMD, waits for its ready line; sets SERVER_PID, START_MS.
start_server() {
    local log="$1" t0
    t0=$(now_ms)
    # shellcheck disable=SC2153  # SERVER_PIN is set by pin_cpus (bench/lib.sh)
    "${SERVER_PIN[@]}" "${SERVER_CMD[@]}" >"$log.out" 2>"$log.err" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        grep -q "^$READY" "$log.out" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited: $(tail -3 "$log.err")"
        sleep 0.1
    done
    grep -q "^$READY" "$log.out" || die "server not ready after 60 s"
    START_MS=$(($(now_ms) - t0))
}

echo "rd.sh: server: ${SERVER_CMD[*]} ($PIN_NOTE)" >&2
start_server "$WORK/server"
sleep 2
RSS_IDLE=$(kib VmRSS)

echo "rd.sh: rd_load run: $ENDPOINTS endpoints x $LINKS links, $CONCURRENCY in flight, $LOOKUPS lookups" >&2
# The lookups follow the registrations in the same run; RSS after registering is read
# by watching the generator's output for the registration summary.
: >"$WORK/load.out"
"${CLIENT_PIN[@]}" "$LOAD" run --rd "coap://127.0.0.1:$PORT" --endpoints "$ENDPOINTS" \
    --links "$LINKS" --concurrency "$CONCURRENCY" --sockets "$SOCKETS" --lookups "$LOOKUPS" \
    >"$WORK/load.out" 2> >(tee "$WORK/load.err" >&2) &
LOAD_PID=$!
RSS_REG=""
while kill -0 "$LOAD_PID" 2>/dev/null; do
    if [ -z "$RSS_REG" ] && grep -q '^registration:' "$WORK/load.out"; then
        RSS_REG=$(kib VmRSS)
    fi
    sleep 0.2
done
wait "$LOAD_PID" || die "rd_load run failed: $(tail -3 "$WORK/load.err")"
[ -n "$RSS_REG" ] || RSS_REG=$(kib VmRSS)
RSS_LOOKUP=$(kib VmRSS)
HWM=$(kib VmHWM)
cat "$WORK/load.out" >&2
RESULT="$(grep '^RESULT ' "$WORK/load.out" | tail -1)"
[ -n "$RESULT" ] || die "no RESULT line from rd_load"
DISK_KIB=$(du -sk "$DATA" | cut -f1)
FILE_BYTES=$(stat -c %s "$DATA/registrations.redb")

stop_server
echo "rd.sh: restarting the RD on the same data" >&2
start_server "$WORK/restart"
RESTART_MS=$START_MS
sleep 1
RSS_RESTART=$(kib VmRSS)
RESTORED=$(grep -o '[0-9]* registrations' "$WORK/restart.err" | head -1 || true)
stop_server

created=$(kv created "$RESULT")
per_reg=$(awk -v k="$DISK_KIB" -v n="${created:-0}" 'BEGIN { if (n > 0) printf "%.0f", k * 1024 / n; else print 0 }')
mem_per_reg=$(awk -v a="$RSS_REG" -v b="$RSS_IDLE" -v n="${created:-0}" 'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print 0 }')

REPORT="$(
    cat <<EOF
# RD benchmark: $(date -u '+%Y-%m-%d %H:%M UTC')

Machine: $(nproc) cores shared with other sessions, Linux $(uname -r), loopback UDP;
$PIN_NOTE. Server: \`${SERVER_CMD[*]}\` (data dir in a temp dir, redb; every acknowledged change fsync'ed, group commit).
Generator: \`rd_load run --endpoints $ENDPOINTS --links $LINKS --concurrency $CONCURRENCY --sockets $SOCKETS --lookups $LOOKUPS\`.
Limits: $LIMITS.

| measure | value |
|---|---:|
| registrations created / other answers / failed | $(kv created "$RESULT") / $(kv other "$RESULT") / $(kv failed "$RESULT") |
| registration time | $(kv reg_secs "$RESULT") s |
| registrations/s | $(kv reg_per_s "$RESULT") |
| registration latency p50 / p99 | $(kv reg_p50_us "$RESULT") / $(kv reg_p99_us "$RESULT") µs |
| resource lookup \`rt=tJ-gG\` (10 links) p50 / p99 | $(kv res_p50_us "$RESULT") / $(kv res_p99_us "$RESULT") µs ($(kv res_bad "$RESULT") unexpected) |
| endpoint lookup \`ep=NAME\` (1 link) p50 / p99 | $(kv ep_p50_us "$RESULT") / $(kv ep_p99_us "$RESULT") µs ($(kv ep_bad "$RESULT") unexpected) |
| server RSS idle, before registering | $(mib "$RSS_IDLE") |
| server RSS after registering | $(mib "$RSS_REG") ($mem_per_reg B per registration) |
| server RSS after the lookups / peak (VmHWM) | $(mib "$RSS_LOOKUP") / $(mib "$HWM") |
| on disk (du of the data dir) | $(mib "$DISK_KIB") ($per_reg B per registration; file size $FILE_BYTES B) |
| restart on that data: until serving | $RESTART_MS ms (${RESTORED:-count not logged}) |
| server RSS after restart | $(mib "$RSS_RESTART") |

\`$RESULT\`
EOF
)"
mkdir -p "$(dirname "$OUT")"
echo "$REPORT" | tee "$OUT"
echo
echo "rd.sh: logs in $WORK"
if [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$DATA"
fi
