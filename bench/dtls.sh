#!/usr/bin/env bash
# Same-machine comparison of CoAP-over-DTLS servers (coaps://) on loopback, in one run.
# BENCH_MODE=psk (default): PSK mode, TLS_PSK_WITH_AES_128_CCM_8:
#
#   corium   `corium serve --bind 127.0.0.1:PORT --psk ID:KEY`   coaps on PORT+1, path /test
#   libcoap  `coap-server-openssl -A 127.0.0.1 -p PORT -k KEY`    coaps on PORT+1, path /time
#
# BENCH_MODE=cert: certificate mode (RFC 7925 §4.4, ECDHE_ECDSA, P-256 keys the script
# generates with the openssl CLI), mutual authentication on both servers:
#
#   corium   `corium serve --bind … --cert server.pem --key server.key --ca ca.pem`
#   libcoap  `coap-server-openssl -A … -p PORT -c server.pem -j server.key -C ca.pem -R ca.pem`
#   client   `corium bench coaps://… --ca ca.pem --cert client.pem --key client.key`
#
# For each server (started alone, pinned to BENCH_SERVER_CPU):
#   1. memory per idle session: VmRSS after BENCH_IDLE s idle, then
#      `corium bench coaps://… --idle-sessions N` establishes N sessions (a full handshake
#      each, no CoAP traffic) and holds them; VmRSS is read again while they are held;
#      (after − before) / N. The sessions are then closed (close_notify).
#   2. GET requests/s over established sessions:
#      `corium bench coaps://…/PATH --sockets S --window W --duration D`.
#   3. full handshakes/s: `corium bench coaps://… --handshakes --sockets 1 --window H`
#      (H clients, each: fresh socket, ClientHello, HelloVerifyRequest, …, close_notify,
#      repeat; spread over 1 000 loopback source addresses).
# The server's CPU time (utime+stime from /proc/PID/stat) is read around 2. and 3., so
# the report also gives requests and handshakes per server CPU-second (robust when the
# load generator, not the server, is the bottleneck).
#
# Environment (defaults in brackets):
#   BENCH_SOCKETS [2] BENCH_WINDOW [32] BENCH_DURATION [10] BENCH_WARMUP [1]
#   BENCH_HS_WINDOW [64]      concurrent handshakes in 3. (libcoap allows 100 by default)
#   BENCH_IDLE_SESSIONS [2000] BENCH_IDLE [2] (seconds before the idle RSS is read)
#   BENCH_SERVERS ["corium libcoap"]  BENCH_PORT_BASE [57830]: corium +1, libcoap +3
#   BENCH_MODE [psk] (psk or cert)  BENCH_PSK_ID [bench] BENCH_PSK_KEY [secretPSK]
#   BENCH_CORIUM_PATH [/test] BENCH_LIBCOAP_PATH [/time]
#   BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1]
#   BENCH_NO_BUILD [0]  BENCH_OUT [bench/results/dtls.md, dtls-cert.md in cert mode]
#   BENCH_RUST_LOG [warn]
#
# Only loopback addresses are used; every step is bounded by `timeout`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

SOCKETS="${BENCH_SOCKETS:-2}"
WINDOW="${BENCH_WINDOW:-32}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-1}"
HS_WINDOW="${BENCH_HS_WINDOW:-64}"
IDLE_SESSIONS="${BENCH_IDLE_SESSIONS:-2000}"
IDLE="${BENCH_IDLE:-2}"
SERVERS="${BENCH_SERVERS:-corium libcoap}"
PORT_BASE="${BENCH_PORT_BASE:-57830}"
PSK_ID="${BENCH_PSK_ID:-bench}"
PSK_KEY="${BENCH_PSK_KEY:-secretPSK}"
CORIUM_PATH="${BENCH_CORIUM_PATH:-/test}"
LIBCOAP_PATH="${BENCH_LIBCOAP_PATH:-/time}"
PIN="${BENCH_PIN:-auto}"
SERVER_CPU="${BENCH_SERVER_CPU:-0}"
CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
MODE="${BENCH_MODE:-psk}"
case "$MODE" in
    psk) OUT="${BENCH_OUT:-$REPO/bench/results/dtls.md}" ;;
    cert) OUT="${BENCH_OUT:-$REPO/bench/results/dtls-cert.md}" ;;
    *) echo "dtls.sh: BENCH_MODE must be psk or cert, not '$MODE'" >&2 && exit 1 ;;
