#!/usr/bin/env bash
# Same-machine throughput/latency/memory comparison of CoAP servers on loopback:
#
#   corium        `corium serve --bind 127.0.0.1:PORT`                path /test
#   corium-wN     the same with `--workers N` (N SO_REUSEPORT shards, N threads)
#   libcoap       `coap-server-notls -A 127.0.0.1 -p PORT`           path /time
#   ceiling       `udp-ceiling --bind 127.0.0.1:PORT`                (any path; no parsing)
#   ceiling-tN    the same with `--threads N` (N SO_REUSEPORT shards, a thread each)
#   ceiling-batch[-tN]  the same with `--batch` (recvmmsg + GSO through quinn-udp)
#
# Each server is started alone, its idle RSS is read from /proc/PID/status
# (VmRSS, after BENCH_IDLE seconds), then each mode of BENCH_MODES (CON and NON
# requests) is applied in turn with the one load generator,
# `corium bench URI --sockets N --window W --duration S [--non]`, whose last line is
# `RESULT rps=.. p50_us=.. p99_us=.. sent=.. ok=.. lost=..`. The server's CPU time
# (utime + stime from /proc/PID/stat) is read around each measured run, giving
# requests per server CPU-second. Peak RSS (VmHWM) is read after the load. The
# server is then stopped (SIGTERM).
#
# CPU pinning: with `taskset` and >= 2 CPUs the server runs on CPU
# BENCH_SERVER_CPU (0) and the load generator on BENCH_CLIENT_CPU (1), so each
# side gets exactly one core and they do not steal from each other. Both take a
# taskset list ("0,1" lets a multi-worker server use both cores).
# BENCH_PIN=0 disables pinning.
#
# Output: a markdown report on stdout, also written to bench/results/latest.md.
#
# Environment (defaults in brackets):
#   BENCH_SOCKETS [2] BENCH_WINDOW [32] BENCH_DURATION [10]
#   BENCH_MODES ["CON NON"]  request types, each measured against every server
#   BENCH_NON [0]     1 = BENCH_MODES=NON (older spelling)
#   BENCH_WARMUP [1]  seconds of untimed load before each measured run (0 = none)
#   BENCH_IDLE [2]    seconds a server idles before its RSS is read
#   BENCH_SERVERS ["corium libcoap ceiling"]  subset/order to run (see above)
#   BENCH_PORT_BASE [56830]  the servers take PORT_BASE+1, +2, ... in order
#   BENCH_CORIUM_PATH [/test] BENCH_LIBCOAP_PATH [/time] BENCH_CEILING_PATH [/ceiling]
#   BENCH_PIN [auto] BENCH_SERVER_CPU [0] BENCH_CLIENT_CPU [1]
#   BENCH_NO_BUILD [0]  skip `cargo build --release`
#   BENCH_OUT [bench/results/latest.md]
#   BENCH_RUST_LOG [warn]  RUST_LOG for `corium serve`
#
# Only loopback addresses are ever used. Every run is bounded by
# BENCH_DURATION (+ a fixed grace period).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

SOCKETS="${BENCH_SOCKETS:-2}"
WINDOW="${BENCH_WINDOW:-32}"
DURATION="${BENCH_DURATION:-10}"
MODES="${BENCH_MODES:-CON NON}"
[ "${BENCH_NON:-0}" = 1 ] && MODES=NON
WARMUP="${BENCH_WARMUP:-1}"
IDLE="${BENCH_IDLE:-2}"
SERVERS="${BENCH_SERVERS:-corium libcoap ceiling}"
PORT_BASE="${BENCH_PORT_BASE:-56830}"
CORIUM_PATH="${BENCH_CORIUM_PATH:-/test}"
LIBCOAP_PATH="${BENCH_LIBCOAP_PATH:-/time}"
CEILING_PATH="${BENCH_CEILING_PATH:-/ceiling}"
PIN="${BENCH_PIN:-auto}"
SERVER_CPU="${BENCH_SERVER_CPU:-0}"
CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
OUT="${BENCH_OUT:-$REPO/bench/results/latest.md}"
HOST=127.0.0.1
for m in $MODES; do
    case "$m" in CON | NON) ;; *) echo "peers.sh: ERROR: BENCH_MODES: unknown mode '$m' (CON, NON)" >&2; exit 1 ;; esac
