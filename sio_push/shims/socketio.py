"""python-socketio's AsyncServer with sio-push's own CONNECT path, and a rooms index per socket.

Socket.IO's connection state recovery needs what python-socketio's connect path cannot give: a private
`pid` in the CONNECT reply, a restored session keeping its old sid, and the missed pushes written right
after the CONNECT reply and before anything newer. `_handle_connect` is replaced for that and hands the
decision to a `Connector` (`sio/connect.py`); everything else (Engine.IO, events, acks, rooms
bookkeeping) stays python-socketio's. The methods below the overrides are what the rest of the package
uses instead of the manager's attributes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import socketio
from socketio import exceptions
from socketio import packet as sio_packet

from ..logs import BadInputLog
from .engineio import DirectSocket, PushEngine

log = logging.getLogger(__name__)

NAMESPACE = "/"
KEPT_ENVIRON = ("REQUEST_METHOD", "QUERY_STRING", "REMOTE_ADDR")
# Names python-socketio triggers itself: a client event with one of them would run the server's own handler.
SERVER_EVENTS = frozenset({"connect", "disconnect", "connect_error", "disconnecting"})


class Connector(Protocol):
    """What decides and sets up a Socket.IO CONNECT (`sio.connect.Connector`)."""

    async def open(self, eio_sid: str, environ: dict[str, Any], auth: dict[str, Any]) -> None: ...


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

    def in_room(self, sid: str, namespace: str, room: str) -> bool:
        return room in self._rooms_of.get((namespace, sid), ())

    def room_count(self, sid: str, namespace: str) -> int:
        rooms = self._rooms_of.get((namespace, sid), ())
        return len(rooms) - (None in rooms)

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
    """An AsyncServer on namespace "/" whose connects are decided by a `Connector` (see `attach`)."""

    eio: PushEngine
    manager: IndexedManager
    connector: Connector | None = None
    connect_timeout: float = 45.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(client_manager=IndexedManager(), **kwargs)
        self.bad_input = BadInputLog(log)
        self._departing: dict[str, asyncio.Future[None]] = {}  # sid -> done when its disconnect is over
        self.connecting: set[str] = set()  # Engine.IO sessions whose Socket.IO CONNECT is not answered yet

    def attach_connector(self, connector: Connector, connect_timeout: float) -> None:
        self.connector = connector
        self.connect_timeout = connect_timeout

    # python-socketio overrides

    def _engineio_server_class(self) -> type[PushEngine]:
        return PushEngine

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        self.connecting.add(eio_sid)
        socket = self.eio.adopt(eio_sid)
        timer = asyncio.get_running_loop().call_later(self.connect_timeout, self._expect_connected, eio_sid)
        if socket is not None:
            socket.connect_timer = timer
        # Kept for the socket's lifetime: only what the CONNECT handler reads (the token may be in the query).
        kept = {key: environ[key] for key in KEPT_ENVIRON if key in environ}
        return await super()._handle_eio_connect(eio_sid, kept)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or NAMESPACE
        if self.connector is None or namespace != NAMESPACE:
            await self.refuse(eio_sid, {"message": "Invalid namespace"}, namespace)
            return
        if self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None:
            await self.refuse(eio_sid, {"message": "Already connected"})
            return
        auth = data if isinstance(data, dict) else {}
        try:
            await self.connector.open(eio_sid, self.environ.get(eio_sid, {}), auth)
        except exceptions.ConnectionRefusedError as exc:
            await self.refuse(eio_sid, exc.error_args)
        finally:
            self.connecting.discard(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.connecting.discard(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _handle_disconnect(self, eio_sid: str, namespace: str | None, reason: Any = None) -> None:
        """python-socketio's, with the end of each sid's disconnect known to `departed`.

        A recovered session takes its old sid back, and a reconnect can arrive while the old connection's
        disconnect handler is still awaiting: the manager's own disconnect, after the handler, would then
        take the new connection out of its rooms.
        """
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or NAMESPACE)
        if sid is None or sid in self._departing:
            await super()._handle_disconnect(eio_sid, namespace, reason)
            return
        done = asyncio.get_running_loop().create_future()
        self._departing[sid] = done
        try:
            await super()._handle_disconnect(eio_sid, namespace, reason)
        finally:
            del self._departing[sid]
            done.set_result(None)

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        """python-socketio's dispatch, less binary packets, and with bad packets answered, not raised.

        None of sio-push's client events takes binary, and python-socketio keeps every attachment a
        binary packet announces: a client that sends binary is disconnected. A malformed packet is one
        log line; an event named like one of the server's own is `unknown_event`.
        """
        if isinstance(data, bytes):
            await self._drop(eio_sid, "sent binary data")
            return
        try:
            pkt = self.packet_class(encoded_packet=data)
        except Exception:  # the decoder raises whatever it meets: the client's mistake, not ours
            self.bad_input.warning(eio_sid, "eio=%s sent an undecodable Socket.IO packet", eio_sid)
            return
        kind = pkt.packet_type
        if kind == sio_packet.CONNECT:
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind == sio_packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind == sio_packet.EVENT:
            await self._event(eio_sid, pkt)
        elif kind == sio_packet.ACK:
            pass  # the server never asks clients for acknowledgements
        elif kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK):
            await self._drop(eio_sid, "sent a binary packet")
        else:
            self.bad_input.warning(eio_sid, "eio=%s sent an unexpected packet type %s", eio_sid, kind)

    async def _event(self, eio_sid: str, pkt: Any) -> None:
        data = pkt.data
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            self.bad_input.warning(eio_sid, "eio=%s sent a malformed event", eio_sid)
            if pkt.id is not None:
                await self._ack(eio_sid, pkt, {"ok": False, "error": "invalid_payload"})
            return
        if (pkt.namespace or NAMESPACE) != NAMESPACE:
            self.bad_input.warning(eio_sid, "eio=%s sent an event to namespace %r", eio_sid, str(pkt.namespace)[:64])
            return
        if data[0] in SERVER_EVENTS:
            self.bad_input.warning(eio_sid, "eio=%s sent the reserved event %r", eio_sid, data[0])
            if pkt.id is not None:
                await self._ack(eio_sid, pkt, {"ok": False, "error": "unknown_event"})
            return
        await self._handle_event(eio_sid, pkt.namespace, pkt.id, data)

    async def _ack(self, eio_sid: str, pkt: Any, answer: Any) -> None:
        await self._send_packet(
            eio_sid, self.packet_class(sio_packet.ACK, namespace=pkt.namespace, data=[answer], id=pkt.id)
        )

    async def _drop(self, eio_sid: str, why: str) -> None:
        self.bad_input.warning(eio_sid, "eio=%s %s; closing its connection", eio_sid, why)
        socket = self.eio.sockets.get(eio_sid)
        if isinstance(socket, DirectSocket):
            await socket.shut(self.reason.SERVER_DISCONNECT)

    # what the rest of the package uses

    def _expect_connected(self, eio_sid: str) -> None:
        """Close an Engine.IO session that never completed a Socket.IO CONNECT (as Socket.IO's connectTimeout)."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or self.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None:
            return
        log.info("closing eio session %s: no CONNECT within %gs", eio_sid, self.connect_timeout)
        if isinstance(socket, DirectSocket):
            self.start_background_task(socket.shut, self.reason.SERVER_DISCONNECT)

    async def refuse(self, eio_sid: str, data: Any, namespace: str = NAMESPACE) -> None:
        """Answer a CONNECT with CONNECT_ERROR carrying `data`."""
        await self._send_packet(eio_sid, self.packet_class(sio_packet.CONNECT_ERROR, data=data, namespace=namespace))

    def register(self, eio_sid: str, sid: str) -> None:
        """Make `sid` a connected socket of "/" on `eio_sid`, without yielding."""
        self.manager.basic_enter_room(sid, NAMESPACE, None, eio_sid=eio_sid)
        self.manager.basic_enter_room(sid, NAMESPACE, sid, eio_sid=eio_sid)
        socket = self.eio.sockets.get(eio_sid)
        if isinstance(socket, DirectSocket) and socket.connect_timer is not None:
            socket.connect_timer.cancel()
            socket.connect_timer = None

    def enter(self, sid: str, room: str) -> None:
        self.manager.basic_enter_room(sid, NAMESPACE, room)

    def exit(self, sid: str, room: str) -> None:
        self.manager.basic_leave_room(sid, NAMESPACE, room)

    def rooms_of(self, sid: str) -> list[str]:
        """The named rooms `sid` is in (not its own sid room)."""
        return [room for room in self.manager.get_rooms(sid, NAMESPACE) if room != sid]

    def in_room(self, sid: str, room: str) -> bool:
        return self.manager.in_room(sid, NAMESPACE, room)

    def room_count(self, sid: str) -> int:
        """How many named rooms `sid` is in."""
        return self.manager.room_count(sid, NAMESPACE) - 1  # less its own sid room

    def members_of(self, room: str) -> dict[str, str] | None:
        """The local sockets in `room`, sid -> Engine.IO sid (the manager's own map: do not change it)."""
        return self.manager.rooms.get(NAMESPACE, {}).get(room)

    def departing(self, sid: str) -> bool:
        """Whether the disconnect of `sid`'s connection is under way (its handler still running)."""
        return sid in self._departing

    async def departed(self, sid: str) -> None:
        """Return once no connection of `sid` is being disconnected: its rooms are then free to take back."""
        done = self._departing.get(sid)
        if done is not None:
            await asyncio.shield(done)

    def eio_sid_of(self, sid: str) -> str | None:
        return self.manager.eio_sid_from_sid(sid, NAMESPACE)

    def socket_of(self, eio_sid: str | None) -> Any:
        """The Engine.IO socket of `eio_sid`, if it is still open (a `DirectSocket`, or None)."""
        return self.eio.sockets.get(eio_sid) if eio_sid is not None else None

    def new_sid(self) -> str:
        return self.eio.generate_id()
