# shellcheck shell=bash disable=SC2034  # sets variables for the sourcing script
# Shared by the benchmark scripts (sourced, not run): CPU pinning of server and load,
# and stopping the server on exit. Expects `die` to be defined.

# pin_cpus PIN SERVER_CPU CLIENT_CPU CLIENT_LABEL: sets SERVER_PIN / CLIENT_PIN (command
# prefixes) and PIN_NOTE. PIN: 0 = never, 1 = required, anything else = when possible
# (taskset present and >= 2 CPUs), so that server and load each get a core of their own.
pin_cpus() {
    SERVER_PIN=()
    CLIENT_PIN=()
    PIN_NOTE="not pinned"
    if [ "$1" != 0 ] && command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
        SERVER_PIN=(taskset -c "$2")
        CLIENT_PIN=(taskset -c "$3")
        PIN_NOTE="server on CPU $2, $4 on CPU $3 (taskset)"
    elif [ "$1" = 1 ]; then
        die "BENCH_PIN=1 but taskset is missing or fewer than 2 CPUs"
    fi
}

# stop_server: SIGTERM the process in $SERVER_PID (if any) and reap it.
stop_server() {
    if [ -n "${SERVER_PID:-}" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}

# stop_server_on_exit: runs stop_server when the script exits or is interrupted.
stop_server_on_exit() {
    SERVER_PID=""
    trap stop_server EXIT
    trap 'exit 130' INT TERM
}
