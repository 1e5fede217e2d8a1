#!/usr/bin/env bash
# The project's full check, as run by CI (.ci/run) and by developers:
#
#   ./scripts/test.sh [EXTRA CARGO TEST ARGS...]
#
# Steps, in order (the first failure stops the run):
#   1. cargo fmt --all -- --check
#   2. cargo build -p corium-wire  --no-default-features   (no_std)
#   3. cargo build -p corium-proto --no-default-features   (no_std)
#      cargo build -p corium-oscore --no-default-features  (no_std)
#   4. cargo clippy --workspace --all-targets -- -D warnings
#   5. RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
#   6. cargo check of the fuzz targets (fuzz/, outside the workspace)
#   7. cargo test --workspace   (unit, integration and interop tests)
#
# Interop tests (crates/corium-cli/tests/) drive real peers. This script makes
# sure they are installed (scripts/install-peers.sh) and exports:
#   PATH                     with <repo>/.venv/bin first (aiocoap-client, ...)
#   CORIUM_AIOCOAP_PY        <repo>/.venv/bin/python
#   CORIUM_AIOCOAP_SERVER    <repo>/interop/aiocoap_server.py
#   CORIUM_INTEROP_REQUIRED  1: interop tests must fail, not skip, when a peer
#                            is missing (set CORIUM_INTEROP_REQUIRED=0 to relax)
#
# Environment: CORIUM_TEST_TIMEOUT (seconds, default 1500) bounds `cargo test`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash "$REPO/scripts/install-peers.sh" --quiet

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || {
        echo "test.sh: ERROR: cargo fmt/clippy missing and no rustup to add them" >&2
        exit 1
    }
    rustup component add rustfmt clippy
fi

export PATH="$REPO/.venv/bin:$PATH"
export CORIUM_AIOCOAP_PY="$REPO/.venv/bin/python"
export CORIUM_AIOCOAP_SERVER="$REPO/interop/aiocoap_server.py"
export CORIUM_INTEROP_REQUIRED="${CORIUM_INTEROP_REQUIRED:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if [ "${CI:-}" = true ]; then
    # Clean CI clones gain nothing from incremental artefacts.
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

START=$SECONDS
step() {
    local name="$1"
    shift
    local t0=$SECONDS
    echo "==> [$name] $*"
    if ! "$@"; then
        echo "==> [$name] FAILED after $((SECONDS - t0))s" >&2
        exit 1
    fi
    echo "==> [$name] ok in $((SECONDS - t0))s"
}

step fmt cargo fmt --all -- --check
step no_std-wire cargo build -p corium-wire --no-default-features
step no_std-proto cargo build -p corium-proto --no-default-features
step no_std-oscore cargo build -p corium-oscore --no-default-features
step clippy cargo clippy --workspace --all-targets -- -D warnings
step doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
# The fuzz targets (fuzz/, outside the workspace) must keep compiling against the crates.
step fuzz-check cargo check --manifest-path fuzz/Cargo.toml --bins
step test timeout --signal=TERM --kill-after=30 "${CORIUM_TEST_TIMEOUT:-1500}" \
    cargo test --workspace "$@"

echo "==> all checks passed in $((SECONDS - START))s"
