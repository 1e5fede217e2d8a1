#!/usr/bin/env bash
# Observe (RFC 7641) notification fan-out: server memory per relation and
# notifications per second. Both measurements use `bench/observe-fanout`
# (release build); see bench/README.md.
#
#   memory   in-process, sans-IO: one corium-proto Endpoint registers N relations
#            (raw CON GET Observe=0 datagrams, answered with respond_observe);
#            VmRSS growth / N after registering, after one NON notification each,
#            and after EXCHANGE_LIFETIME (dedup entries expired). Run for
#            one relation per peer and for 100 peers, each with the default dedup
#            limit and with the dedup cache capped at 64 entries (relation state only).
#   runtime  memory of the whole runtime server: the same server/clients pair as fanout
#            (below) with BENCH_MEM_SOCKETS x BENCH_MEM_PER_SOCKET observations (100 000),
#            BENCH_MEM_DURATION seconds of notifications; server VmRSS with 0 relations,
#            with all registered, after notifying, and (BENCH_SETTLE > 0) BENCH_SETTLE
#            seconds later, when the registrations' deduplication entries (kept for
#            EXCHANGE_LIFETIME = 247 s, RFC 7252 §4.5) have expired: BENCH_SETTLE=250.
#   fanout   over loopback UDP: `observe-fanout server` (corium runtime, one
#            observable resource, one socket) pinned to CPU BENCH_SERVER_CPU (0);
#            `observe-fanout clients` (BENCH_SOCKETS sockets x BENCH_PER_SOCKET
#            observations, a separate process) pinned to CPU BENCH_CLIENT_CPU (1).
#            The server calls Observable::notify back to back (one outstanding) for
#            BENCH_DURATION seconds after BENCH_WARMUP; sent = NON notifications the
#            server put on the wire, received = counted by the clients.
#
# Environment (defaults in brackets):
#   BENCH_RELATIONS [100000] BENCH_SOCKETS [100] BENCH_PER_SOCKET [100]
#   BENCH_DURATION [10] BENCH_WARMUP [1] BENCH_WINDOW [0: open loop; else at most this
#   many notifications not yet reported received by the clients]
#   BENCH_MEM_SOCKETS [100] BENCH_MEM_PER_SOCKET [1000] BENCH_MEM_DURATION [2] BENCH_SETTLE [0]
#   BENCH_PORT_BASE [56850] BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1]
#   BENCH_NO_BUILD [0] BENCH_OUT [bench/results/observe-fanout.md]
#
# Each peer has 65 536 message IDs per EXCHANGE_LIFETIME (247 s): a round uses
# BENCH_PER_SOCKET of them per client socket, so keep
# (BENCH_WARMUP + BENCH_DURATION) * rounds/s * BENCH_PER_SOCKET well below 65 536
# (the endpoint skips notifications beyond that; they are then not counted as sent).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

RELATIONS="${BENCH_RELATIONS:-100000}"
SOCKETS="${BENCH_SOCKETS:-100}"
PER_SOCKET="${BENCH_PER_SOCKET:-100}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-1}"
WINDOW="${BENCH_WINDOW:-0}"
PORT_BASE="${BENCH_PORT_BASE:-56850}"
PIN="${BENCH_PIN:-auto}"
SERVER_CPU="${BENCH_SERVER_CPU:-0}"
CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
OUT="${BENCH_OUT:-$REPO/bench/results/observe-fanout.md}"
MEM_SOCKETS="${BENCH_MEM_SOCKETS:-100}"
MEM_PER_SOCKET="${BENCH_MEM_PER_SOCKET:-1000}"
MEM_DURATION="${BENCH_MEM_DURATION:-2}"
SETTLE="${BENCH_SETTLE:-0}"

die() {
    echo "observe-fanout.sh: ERROR: $*" >&2
    exit 1
}

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "observe-fanout.sh: cargo build --release -p observe-fanout" >&2
    cargo build --release -q -p observe-fanout >&2 || die "release build failed"
fi
BIN="$TARGET_DIR/release/observe-fanout"
[ -x "$BIN" ] || die "$BIN not found"

# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
pin_cpus "$PIN" "$SERVER_CPU" "$CLIENT_CPU" "clients"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/corium-observe.XXXXXX")"
stop_server_on_exit

kv() { # KEY LINE -> value of KEY=value in LINE
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1
}
mib() { awk -v b="${1:-0}" 'BEGIN { printf "%.1f MiB\n", b / 1048576 }'; }

# --- memory ----------------------------------------------------------------------
MEM_ROWS=()
run_memory() { # LABEL PEERS [extra args]
    local label="$1" peers="$2"
    shift 2
    local log="$LOGDIR/memory-$peers${1:+-capped}.log" line
    echo "observe-fanout.sh: memory --relations $RELATIONS --peers $peers $*" >&2
    "${SERVER_PIN[@]}" "$BIN" memory --relations "$RELATIONS" --peers "$peers" "$@" >"$log" 2>&1 ||
        die "memory run failed: $(tail -3 "$log")"
    line="$(grep '^RESULT ' "$log" | tail -1 || true)"
    [ -n "$line" ] || die "no RESULT line in $log"
    MEM_ROWS+=("| $label | $(kv relations "$line") | $(kv peers "$line") | $(kv dedup_registered "$line") | $(mib "$(kv rss_before "$line")") | $(mib "$(kv rss_expired "$line")") | $(kv per_rel_registered "$line") | $(kv per_rel_notified "$line") | $(kv per_rel_expired "$line") |")
}
run_memory "one peer per relation" "$RELATIONS"
run_memory "one peer per relation, dedup capped" "$RELATIONS" --dedup-cap 64
run_memory "100 peers" 100
run_memory "100 peers, dedup capped" 100 --dedup-cap 64