done

die() {
    echo "peers.sh: ERROR: $*" >&2
    exit 1
}

# --- build ---------------------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "peers.sh: cargo build --release -p corium-cli -p udp-ceiling" >&2
    cargo build --release -q -p corium-cli -p udp-ceiling >&2 || die "release build failed"
fi
CORIUM="$TARGET_DIR/release/corium"
CEILING="$TARGET_DIR/release/udp-ceiling"
[ -x "$CORIUM" ] || die "$CORIUM not found (build corium-cli)"
case " $SERVERS " in *" ceiling"*) [ -x "$CEILING" ] || die "$CEILING not found" ;; esac
case " $SERVERS " in
    *" libcoap "*)
        command -v coap-server-notls >/dev/null 2>&1 ||
            die "coap-server-notls missing: run scripts/install-peers.sh"
        ;;
esac

# --- pinning -------------------------------------------------------------------
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
pin_cpus "$PIN" "$SERVER_CPU" "$CLIENT_CPU" "load generator"
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/corium-bench.XXXXXX")"
stop_server_on_exit

# True when something listens on UDP port $1 (IPv4 or IPv6), from /proc/net.
udp_bound() {
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v p=":$hex" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/udp /proc/net/udp6 2>/dev/null
}

status_kib() { # PID FIELD -> value in kB from /proc/PID/status
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

kv() { # KEY LINE -> value of KEY=value in LINE
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1
}

declare -A RPS P50 P99 SENT OK LOST CPU RSS HWM PATHS
FAILED=0
CLK_TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"

cpu_ticks() { # PID -> utime + stime in clock ticks (fields 14, 15 of /proc/PID/stat)
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo ""
}

# bench_mode NAME URI MODE: one warm-up and one measured run of MODE against the server.
bench_mode() {
    local name="$1" uri="$2" mode="$3" key="$1/$3"
    local nonarg=()
    [ "$mode" = NON ] && nonarg=(--non)
    if [ "$WARMUP" != 0 ]; then
        timeout $((WARMUP + 30)) "${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" --sockets "$SOCKETS" \
            --window "$WINDOW" --duration "$WARMUP" "${nonarg[@]}" >"$LOGDIR/$name-$mode-warmup.log" 2>&1 || true
    fi
    echo "peers.sh: [$name] corium bench $uri --sockets $SOCKETS --window $WINDOW --duration $DURATION ${nonarg[*]}" >&2
    local out="$LOGDIR/$name-$mode-bench.log" rc=0 t0 t1
    t0="$(cpu_ticks "$SERVER_PID")"
    timeout $((DURATION + 30)) "${CLIENT_PIN[@]}" "$CORIUM" bench "$uri" --sockets "$SOCKETS" \
        --window "$WINDOW" --duration "$DURATION" "${nonarg[@]}" >"$out" 2>&1 || rc=$?
    t1="$(cpu_ticks "$SERVER_PID")"
    local line
    line="$(grep '^RESULT ' "$out" | tail -1 || true)"
    if [ -z "$line" ]; then
        echo "peers.sh: [$name] $mode: no RESULT line (exit $rc); output:" >&2
        tail -20 "$out" >&2
        FAILED=1
        return 0
    fi
    RPS[$key]="$(kv rps "$line")"
    P50[$key]="$(kv p50_us "$line")"
    P99[$key]="$(kv p99_us "$line")"
    SENT[$key]="$(kv sent "$line")"
    OK[$key]="$(kv ok "$line")"
    LOST[$key]="$(kv lost "$line")"
    # Server CPU-seconds over the measured run (plus the bench's short grace period).
    if [ -n "$t0" ] && [ -n "$t1" ]; then
        CPU[$key]="$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f\n", (b - a) / hz }')"
    fi
}