esac
HOST=127.0.0.1

die() {
    echo "dtls.sh: ERROR: $*" >&2
    exit 1
}

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "dtls.sh: cargo build --release -p corium-cli" >&2
    cargo build --release -q -p corium-cli >&2 || die "release build failed"
fi
CORIUM="$TARGET_DIR/release/corium"
[ -x "$CORIUM" ] || die "$CORIUM not found (build corium-cli)"
case " $SERVERS " in
    *" libcoap "*)
        command -v coap-server-openssl >/dev/null 2>&1 ||
            die "coap-server-openssl missing: run scripts/install-peers.sh"
        ;;
esac

# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
pin_cpus "$PIN" "$SERVER_CPU" "$CLIENT_CPU" "load generator"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/corium-bench-dtls.XXXXXX")"
stop_server_on_exit

# Client credentials of `corium bench`, and each server's credential arguments.
if [ "$MODE" = cert ]; then
    command -v openssl >/dev/null 2>&1 || die "openssl CLI missing (certificate mode)"
    PKI="$LOGDIR/pki"
    mkdir -p "$PKI"
    (
        cd "$PKI"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -subj /CN=corium-bench-ca -days 2 -out ca.pem \
            -addext basicConstraints=critical,CA:TRUE 2>/dev/null
        for who in server client; do
            openssl ecparam -name prime256v1 -genkey -noout -out "$who.key.sec1" 2>/dev/null
            openssl pkcs8 -topk8 -nocrypt -in "$who.key.sec1" -out "$who.key"
            openssl req -new -key "$who.key" -subj "/CN=$who" -out "$who.csr" 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$who.ext"
            openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile "$who.ext" -out "$who.pem" 2>/dev/null
        done
    ) || die "certificate generation failed"
    CLIENT_CREDS=(--ca "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key")
    CORIUM_CREDS=(--cert "$PKI/server.pem" --key "$PKI/server.key" --ca "$PKI/ca.pem")
    LIBCOAP_CREDS=(-c "$PKI/server.pem" -j "$PKI/server.key" -C "$PKI/ca.pem" -R "$PKI/ca.pem")
    CRED_NOTE="certificate mode (ECDHE_ECDSA, P-256, mutual authentication)"
else
    CLIENT_CREDS=(--psk-identity "$PSK_ID" --psk-key "$PSK_KEY")
    CORIUM_CREDS=(--psk "$PSK_ID:$PSK_KEY")
    LIBCOAP_CREDS=(-k "$PSK_KEY")
    CRED_NOTE="PSK mode (TLS_PSK_WITH_AES_128_CCM_8)"
fi

