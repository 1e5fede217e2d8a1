#!/usr/bin/env python3
"""Plugtest-like aiocoap server used by Corium's interop tests.

Run it with the repository's virtualenv interpreter (created by
``scripts/install-peers.sh``)::

    .venv/bin/python interop/aiocoap_server.py --bind 127.0.0.1 --port 5683

It prints ``READY`` (one line, flushed) on stdout once the UDP socket is bound
and exits with status 0 on SIGTERM or SIGINT.

Resources (all plain CoAP over UDP, no security):

=====================  ==========================================================
``/test``              GET 2.05 text; POST 2.01 + Location-Path
                       ``location1/location2/location3``; PUT 2.04; DELETE 2.02
``/separate``          GET answered after ``--separate-delay`` seconds (default 3):
                       aiocoap sends an empty ACK after 0.1 s, then a separate
                       CON 2.05 (RFC 7252 §5.2.2)
``/seg1/seg2/seg3``    GET 2.05 text (multi-segment Uri-Path)
``/query``             GET 2.05 echoing the Uri-Query options joined with ``&``
``/large``             GET 2.05, 2 000 bytes of text -> Block2 (RFC 7959)
``/multi-format``      GET 2.05 as text/plain (ct 0, default) or application/xml
                       (ct 41) chosen by Accept; any other Accept -> 4.06
``/echo``              POST/PUT/PATCH/iPATCH -> 2.04, FETCH -> 2.05; payload and
                       Content-Format of the request echoed back unchanged
``/obs``               Observable (RFC 7641) counter, notifies every
                       ``--obs-interval`` seconds (default 1)
``/link1`` .. ``/link3``  GET 2.05 text; carry plugtest-style rt/if attributes
                       for ``/.well-known/core`` filtering (RFC 6690 §4.1)
``/.well-known/core``  link-format (ct 40), supports ``?rt=``, ``?if=``, ``?ct=``,
                       ``?href=`` filters with trailing ``*`` wildcards
=====================  ==========================================================

Attributes exposed in ``/.well-known/core``:

* ``/test``        rt="test" if="core.rp" ct=0
* ``/separate``    rt="separate" ct=0
* ``/seg1/seg2/seg3`` rt="seg" ct=0
* ``/query``       rt="query" ct=0
* ``/large``       rt="block" ct=0 sz=2000
* ``/multi-format`` rt="multi" ct="0 41"
* ``/echo``        rt="echo" if="core.p"
* ``/obs``         rt="observe" ct=0 obs
* ``/link1``       rt="Type1 Type2" if="If1"
* ``/link2``       rt="Type2 Type3" if="If2"
* ``/link3``       rt="Type1 Type3" if="foo"
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import aiocoap
import aiocoap.resource as resource
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

TEXT = ContentFormat.TEXT  # 0, text/plain;charset=utf-8
XML = ContentFormat(41)  # application/xml

LARGE_BODY = b"".join(
    b"%04d abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ....\n"
    % i
    for i in range(30)
)[:2000]
assert len(LARGE_BODY) == 2000


def text(payload: str | bytes, code: Code | None = None) -> aiocoap.Message:
    """A text/plain response (Content-Format 0)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    msg = aiocoap.Message(payload=payload, content_format=TEXT)
    if code is not None:
        msg.code = code
    return msg


class Test(resource.Resource):
    """Plugtest TD_COAP_CORE_01..04 style resource."""

    rt = "test"
    if_ = "core.rp"
    ct = 0

    def __init__(self) -> None:
        super().__init__()
        self.value = b"Type: test resource\n"

    async def render_get(self, request):
        return text(self.value)

    async def render_post(self, request):
        msg = aiocoap.Message(code=Code.CREATED)
        msg.opt.location_path = ("location1", "location2", "location3")
        return msg

    async def render_put(self, request):
        self.value = request.payload
        return aiocoap.Message(code=Code.CHANGED)

    async def render_delete(self, request):
        return aiocoap.Message(code=Code.DELETED)


class Separate(resource.Resource):
    """Answers late so that the response is separate (RFC 7252 §5.2.2)."""

    rt = "separate"
    ct = 0

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def render_get(self, request):
        await asyncio.sleep(self.delay)
        return text("separate response")


