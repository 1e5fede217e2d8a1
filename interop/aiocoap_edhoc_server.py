#!/usr/bin/env python3
"""aiocoap server with EDHOC (RFC 9528) and OSCORE for Corium's interop tests.

Run it with the repository's virtualenv interpreter (aiocoap[oscore] + lakers-python)::

    .venv/bin/python interop/aiocoap_edhoc_server.py --bind 127.0.0.1 --port 5683 \\
        --credentials server.diag

``server.diag`` is an aiocoap credentials map in CBOR diagnostic notation (EDN: the
EDHOC credentials have integer map keys, which JSON cannot express), e.g.::

    {"coap://127.0.0.1:5683/*": {"edhoc-oscore": {
        "suite": 2, "method": 3, "own_cred_style": "by-key-id",
        "private_key": {1: 2, -1: 1, -4: h'...'},
        "own_cred": {14: {2: "server", 8: {1: {1: 2, 2: h'52', -1: 1, -2: h'...', -3: h'...'}}}},
        "peer_cred": {14: {2: "client", 8: {1: {1: 2, 2: h'49', -1: 1, -2: h'...', -3: h'...'}}}}
    }}}

aiocoap looks the server's own EDHOC identity up under ``<origin>/*`` of the request
(``coap://127.0.0.1:PORT/*``), so the key must name the address and port exactly.
``corium edhoc keygen`` prints credentials in both Corium's TOML and this EDN.

The site and its resources are those of ``aiocoap_oscore_server.py`` (``/oscore/hello``
etc., 4.01 unless protected), wrapped in aiocoap's ``OscoreSiteWrapper``, which answers
POST ``/.well-known/edhoc`` itself and installs the EDHOC-derived OSCORE contexts; it
accepts both the two-POST flow and the combined request (RFC 9668).

It prints ``READY`` (one line, flushed) on stdout once the UDP socket is bound and exits
with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import aiocoap
import aiocoap.credentials
import cbor2
import cbor_diag

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aiocoap_oscore_server import build_site  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    credentials = aiocoap.credentials.CredentialsMap()
    with open(args.credentials) as f:
        credentials.load_from_dict(cbor2.loads(cbor_diag.diag2cbor(f.read())))
    context = await aiocoap.Context.create_server_context(
        build_site(args, credentials),
        bind=(args.bind, args.port),
        transports=["udp6"],
    )
    print("READY", flush=True)
    try:
        await stop.wait()
    finally:
        await context.shutdown()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--bind", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=5683, help="UDP port")
    p.add_argument(
        "--credentials", required=True, help="aiocoap credentials map (EDN)"
    )
    p.add_argument(
        "--obs-interval",
        type=float,
        default=1.0,
        help="seconds between /oscore/obs notifications (default 1)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args(sys.argv[1:])
    logging.basicConfig(
        level=logging.DEBUG if ARGS.verbose else logging.WARNING, stream=sys.stderr
    )
    sys.exit(asyncio.run(main(ARGS)))
