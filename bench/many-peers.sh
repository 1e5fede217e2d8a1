#!/usr/bin/env bash
# Many peers (issue 8): BENCH_PEERS distinct client endpoints (a UDP socket each, spread
# over loopback addresses 127.0.0.2, 127.0.0.3, ... and their ephemeral ports), each
# sending one CON GET /test every BENCH_INTERVAL seconds to one `corium serve`, for
# BENCH_DURATION seconds. Reports how many were served, the server's RSS with no peer
# and with all of them (then idle), so bytes per peer, and, with BENCH_SETTLE >= 250,
# the RSS after EXCHANGE_LIFETIME (247 s, RFC 7252 §4.5), when the deduplication
# entries must have been evicted.
#
# A process may hold `ulimit -n` sockets, so the peers are split over processes of
# `corium bench --peers N --local-ip 127.0.0.K` (BENCH_PER_PROCESS each, one address each).
#
# Environment (defaults in brackets):
#   BENCH_PEERS [100000] BENCH_INTERVAL [5] BENCH_DURATION [20] BENCH_SETTLE [0]
#   BENCH_PER_PROCESS [min(14000, ulimit -n - 500)] BENCH_PORT [56890] BENCH_WORKERS [] (corium serve --workers)
#   BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1] BENCH_NO_BUILD [0]
#   BENCH_OUT [bench/results/many-peers.md]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PEERS="${BENCH_PEERS:-100000}"
INTERVAL="${BENCH_INTERVAL:-5}"
DURATION="${BENCH_DURATION:-20}"
SETTLE="${BENCH_SETTLE:-0}"
LIMIT="$(ulimit -n)"
DEFAULT_PER=14000
[ "$LIMIT" != unlimited ] && [ $((LIMIT - 500)) -lt $DEFAULT_PER ] && DEFAULT_PER=$((LIMIT - 500))
PER="${BENCH_PER_PROCESS:-$DEFAULT_PER}"
PORT="${BENCH_PORT:-56890}"
OUT="${BENCH_OUT:-$REPO/bench/results/many-peers.md}"
HOST=127.0.0.1

die() {
    echo "many-peers.sh: ERROR: $*" >&2
    exit 1
}

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p corium-cli >&2 || die "release build failed"
fi
CORIUM="$TARGET_DIR/release/corium"
[ -x "$CORIUM" ] || die "$CORIUM not found"
[ "$PER" -ge 1 ] || die "BENCH_PER_PROCESS must be >= 1"

# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
pin_cpus "${BENCH_PIN:-auto}" "${BENCH_SERVER_CPU:-0}" "${BENCH_CLIENT_CPU:-1}" "clients"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/corium-peers.XXXXXX")"
stop_server_on_exit
CLIENT_PIDS=()
cleanup() {
    local p
    for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_server
}
trap cleanup EXIT

rss() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$SERVER_PID/status"; }
hwm() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$SERVER_PID/status"; }
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
workers=()
[ -n "${BENCH_WORKERS:-}" ] && workers=(--workers "$BENCH_WORKERS")
RUST_LOG=warn "${SERVER_PIN[@]}" "$CORIUM" serve --bind "$HOST:$PORT" "${workers[@]}" \
    >"$LOGDIR/server.out" 2>"$LOGDIR/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "serving coap" "$LOGDIR/server.out" 2>/dev/null && break
    sleep 0.1
done
grep -q "serving coap" "$LOGDIR/server.out" || die "corium serve did not start (see $LOGDIR)"
sleep 2
RSS0="$(rss)"

procs=$(((PEERS + PER - 1) / PER))
[ "$procs" -le 250 ] || die "too many processes ($procs): raise BENCH_PER_PROCESS"
echo "many-peers.sh: $PEERS peers in $procs processes, one request each every ${INTERVAL}s for ${DURATION}s" >&2
left=$PEERS
for k in $(seq "$procs"); do
    n=$(((left + procs - k) / (procs - k + 1)))
    left=$((left - n))
    "${CLIENT_PIN[@]}" "$CORIUM" bench "coap://$HOST:$PORT/test" --peers "$n" --interval "$INTERVAL" \
        --duration "$DURATION" --timeout 2 --local-ip "127.0.0.$((k + 1))" \
        >"$LOGDIR/clients-$k.log" 2>&1 &
    CLIENT_PIDS+=($!)
