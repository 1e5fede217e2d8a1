#!/usr/bin/env bash
# CoAP over TCP (RFC 8323) on loopback, Corium against libcoap in one run:
#
# 1. GET throughput: `corium bench coap+tcp://HOST:PORT/PATH --sockets N --window W`
#    (N connections, W requests pipelined on each) against `corium serve` (/test) and
#    `coap-server-notls` (/time), each alone, server and load pinned to their own CPU.
#    The same over TLS (`coaps+tcp://`, RFC 8323 §9.2): `corium serve --cert --key` and
#    `coap-server-openssl -c -j` with one test certificate the script makes with the
#    openssl CLI (a CA and a server certificate for 127.0.0.1; TLS on PORT+1 for both),
#    `corium bench coaps+tcp://… --ca CA`; and Corium alone over `coaps+ws://`.
# 2. A BENCH_BYTES (10 MB) download over TCP: `corium get` with BERT blocks (RFC 8323
#    §6, the default: both sides announce Max-Message-Size 66048) and with
#    `--max-message-size 1152` (1024-byte blocks); `coap-client-notls` from
#    `coap-server-notls` as the peer's figure. Median of BENCH_RUNS, bytes checked.
#
# Output: a markdown report on stdout, also written to bench/results/tcp.md.
# Environment: BENCH_SOCKETS [2] BENCH_WINDOW [32] BENCH_DURATION [10] BENCH_WARMUP [1]
#   BENCH_BYTES [10000000] BENCH_RUNS [5] BENCH_PORT_BASE [57030] BENCH_PIN [auto]
#   BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1] BENCH_NO_BUILD [0] BENCH_OUT
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SOCKETS="${BENCH_SOCKETS:-2}"
WINDOW="${BENCH_WINDOW:-32}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-1}"
BYTES="${BENCH_BYTES:-10000000}"
RUNS="${BENCH_RUNS:-5}"
PORT_BASE="${BENCH_PORT_BASE:-57030}"
OUT="${BENCH_OUT:-$REPO/bench/results/tcp.md}"
die() {
    echo "tcp.sh: ERROR: $*" >&2
    exit 1
}
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p corium-cli >&2 || die "build failed"
CORIUM="${CARGO_TARGET_DIR:-$REPO/target}/release/corium"
command -v coap-server-notls >/dev/null || die "coap-server-notls missing: run scripts/install-peers.sh"
command -v coap-server-openssl >/dev/null || die "coap-server-openssl missing: run scripts/install-peers.sh"
command -v openssl >/dev/null || die "the openssl command is missing (test certificate)"
pin_cpus "${BENCH_PIN:-auto}" "${BENCH_SERVER_CPU:-0}" "${BENCH_CLIENT_CPU:-1}" "load/clients"
stop_server_on_exit
WORK="$(mktemp -d /tmp/corium-tcp-bench.XXXXXX)"

wait_tcp() { # port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on TCP port $1"
}

# --- the test certificate (TLS rows) ---------------------------------------------
# A CA and a server certificate (P-256) for 127.0.0.1 and localhost, valid two days.
PKI="$WORK/pki"
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=corium bench CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null ||
    die "openssl: CA certificate"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout "$PKI/server.key" -out "$PKI/server.csr" 2>/dev/null || die "openssl: server key"
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >"$PKI/ext.cnf"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 2 -extfile "$PKI/ext.cnf" -out "$PKI/server.pem" 2>/dev/null ||
    die "openssl: server certificate"

# --- 1. throughput -------------------------------------------------------------
throughput() { # name uri listen-port cmd... (the server starts alone, pinned)
    local name="$1" uri="$2" port="$3"
    shift 3
    "${SERVER_PIN[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    wait_tcp "$port"
    local line
    line=$("${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" --ca "$PKI/ca.pem" \
        --sockets "$SOCKETS" --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" |
        grep '^RESULT') || die "$name: no RESULT line"
    stop_server
    echo "$line"
}
CPORT=$((PORT_BASE + 1)) # corium: TCP on CPORT, TLS on CPORT + 1
LPORT=$((PORT_BASE + 3)) # libcoap: TCP on LPORT, TLS on LPORT + 1
WPORT=$((PORT_BASE + 5)) # corium: coap+ws
SPORT=$((PORT_BASE + 6)) # corium: coaps+ws
TLS_KEYS=(--cert "$PKI/server.pem" --key "$PKI/server.key")
corium_tp=$(throughput corium "coap+tcp://127.0.0.1:$CPORT/test" "$CPORT" \
    "$CORIUM" serve --bind "127.0.0.1:$CPORT")
libcoap_tp=$(throughput libcoap "coap+tcp://127.0.0.1:$LPORT/time" "$LPORT" \
    coap-server-notls -A 127.0.0.1 -p "$LPORT")
corium_tls=$(throughput corium-tls "coaps+tcp://127.0.0.1:$((CPORT + 1))/test" "$((CPORT + 1))" \
    "$CORIUM" serve --bind "127.0.0.1:$CPORT" "${TLS_KEYS[@]}")