udp_bound() { # PORT -> true when something listens on UDP PORT
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
cpu_ticks() { # PID -> utime+stime in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }
HZ="$(getconf CLK_TCK)"

declare -A RSS0 RSS1 PER_SESSION SESSIONS RPS P50 P99 LOST RPS_CPU HPS HP50 HP99 HFAIL HPS_CPU PATHS
FAILED=0

bench_line() { # LOGFILE -> RESULT line or empty
    grep '^RESULT ' "$1" | tail -1 || true
}

run_server() {
    local name="$1" port="$2" path="$3"
    shift 3
    local dport=$((port + 1)) log="$LOGDIR/$name-server.log"
    local uri="coaps://$HOST:$dport$path" psk=("${CLIENT_CREDS[@]}")
    PATHS[$name]="$path"
    echo "dtls.sh: [$name] starting: $*" >&2
    "${SERVER_PIN[@]}" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    local _
    for _ in $(seq 100); do
        udp_bound "$dport" && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! udp_bound "$dport"; then
        echo "dtls.sh: [$name] did not bind UDP $dport; log:" >&2
        tail -20 "$log" >&2
        FAILED=1
        stop_server
        SERVER_PID=""
        return 0
    fi
    sleep "$IDLE"

    # 1. Memory per idle session.
    RSS0[$name]="$(status_kib "$SERVER_PID" VmRSS)"
    local idle_log="$LOGDIR/$name-idle.log"
    echo "dtls.sh: [$name] corium bench $uri --idle-sessions $IDLE_SESSIONS" >&2
    timeout 300 "${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" "${psk[@]}" --idle-sessions "$IDLE_SESSIONS" \
        --window 32 --duration 4 --timeout 10 >"$idle_log" 2>&1 &
    local idle_pid=$!
    for _ in $(seq 2400); do
        grep -q '^ESTABLISHED ' "$idle_log" 2>/dev/null && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    RSS1[$name]="$(status_kib "$SERVER_PID" VmRSS)"
    wait "$idle_pid" || true
    local line
    line="$(bench_line "$idle_log")"
    SESSIONS[$name]="$(kv sessions "$line")"
    if [ -n "${SESSIONS[$name]}" ] && [ "${SESSIONS[$name]}" -gt 0 ]; then
        PER_SESSION[$name]="$(awk -v a="${RSS0[$name]}" -v b="${RSS1[$name]}" -v n="${SESSIONS[$name]}" \
            'BEGIN { printf "%.0f\n", (b - a) * 1024 / n }')"
    else
        echo "dtls.sh: [$name] no idle sessions; output:" >&2
        tail -5 "$idle_log" >&2
        FAILED=1
    fi
    sleep 1

    # 2. GET requests/s over established sessions.
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) "${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" "${psk[@]}" --sockets "$SOCKETS" \
            --window "$WINDOW" --duration "$WARMUP" --warmup 0 >"$LOGDIR/$name-warmup.log" 2>&1 || true
    fi
    echo "dtls.sh: [$name] corium bench $uri --sockets $SOCKETS --window $WINDOW --duration $DURATION" >&2
    local out="$LOGDIR/$name-get.log" t0 t1
    t0="$(cpu_ticks "$SERVER_PID")"
    timeout $((DURATION + 60)) "${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" "${psk[@]}" --sockets "$SOCKETS" \
        --window "$WINDOW" --duration "$DURATION" --warmup 0 >"$out" 2>&1 || true
    t1="$(cpu_ticks "$SERVER_PID")"
    line="$(bench_line "$out")"
    if [ -z "$line" ]; then
        echo "dtls.sh: [$name] no RESULT line for GET; output:" >&2
        tail -5 "$out" >&2
        FAILED=1
    else
        RPS[$name]="$(kv rps "$line")"
        P50[$name]="$(kv p50_us "$line")"
        P99[$name]="$(kv p99_us "$line")"
        LOST[$name]="$(kv lost "$line")"
        RPS_CPU[$name]="$(awk -v ok="$(kv ok "$line")" -v t=$((t1 - t0)) -v hz="$HZ" \
            'BEGIN { if (t > 0) printf "%.0f\n", ok / (t / hz); else print "" }')"
    fi

    # 3. Full handshakes/s.
    echo "dtls.sh: [$name] corium bench $uri --handshakes --window $HS_WINDOW --duration $DURATION" >&2
    out="$LOGDIR/$name-handshakes.log"
    t0="$(cpu_ticks "$SERVER_PID")"
    timeout $((DURATION + 60)) "${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" "${psk[@]}" --handshakes \
        --sockets 1 --window "$HS_WINDOW" --duration "$DURATION" --warmup 0 --timeout 5 >"$out" 2>&1 || true
    t1="$(cpu_ticks "$SERVER_PID")"
    line="$(bench_line "$out")"
    if [ -z "$line" ]; then
        echo "dtls.sh: [$name] no RESULT line for handshakes; output:" >&2
        tail -5 "$out" >&2
        FAILED=1
    else
        HPS[$name]="$(kv hps "$line")"
        HP50[$name]="$(kv p50_us "$line")"
        HP99[$name]="$(kv p99_us "$line")"
        HFAIL[$name]="$(kv failed "$line")"
        HPS_CPU[$name]="$(awk -v ok="$(kv ok "$line")" -v t=$((t1 - t0)) -v hz="$HZ" \
            'BEGIN { if (t > 0) printf "%.0f\n", ok / (t / hz); else print "" }')"
    fi
    stop_server
    SERVER_PID=""
}

for s in $SERVERS; do
    case "$s" in
        corium)
            port=$((PORT_BASE + 1))
            RUST_LOG="${BENCH_RUST_LOG:-warn}" run_server corium "$port" "$CORIUM_PATH" \
                "$CORIUM" serve --bind "$HOST:$port" "${CORIUM_CREDS[@]}"
            ;;
        libcoap)
            port=$((PORT_BASE + 3))
            run_server libcoap "$port" "$LIBCOAP_PATH" \
                coap-server-openssl -A "$HOST" -p "$port" "${LIBCOAP_CREDS[@]}" -v 0
            ;;
        *) die "unknown server '$s' in BENCH_SERVERS (corium, libcoap)" ;;
    esac
