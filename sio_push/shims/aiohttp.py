"""The aiohttp internals sio-push relies on, all here (pinned by tests/test_shims.py).

`SocketSite` is aiohttp's TCP site with every connection read first by a `transport.protocol.Front`:
it starts its own server from `web.BaseSite`'s private settings. The connections handed to aiohttp get
its keep-alive timeout cut to the head timeout: aiohttp runs that timer from the connection's start and
after each response, and closes the connection when it fires before a complete request head, so it is
the head timeout of every request on them (and idle keep-alive connections close after it too).
`websocket_transport` finds the transport under an aiohttp websocket, for the fan-out fast path of the
sockets aiohttp still serves. `open_connections` counts aiohttp's connections, for admission.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..transport.front import Endpoint, Front
from ..transport.protocol import EioServer, Gate


class SocketSite(web.TCPSite):
    """aiohttp's TCP site, with every connection read first by a `Front` for Engine.IO server `eio`.

    :param gate: admits new connections and counts the open ones (None: all are taken).
    :param endpoint: another websocket endpoint the `Front` hands its path's handshakes to (Phoenix's).
    """

    def __init__(
        self,
        runner: web.BaseRunner,
        eio: EioServer,
        path: str,
        *args: Any,
        gate: Gate | None = None,
        endpoint: Endpoint | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(runner, *args, **kwargs)
        self._eio = eio
        self._path = path
        self._gate = gate
        self._endpoint = endpoint

    async def start(self) -> None:
        # As TCPSite.start, with a Front in front of aiohttp's own protocol.
        await web.BaseSite.start(self)
        http = self._runner.server
        if http is None:
            raise RuntimeError("Call runner.setup() before starting a site")
        handler = functools.partial(bounded_handler, http, self._eio.bounds.head_seconds)
        self._server = await asyncio.get_running_loop().create_server(
            functools.partial(Front, handler, self._eio, self._path, self._gate, self._endpoint),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


def bounded_handler(http: web.Server, head_seconds: float) -> RequestHandler:
    """aiohttp's protocol for one connection, which must send each request head within `head_seconds`.

    Set before the connection is made: aiohttp's handler reads its timeout when it starts.
    """
    handler = http()
    handler._keepalive_timeout = min(handler.keepalive_timeout, head_seconds)
    return handler


def websocket_transport(ws: web.WebSocketResponse | None) -> asyncio.WriteTransport | None:
    """The transport under aiohttp websocket `ws`, while it is open and not closing."""
    writer = getattr(ws, "_writer", None)  # None until prepared
    if writer is None or writer._closing:
        return None
    transport: asyncio.WriteTransport | None = writer.transport
    return transport


def open_connections(server: web.Server) -> int:
    """How many connections aiohttp's `server` holds open (its private map: `connections` copies it)."""
    return len(server._connections)
