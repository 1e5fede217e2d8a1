#!/usr/bin/env bash
# Hot path of a plain GET (issue 8): instructions per request under
# `valgrind --tool=callgrind`, and heap allocations per request with a counting
# allocator. Writes bench/results/callgrind.md (with the commit hash, so that runs of
# different commits can be compared) and prints it.
#
#   bench/callgrind.sh                      # everything
#   CALLGRIND_N1=1000 CALLGRIND_N2=21000 bench/callgrind.sh
#   CALLGRIND_SERVER=0 bench/callgrind.sh   # skip the (slow) whole-server case
#   CALLGRIND_ALLOC=0 bench/callgrind.sh    # skip the allocation count
#
# Each driver runs twice, with N1 and N2 requests; Ir per request is
# (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up and set-up cancel out. Drivers (release
# profile, which keeps line tables: `debug = 1` in the workspace Cargo.toml):
#   wire      crates/corium-wire/examples/wire_hot.rs       parse a CON GET + encode its 2.05
#   endpoint  crates/corium-proto/examples/endpoint_hot.rs  sans-IO Endpoint: handle_datagram
#             -> poll_event -> respond -> poll_transmit (CON and NON)
#   server    crates/corium/examples/server_hot.rs          the real runtime server (tokio,
#             UDP socket, router, handler) and a std UdpSocket client in one process; `echo`
#             is the same client against a plain echo thread (what the server figure
#             includes beyond the server: the client loop, and two syscall wrappers)
#   allocs    crates/corium/examples/alloc_count.rs         counting global allocator
#             (stats_alloc) around N requests to the real server, CON and NON
# Callgrind counts user-space instructions only (no kernel time); figures are exact and
# repeatable for one build, so they show regressions that timings on this shared
# machine would hide.
set -euo pipefail

die() {
    echo "callgrind.sh: $*" >&2
    exit 2
}

cd "$(dirname "$0")/.."
N1=${CALLGRIND_N1:-1000}
N2=${CALLGRIND_N2:-11000}
SN1=${CALLGRIND_SERVER_N1:-500}
SN2=${CALLGRIND_SERVER_N2:-5500}
SERVER=${CALLGRIND_SERVER:-1}
ALLOC=${CALLGRIND_ALLOC:-1}
ALLOC_N=${CALLGRIND_ALLOC_N:-20000}
ALLOC_WARMUP=${CALLGRIND_ALLOC_WARMUP:-2000}
OUT=bench/results/callgrind.md

command -v valgrind >/dev/null 2>&1 || die "valgrind not found (apt-get install valgrind)"
[ "$N2" -gt "$N1" ] || die "CALLGRIND_N2 must be larger than CALLGRIND_N1"
[ "$SN2" -gt "$SN1" ] || die "CALLGRIND_SERVER_N2 must be larger than CALLGRIND_SERVER_N1"

echo "building the drivers (release, with line tables)..." >&2
cargo build --release -q \
    -p corium-wire -p corium-proto -p corium \
    --example wire_hot --example endpoint_hot --example server_hot --example alloc_count
BIN=${CARGO_TARGET_DIR:-target}/release/examples

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ir BIN ARGS...: total instructions (Ir) of one run under callgrind.
ir() {
    local out="$WORK/callgrind.out"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$WORK/valgrind.log" ||
        { cat "$WORK/valgrind.log" >&2; die "valgrind failed: $*"; }
    awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# per_request LABEL N1 N2 BIN ARGS-BEFORE-N [ARGS-AFTER-N]: one table row.
ROWS=()
per_request() {
    local label=$1 n1=$2 n2=$3 bin=$4 before=$5 after=${6:-}
    echo "callgrind: $label ($n1 and $n2 requests)..." >&2
    local a b
    # shellcheck disable=SC2086  # word splitting of the optional arguments is intended
    a=$(ir "$bin" $before "$n1" $after)
    # shellcheck disable=SC2086
    b=$(ir "$bin" $before "$n2" $after)
    local per
    per=$(awk -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" 'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
    ROWS+=("| $label | $n1 / $n2 | $a / $b | **$per** |")
    LAST_PER=$per
}

per_request "wire: parse + encode" "$N1" "$N2" "$BIN/wire_hot" ""
per_request "endpoint: CON GET" "$N1" "$N2" "$BIN/endpoint_hot" "" "con"
per_request "endpoint: NON GET" "$N1" "$N2" "$BIN/endpoint_hot" "" "non"
if [ "$SERVER" != 0 ]; then
    per_request "server: CON GET" "$SN1" "$SN2" "$BIN/server_hot" "con"
    S_CON=$LAST_PER
    per_request "server: NON GET" "$SN1" "$SN2" "$BIN/server_hot" "non"
    S_NON=$LAST_PER
    per_request "server: echo baseline" "$SN1" "$SN2" "$BIN/server_hot" "echo"
    S_ECHO=$LAST_PER
fi

ALLOC_LINES=()
if [ "$ALLOC" != 0 ]; then
    echo "allocations: $ALLOC_N requests after $ALLOC_WARMUP warm-up..." >&2
    while IFS= read -r line; do
        ALLOC_LINES+=("$line")
    done < <("$BIN/alloc_count" "$ALLOC_N" "$ALLOC_WARMUP" | grep '^RESULT')
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "# Hot path: instructions and allocations per request"
    echo
    echo "Written by \`bench/callgrind.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit \`$commit\`"
    echo "(plus any uncommitted changes in the work tree)."
    echo
    echo "Machine: $(nproc) cores, Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "(other sessions were using the machine; instruction counts do not depend on it)."
    echo "$(valgrind --version), $(rustc --version)."
    echo
    echo "## Instructions (callgrind Ir) per request"
    echo
    echo "| driver | N1 / N2 requests | total Ir at N1 / N2 | Ir per request |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    if [ "$SERVER" != 0 ]; then
        echo
        echo "Server less echo baseline (what the server itself runs per request, user space):"
        echo "CON $((S_CON - S_ECHO)), NON $((S_NON - S_ECHO)) Ir."
    fi
    if [ "$ALLOC" != 0 ]; then
        echo
        echo "## Heap allocations per request (real server, counting allocator)"
        echo
        echo "\`$BIN/alloc_count $ALLOC_N $ALLOC_WARMUP\`: whole process, only while the"
        echo "measured requests run; \`baseline\` is the client loop against a plain echo thread."
        echo
        echo '```'
        printf '%s\n' "${ALLOC_LINES[@]}"
        echo '```'
    fi
} >"$OUT"
cat "$OUT"