libcoap_tls=$(throughput libcoap-tls "coaps+tcp://127.0.0.1:$((LPORT + 1))/time" "$((LPORT + 1))" \
    coap-server-openssl -A 127.0.0.1 -p "$LPORT" -c "$PKI/server.pem" -j "$PKI/server.key")
# CoAP over WebSockets (RFC 8323 §4): Corium only (libcoap 4.3.1's server has no WebSocket).
ws_tp=$(throughput ws "coap+ws://127.0.0.1:$WPORT/test" "$WPORT" \
    "$CORIUM" serve --bind "127.0.0.1:$CPORT" --ws-bind "127.0.0.1:$WPORT")
wss_tp=$(throughput wss "coaps+ws://127.0.0.1:$SPORT/test" "$SPORT" \
    "$CORIUM" serve --bind "127.0.0.1:$CPORT" "${TLS_KEYS[@]}" --wss-bind "127.0.0.1:$SPORT")
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# --- 2. a large download ---------------------------------------------------------
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
head -c "$BYTES" /dev/urandom >"$WORK/file.bin"
download() { # name upload-cmd download-cmd (writes $WORK/got.bin) -> median ms
    local name="$1" up="$2" down="$3" t0 t1 times=()
    eval "$up" >/dev/null 2>"$WORK/$name-put.err" || die "$name: upload failed: $(cat "$WORK/$name-put.err")"
    for _ in $(seq "$RUNS"); do
        rm -f "$WORK/got.bin"
        t0=$(date +%s%N)
        eval "$down" 2>"$WORK/$name-get.err" || die "$name: download failed: $(cat "$WORK/$name-get.err")"
        t1=$(date +%s%N)
        head -c "$BYTES" "$WORK/got.bin" | cmp -s - "$WORK/file.bin" || die "$name: bytes differ"
        times+=($(((t1 - t0) / 1000000)))
    done
    printf '%s\n' "${times[@]}" | median
}
"${SERVER_PIN[@]}" "$CORIUM" serve --bind "127.0.0.1:$CPORT" --max-body "$BYTES" >"$WORK/c.log" 2>&1 &
SERVER_PID=$!
wait_tcp "$CPORT"
URI="coap+tcp://127.0.0.1:$CPORT/large-update"
bert_ms=$(download bert "'$CORIUM' put -f '$WORK/file.bin' --timeout 120 $URI" \
    "${CLIENT_PIN[*]} '$CORIUM' get --timeout 120 -o '$WORK/got.bin' $URI")
plain_ms=$(download plain ":" \
    "${CLIENT_PIN[*]} '$CORIUM' get --max-message-size 1152 --timeout 120 -o '$WORK/got.bin' $URI")
stop_server
"${SERVER_PIN[@]}" coap-server-notls -A 127.0.0.1 -p "$LPORT" >"$WORK/l.log" 2>&1 &
SERVER_PID=$!
wait_tcp "$LPORT"
LURI="coap+tcp://127.0.0.1:$LPORT/example_data"
libcoap_ms=$(download libcoap "coap-client-notls -m put -f '$WORK/file.bin' $LURI" \
    "${CLIENT_PIN[*]} coap-client-notls $LURI > '$WORK/got.bin'")
stop_server

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
c_rps=$(field "$corium_tp" rps)
l_rps=$(field "$libcoap_tp" rps)
ct_rps=$(field "$corium_tls" rps)
lt_rps=$(field "$libcoap_tls" rps)
{
    echo "## CoAP over TCP ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
    echo
    echo "Command: \`bench/tcp.sh\` (BENCH_SOCKETS=$SOCKETS BENCH_WINDOW=$WINDOW BENCH_DURATION=$DURATION); $PIN_NOTE; the load generator shares the machine."
    echo
    echo "| server | requests/s | p50 µs | p99 µs | ok | lost |"
    echo "|---|---|---|---|---|---|"
    for row in "corium coap+tcp:$corium_tp" "libcoap coap+tcp:$libcoap_tp" \
        "corium coaps+tcp:$corium_tls" "libcoap (openssl) coaps+tcp:$libcoap_tls" \
        "corium coap+ws:$ws_tp" "corium coaps+ws:$wss_tp"; do
        name="${row%%:*}"
        r="${row#*:}"
        echo "| $name | $(field "$r" rps) | $(field "$r" p50_us) | $(field "$r" p99_us) | $(field "$r" ok) | $(field "$r" lost) |"
    done
    echo
    echo "Ratio corium / libcoap over TCP: **$(ratio "$c_rps" "$l_rps")×**; over TLS: **$(ratio "$ct_rps" "$lt_rps")×**."
    echo
    echo "| $BYTES-byte download over TCP (median of $RUNS) | ms |"
    echo "|---|---|"
    echo "| corium get, BERT blocks (both announce 66048) | $bert_ms |"
    echo "| corium get, --max-message-size 1152 (1024-byte blocks) | $plain_ms |"
    echo "| coap-client-notls from coap-server-notls | $libcoap_ms |"
    echo
    echo "BERT speed-up: **$(ratio "$plain_ms" "$bert_ms")×**; corium (BERT) takes **$(ratio "$bert_ms" "$libcoap_ms")×** libcoap's time (each figure includes starting the client process)."
} | tee "$OUT"