done
# RSS while the peers are active, once a second.
: >"$LOGDIR/rss.log"
while kill -0 "${CLIENT_PIDS[0]}" 2>/dev/null; do
    echo "$(date +%s) $(rss)" >>"$LOGDIR/rss.log"
    sleep 1
done
FAILED=0
for p in "${CLIENT_PIDS[@]}"; do wait "$p" || FAILED=1; done
CLIENT_PIDS=()
sleep 2
RSSN="$(rss)"
HWM="$(hwm)"
RSS_SETTLED=""
if [ "$SETTLE" -gt 0 ]; then
    echo "many-peers.sh: waiting ${SETTLE}s (EXCHANGE_LIFETIME is 247 s)" >&2
    sleep "$SETTLE"
    RSS_SETTLED="$(rss)"
    # One more request from a fresh peer: the server still answers.
    timeout 10 "$CORIUM" get "coap://$HOST:$PORT/test" >/dev/null 2>&1 || FAILED=1
fi

sent=0 ok=0 lost=0 served=0 peers=0
for k in $(seq "$procs"); do
    line="$(grep '^RESULT ' "$LOGDIR/clients-$k.log" | tail -1 || true)"
    if [ -z "$line" ]; then
        echo "many-peers.sh: process $k: no RESULT line:" >&2
        tail -5 "$LOGDIR/clients-$k.log" >&2
        FAILED=1
        continue
    fi
    sent=$((sent + $(kv sent "$line")))
    ok=$((ok + $(kv ok "$line")))
    lost=$((lost + $(kv lost "$line")))
    served=$((served + $(kv served "$line")))
    peers=$((peers + $(kv peers "$line")))
done

per_peer() { awk -v a="$1" -v b="$2" -v n="$PEERS" 'BEGIN { if (a == "" || b == "") print "—"; else printf "%.0f\n", (b - a) * 1024 / n }'; }
mkdir -p "$(dirname "$OUT")"
{
    echo "# Many peers: $PEERS client endpoints, one CON GET each every ${INTERVAL}s"
    echo
    echo "- date: $(date -u +%FT%TZ); machine: $(nproc) CPUs, $(uname -sr); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- server: \`corium serve --bind $HOST:$PORT ${workers[*]}\`; clients: $procs × \`corium bench coap://$HOST:$PORT/test --peers N --interval $INTERVAL --duration $DURATION --timeout 2 --local-ip 127.0.0.K\` on the same machine"
    echo "- pinning: $PIN_NOTE"
    echo
    echo "| peers | answered at least once | sent | ok | lost | responses/s |"
    echo "|---:|---:|---:|---:|---:|---:|"
    echo "| $peers | $served | $sent | $ok | $lost | $(awk -v o="$ok" -v d="$DURATION" 'BEGIN { printf "%.0f", o / d }') |"
    echo
    echo "| server RSS | KiB | bytes per peer |"
    echo "|---|---:|---:|"
    echo "| no peer (idle, 2 s after start) | $RSS0 | |"
    echo "| all peers, 2 s after the last request | $RSSN | $(per_peer "$RSS0" "$RSSN") |"
    echo "| peak (VmHWM) | $HWM | $(per_peer "$RSS0" "$HWM") |"
    [ -n "$RSS_SETTLED" ] && echo "| ${SETTLE}s later (deduplication entries expired) | $RSS_SETTLED | $(per_peer "$RSS0" "$RSS_SETTLED") |"
    echo
    echo "Logs: $LOGDIR (rss.log: the server's RSS once a second during the run)"
} | tee "$OUT"
exit "$FAILED"