run_server() {
    local name="$1" port="$2" path="$3"
    shift 3
    local log="$LOGDIR/$name-server.log"
    echo "peers.sh: [$name] starting: $*" >&2
    "${SERVER_PIN[@]}" "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    local _
    for _ in $(seq 100); do
        udp_bound "$port" && break
        kill -0 "$SERVER_PID" 2>/dev/null || {
            echo "peers.sh: [$name] server exited early; log:" >&2
            tail -20 "$log" >&2
            SERVER_PID=""
            FAILED=1
            return 0
        }
        sleep 0.1
    done
    udp_bound "$port" || {
        echo "peers.sh: [$name] did not bind UDP $port within 10 s" >&2
        FAILED=1
        stop_server
        SERVER_PID=""
        return 0
    }
    sleep "$IDLE"
    RSS[$name]="$(status_kib "$SERVER_PID" VmRSS)"
    PATHS[$name]="$path"
    local mode
    for mode in $MODES; do
        bench_mode "$name" "coap://$HOST:$port$path" "$mode"
    done
    HWM[$name]="$(status_kib "$SERVER_PID" VmHWM)"
    stop_server
    SERVER_PID=""
}

port=$PORT_BASE
for s in $SERVERS; do
    port=$((port + 1))
    case "$s" in
        corium)
            RUST_LOG="${BENCH_RUST_LOG:-warn}" run_server "$s" "$port" "$CORIUM_PATH" \
                "$CORIUM" serve --bind "$HOST:$port"
            ;;
        corium-w[0-9]*)
            RUST_LOG="${BENCH_RUST_LOG:-warn}" run_server "$s" "$port" "$CORIUM_PATH" \
                "$CORIUM" serve --bind "$HOST:$port" --workers "${s#corium-w}"
            ;;
        libcoap)
            run_server "$s" "$port" "$LIBCOAP_PATH" coap-server-notls -A "$HOST" -p "$port"
            ;;
        ceiling)
            run_server "$s" "$port" "$CEILING_PATH" "$CEILING" --bind "$HOST:$port"
            ;;
        ceiling-t[0-9]*)
            run_server "$s" "$port" "$CEILING_PATH" "$CEILING" --bind "$HOST:$port" --threads "${s#ceiling-t}"
            ;;
        ceiling-batch)
            run_server "$s" "$port" "$CEILING_PATH" "$CEILING" --bind "$HOST:$port" --batch
            ;;
        ceiling-batch-t[0-9]*)
            run_server "$s" "$port" "$CEILING_PATH" "$CEILING" --bind "$HOST:$port" --batch \
                --threads "${s#ceiling-batch-t}"
            ;;
        *) die "unknown server '$s' in BENCH_SERVERS (corium, corium-wN, libcoap, ceiling, ceiling-tN, ceiling-batch, ceiling-batch-tN)" ;;
    esac
done

# --- report --------------------------------------------------------------------
ratio() { # A B -> A/B with 2 decimals, or n/a
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
        if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}
fmt_rps() { awk -v r="${1:-}" 'BEGIN { if (r == "") print "—"; else printf "%.0f\n", r }'; }
val() { if [ -n "${1:-}" ]; then echo "$1"; else echo "—"; fi; }

libcoap_ver="$(dpkg-query -W -f='${Version}' libcoap3-bin 2>/dev/null || echo '?')"
if commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"; then
    git -C "$REPO" diff --quiet HEAD 2>/dev/null || commit="$commit (dirty)"
else
    commit="none"
fi
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"

