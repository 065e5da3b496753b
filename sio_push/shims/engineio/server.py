"""`PushEngine`: python-engineio's server with light socket queues, checked polling requests, and its
websocket sessions over `transport.protocol.Connection`s."""

from __future__ import annotations

import logging
from typing import Any

import engineio
from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket

from ...logs import BadInputLog
from ...transport.batch import WriteBatch
from ...transport.protocol import Bounds, Connection
from ...transport.queue import LightQueue
from .socket import DirectSocket, packet_frame

log = logging.getLogger(__name__)


class PushEngine(engineio.AsyncServer):
    """python-engineio's server with light socket queues, and its websocket sessions over `Connection`s.

    `open_direct` and `upgrade_target` do what python-engineio's websocket connect and upgrade do, for
    the connections `transport.protocol.Front` serves itself (it sees this class as an `EioServer`).
    """

    start_service_task: bool
    bounds = Bounds()  # the app sets its own, from its settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch = WriteBatch()
        self.bad_input = BadInputLog(log)

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        """python-engineio's, with a request for a session that ended while it was handled answered 400.

        Its POST path looks the session up again (`_get_socket`) outside any `try`, and a session closed
        in between raises KeyError: the client's race, not a server error.
        """
        try:
            return await super().handle_request(*args, **kwargs)
        except (KeyError, UnboundLocalError):  # UnboundLocalError: its error path when the session is gone
            self.bad_input.warning("ended", "a request for a session that had ended; answered 400")
            return web.Response(status=400, content_type="text/plain", text='"Session is disconnected"')

    def create_queue(self, *args: Any, **kwargs: Any) -> LightQueue:
        return LightQueue()

    def adopt(self, sid: str) -> DirectSocket | None:
        """Session `sid`, which python-engineio made itself (a polling or aiohttp websocket one), as a DirectSocket.

        python-engineio builds its sockets with no hook for the class; this one class swap gives each
        the fan-out fast path.
        """
        socket = self.sockets.get(sid)
        if type(socket) is AsyncSocket:
            socket.__class__ = DirectSocket
            socket.batch = self.batch
        return socket if isinstance(socket, DirectSocket) else None

    def allowed_origin(self, environ: dict[str, str]) -> bool:
        """python-engineio's origin check for a request with WSGI-style `environ` (its HTTP_ORIGIN, HTTP_HOST...)."""
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins == [] or not origin:
            return True
        allowed = self._cors_allowed_origins(environ)
        return allowed is None or origin in allowed

    def open_direct(self, conn: Connection) -> DirectSocket:
        """A new Engine.IO session on websocket `conn`: registered, its OPEN packet written, pinged.

        The caller awaits the session's `accept` before it hands the session any packet.
        """
        if self.start_service_task:  # python-engineio's sweep of timed-out sockets, started as its connect does
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        socket = DirectSocket(self, sid)
        socket.batch = self.batch
        socket.connected = socket.upgraded = True
        socket.conn = conn
        self.sockets[sid] = socket
        opening = {
            "sid": sid,
            "upgrades": [],
            "pingTimeout": int(self.ping_timeout * 1000),
            "pingInterval": int(self.ping_interval + self.ping_interval_grace_period) * 1000,
            "maxPayload": self.max_http_buffer_size,
        }
        opened = eio_packet.Packet(eio_packet.OPEN, opening)
        socket.push(packet_frame(opened), opened)
        socket.schedule_ping()
        return socket

    def upgrade_target(self, sid: str) -> DirectSocket | None:
        """The polling session `sid` if it may upgrade now (as python-engineio decides), else None.

        Whether websocket is an allowed transport at all is `Front`'s check, made before.
        """
        socket = self.sockets.get(sid)
        if not isinstance(socket, DirectSocket):
            return None
        if not socket.connected or socket.upgraded or socket.upgrading or socket.closing or socket.closed:
            return None
        return socket
