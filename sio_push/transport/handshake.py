"""Websocket handshakes: what `protocol.Front` takes itself, and the answer.

`parse_websocket` reads any well-formed websocket handshake for a path (the Phoenix endpoint's too);
`parse_handshake` takes only an Engine.IO v4 one for the Socket.IO path. Anything else is aiohttp's to
answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(frozen=True)
class Handshake:
    """A websocket handshake for the Socket.IO path, as read from the request head."""

    key: str
    query: str
    sid: str | None
    headers: dict[str, str]  # the ones the origin check reads, lower-cased names

    def environ(self, peer: str) -> dict[str, Any]:
        """The WSGI-style environ python-engineio's handlers read (see server.KEPT_ENVIRON)."""
        return {"REQUEST_METHOD": "GET", "QUERY_STRING": self.query, "REMOTE_ADDR": peer}

    def origin_environ(self, scheme: str) -> dict[str, str]:
        """What python-engineio's origin check reads."""
        environ = {"wsgi.url_scheme": scheme}
        for name, key in _ORIGIN_HEADERS.items():
            if name in self.headers:
                environ[key] = self.headers[name]
        return environ


_ORIGIN_HEADERS = {
    "origin": "HTTP_ORIGIN",
    "host": "HTTP_HOST",
    "x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
    "x-forwarded-host": "HTTP_X_FORWARDED_HOST",
}
_READ_HEADERS = {
    "sec-websocket-protocol",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "content-length",
    "transfer-encoding",
    *_ORIGIN_HEADERS,
}


@dataclass(frozen=True)
class WebSocketHead:
    """A well-formed websocket handshake for a path: its key, query and the headers sio-push reads."""

    key: str
    query: str
    headers: dict[str, str]  # lower-cased names: the origin headers and sec-websocket-protocol


def parse_websocket(head: bytes, path: str) -> WebSocketHead | None:
    """The websocket handshake in request head `head` (without its blank line) for `path`, or None.

    None hands the connection to aiohttp, which answers everything else (and every malformed request)
    as it always does.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        return None
    target, _, query = parts[1].partition("?")
    if target != path:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or not name.isascii():
            return None  # includes obsolete line folding
        name = name.lower()
        if name in _READ_HEADERS:
            if name in headers:
                return None
            headers[name] = value.strip(" \t")
    if headers.get("upgrade", "").lower() != "websocket" or headers.get("sec-websocket-version") != "13":
        return None
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        return None  # a handshake with a body: aiohttp's to judge
    if "upgrade" not in (token.strip().lower() for token in headers.get("connection", "").split(",")):
        return None
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return WebSocketHead(key, query, headers)


def parse_handshake(head: bytes, path: str) -> Handshake | None:
    """The Engine.IO v4 websocket handshake in `head` for the Socket.IO path `path`, or None."""
    ws = parse_websocket(head, path)
    if ws is None:
        return None
    args = parse_qs(ws.query)
    if args.get("transport") != ["websocket"] or "j" in args:
        return None
    sids = args.get("sid")
    if sids is None and args.get("EIO") != ["4"]:
        return None
    if sids is not None and len(sids) != 1:
        return None
    origin = {name: value for name, value in ws.headers.items() if name in _ORIGIN_HEADERS}
    return Handshake(key=ws.key, query=ws.query, sid=sids[0] if sids else None, headers=origin)


def accept_response(key: str, protocol: str | None = None) -> bytes:
    """The 101 answer to a handshake with Sec-WebSocket-Key `key`, naming the subprotocol if one is chosen."""
    digest = hashlib.sha1(key.encode() + _GUID).digest()  # RFC 6455's accept key
    chosen = b"Sec-WebSocket-Protocol: " + protocol.encode() + b"\r\n" if protocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n" + chosen + b"\r\n"
    )


def unavailable_response(retry_after: int) -> bytes:
    """An HTTP 503 refusing a connection for now, to come back after `retry_after` seconds."""
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 14\r\nConnection: close\r\n\r\ntry again later" % retry_after
    )
