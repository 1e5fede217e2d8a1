#!/usr/bin/env python3
"""aiocoap server with OSCORE (RFC 8613) for Corium's interop tests.

Run it with the repository's virtualenv interpreter (aiocoap[oscore])::

    .venv/bin/python interop/aiocoap_oscore_server.py --bind 127.0.0.1 --port 5683 \\
        --credentials server.json

``server.json`` is an aiocoap credentials map, e.g.::

    {"coap://127.0.0.1:5683/*": {"oscore": {"basedir": "server-ctx/"}}}

with ``server-ctx/settings.json`` holding ``sender-id_hex``, ``recipient-id_hex``,
``secret_hex``, ``salt_hex`` (and optionally ``id-context_hex``, ``algorithm``); aiocoap
keeps its sequence numbers in ``server-ctx/sequence.json``. The site is wrapped in
aiocoap's ``OscoreSiteWrapper`` (as ``contrib/oscore-plugtest`` and
``aiocoap-fileserver`` do): protected requests are verified with a context of the map
found by their kid, and their responses protected.

It prints ``READY`` (one line, flushed) on stdout once the UDP socket is bound and exits
with status 0 on SIGTERM or SIGINT.

Resources:

=====================  ==========================================================
``/oscore/hello``      GET 2.05 ``Hello World!`` (text/plain); 4.01 unless protected
``/oscore/large``      GET 2.05, 2 000 bytes of text: aiocoap fragments it *before*
                       protecting (inner Block2, RFC 8613 §4.1.3.4.1)
``/oscore/echo``       POST 2.04 echoing the payload; 4.01 unless protected
``/oscore/obs``        observable counter, notifies every ``--obs-interval`` seconds;
                       4.01 unless protected
``/public``            GET 2.05 ``public``, no protection needed
=====================  ==========================================================
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

import aiocoap
import aiocoap.credentials
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper
from aiocoap.transports.oscore import OSCOREAddress

TEXT = ContentFormat.TEXT

LARGE_BODY = b"".join(
    b"%04d abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ....\n"
    % i
    for i in range(30)
)[:2000]
assert len(LARGE_BODY) == 2000


def text(payload: str | bytes, code: Code = Code.CONTENT) -> aiocoap.Message:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return aiocoap.Message(code=code, payload=payload, content_format=TEXT)


def protected(request) -> bool:
    """Whether the request came through OSCORE (the site wrapper sets the remote)."""
    return isinstance(request.remote, OSCOREAddress)


def unauthorized() -> aiocoap.Message:
    return aiocoap.Message(code=Code.UNAUTHORIZED, payload=b"OSCORE required")


class Hello(resource.Resource):
    async def render_get(self, request):
        if not protected(request):
            return unauthorized()
        return text("Hello World!")


class Large(resource.Resource):
    async def render_get(self, request):
        if not protected(request):
            return unauthorized()
        return text(LARGE_BODY)


class Echo(resource.Resource):
    async def render_post(self, request):
        if not protected(request):
            return unauthorized()
        return aiocoap.Message(code=Code.CHANGED, payload=request.payload)


class Counter(resource.ObservableResource):
    def __init__(self, interval: float) -> None:
        super().__init__()
        self.interval = interval
        self.counter = 0
        self._task: asyncio.Task | None = None

    def update_observation_count(self, newcount):
        if newcount and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick())
        elif not newcount and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.counter += 1
            self.updated_state()

    async def render_get(self, request):
        if not protected(request):
            return unauthorized()
        return text(str(self.counter))


class Public(resource.Resource):
    async def render_get(self, request):
        return text("public")


def build_site(args: argparse.Namespace, credentials) -> OscoreSiteWrapper:
    site = resource.Site()
    site.add_resource(
        [".well-known", "core"],
        resource.WKCResource(site.get_resources_as_linkheader, impl_info=None),
    )
    site.add_resource(["oscore", "hello"], Hello())
    site.add_resource(["oscore", "large"], Large())
    site.add_resource(["oscore", "echo"], Echo())
    site.add_resource(["oscore", "obs"], Counter(args.obs_interval))
    site.add_resource(["public"], Public())
    return OscoreSiteWrapper(site, credentials)


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    credentials = aiocoap.credentials.CredentialsMap()
    with open(args.credentials) as f:
        credentials.load_from_dict(json.load(f))
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
        "--credentials", required=True, help="aiocoap credentials map (JSON)"
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
