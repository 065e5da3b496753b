"""Delivery to this process's sockets: each push is encoded once and written to every recipient.

The push becomes one Socket.IO EVENT packet (`2[event, data, offset]`), one Engine.IO packet and one
websocket frame; each recipient gets the frame written straight to its transport when nothing is queued
before it (`shims.engineio.DirectSocket`), else the packet queued as python-engineio does. Writes are
synchronous: a delivery chooses its recipients and writes to all of them without yielding, which
recovery relies on to replay a socket's missed pushes with nothing lost or doubled. A socket that sits in
several target rooms of one push is one recipient and gets the push once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from engineio import packet as eio_packet
from socketio import packet as sio_packet

from ..codec import dumps
from ..engines import Missed, Push
from ..metrics import Metrics
from ..shims.engineio import DirectSocket, packet_frame
from ..shims.socketio import NAMESPACE, PushServer

log = logging.getLogger(__name__)

INTERNAL = "presence_internal:"  # events between processes, never written to a socket (the API refuses presence_*)
# The newest logged pushes kept encoded (by offset, at most this many and this many bytes of frames):
# the recovering sockets of a reconnect storm replay the same recent pushes.
ENCODED_KEPT = 2000
ENCODED_BYTES = 8 * 1024 * 1024


def _send(socket: Any, frame: bytes, pkt: eio_packet.Packet) -> None:
    """One packet to one engineio socket: its ready frame on the fast path, else queued."""
    if isinstance(socket, DirectSocket):
        socket.push(frame, pkt)
    elif socket is not None and not socket.closed:
        socket.queue.put_nowait(pkt)


def encode(event: str, data: Any, offset: str | None = None) -> eio_packet.Packet:
    """The Engine.IO packet of one event of namespace "/"; the offset, if any, is its last argument."""
    args = [event, data] if offset is None else [event, data, offset]
    return eio_packet.Packet(eio_packet.MESSAGE, f"{sio_packet.EVENT}{dumps(args).decode()}")


class Others(Protocol):
    """The local members of the same rooms over another protocol (Phoenix Channels: `phoenix.hub.Hub`)."""

    def deliver(self, push: Push) -> int:
        """Write `push` to its rooms' members; how many got it."""
        ...

    def send_to(self, sid: str, event: str, data: Any) -> bool:
        """Send one event to member `sid` if it is one of these (False: not one of these)."""
        ...

    def members(self, room: str) -> int:
        """How many of these are in `room`."""
        ...


class Fanout:
    """Writes pushes to the local sockets of `server`, and of the other protocol's members, if any."""

    def __init__(self, server: PushServer, metrics: Metrics | None = None) -> None:
        self._server = server
        self._deliveries = metrics.deliveries if metrics is not None else None
        self.others: Others | None = None  # set once, when the other protocol is served
        self._intercept: Callable[[Push], bool] | None = None
        # offset -> the push's packet and frame: recovering sockets replay the same recent pushes
        self._encoded: OrderedDict[str, tuple[eio_packet.Packet, bytes]] = OrderedDict()
        self._encoded_bytes = 0

    def intercept(self, handler: Callable[[Push], bool]) -> None:
        """Show `handler` every push first: those it takes (True) are not written to sockets. Every push whose
        event starts with `INTERNAL` is for it alone, whatever it answers."""
        self._intercept = handler

    def reply_connect(self, eio_sid: str, data: dict[str, str]) -> None:
        """Queue the CONNECT reply of namespace "/" (`{"sid", "pid"}`)."""
        encoded = sio_packet.Packet(sio_packet.CONNECT, data, namespace=NAMESPACE).encode()
        self.write(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, encoded))

    def recipients(self, rooms: tuple[str, ...]) -> list[str]:
        """The Engine.IO sids of the local sockets in any of `rooms`, each once."""
        members_of = self._server.members_of
        if len(rooms) == 1:
            members = members_of(rooms[0])
            return list(members.values()) if members else []
        seen: dict[str, None] = {}
        for room in rooms:
            members = members_of(room)
            if members:
                seen.update(dict.fromkeys(members.values()))
        return list(seen)

    def has_members(self, room: str) -> bool:
        """Whether any local socket (of either protocol) is in `room` (without listing them)."""
        return bool(self._server.members_of(room)) or (self.others is not None and self.others.members(room) > 0)

    def write(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        """Send one packet to one socket at once, behind whatever it already has queued."""
        _send(self._server.socket_of(eio_sid), packet_frame(pkt), pkt)

    def _logged(self, push: Push, offset: str) -> tuple[eio_packet.Packet, bytes]:
        """The packet and frame of a logged push, encoded once for every socket that replays it."""
        encoded = self._encoded.get(offset)
        if encoded is None:
            pkt = encode(push.event, push.data, offset)
            encoded = self._encoded[offset] = (pkt, packet_frame(pkt))
            self._encoded_bytes += len(encoded[1])
            while len(self._encoded) > ENCODED_KEPT or self._encoded_bytes > ENCODED_BYTES:
                self._encoded_bytes -= len(self._encoded.popitem(last=False)[1][1])
        return encoded

    def replay(self, eio_sid: str, missed: Missed) -> None:
        """Write a recovering socket's missed pushes, in order, all at once (in one write if it can).

        They may be more than the socket's bound of unsent bytes: the client has had no time to read
        them, so the bound is raised by their size until it has (a slow reader is still cut off then).
        """
        socket = self._server.socket_of(eio_sid)
        encoded = [self._logged(push, offset) for offset, push in missed]
        packets = [pkt for pkt, _ in encoded]
        frames = [frame for _, frame in encoded]
        if not isinstance(socket, DirectSocket):
            for frame, pkt in zip(frames, packets, strict=True):
                _send(socket, frame, pkt)
            return
        size = sum(len(frame) for frame in frames)
        socket.allow(size)
        socket.push_all(frames, packets)
        socket.allow(size, written=True)

    async def deliver(self, push: Push, offset: str | None) -> None:
        taken = self._intercept is not None and self._intercept(push)
        if not taken and not push.event.startswith(INTERNAL):
            self.write_push(push, offset)

    def write_push(self, push: Push, offset: str | None = None) -> None:
        """Write `push` to the local sockets in its rooms (of both protocols), now, without yielding."""
        # Both protocols' members are written in this one synchronous call: they see pushes in one order.
        count = self.others.deliver(push) if self.others is not None else 0
        eio_sids = self.recipients(push.rooms)
        if eio_sids:
            count += len(eio_sids)
            if offset is None:
                pkt = encode(push.event, push.data)
                frame = packet_frame(pkt)
            else:
                pkt, frame = self._logged(push, offset)
            sockets = self._server.eio.sockets
            for eio_sid in eio_sids:
                _send(sockets.get(eio_sid), frame, pkt)
        if count and self._deliveries is not None:
            self._deliveries.inc(count)

    def send_to(self, sid: str, event: str, data: Any) -> None:
        """Send one event to one local socket, with no offset (it is never replayed)."""
        if self.others is not None and self.others.send_to(sid, event, data):
            return
        eio_sid = self._server.eio_sid_of(sid)
        if eio_sid is not None:
            self.write(eio_sid, encode(event, data))
