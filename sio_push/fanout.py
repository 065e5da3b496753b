"""Delivery to this process's sockets: each push is encoded once and queued to every recipient.

A socket that sits in several target rooms of one push is a single recipient, so it gets the push once.
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
    """Writes pushes to the local sockets of `sio`, bypassing a task per recipient."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    def _encode(self, event: str, data: Any, offset: str | None) -> eio_packet.Packet:
        args = [event, data] if offset is None else [event, data, offset]
        encoded = self._sio.packet_class(sio_packet.EVENT, namespace=NAMESPACE, data=args).encode()
        return eio_packet.Packet(eio_packet.MESSAGE, encoded)

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

    async def deliver(self, push: Push, offset: str | None) -> None:
        eio_sids = self.recipients(push.rooms)
        if not eio_sids:
            return
        pkt = self._encode(push.event, push.data, offset)
        eio = self._sio.eio
        for eio_sid in eio_sids:
            await eio.send_packet(eio_sid, pkt)

    async def send_to(self, sid: str, event: str, data: Any) -> None:
        """Send one event to one local socket, with no offset (it is never replayed)."""
        await self._sio.emit(event, data, to=sid)
