"""The engine's interfaces for who may stay: recoverable sessions, commands to every process, the backend's
revocations, and each user's sockets over every process.

Sessions are Socket.IO 4.6's connection state recovery, kept where any process can find them. A session
(private id `pid`) records what a socket needs back after a drop: its sid, its user, its rooms, and where
in the broker's log it began. The identity itself comes from the token, checked again on every reconnect
(an expired token is refused, not recovered). Sessions are saved whenever they change, not only at
disconnect, so a client whose process died recovers on another. A session can be claimed once, by its
own user, within the recovery window after its end; a session still marked live can be claimed too (its
process died, or the client noticed the drop first) and its old connection is then closed. Only the owner
connection (`conn`) of a session may save or end it, so a late disconnect of an old connection never
overwrites the session that a reconnect took over.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Session:
    """A recoverable session; `conn` is its owner connection, `node` the process that holds it."""

    pid: str
    sid: str
    user_id: str
    rooms: tuple[str, ...]
    start: str
    conn: str
    node: str
    ended_at: float | None = None
    since: tuple[str, ...] = ()  # the broker's position when each of `rooms` was joined, in the same order
    saved_at: float | None = None  # unix time of its last change (a revocation after it is not in it yet)

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # a dataclass, its fields in order

    @classmethod
    def from_json(cls, raw: str | bytes) -> Session:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**{**data, "rooms": tuple(data["rooms"]), "since": tuple(data.get("since", ()))})

    def joined_at(self) -> dict[str, str]:
        """room -> the broker's position when the session joined it."""
        return dict(zip(self.rooms, self.since, strict=False))

    def ended(self, at: float) -> Session:
        return replace(self, ended_at=at)


class SessionStore:
    """Where recoverable sessions are kept.

    :param window: seconds a session can be claimed after it ends.
    """

    def __init__(self, window: float) -> None:
        self.window = window

    async def save(self, session: Session) -> None:
        """Record a live session (on connect, join, leave), unless another connection owns the pid."""
        raise NotImplementedError

    async def end(self, session: Session) -> None:
        """Mark the session ended now, if this connection still owns it; claimable for the window."""
        raise NotImplementedError

    async def claim(self, pid: str, user_id: str | None = None) -> Session | None:
        """Take the session away for a reconnect: None when it is unknown or its window has passed.

        With `user_id`, only a session of that user is taken; another user's stays as it was, so a
        reconnect presenting someone else's pid can neither recover nor disturb it.
        """
        raise NotImplementedError

    async def drop(self, pid: str) -> None:
        """Forget a session for good (its user was disconnected by the backend)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the store holds."""


Command = dict[str, Any]
CommandHandler = Callable[[Command], Awaitable[int]]


class Control:
    """Commands to every process (the backend's revocations): each process runs its handler, counts are summed.

    `request` returns the sum of what every process's handler returned (the sockets it acted on);
    a process that does not answer within a short time is not counted.
    """

    def __init__(self) -> None:
        self._handle: CommandHandler | None = None

    def serve(self, handle: CommandHandler) -> None:
        """Run `handle` for every command, from this process or another."""
        self._handle = handle

    async def start(self) -> None:
        """Start receiving the other processes' commands."""

    async def _run(self, command: Command) -> int:
        """This process's count for `command` (0, logged, if its handler fails)."""
        if self._handle is None:
            return 0
        try:
            return await self._handle(command)
        except Exception:
            log.exception("control command %r failed", str(command.get("op"))[:64])
            return 0

    async def request(self, command: Command) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        self._handle = None


class Revocations:
    """The backend's revocations, shared by every process, each kept for `seconds`.

    A user's revocation refuses tokens issued before it; a room's refuses that user's joins of it.
    Times are unix seconds (floats); None when there is no revocation (or it has expired).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def revoke_user(self, user_id: str, at: float) -> None:
        raise NotImplementedError

    async def user_revoked(self, user_id: str) -> float | None:
        raise NotImplementedError

    async def revoke_room(self, user_id: str, room: str, at: float) -> None:
        raise NotImplementedError

    async def room_revoked(self, user_id: str, room: str) -> float | None:
        raise NotImplementedError

    async def rooms_revoked(self, user_id: str, rooms: Sequence[str]) -> list[float | None]:
        """`room_revoked` of each of `rooms`, in order (a backend reads them all at once)."""
        return [await self.room_revoked(user_id, room) for room in rooms]


class UserSockets:
    """How many sockets each user has open over every process, for `PUSH_MAX_SOCKETS_PER_USER`.

    Each socket is counted under its own connection id (`conn`, as in its `Session`): a recovering
    connect counts in place of the connection it takes over, so the user's count does not change.
    """

    async def acquire(self, user_id: str, conn: str, limit: int, replaces: str | None = None) -> bool:
        """Count `conn` for `user_id` (no longer `replaces`); False, and nothing changed, when the user has
        `limit` other sockets (0: no limit)."""
        raise NotImplementedError

    async def release(self, user_id: str, conn: str) -> None:
        """Stop counting `conn` (nothing if it is not counted, as after a recovery took its place)."""
        raise NotImplementedError
