"""What Phoenix sockets may do: connect, join and leave topics (§1's rooms), type; with Socket.IO's rules.

A join is decided by `sio.handlers.JoinRules`, the same decision as a Socket.IO `join`; presence goes
through the Socket.IO layer's `PresenceTracker` with the Phoenix socket's sid, so members of one room
see each other whichever protocol they speak. Replies follow Phoenix's own server: a message on a topic
not joined answers `{"reason": "unmatched topic"}`, a `phx_leave` is answered ok, then `phx_close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..auth import Auth, Identity
from ..errors import AuthError, BackendUnavailable
from ..logs import BadInputLog
from ..metrics import Metrics
from ..rooms import Room, parse_room
from ..sio.counting import UserCount
from ..sio.handlers import JoinRules, typing_changes
from ..sio.presence import PresenceTracker
from ..sio.revocation import Revoked
from ..tasks import paced
from ..transport.frames import GOING_AWAY, NORMAL
from .hub import Hub
from .serializer import Message, reply

if TYPE_CHECKING:
    from .socket import PhoenixSocket

log = logging.getLogger(__name__)


def _refusal(message: Message, reason: str) -> Message:
    return reply(message, "error", {"reason": reason})


class Channels:
    """The Phoenix side of one app.

    :param auth: decides connects and joins.
    :param joins: the join decision shared with Socket.IO's `join`.
    :param tracker: counts every room's members and tracks presence in `room:*` ones (Socket.IO's too).
    :param hub: the Phoenix sockets of this process and their rooms.
    :param metrics: counts Phoenix sockets.
    :param timeout: seconds a socket may send nothing before it is closed.
    :param events_per_second: each socket's message rate (burst twice that), heartbeats not counted.
    :param max_message_bytes: the largest message a client may send.
    :param max_buffer: unsent bytes a socket may hold before it is cut off as one that does not read.
    :param recheck_seconds: callback mode: how often the backend is asked again about each socket's
                            token (0: never; JWT tokens run out at their `exp` instead).
    """

    def __init__(
        self,
        auth: Auth,
        joins: JoinRules,
        tracker: PresenceTracker,
        hub: Hub,
        metrics: Metrics,
        timeout: float = 60.0,
        events_per_second: float = 20.0,
        max_message_bytes: int = 64 * 1024,
        max_buffer: int = 8 * 1024 * 1024,
        recheck_seconds: float = 0.0,
        revoked: Revoked | None = None,
        user_count: UserCount | None = None,
    ) -> None:
        self._auth = auth
        self._joins = joins
        self._tracker = tracker
        self.hub = hub
        self._metrics = metrics
        self.timeout = timeout
        self.events_per_second = events_per_second
        self.max_message_bytes = max_message_bytes
        self.max_buffer = max_buffer
        self.recheck_seconds = recheck_seconds
        self._revoked = revoked
        self._user_count = user_count
        self.bad_input = BadInputLog(log)
        self._tasks: set[asyncio.Task[None]] = set()

    async def recheck(self, token: str, user_id: str) -> bool | None:
        """Callback mode: whether the backend still takes `token` for `user_id` (False only on a refusal)."""
        return await self._auth.recheck(token, user_id)

    async def connect(self, token: object, sid: str) -> Identity:
        """Who connecting socket `sid` is; raises AuthError to refuse it (403).

        The one place a Phoenix connect is decided, with the checks of a Socket.IO CONNECT (SPEC §7): a
        revoked token, and a user at its socket limit (the socket is counted from here; `gone` releases it).
        """
        identity = await self._auth.authenticate(token)
        if self._revoked is not None:
            await self._revoked.admit(identity)
        if self._user_count is not None and not await self._user_count.acquire(identity.user_id, sid):
            raise AuthError("too_many_connections")
        return identity

    def release(self, user_id: str, sid: str) -> None:
        """Stop counting socket `sid` of `user_id` (gone, or gone before its handshake was answered)."""
        if self._user_count is not None:
            self.spawn(self._user_count.release(user_id, sid))

    def opened(self, socket: PhoenixSocket) -> None:
        self.hub.add(socket)
        self._metrics.phoenix_sockets.inc()
        user = socket.identity.user_id if socket.identity else None
        log.debug("phoenix connected sid=%s user=%s vsn=%s", socket.sid, user, socket.vsn)

    def gone(self, socket: PhoenixSocket) -> None:
        """A socket ended: out of every room at once, then out of presence and the rooms' counts."""
        self.hub.remove(socket)
        self._metrics.phoenix_sockets.dec()
        if socket.identity is not None:
            self.release(socket.identity.user_id, socket.sid)
        topics = list(socket.channels)
        socket.channels.clear()
        if topics:
            self.spawn(self._exited(topics, socket.sid))
        log.debug("phoenix disconnected sid=%s", socket.sid)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background, awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _exited(self, topics: list[str], sid: str) -> None:
        for topic in topics:
            await self._tracker.exited(topic, sid)

    async def handle(self, socket: PhoenixSocket, message: Message) -> None:
        """One message from a client (not a heartbeat), in the order sent."""
        event = message.event
        if event == "phx_join":
            await self._join(socket, message)
        elif event == "phx_leave":
            await self._leave(socket, message)
        elif message.topic not in socket.channels:
            socket.send(_refusal(message, "unmatched topic"))
        elif event == "user:typing":
            await self._typing(socket, message)
        else:
            self.bad_input.warning(socket.sid, "unknown event %r from %s ignored", event[:64], socket.sid)
            socket.send(_refusal(message, "unknown_event"))

    async def _join(self, socket: PhoenixSocket, message: Message) -> None:
        identity = socket.identity
        if identity is None:
            return
        topic = message.topic
        if topic in socket.channels:
            # A rejoin (phoenix.js rejoins with a new join_ref): as Phoenix, the old channel closes first.
            await self._exit(socket, topic)
        room = await self._joins.decide(f"sid={socket.sid}", identity, topic, socket.channels)
        if not isinstance(room, Room):
            socket.send(_refusal(message, room))
            return
        if socket.closed or topic in socket.channels:  # gone, or joined by a message meanwhile
            return
        socket.channels[topic] = message.join_ref
        self.hub.enter(topic, socket)
        socket.send(reply(message, "ok", {}))
        await self._tracker.entered(topic, socket.sid, identity)
        log.debug("phoenix joined sid=%s user=%s room=%s", socket.sid, identity.user_id, topic)

    async def _leave(self, socket: PhoenixSocket, message: Message) -> None:
        socket.send(reply(message, "ok", {}))
        if message.topic in socket.channels:
            await self._exit(socket, message.topic)

    async def _exit(self, socket: PhoenixSocket, topic: str) -> None:
        """Close the channel on `topic`: out of the room, `phx_close` with its join_ref, out of presence."""
        join_ref = socket.channels.pop(topic)
        self.hub.exit(topic, socket)
        socket.send(Message(join_ref, join_ref, topic, "phx_close", {}))
        await self._tracker.exited(topic, socket.sid)
        log.debug("phoenix left sid=%s room=%s", socket.sid, topic)

    async def _typing(self, socket: PhoenixSocket, message: Message) -> None:
        payload: Any = message.payload
        changes = typing_changes(payload) if isinstance(payload, dict) else None
        if changes is None:
            socket.send(_refusal(message, "invalid_payload"))
            return
        room = parse_room(message.topic)
        if room is None or not room.has_presence:
            socket.send(_refusal(message, "invalid_room"))
            return
        try:
            await self._tracker.typing(room, socket.sid, changes)
        except BackendUnavailable:
            socket.send(_refusal(message, "unavailable"))
            return
        socket.send(reply(message, "ok", {}))

    def sockets_of(self, user_id: object = None, sid: object = None) -> list[PhoenixSocket]:
        """This process's Phoenix sockets of user `user_id`, or the one of `sid`."""
        if isinstance(sid, str):
            socket = self.hub.sockets.get(sid)
            return [socket] if socket is not None else []
        return [s for s in self.hub.sockets.values() if s.identity is not None and s.identity.user_id == user_id]

    async def disconnect(self, user_id: object, sid: object) -> int:
        """The backend's `/api/disconnect` (SPEC §7): close the matching sockets; how many.

        phoenix.js reconnects by itself; the revocation refuses its old token then (403).
        """
        targets = self.sockets_of(user_id, sid)
        for socket in targets:
            log.info("disconnecting %s: revoked by the backend", socket.sid)
            socket.close(NORMAL)
        return len(targets)

    async def unsubscribe(self, user_id: str, room: str) -> int:
        """The backend's `/api/unsubscribe` (SPEC §7): the user's sockets leave `room`; how many."""
        targets = [socket for socket in self.sockets_of(user_id) if room in socket.channels]
        for socket in targets:
            await self.remove(socket, room, "revoked")
        return len(targets)

    async def remove(self, socket: PhoenixSocket, topic: str, reason: str) -> None:
        """Take `socket` out of `topic` on the server's decision (SPEC §7 unsubscribe, a refresh's rooms):
        `room_left` `{"room", "reason"}` on the topic, then `phx_close`, as a Phoenix server would."""
        if topic not in socket.channels:
            return
        join_ref = socket.channels[topic]
        socket.send(Message(join_ref, None, topic, "room_left", {"room": topic, "reason": reason}))
        await self._exit(socket, topic)

    async def close(self, drain_seconds: float = 0.0) -> None:
        """Close every Phoenix socket (shutdown) with 1001, so that phoenix.js reconnects elsewhere, spread
        evenly over `drain_seconds` (0: all at once), as the Socket.IO layer does its own.

        Their presence is untracked before this returns, so the leaves are sent with the last diffs.
        """
        sockets = list(self.hub.sockets.values())
        async for socket in paced(sockets, drain_seconds):
            socket.close(GOING_AWAY)
        if sockets:
            log.info("closed %d Phoenix sockets for shutdown over %gs", len(sockets), drain_seconds)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
