"""The Phoenix sockets of this process and the rooms (topics) they joined; pushes written to them.

`sio.fanout.Fanout` calls `deliver` in the same synchronous call that writes a push to the Socket.IO
sockets, so both see pushes in one order; each push is encoded once per room and serializer version.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..engines import Push
from ..transport.frames import ws_frame
from .serializer import Message, encode, payload_of

if TYPE_CHECKING:
    from .socket import PhoenixSocket

log = logging.getLogger(__name__)

SID_PREFIX = "phx:"  # a Phoenix socket's sid, for presence and `Fanout.send_to`, starts with this


class Hub:
    """sid -> Phoenix socket, and room -> the Phoenix sockets that joined it (one channel each)."""

    def __init__(self) -> None:
        self.sockets: dict[str, PhoenixSocket] = {}
        self._rooms: dict[str, dict[str, PhoenixSocket]] = {}

    def __len__(self) -> int:
        return len(self.sockets)

    def add(self, socket: PhoenixSocket) -> None:
        self.sockets[socket.sid] = socket

    def remove(self, socket: PhoenixSocket) -> None:
        """Forget a socket that went, and its channels (at once: no push reaches it after this)."""
        self.sockets.pop(socket.sid, None)
        for topic in socket.channels:
            self.exit(topic, socket)

    def enter(self, room: str, socket: PhoenixSocket) -> None:
        # Occupancy of rooms (SPEC §6, counted over every process) records the Phoenix member here.
        self._rooms.setdefault(room, {})[socket.sid] = socket

    def exit(self, room: str, socket: PhoenixSocket) -> None:
        members = self._rooms.get(room)
        if members is not None and members.pop(socket.sid, None) is not None and not members:
            del self._rooms[room]

    def members(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def deliver(self, push: Push) -> int:
        """Write `push` to every channel on its rooms, once per channel; how many channels got it.

        Broadcasts carry no join_ref and no ref, as Phoenix's do.
        """
        count = 0
        payload: Any = None
        for room in push.rooms:
            members = self._rooms.get(room)
            if not members:
                continue
            if payload is None:
                payload = payload_of(push.event, push.data)
            frames: dict[str, bytes] = {}
            for socket in members.values():
                frame = frames.get(socket.vsn)
                if frame is None:
                    frame = frames[socket.vsn] = ws_frame(
                        encode(Message(None, None, room, push.event, payload), socket.vsn)
                    )
                socket.write(frame)
            count += len(members)
        return count

    def send_to(self, sid: str, event: str, data: Any) -> bool:
        """Send one event to Phoenix socket `sid` on the topic `data["room"]`, with the channel's join_ref.

        False when `sid` is not a Phoenix socket's (it is a Socket.IO one). What names no joined topic is
        dropped: a Phoenix message always belongs to a topic.
        """
        if not sid.startswith(SID_PREFIX):
            return False
        socket = self.sockets.get(sid)
        topic = data.get("room") if isinstance(data, dict) else None
        if socket is None or not isinstance(topic, str) or topic not in socket.channels:
            log.debug("%s for %s on no joined topic: dropped", event, sid)
            return True
        socket.send(Message(socket.channels[topic], None, topic, event, payload_of(event, data)))
        return True
