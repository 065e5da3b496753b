"""The first reader of every connection: its request head decides who serves it.

A plain Engine.IO websocket handshake on the Socket.IO path becomes a `protocol.Connection`; a handshake
on another endpoint's path (Phoenix's) goes to that `Endpoint`; a new connection over the admission
`Gate`'s limits is answered 503 at once; anything else (the push API, long polling, a handshake with
anything unusual) is handed untouched to aiohttp, replaying the bytes read so far. A head must arrive
within the head timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

from .handshake import Handshake, parse_handshake, unavailable_response
from .protocol import Connection, EioServer, Gate

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024  # a longer request head is aiohttp's to judge


class _Open:
    """No admission: every connection is taken."""

    def opened(self) -> None:
        pass

    def closed(self) -> None:
        pass

    def retry_after(self) -> int:
        return 0


class Endpoint(Protocol):
    """Another websocket endpoint served on the same port (Phoenix Channels' `/socket/websocket`)."""

    @property
    def path(self) -> str: ...
    def take(self, transport: asyncio.Transport, head: bytes, rest: bytes, gate: Gate) -> bool:
        """Take the connection whose request head (no blank line) is `head`, `rest` read after it.

        False leaves the transport untouched, for aiohttp to answer. The endpoint refuses a new connection
        with `unavailable_response` while `gate.retry_after()` says so (the `Front` stays the protocol then,
        and releases the gate); a protocol it sets on the transport calls `gate.closed()` when it is lost.
        """
        ...


class Front(asyncio.Protocol):
    """Reads a new connection's request head, then gives the connection to a `Connection`, the endpoint
    (if one is served and the path is its), or aiohttp.

    A new websocket session (a handshake without a `sid`) over the gate's limits is answered 503 here,
    before anything is set up for it. The gate counts the connection from here until it closes or goes
    to aiohttp (which counts its own).
    """

    __slots__ = (
        "_eio",
        "_endpoint",
        "_endpoint_prefix",
        "_gate",
        "_head",
        "_http",
        "_lf_from",
        "_path",
        "_prefix",
        "_timer",
        "_transport",
    )

    def __init__(
        self,
        http: Callable[[], asyncio.Protocol],
        eio: EioServer,
        path: str,
        gate: Gate | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        self._http = http
        self._eio = eio
        self._path = path
        self._gate: Gate = gate if gate is not None else _Open()
        self._prefix = b"GET " + path.encode()
        self._endpoint = endpoint
        self._endpoint_prefix = b"GET " + endpoint.path.encode() if endpoint is not None else None
        self._head = bytearray()
        self._lf_from = 0  # line ends before this offset have been checked
        self._transport: asyncio.Transport = cast(asyncio.Transport, None)  # set at once by the loop
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream server's transports are
        self._gate.opened()
        self._timer = asyncio.get_running_loop().call_later(self._eio.bounds.head_seconds, self._transport.close)

    def data_received(self, data: bytes) -> None:
        head = self._head
        head += data
        ours = _begins(head, self._prefix)
        other = self._endpoint_prefix
        if not ours and (other is None or not _begins(head, other)):
            self._hand_off()  # not a GET of the Socket.IO path (or the endpoint's): nothing to wait for
            return
        end = head.find(b"\r\n\r\n", max(self._lf_from - 3, 0))
        if end < 0:
            if len(head) > MAX_HEAD or self._bare_lf():
                self._hand_off()
            return
        if not ours and self._endpoint is not None:
            self._stop_timer()  # the endpoint answers 503 itself while the gate refuses new connections
            if not self._endpoint.take(self._transport, bytes(head[:end]), bytes(head[end + 4 :]), self._gate):
                self._hand_off()
            return
        handshake = parse_handshake(bytes(head[:end]), self._path)
        if handshake is None or not self._allowed(handshake):
            self._hand_off()
            return
        target = None
        if handshake.sid is not None:
            target = self._eio.upgrade_target(handshake.sid)
            if target is None:
                self._hand_off()  # python-engineio answers a bad or finished session with its 400
                return
        else:
            retry_after = self._gate.retry_after()
            if retry_after:
                self._stop_timer()
                self._transport.write(unavailable_response(retry_after))
                self._transport.close()
                return
        self._stop_timer()
        transport = self._transport
        conn = Connection(transport, self._eio, self._gate)
        transport.set_protocol(conn)
        conn.open(handshake, target)
        if len(head) > end + 4:
            conn.data_received(bytes(head[end + 4 :]))

    def _bare_lf(self) -> bool:
        """Whether a line of the head ends in LF alone (aiohttp answers those; this parser does not)."""
        head = self._head
        at = head.find(b"\n", self._lf_from)
        while at >= 0:
            if at == 0 or head[at - 1] != 0x0D:
                return True
            at = head.find(b"\n", at + 1)
        self._lf_from = len(head)
        return False

    def _allowed(self, handshake: Handshake) -> bool:
        """python-engineio's transport list and origin check, which aiohttp's path applies too."""
        if "websocket" not in self._eio.transports:
            return False
        scheme = "https" if self._transport.get_extra_info("sslcontext") else "http"
        return self._eio.allowed_origin(handshake.origin_environ(scheme))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_off(self) -> None:
        self._stop_timer()
        self._gate.closed()  # aiohttp's from here
        data, self._head = bytes(self._head), bytearray()
        transport = self._transport
        protocol = self._http()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)

    def eof_received(self) -> bool | None:
        self._hand_off()
        protocol = cast(asyncio.Protocol, self._transport.get_protocol())
        return protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._gate.closed()


def _begins(head: bytearray, prefix: bytes) -> bool:
    """Whether `head` (complete or not yet) may begin with `prefix`."""
    return head[: len(prefix)] == prefix[: len(head)]