done

ratio() {
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
        if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}
val() { if [ -n "${1:-}" ]; then echo "$1"; else echo "—"; fi; }
num() { awk -v r="${1:-}" 'BEGIN { if (r == "") print "—"; else printf "%.0f\n", r }'; }

libcoap_ver="$(dpkg-query -W -f='${Version}' libcoap3-bin 2>/dev/null || echo '?')"
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
mkdir -p "$(dirname "$OUT")"
{
    echo "# CoAP over DTLS server comparison (loopback), $CRED_NOTE"
    echo
    echo "- date: $(date -u +%FT%TZ)"
    echo "- machine: $(nproc) CPUs (${cpu:-unknown}), $(uname -sr), load generator on the same machine"
    echo "- pinning: $PIN_NOTE"
    echo "- corium: \`corium serve --bind HOST:PORT ${CORIUM_CREDS[*]}\`"
    echo "- libcoap: coap-server-openssl $libcoap_ver (Debian libcoap3-bin), \`${LIBCOAP_CREDS[*]} -v 0\`"
    echo "- GET: \`corium bench coaps://HOST:PORT+1/PATH ${CLIENT_CREDS[*]} --sockets $SOCKETS --window $WINDOW --duration $DURATION\` (warm-up ${WARMUP}s)"
    echo "- handshakes: \`corium bench coaps://… --handshakes --sockets 1 --window $HS_WINDOW --duration $DURATION\`"
    echo "- idle sessions: \`corium bench coaps://… --idle-sessions $IDLE_SESSIONS --window 32\`"
    echo
    echo "| server | path | GET/s | p50 µs | p99 µs | lost | GET per server CPU-s | handshakes/s | hs p50 µs | hs p99 µs | hs failed | hs per server CPU-s | idle RSS KiB | RSS with sessions KiB | sessions | B/idle session |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in $SERVERS; do
        echo "| $s | $(val "${PATHS[$s]:-}") | $(num "${RPS[$s]:-}") | $(val "${P50[$s]:-}") | $(val "${P99[$s]:-}") | $(val "${LOST[$s]:-}") | $(val "${RPS_CPU[$s]:-}") | $(num "${HPS[$s]:-}") | $(val "${HP50[$s]:-}") | $(val "${HP99[$s]:-}") | $(val "${HFAIL[$s]:-}") | $(val "${HPS_CPU[$s]:-}") | $(val "${RSS0[$s]:-}") | $(val "${RSS1[$s]:-}") | $(val "${SESSIONS[$s]:-}") | $(val "${PER_SESSION[$s]:-}") |"
    done
    echo
    echo "Ratios (corium / libcoap):"
    echo
    echo "- GET/s: $(ratio "${RPS[corium]:-}" "${RPS[libcoap]:-}")"
    echo "- GET per server CPU-second: $(ratio "${RPS_CPU[corium]:-}" "${RPS_CPU[libcoap]:-}")"
    echo "- handshakes/s: $(ratio "${HPS[corium]:-}" "${HPS[libcoap]:-}")"
    echo "- handshakes per server CPU-second: $(ratio "${HPS_CPU[corium]:-}" "${HPS_CPU[libcoap]:-}")"
    echo "- bytes per idle session: $(ratio "${PER_SESSION[corium]:-}" "${PER_SESSION[libcoap]:-}")"
    echo
    echo "- Logs of this run: $LOGDIR"
} | tee "$OUT"

exit "$FAILED"
