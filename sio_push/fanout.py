"""Delivery to this process's sockets: each push is encoded once and queued to every recipient.

Writes are synchronous (a queue put per recipient, no task per recipient), so a delivery chooses its
recipients and queues to all of them without yielding: recovery relies on that to replay a socket's
missed pushes with nothing lost or doubled between the replay and live delivery. A socket that sits
in several target rooms of one push is one recipient and gets the push once.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .broker import Push

log = logging.getLogger(__name__)

NAMESPACE = "/"


class Fanout:
    """Writes pushes to the local sockets of `sio`."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def encode(self, event: str, data: Any, offset: str | None = None) -> eio_packet.Packet:
        """The Engine.IO packet of one event; the offset, when there is one, is its last argument."""
        args = [event, data] if offset is None else [event, data, offset]
        encoded = self._sio.packet_class(sio_packet.EVENT, namespace=NAMESPACE, data=args).encode()
        return eio_packet.Packet(eio_packet.MESSAGE, encoded)

    def reply_connect(self, eio_sid: str, data: dict[str, str]) -> None:
        """Queue the CONNECT reply of namespace "/" (`{"sid", "pid"}`)."""
        encoded = self._sio.packet_class(sio_packet.CONNECT, data, namespace=NAMESPACE).encode()
        self.write(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, encoded))

    def recipients(self, rooms: tuple[str, ...]) -> list[str]:
        """The Engine.IO sids of the local sockets in any of `rooms`, each once."""
        namespace = self._sio.manager.rooms.get(NAMESPACE, {})
        if len(rooms) == 1:
            members = namespace.get(rooms[0])
            return list(members.values()) if members else []
        seen: dict[str, None] = {}
        for room in rooms:
            members = namespace.get(room)
            if members:
                seen.update(dict.fromkeys(members.values()))
        return list(seen)

    def write(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        """Queue one packet to one socket's writer, at once."""
        socket = self._sio.eio.sockets.get(eio_sid)
        if socket is not None and not socket.closed:
            socket.queue.put_nowait(pkt)

    async def deliver(self, push: Push, offset: str | None) -> None:
        eio_sids = self.recipients(push.rooms)
        if not eio_sids:
            return
        pkt = self.encode(push.event, push.data, offset)
        for eio_sid in eio_sids:
            self.write(eio_sid, pkt)

    def send_to(self, sid: str, event: str, data: Any) -> None:
        """Send one event to one local socket, with no offset (it is never replayed)."""
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is not None:
            self.write(eio_sid, self.encode(event, data))
