#!/usr/bin/env bash
# EDHOC (RFC 9528) handshakes per second over CoAP/UDP, Corium as the initiator against
# two responders in one run:
#
#   corium serve --credentials server.toml                  (Corium responder, lakers 0.8)
#   interop/aiocoap_edhoc_server.py --credentials server.diag   (aiocoap 0.4.17 with
#                                                            lakers-python)
#   corium bench coap://127.0.0.1:PORT/ --handshakes --credentials client.toml
#
# Each handshake is method 3 (static DH), cipher suite 2, credentials by reference
# (kid), message_1 and message_3 in two POSTs to /.well-known/edhoc (RFC 9528 Appendix
# A.2; message_4 when the responder sends one), then the OSCORE key export (Appendix
# A.1). aiocoap 0.4.17's responder keeps every EDHOC session and has C_R values for 47
# (then it answers 5.00), so it is measured with --handshake-count BENCH_COUNT (40)
# against a freshly started server each round, the rate being the count over the time
# it took; Corium is measured the same way and also sustained for BENCH_DURATION
# seconds. BENCH_ROUNDS rounds alternate the three; the median of each is reported.
# Both responders run on the same CPU (pinned when possible), the initiator on the
# other.
#
# Output: a markdown report on stdout, also written to bench/results/edhoc.md.
# Environment: BENCH_SOCKETS [4] BENCH_WINDOW [1] (concurrent handshakes = sockets ×
#   window) BENCH_DURATION [5] BENCH_WARMUP [1] BENCH_COUNT [40] BENCH_ROUNDS [3]
#   BENCH_PORT [57190]
#   (Corium; aiocoap on PORT+1) BENCH_PIN [auto] BENCH_SERVER_CPU [0]
#   BENCH_CLIENT_CPU [1] BENCH_NO_BUILD [0] BENCH_OUT
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SOCKETS="${BENCH_SOCKETS:-4}"
WINDOW="${BENCH_WINDOW:-1}"
DURATION="${BENCH_DURATION:-5}"
WARMUP="${BENCH_WARMUP:-1}"
ROUNDS="${BENCH_ROUNDS:-3}"
COUNT="${BENCH_COUNT:-40}"
PORT="${BENCH_PORT:-57190}"
APORT=$((PORT + 1))
OUT="${BENCH_OUT:-$REPO/bench/results/edhoc.md}"
PYTHON="$REPO/.venv/bin/python"
die() {
    echo "edhoc.sh: ERROR: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
[ -x "$PYTHON" ] || die "no $PYTHON: run scripts/install-peers.sh (aiocoap[oscore], lakers-python)"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p corium-cli >&2 || die "build failed"
CORIUM="${CARGO_TARGET_DIR:-$REPO/target}/release/corium"
pin_cpus "${BENCH_PIN:-auto}" "${BENCH_SERVER_CPU:-0}" "${BENCH_CLIENT_CPU:-1}" "initiator"
WORK="$(mktemp -d /tmp/corium-edhoc-bench.XXXXXX)"
CORIUM_PID=""
AIOCOAP_PID=""
cleanup() {
    for pid in $CORIUM_PID $AIOCOAP_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Credentials from `corium edhoc keygen`: its TOML lines for Corium, its EDN for aiocoap.
keygen() { # kid subject prefix
    "$CORIUM" edhoc keygen --kid "$1" --subject "$2" >"$WORK/$3.keygen"
}
field() { # file prefix
    sed -n "s/^$2//p" "$1" | head -1 | sed 's/,$//; s/^"//; s/"$//'
}
keygen 43 client client
keygen 52 server server
C_KEY=$(field "$WORK/client.keygen" 'private_key = ')
C_CRED=$(field "$WORK/client.keygen" 'own_cred = ')
S_KEY=$(field "$WORK/server.keygen" 'private_key = ')
S_CRED=$(field "$WORK/server.keygen" 'own_cred = ')
C_EDN_CRED=$(field "$WORK/client.keygen" '#   "own_cred": ')
S_EDN_KEY=$(field "$WORK/server.keygen" '#   "private_key": ')
S_EDN_CRED=$(field "$WORK/server.keygen" '#   "own_cred": ')

cat >"$WORK/server.toml" <<TOML
[[edhoc]]
uri = "/oscore/*"
private_key = "$S_KEY"
own_cred = "$S_CRED"
peer_cred = "$C_CRED"
TOML
cat >"$WORK/client.toml" <<TOML
[[edhoc]]
uri = ["coap://127.0.0.1:$PORT/*", "coap://127.0.0.1:$APORT/*"]
private_key = "$C_KEY"
own_cred = "$C_CRED"
peer_cred = "$S_CRED"
use_combined_edhoc = false
TOML
cat >"$WORK/server.diag" <<EDN
{"coap://127.0.0.1:$APORT/*": {"edhoc-oscore": {"suite": 2, "method": 3,
  "own_cred_style": "by-key-id", "private_key": $S_EDN_KEY, "own_cred": $S_EDN_CRED,
  "peer_cred": $C_EDN_CRED}}}
EDN

"${SERVER_PIN[@]}" "$CORIUM" serve --bind "127.0.0.1:$PORT" --credentials "$WORK/server.toml" \
    >"$WORK/corium.log" 2>&1 &
CORIUM_PID=$!
for _ in $(seq 200); do
    grep -q "corium serving coap on" "$WORK/corium.log" && break
    sleep 0.05
done
grep -q "corium serving coap on" "$WORK/corium.log" || die "corium serve did not start: $(cat "$WORK/corium.log")"
start_aiocoap() {
    PYTHONUNBUFFERED=1 "${SERVER_PIN[@]}" "$PYTHON" interop/aiocoap_edhoc_server.py \
        --bind 127.0.0.1 --port "$APORT" --credentials "$WORK/server.diag" >"$WORK/aiocoap.log" 2>&1 &
    AIOCOAP_PID=$!
    for _ in $(seq 400); do
        grep -q "^READY" "$WORK/aiocoap.log" && return 0
        sleep 0.05
    done
    die "the aiocoap server did not start: $(cat "$WORK/aiocoap.log")"
}
stop_aiocoap() {
    kill -TERM "$AIOCOAP_PID" 2>/dev/null || true
    wait "$AIOCOAP_PID" 2>/dev/null || true
    AIOCOAP_PID=""
}

run() { # port extra-args...
    local port=$1
    shift
    "${CLIENT_PIN[@]}" "$CORIUM" bench "coap://127.0.0.1:$port/" --handshakes \
        --credentials "$WORK/client.toml" --sockets "$SOCKETS" --window "$WINDOW" "$@" |
        tee -a "$WORK/bench.log" | grep '^RESULT' ||
        die "no RESULT line from corium bench against port $port: $(tail -5 "$WORK/bench.log")"
}
value() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
corium_hps=()
counted_hps=()
aiocoap_hps=()
corium_last=""
counted_last=""
aiocoap_last=""
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for _ in $(seq "$ROUNDS"); do
    corium_last=$(run "$PORT" --duration "$DURATION" --warmup "$WARMUP")
    counted_last=$(run "$PORT" --handshake-count "$COUNT")
    start_aiocoap
    aiocoap_last=$(run "$APORT" --handshake-count "$COUNT")
    stop_aiocoap
    for r in "$corium_last" "$counted_last" "$aiocoap_last"; do
        [ "$(value "$r" failed)" = 0 ] || echo "edhoc.sh: warning: failed handshakes: $r" >&2
    done
    corium_hps+=("$(value "$corium_last" hps)")
    counted_hps+=("$(value "$counted_last" hps)")
    aiocoap_hps+=("$(value "$aiocoap_last" hps)")
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cleanup
CORIUM_PID=""
AIOCOAP_PID=""
corium=$(printf '%s\n' "${corium_hps[@]}" | median)
counted=$(printf '%s\n' "${counted_hps[@]}" | median)
aiocoap=$(printf '%s\n' "${aiocoap_hps[@]}" | median)
ratio=$(awk -v a="$counted" -v b="$aiocoap" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }')
AIOCOAP_VERSION=$("$PYTHON" -c 'import aiocoap.meta; print(aiocoap.meta.version)' 2>/dev/null || echo '?')

mkdir -p "$(dirname "$OUT")"
{
    echo "## EDHOC handshakes per second (bench/edhoc.sh)"
    echo
    echo "Machine: $(nproc) cores, Linux $(uname -r); $PIN_NOTE; load average before / after:"
    echo "$LOAD_BEFORE / $LOAD_AFTER (other sessions compiling on the same machine)."
    echo "\`corium bench coap://127.0.0.1:PORT/ --handshakes --credentials client.toml --sockets $SOCKETS --window $WINDOW\`"
    echo "with \`--duration $DURATION\` (sustained) or \`--handshake-count $COUNT\` (aiocoap: a fresh server each round);"
    echo "Corium initiator, method 3, suite 2, by kid, two POSTs; $ROUNDS rounds alternated, median."
    echo
    echo "| responder | run | handshakes/s (median) | runs | p50 / p99 µs (last run) |"
    echo "|---|---|---|---|---|"
    echo "| Corium (\`corium serve\`, lakers 0.8) | ${DURATION} s | $corium | ${corium_hps[*]} | $(value "$corium_last" p50_us) / $(value "$corium_last" p99_us) |"
    echo "| Corium (\`corium serve\`, lakers 0.8) | $COUNT handshakes | $counted | ${counted_hps[*]} | $(value "$counted_last" p50_us) / $(value "$counted_last" p99_us) |"
    echo "| aiocoap $AIOCOAP_VERSION (lakers-python) | $COUNT handshakes | $aiocoap | ${aiocoap_hps[*]} | $(value "$aiocoap_last" p50_us) / $(value "$aiocoap_last" p99_us) |"
    echo
    echo "Corium / aiocoap ($COUNT handshakes each): **${ratio}×**"
} | tee "$OUT"