per_cpu() { # RPS CPU-SECONDS DURATION -> requests per server CPU-second
    awk -v r="${1:-}" -v c="${2:-}" -v d="$3" 'BEGIN {
        if (r == "" || c == "" || c + 0 == 0) print "—"; else printf "%.0f\n", r * d / c }'
}
first_of() { # PATTERN -> the first server of SERVERS matching PATTERN (a glob)
    local s
    for s in $SERVERS; do
        # shellcheck disable=SC2053  # glob match intended
        [[ "$s" == $1 ]] && { echo "$s"; return; }
    done
}

mkdir -p "$(dirname "$OUT")"
{
    echo "# CoAP server comparison (loopback)"
    echo
    echo "- date: $(date -u +%FT%TZ), commit: $commit"
    echo "- machine: $(nproc) CPUs (${cpu:-unknown}), $(uname -sr); load average (1/5/15 min) before the run: $LOADAVG, after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
    echo "- load: \`corium bench URI --sockets $SOCKETS --window $WINDOW --duration $DURATION [--non]\`, modes: $MODES, warm-up ${WARMUP}s; the load generator shares the machine"
    echo "- pinning: $PIN_NOTE"
    echo "- libcoap: coap-server-notls $libcoap_ver (Debian libcoap3-bin)"
    echo
    echo "| server | mode | path | rps | p50 µs | p99 µs | sent | ok | lost | server CPU s | req per CPU-s | idle RSS KiB | peak RSS KiB |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in $SERVERS; do
        for m in $MODES; do
            k="$s/$m"
            echo "| $s | $m | $(val "${PATHS[$s]:-}") | $(fmt_rps "${RPS[$k]:-}") | $(val "${P50[$k]:-}") | $(val "${P99[$k]:-}") | $(val "${SENT[$k]:-}") | $(val "${OK[$k]:-}") | $(val "${LOST[$k]:-}") | $(val "${CPU[$k]:-}") | $(per_cpu "${RPS[$k]:-}" "${CPU[$k]:-}" "$DURATION") | $(val "${RSS[$s]:-}") | $(val "${HWM[$s]:-}") |"
        done
    done
    echo
    echo "Ratios (requests/s, same run):"
    echo
    c="$(first_of 'corium*')"
    for m in $MODES; do
        for other in $SERVERS; do
            [ "$other" = "$c" ] && continue
            echo "- $m $c/$other: $(ratio "${RPS[$c/$m]:-}" "${RPS[$other/$m]:-}")"
        done
    done
    for m in $MODES; do
        [ -n "${P99[$c/$m]:-}" ] && [ -n "${P99[libcoap/$m]:-}" ] &&
            echo "- $m p99 $c/libcoap: $(ratio "${P99[$c/$m]:-}" "${P99[libcoap/$m]:-}")"
    done
    [ -n "${RSS[libcoap]:-}" ] && echo "- idle RSS $c/libcoap: $(ratio "${RSS[$c]:-}" "${RSS[libcoap]:-}")"
    echo
    echo "Notes:"
    echo
    echo "- Every response is a piggybacked ACK 2.05 (CON) or a NON 2.05 (NON); no block-wise, no separate responses."
    echo "- corium serves \`$CORIUM_PATH\`, its built-in test resource."
    echo "- libcoap's example server has no equivalent static resource: \`/time\` is its smallest"
    echo "  piggybacked 2.05 (about 15 bytes of formatted current time plus Max-Age: 1; the handler"
    echo "  calls time()/strftime() per request). \`/\` is a static 137-byte text with Max-Age."
    echo "  libcoap keeps one session per client endpoint and does duplicate detection."
    echo "- udp-ceiling parses only the 4-byte header and token and answers a 7-byte payload"
    echo "  with no state: the loopback UDP path's ceiling on this machine."
    echo "- server CPU s: utime + stime of the server process over the measured run (and the"
    echo "  load generator's grace period of at most 0.5 s); req per CPU-s = ok / that."
    echo "- RSS is VmRSS from /proc/PID/status after ${IDLE}s idle; peak RSS is VmHWM after the load."
    echo "- Logs of this run: $LOGDIR"
} | tee "$OUT"

exit "$FAILED"
