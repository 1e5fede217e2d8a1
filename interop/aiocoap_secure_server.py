#!/usr/bin/env python3
"""aiocoap server with TLS and WebSockets (RFC 8323) for Corium's interop tests.

Serves the resources of ``interop/aiocoap_server.py`` (same directory) over the
transports that need a certificate or a WebSocket listener::

    .venv/bin/python interop/aiocoap_secure_server.py --bind 127.0.0.1 --port P \\
        --cert server.pem --key server.key [--client-ca ca.pem]

aiocoap 0.4.17 derives every listener's port from the one ``--port``:

============  ==========  ================================================
scheme        port        aiocoap transport
============  ==========  ================================================
coap          P           ``udp6``
coap+tcp      P           ``tcpserver``
coaps+tcp     P + 1       ``tlsserver`` (ALPN ``coap``)
coap+ws       P + 3000    ``ws`` (``/.well-known/coap``, subprotocol ``coap``)
coaps+ws      P + 3001    ``ws`` with the TLS context
============  ==========  ================================================

With ``--client-ca`` the TLS listeners require a client certificate issued by
those CAs. Prints one ``LISTEN SCHEME HOST:PORT`` line per listener, then
``READY`` (flushed) once everything is bound; exits 0 on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiocoap  # noqa: E402

from aiocoap_server import build_site  # noqa: E402

# (scheme, port offset, transport) -- aiocoap 0.4.17's port rules: tlsserver
# binds port + 1 (COAPS_PORT - COAP_PORT), ws binds port + 3000 and its TLS
# twin the next port (see aiocoap/transports/ws.py, "Port choice").
LISTENERS = [
    ("coap", 0, "udp6"),
    ("coap+tcp", 0, "tcpserver"),
    ("coaps+tcp", 1, "tlsserver"),
    ("coap+ws", 3000, "ws"),
    ("coaps+ws", 3001, "ws"),
]


def server_ssl_context(args: argparse.Namespace) -> ssl.SSLContext:
    """Like aiocoap's ``--tls-server-certificate``, plus optional client auth."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=args.cert, keyfile=args.key)
    # RFC 8323 §9.1: ALPN "coap" for coaps+tcp. (The same context serves
    # coaps+ws; a client offering only "http/1.1" gets no ALPN, not an error.)
    context.set_alpn_protocols(["coap"])
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=args.client_ca)
    return context


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    transports = []
    for _, _, transport in LISTENERS:
        if transport not in transports:
            transports.append(transport)
    context = await aiocoap.Context.create_server_context(
        build_site(args),
        bind=(args.bind, args.port),
        transports=transports,
        _ssl_context=server_ssl_context(args),
    )
    for scheme, offset, _ in LISTENERS:
        print(f"LISTEN {scheme} {args.bind}:{args.port + offset}", flush=True)
    print("READY", flush=True)
    try:
        await stop.wait()
    finally:
        await context.shutdown()
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--bind", default="127.0.0.1", help="address to bind")
    p.add_argument(
        "--port",
        type=int,
        required=True,
        help="base port P (not 0: aiocoap would put coaps+ws on port 1)",
    )
    p.add_argument("--cert", required=True, help="server certificate chain (PEM)")
    p.add_argument("--key", required=True, help="private key of --cert (PEM)")
    p.add_argument(
        "--client-ca",
        help="require TLS clients to present a certificate issued by these CAs (PEM)",
    )
    p.add_argument(
        "--separate-delay",
        type=float,
        default=3.0,
        help="seconds /separate waits before answering (default 3)",
    )
    p.add_argument(
        "--obs-interval",
        type=float,
        default=1.0,
        help="seconds between /obs notifications (default 1)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.port <= 0 or args.port + 3001 > 65535:
        p.error("--port must be between 1 and 62534 (listeners go up to port + 3001)")
    return args


if __name__ == "__main__":
    ARGS = parse_args(sys.argv[1:])
    logging.basicConfig(
        level=logging.DEBUG if ARGS.verbose else logging.WARNING, stream=sys.stderr
    )
    sys.exit(asyncio.run(main(ARGS)))