# --- server + clients (runtime memory, fan-out) ------------------------------------
run_pair() { # NAME PORT_OFFSET SOCKETS PER_SOCKET WARMUP DURATION SETTLE -> sets S, C
    local name="$1" port=$((PORT_BASE + $2)) cport=$((PORT_BASE + $2 + 1))
    local sockets="$3" per_socket="$4" warmup="$5" duration="$6" settle="$7"
    echo "observe-fanout.sh: $name: $sockets sockets x $per_socket observations, ${duration}s, settle ${settle}s" >&2
    "${SERVER_PIN[@]}" "$BIN" server --bind "127.0.0.1:$port" --control "127.0.0.1:$cport" \
        --warmup "$warmup" --duration "$duration" --window "$WINDOW" --settle "$settle" \
        >"$LOGDIR/$name-server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q '^READY' "$LOGDIR/$name-server.log" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited early: $(tail -5 "$LOGDIR/$name-server.log")"
        sleep 0.1
    done
    grep -q '^READY' "$LOGDIR/$name-server.log" || die "server not ready within 10 s"
    local limit=$((warmup + duration + settle + 60))
    timeout "$limit" "${CLIENT_PIN[@]}" "$BIN" clients --server "127.0.0.1:$port" \
        --control "127.0.0.1:$cport" --sockets "$sockets" --per-socket "$per_socket" --timeout "$limit" \
        >"$LOGDIR/$name-clients.log" 2>&1 || die "clients failed: $(tail -5 "$LOGDIR/$name-clients.log")"
    wait "$SERVER_PID" || die "server failed: $(tail -5 "$LOGDIR/$name-server.log")"
    SERVER_PID=""
    S="$(grep '^RESULT ' "$LOGDIR/$name-server.log" | tail -1 || true)"
    C="$(grep '^RESULT ' "$LOGDIR/$name-clients.log" | tail -1 || true)"
    if [ -z "$S" ] || [ -z "$C" ]; then
        die "missing RESULT lines (logs in $LOGDIR)"
    fi
}

run_pair runtime-memory 3 "$MEM_SOCKETS" "$MEM_PER_SOCKET" 0 "$MEM_DURATION" "$SETTLE"
M="$S"
settled="n/a (BENCH_SETTLE=0)"
if [ "$SETTLE" != 0 ]; then
    settled="$(kv rss_per_relation_settled "$M") ($(mib "$(kv rss_settled "$M")"), after ${SETTLE} s)"
fi
RUNTIME_ROW="| $(kv observers "$M") | $MEM_SOCKETS | $(mib "$(kv rss_idle "$M")") | $(mib "$(kv rss_observed "$M")") | **$(kv rss_per_relation "$M")** | $(kv anon_per_relation "$M") | $(kv rss_per_relation_notified "$M") | $settled |"

run_pair fanout 1 "$SOCKETS" "$PER_SOCKET" "$WARMUP" "$DURATION" 0
loss="$(awk -v s="$(kv total_sent "$S")" -v r="$(kv total_received "$C")" 'BEGIN {
    if (s + 0 == 0) print "n/a"; else printf "%.2f %%\n", 100 * (s - r) / s }')"

if commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"; then
    git -C "$REPO" diff --quiet HEAD 2>/dev/null || commit="$commit (dirty)"
else
    commit="none"
fi
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"

mkdir -p "$(dirname "$OUT")"
{
    echo "# Observe fan-out (loopback)"
    echo
    echo "- date: $(date -u +%FT%TZ), commit: $commit"
    echo "- machine: $(nproc) CPUs (${cpu:-unknown}), $(uname -sr)"
    echo "- pinning: $PIN_NOTE"
    echo
    echo "## Memory per relation (sans-IO endpoint, VmRSS growth / relations)"
    echo
    echo "| case | relations | peers | dedup entries | RSS before | RSS after | B/rel registered | B/rel + 1 notification | B/rel after EXCHANGE_LIFETIME |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${MEM_ROWS[@]}"
    echo
    echo "## Memory per relation, whole runtime server (VmRSS growth / relations)"
    echo
    echo "| relations | client sockets | RSS idle (0 relations) | RSS registered | B/rel registered | B/rel (RssAnon) | B/rel after ${MEM_DURATION}s of notifications | B/rel after EXCHANGE_LIFETIME |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "$RUNTIME_ROW"
    echo
    echo "## Notification fan-out (corium runtime server, one observable resource)"
    echo
    echo "| observers | client sockets | rounds | sent/s (server) | received/s (clients) | sent | received | loss | server RSS idle → observed | B/relation (runtime) |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $(kv observers "$S") | $SOCKETS | $(kv rounds "$S") | $(kv rate "$S") | $(kv rate "$C") | $(kv total_sent "$S") | $(kv total_received "$C") | $loss | $(mib "$(kv rss_idle "$S")") → $(mib "$(kv rss_observed "$S")") | $(kv rss_per_relation "$S") |"
    echo
    echo "Targets (issue): ≥ 100 000 notifications/s, ≤ 256 B per relation."
    echo
    echo "- fan-out: ${WARMUP}s warm-up then ${DURATION}s measured; window $WINDOW (0 = open loop)."
    echo "- sent/s counts NON notifications the server's driver put on the wire (trace hook);"
    echo "  received/s is the clients' count over the same MARK..STOP interval; loss over the whole run."
    echo "- B/relation (runtime) = server VmRSS with the observers registered minus idle VmRSS,"
    echo "  per observer; includes the registrations' deduplication entries (RFC 7252 §4.5),"
    echo "  which expire after EXCHANGE_LIFETIME (last column of the runtime memory table)."
    echo "- Logs: $LOGDIR"
} | tee "$OUT"
