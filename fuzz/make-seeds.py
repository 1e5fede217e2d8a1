#!/usr/bin/env python3
"""Writes the seed corpora in corpus/<target>/seed-* (small, valid, RFC-derived inputs).

Run from anywhere: `python3 fuzz/make-seeds.py`. Idempotent; only seed-* files are
touched, so inputs libFuzzer added to the corpus directories are left alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def nib(v):
    """RFC 7252 §3.1 nibble + extension bytes."""
    if v < 13:
        return v, b""
    if v < 269:
        return 13, bytes([v - 13])
    return 14, struct.pack(">H", v - 269)


def options(opts):
    out, last = b"", 0
    for num, val in opts:
        dn, de = nib(num - last)
        ln, le = nib(len(val))
        out += bytes([(dn << 4) | ln]) + de + le + val
        last = num
    return out


def msg(ty, code, mid, token=b"", opts=(), payload=b""):
    """RFC 7252 §3 message; TKL 13/14 per RFC 8974 §2.1."""
    tn, te = nib(len(token))
    cls, det = code
    out = bytes([0x40 | (ty << 4) | tn, (cls << 5) | det]) + struct.pack(">H", mid) + te + token
    out += options(sorted(opts, key=lambda o: o[0]))
    if payload:
        out += b"\xff" + payload
    return out


CON, NON, ACK, RST = 0, 1, 2, 3
GET, POST, PUT, CONTENT, EMPTY = (0, 1), (0, 2), (0, 3), (2, 5), (0, 0)

MESSAGES = {
    # RFC 7252 Appendix A, Figure 16: CON GET /temperature.
    "fig16-con-get": bytes.fromhex("40017d34bb74656d7065726174757265"),
    # Figure 16's piggybacked 2.05 "22.3 C".
    "fig16-ack-content": bytes.fromhex("60457d34ff32322e332043"),
    # Figure 17, with a token.
    "token-get": msg(CON, GET, 0x7D35, b"\x20", [(11, b"temperature")]),
    "token-ack": msg(ACK, CONTENT, 0x7D35, b"\x20", [(12, b"")], b"22.3 C"),
    "empty-ack": bytes.fromhex("60007d34"),
    "rst": bytes.fromhex("70007d34"),
    "ping": bytes.fromhex("40001234"),
    # Option delta 13 (Block2 = 23) and 14 (OCF-Content-Format-Version = 2053).
    "delta13-block2": msg(ACK, CONTENT, 1, b"\x01", [(23, b"\x0a")], b"x" * 16),
    "delta14-ocf": msg(CON, GET, 2, b"\x02", [(11, b"a"), (2053, b"\x08\x01")]),
    # Option length 13 and 14.
    "len13-path": msg(CON, GET, 3, b"", [(11, b"p" * 20)]),
    "len14-path": msg(CON, GET, 4, b"", [(11, b"q" * 300)]),
    # Extended token lengths (RFC 8974): TKL 13 (20 bytes) and 14 (300 bytes).
    "tkl13": msg(CON, GET, 5, bytes(range(20)), [(11, b"t")]),
    "tkl14": msg(NON, GET, 6, bytes(300), [(11, b"t")]),
    "non-post-query": msg(NON, POST, 7, b"\xaa\xbb", [(11, b"a"), (11, b"b"), (15, b"x=1"), (12, b"\x00"), (60, b"\x10")], b"hello"),
    "observe-block1": msg(CON, PUT, 8, b"\x01\x02\x03\x04\x05\x06\x07\x08", [(6, b""), (27, b"\x0e"), (28, b"\x04\x00")], b"y" * 16),
}

URIS = [
    "coap://[::1]:5683/a/b%20c?x=1&y",
    "coap://example.com/temperature",
    "coaps://192.0.2.1:61616/.well-known/core?rt=temperature-c",
    "coap+tcp://[fe80::1%25eth0]/",
    "coap://EXAMPLE.com:/%7Esensors/temp.xml?",
    "coaps+ws://h/a//b/?q=%26&r=?/",
    "coap://198.51.100.1:61616//%2F//?%2F%2F&?%26",
]

LINKS = [
    '</sensors/temp>;if="sensor",\n</sensors/light>;if="sensor"',
    '</sensors/temp>;if="sensor",</sensors/light>;if="sensor"',
    "</sensors>;ct=40",
    '</sensors/temp>;rt="temperature-c";if="sensor",\n</sensors/light>;rt="light-lux";if="sensor"',
    '</sensors/light>;rt="light-lux core.sen-light";if="sensor"',
    '</sensors>;ct=40;title="Sensor Index",\n</sensors/temp>;rt="temperature-c";if="sensor",\n'
    '</sensors/light>;rt="light-lux";if="sensor",\n'
    '<http://www.example.com/sensors/t123>;anchor="/sensors/temp"\n;rel="describedby",\n'
    '</t>;anchor="/sensors/temp";rel="alternate"',
    '</a>;title="x\\"y, z";obs;sz=12',
]


def chunk(ctrl, dt, datagram):
    """One step of the endpoint target: ctrl, dt (x100 ms), u16 length, datagram."""
    return bytes([ctrl, dt]) + struct.pack(">H", len(datagram)) + datagram


GET_T = MESSAGES["fig16-con-get"]
ENDPOINT = {
    # Two CON requests from peer 1 (ids 1 and 2: one answered, one left pending), then
    # a duplicate, then time passes so the separate ACK and exchange lifetime expire.
    "con-dup": chunk(1, 0, GET_T) + chunk(1, 0, msg(CON, GET, 0x7D35, b"\x01", [(11, b"a")]))
    + chunk(1, 5, GET_T) + chunk(0x41, 20, b"") + chunk(1, 255, b""),
    "non-requests": chunk(2, 0, msg(NON, GET, 1, b"\x01", [(11, b"x")]))
    + chunk(3, 1, msg(NON, GET, 2, b"\x02", [(11, b"y")])) + chunk(0x40, 30, b""),
    # A separate NON response to the client's request (token AB 00) from the server peer.
    "client-response": chunk(0x10, 0, msg(NON, CONTENT, 0x1111, b"\xab\x00", [], b"22.3 C")),
    "client-rst-ping": chunk(0x10, 0, bytes.fromhex("70000000")) + chunk(0x11, 0, bytes.fromhex("40000001")),
    "multicast": chunk(0x21, 0, msg(NON, GET, 9, b"\x09", [(11, b".well-known"), (11, b"core")]))
    + chunk(0x22, 60, b""),
    "bad-option-proxy": chunk(4, 0, msg(CON, GET, 10, b"", [(9999, b"")]))
    + chunk(5, 0, msg(CON, GET, 11, b"", [(35, b"coap://x/")])),
    "malformed-con": chunk(6, 0, bytes.fromhex("4001abcdff")) + chunk(7, 0, bytes.fromhex("4f01abcd")),
    "flood": b"".join(chunk(i % 16, 0, msg(CON, GET, 100 + i, bytes([i]), [(11, b"f")])) for i in range(24))
    + chunk(0x80, 0, b"") + chunk(0x80, 10, b""),
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for name, m in MESSAGES.items():
        write("message_parse", name, m)
        # option_decode gets what follows the token.
        tkl = m[0] & 0x0F
        start = 4 + {13: 1, 14: 2}.get(tkl, 0)
        tlen = tkl if tkl < 13 else (m[4] + 13 if tkl == 13 else struct.unpack(">H", m[4:6])[0] + 269)
        rest = m[start + tlen:]
        if rest:
            write("option_decode", name, rest)
    for i, u in enumerate(URIS):
        write("uri_parse", str(i), u)
    for i, link in enumerate(LINKS):
        write("link_format", str(i), link)
    for name, data in ENDPOINT.items():
        write("endpoint", name, data)


if __name__ == "__main__":
    main()
