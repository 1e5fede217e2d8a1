#!/usr/bin/env bash
# Installs the real CoAP peers that Corium's interop tests and benchmarks run
# against. Idempotent: does nothing (quickly) when everything is present.
#
#   - libcoap 4.3 command-line tools (Debian package libcoap3-bin):
#     coap-client-notls, coap-server-notls, coap-rd-notls (+ -openssl/-gnutls)
#   - iproute2 (`ip netns`, for the multicast tests across network namespaces)
#   - tshark (optional, best effort; never required by the tests)
#   - aiocoap[oscore,ws] + lakers-python in a virtualenv at <repo>/.venv
#
# Usage: scripts/install-peers.sh [--quiet]
#   --quiet   print nothing when nothing had to be installed
#
# Environment:
#   CORIUM_SKIP_TSHARK=1      do not try to install tshark
#   CORIUM_PYTHON=python3.X   interpreter used to create the venv (default python3)
#   CORIUM_AIOCOAP_SPEC       pip requirement for aiocoap
#                             (default 'aiocoap[oscore,ws]==0.4.17')
#   CORIUM_LAKERS_SPEC        pip requirement for lakers (default 'lakers-python==0.6.2')
#
# Exits non-zero with a message on stderr if a required peer cannot be installed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${CORIUM_PYTHON:-python3}"
# Pinned: the interop cheat-sheet (behaviours, flags, output formats) was
# written against these versions.
AIOCOAP_SPEC="${CORIUM_AIOCOAP_SPEC:-aiocoap[oscore,ws]==0.4.17}"
LAKERS_SPEC="${CORIUM_LAKERS_SPEC:-lakers-python==0.6.2}"

QUIET=0
for arg in "$@"; do
    case "$arg" in
        --quiet | -q) QUIET=1 ;;
        -h | --help)
            sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install-peers.sh: unknown argument '$arg'" >&2
            exit 2
            ;;
    esac
done

log() { echo "install-peers: $*"; }
die() {
    echo "install-peers: ERROR: $*" >&2
    exit 1
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    fi
fi

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install $* by hand (Debian/Ubuntu package names)"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

CHANGED=0

# --- libcoap -----------------------------------------------------------------
if ! command -v coap-client-notls >/dev/null 2>&1 ||
    ! command -v coap-server-notls >/dev/null 2>&1; then
    log "installing libcoap3-bin (apt)"
    apt_install libcoap3-bin || die "apt-get install libcoap3-bin failed"
    command -v coap-client-notls >/dev/null 2>&1 ||
        die "libcoap3-bin installed but coap-client-notls is not on PATH"
    CHANGED=1
fi

# --- iproute2 (`ip`: the multicast tests' network namespaces) ----------------------
if ! command -v ip >/dev/null 2>&1; then
    log "installing iproute2 (apt)"
    apt_install iproute2 || die "apt-get install iproute2 failed"
    CHANGED=1
fi

# --- tshark (optional) ---------------------------------------------------------
if [ "${CORIUM_SKIP_TSHARK:-0}" != 1 ] && ! command -v tshark >/dev/null 2>&1; then
    log "installing tshark (apt, optional)"
    if apt_install tshark; then
        CHANGED=1
    else
        echo "install-peers: WARNING: tshark could not be installed (optional, continuing)" >&2
    fi
fi

# --- aiocoap venv ----------------------------------------------------------------
venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/aiocoap-client" ] &&
        "$VENV/bin/python" - "$AIOCOAP_SPEC" "$LAKERS_SPEC" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import aiocoap, aiocoap.oscore, aiocoap.transports.ws, lakers, cbor2  # noqa: F401
for spec in sys.argv[1:]:
    # "name[extras]==X" -> require exactly X; anything else: presence is enough
    if "==" in spec:
        name, want = spec.split("==", 1)
        name = name.split("[", 1)[0].strip()
        if version(name) != want.strip():
            sys.exit(1)
EOF
}

if ! venv_ok; then
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        # Interpreter gone (e.g. created by a python that no longer exists).
        log "removing broken virtualenv $VENV"
        rm -rf -- "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3 python3-venv ||
            die "no $PYTHON and could not install python3"
        log "creating virtualenv $VENV with $("$PYTHON" --version 2>&1)"
        if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
            # Debian's system python needs python3-venv for ensurepip.
            rm -rf -- "$VENV"
            apt_install python3-venv || die "apt-get install python3-venv failed"
            "$PYTHON" -m venv "$VENV" || die "could not create virtualenv $VENV"
        fi
    fi
    log "installing $AIOCOAP_SPEC $LAKERS_SPEC (pip)"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q)
    "${PIP[@]}" install "$AIOCOAP_SPEC" "$LAKERS_SPEC" ||
        die "pip install $AIOCOAP_SPEC $LAKERS_SPEC failed"
    venv_ok || die "virtualenv $VENV still lacks aiocoap/oscore/ws/lakers after pip install"
    CHANGED=1
fi

# --- report --------------------------------------------------------------------
if [ "$QUIET" -eq 0 ] || [ "$CHANGED" -eq 1 ]; then
    libcoap_ver="$(dpkg-query -W -f='${Version}' libcoap3-bin 2>/dev/null ||
        coap-client-notls -h 2>&1 | sed -n 's/.* v\([0-9.]*\) .*/\1/p' | head -1)"
    log "libcoap   $libcoap_ver: $(command -v coap-client-notls) $(command -v coap-server-notls)"
    if command -v tshark >/dev/null 2>&1; then
        log "tshark    $(tshark --version 2>/dev/null | head -1 | sed 's/^TShark (Wireshark) //')"
    else
        log "tshark    (not installed; optional)"
    fi
    "$VENV/bin/python" - <<'EOF' | sed 's/^/install-peers: /'
import sys
from importlib.metadata import version
names = ["aiocoap", "lakers-python", "cbor2", "cryptography", "websockets"]
print("python    %s: %s" % (sys.version.split()[0], sys.executable))
print("pip pkgs  " + ", ".join("%s %s" % (n, version(n)) for n in names))
EOF
fi