class Segments(resource.Resource):
    """Reachable only as /seg1/seg2/seg3."""

    rt = "seg"
    ct = 0

    async def render_get(self, request):
        return text("seg1/seg2/seg3")


class Query(resource.Resource):
    """Echoes the Uri-Query options, joined with '&'."""

    rt = "query"
    ct = 0

    async def render_get(self, request):
        return text("&".join(request.opt.uri_query))


class Large(resource.Resource):
    """2000 bytes of text; forces Block2 (RFC 7959 §2.2)."""

    rt = "block"
    ct = 0

    def get_link_description(self):
        link = super().get_link_description()
        link["sz"] = str(len(LARGE_BODY))
        return link

    async def render_get(self, request):
        return text(LARGE_BODY)


class MultiFormat(resource.Resource):
    """text/plain or application/xml depending on Accept (RFC 7252 §5.10.4)."""

    rt = "multi"

    def get_link_description(self):
        link = super().get_link_description()
        link["ct"] = "0 41"
        return link

    async def render_get(self, request):
        accept = request.opt.accept
        if accept is None or accept == TEXT:
            return text("multi-format resource")
        if accept == XML:
            return aiocoap.Message(
                payload=b"<msg>multi-format resource</msg>", content_format=XML
            )
        return aiocoap.Message(code=Code.NOT_ACCEPTABLE)


class Echo(resource.Resource):
    """Echoes payload + Content-Format for POST/PUT/FETCH/PATCH/iPATCH."""

    rt = "echo"
    if_ = "core.p"

    @staticmethod
    def _echo(request, code: Code) -> aiocoap.Message:
        msg = aiocoap.Message(code=code, payload=request.payload)
        if request.opt.content_format is not None:
            msg.opt.content_format = request.opt.content_format
        return msg

    async def render_post(self, request):
        return self._echo(request, Code.CHANGED)

    async def render_put(self, request):
        return self._echo(request, Code.CHANGED)

    async def render_fetch(self, request):  # RFC 8132 §2
        return self._echo(request, Code.CONTENT)

    async def render_patch(self, request):  # RFC 8132 §3
        return self._echo(request, Code.CHANGED)

    async def render_ipatch(self, request):  # RFC 8132 §3
        return self._echo(request, Code.CHANGED)


class Observable(resource.ObservableResource):
    """A counter that notifies observers periodically (RFC 7641)."""

    rt = "observe"
    ct = 0

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
        return text(str(self.counter))


class Link(resource.Resource):
    """Plugtest-style /linkN resources with rt/if attributes."""

    def __init__(self, name: str, rt: str, if_: str) -> None:
        super().__init__()
        self.name = name
        self.rt = rt
        self.if_ = if_

    async def render_get(self, request):
        return text(self.name)


def build_site(args: argparse.Namespace) -> resource.Site:
    """Assemble the resource tree."""
    site = resource.Site()
    site.add_resource(
        [".well-known", "core"],
        resource.WKCResource(site.get_resources_as_linkheader, impl_info=None),
    )
    site.add_resource(["test"], Test())
    site.add_resource(["separate"], Separate(args.separate_delay))
    site.add_resource(["seg1", "seg2", "seg3"], Segments())
    site.add_resource(["query"], Query())
    site.add_resource(["large"], Large())
    site.add_resource(["multi-format"], MultiFormat())
    site.add_resource(["echo"], Echo())
    site.add_resource(["obs"], Observable(args.obs_interval))
    site.add_resource(["link1"], Link("link1", "Type1 Type2", "If1"))
    site.add_resource(["link2"], Link("link2", "Type2 Type3", "If2"))
    site.add_resource(["link3"], Link("link3", "Type1 Type3", "foo"))
    return site


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    context = await aiocoap.Context.create_server_context(
        build_site(args),
        bind=(args.bind, args.port),
        transports=args.transports.split(":"),
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
    p.add_argument(
        "--transports",
        default="udp6",
        help="colon-separated aiocoap server transports (default: udp6 only, "
        "so no TCP/WebSocket listeners are opened)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args(sys.argv[1:])
    logging.basicConfig(
        level=logging.DEBUG if ARGS.verbose else logging.WARNING, stream=sys.stderr
    )
    sys.exit(asyncio.run(main(ARGS)))
