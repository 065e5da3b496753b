"""python-socketio's AsyncServer with sio-push's own CONNECT path.

Socket.IO's connection state recovery needs what python-socketio's connect path cannot give: a private
`pid` in the CONNECT reply, a restored session keeping its old sid, and the missed pushes written right
after the CONNECT reply and before anything newer. `_handle_connect` is replaced for that, and each
Engine.IO socket becomes a `shims.engineio.DirectSocket` as it opens; everything else (Engine.IO, events, acks,
rooms bookkeeping) stays python-socketio's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import socketio
from socketio import exceptions
from socketio import packet as sio_packet

from .shims.engineio import DirectSocket, PushEngine

if TYPE_CHECKING:
    from .sockets import Sockets

log = logging.getLogger(__name__)

NAMESPACE = "/"
KEPT_ENVIRON = ("REQUEST_METHOD", "QUERY_STRING", "REMOTE_ADDR")


class IndexedManager(socketio.AsyncManager):
    """python-socketio's manager with an index from each sid to its rooms.

    The stock manager finds a socket's rooms by scanning every room of the namespace (one per socket at
    least), so each join, leave or disconnect costs time in proportion to all the sockets connected.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rooms_of: dict[tuple[str, str], set[str | None]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: str | None, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def get_rooms(self, sid: str, namespace: str) -> list[str]:
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]


class PushServer(socketio.AsyncServer):
    """An AsyncServer whose connects are decided and set up by `Sockets` (see `attach_sockets`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(client_manager=IndexedManager(), **kwargs)

    eio: PushEngine

    def _engineio_server_class(self) -> type[PushEngine]:
        return PushEngine

    sockets: Sockets | None = None
    connect_timeout: float = 45.0

    def attach_sockets(self, sockets: Sockets, connect_timeout: float) -> None:
        self.sockets = sockets
        self.connect_timeout = connect_timeout

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        # engineio builds its sockets itself; this one class swap gives each the fan-out fast path.
        socket = self.eio.adopt(eio_sid)
        timer = asyncio.get_running_loop().call_later(self.connect_timeout, self._expect_connected, eio_sid)
        if isinstance(socket, DirectSocket):
            socket.connect_timer = timer
        # Kept for the socket's lifetime: only what the CONNECT handler reads (the token may be in the query).
        kept = {key: environ[key] for key in KEPT_ENVIRON if key in environ}
        return await super()._handle_eio_connect(eio_sid, kept)

    def _expect_connected(self, eio_sid: str) -> None:
        """Close an Engine.IO session that never completed a Socket.IO CONNECT (as Socket.IO's connectTimeout)."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None:
            return
        log.info("closing eio session %s: no CONNECT within %gs", eio_sid, self.connect_timeout)
        if isinstance(socket, DirectSocket):
            self.start_background_task(socket.shut, self.reason.SERVER_DISCONNECT)

    async def _refuse(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        await self._send_packet(eio_sid, self.packet_class(sio_packet.CONNECT_ERROR, data=data, namespace=namespace))

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or NAMESPACE
        if self.sockets is None or namespace != NAMESPACE:
            await self._refuse(eio_sid, namespace, {"message": "Invalid namespace"})
            return
        if self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None:
            await self._refuse(eio_sid, namespace, {"message": "Already connected"})
            return
        auth = data if isinstance(data, dict) else {}
        try:
            await self.sockets.open(eio_sid, self.environ.get(eio_sid, {}), auth)
        except exceptions.ConnectionRefusedError as exc:
            await self._refuse(eio_sid, namespace, exc.error_args)

    def register(self, eio_sid: str, sid: str) -> None:
        """Make `sid` a connected socket of "/" on `eio_sid`, without yielding."""
        self.manager.basic_enter_room(sid, NAMESPACE, None, eio_sid=eio_sid)
        self.manager.basic_enter_room(sid, NAMESPACE, sid, eio_sid=eio_sid)
        socket = self.eio.sockets.get(eio_sid)
        if isinstance(socket, DirectSocket) and socket.connect_timer is not None:
            socket.connect_timer.cancel()
            socket.connect_timer = None
