#!/usr/bin/env bash
# Block-wise transfer of one large resource over loopback (RFC 7959), Corium client and
# server against libcoap client and server, in one run, same block size:
#
#   corium:  `corium serve --max-body N` + `corium put -f FILE -b SIZE URI/large-update`,
#            then `corium get -b SIZE URI/large-update -o OUT` (timed)
#   libcoap: `coap-server-notls` + `coap-client-notls -m put -b SIZE -f FILE URI/example_data`,
#            then `coap-client-notls -b SIZE URI/example_data > OUT` (timed)
#
# Each GET runs BENCH_RUNS times; the median wall time is reported, with the bytes
# checked against the uploaded file. CON requests, one block in flight (RFC 7959 is
# lock-step), so the figure is round trips per second of each stack.
#
# Environment: BENCH_BYTES [10000000] BENCH_BLOCK [1024] BENCH_RUNS [5]
#              BENCH_PORT_BASE [56930] BENCH_NO_BUILD [0] BENCH_OUT [bench/results/blockwise.md]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BYTES="${BENCH_BYTES:-10000000}"
BLOCK="${BENCH_BLOCK:-1024}"
RUNS="${BENCH_RUNS:-5}"
PORT_BASE="${BENCH_PORT_BASE:-56930}"
OUT="${BENCH_OUT:-$REPO/bench/results/blockwise.md}"
CORIUM="$REPO/target/release/corium"
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build --release -q -p corium-cli
command -v coap-server-notls >/dev/null || { echo "coap-server-notls missing: run scripts/install-peers.sh" >&2; exit 1; }

WORK="$(mktemp -d /tmp/corium-blockwise.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
head -c "$BYTES" /dev/urandom > "$WORK/file.bin"

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# $1 name, $2 upload cmd, $3 download cmd (writes $WORK/got.bin); prints median ms.
measure() {
    local name="$1" up="$2" down="$3" times=() t0 t1
    eval "$up" >/dev/null 2>"$WORK/$name-put.err" || { echo "$name: upload failed" >&2; cat "$WORK/$name-put.err" >&2; exit 1; }
    for _ in $(seq "$RUNS"); do
        rm -f "$WORK/got.bin"
        t0=$(now_ns)
        eval "$down" 2>"$WORK/$name-get.err" || { echo "$name: download failed" >&2; cat "$WORK/$name-get.err" >&2; exit 1; }
        t1=$(now_ns)
        # libcoap's client appends a newline to what it prints.
        head -c "$BYTES" "$WORK/got.bin" | cmp -s - "$WORK/file.bin" || { echo "$name: bytes differ" >&2; exit 1; }
        times+=($(( (t1 - t0) / 1000000 )))
    done
    printf '%s\n' "${times[@]}" | median
}

CPORT=$((PORT_BASE + 1)); LPORT=$((PORT_BASE + 2))
"$CORIUM" serve --bind "127.0.0.1:$CPORT" --max-body "$BYTES" >"$WORK/corium.log" 2>&1 & PIDS+=($!)
coap-server-notls -A 127.0.0.1 -p "$LPORT" >"$WORK/libcoap.log" 2>&1 & PIDS+=($!)
sleep 1

corium_ms=$(measure corium \
    "'$CORIUM' put -b $BLOCK -f '$WORK/file.bin' --timeout 120 coap://127.0.0.1:$CPORT/large-update" \
    "'$CORIUM' get -b $BLOCK --timeout 120 -o '$WORK/got.bin' coap://127.0.0.1:$CPORT/large-update")
libcoap_ms=$(measure libcoap \
    "coap-client-notls -m put -b $BLOCK -B 120 -f '$WORK/file.bin' coap://127.0.0.1:$LPORT/example_data" \
    "coap-client-notls -b $BLOCK -B 120 coap://127.0.0.1:$LPORT/example_data > '$WORK/got.bin'")

blocks=$(( (BYTES + BLOCK - 1) / BLOCK ))
report=$(cat <<REPORT
### Block-wise GET of $BYTES bytes, $BLOCK-byte blocks ($blocks blocks), median of $RUNS

| stack (client + server) | time ms | blocks/s | MB/s |
|---|---:|---:|---:|
| corium + corium serve | $corium_ms | $(( blocks * 1000 / (corium_ms > 0 ? corium_ms : 1) )) | $(awk "BEGIN {printf \"%.1f\", $BYTES / 1000 / ($corium_ms > 0 ? $corium_ms : 1)}") |
| coap-client-notls + coap-server-notls | $libcoap_ms | $(( blocks * 1000 / (libcoap_ms > 0 ? libcoap_ms : 1) )) | $(awk "BEGIN {printf \"%.1f\", $BYTES / 1000 / ($libcoap_ms > 0 ? $libcoap_ms : 1)}") |

Ratio (libcoap time / corium time, > 1 means Corium is faster): $(awk "BEGIN {printf \"%.2f\", $libcoap_ms / ($corium_ms > 0 ? $corium_ms : 1)}")
REPORT
)
mkdir -p "$(dirname "$OUT")"
echo "$report" | tee "$OUT"
