"""The engine's interfaces: the broker, the presence store, the session store, and the engine holding them.

The broker is the one road every emit takes from the HTTP API (or presence) to the sockets: `publish`
hands it a `Push`, and it calls the `deliver` function it was started with, in every process that shares
it, in one order. A push that is not volatile gets an offset (a string that orders pushes) and is kept
in the broker's log, from which recovery replays what a socket missed.

Sessions are Socket.IO 4.6's connection state recovery, kept where any process can find them. A session
(private id `pid`) records what a socket needs back after a drop: its sid, its user, its rooms, and where
in the broker's log it began. The identity itself comes from the token, checked again on every reconnect
(an expired token is refused, not recovered). Sessions are saved whenever they change, not only at
disconnect, so a client whose process died recovers on another. A session can be claimed once, within
the recovery window after its end; a session still marked live can be claimed too (its process died,
or the client noticed the drop first) and its old connection is then closed. Only the owner connection
(`conn`) of a session may save or end it, so a late disconnect of an old connection never overwrites
the session that a reconnect took over.

`memory.py` is the default and the reference; `redis/` shares all three between processes.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..config import Settings
from ..presence import Meta, State, phx_refs


@dataclass(frozen=True, slots=True)
class Push:
    """One emit of `event` with `data` as its single argument to the union of `rooms`.

    A volatile push (presence) gets no offset and is never replayed.
    """

    rooms: tuple[str, ...]
    event: str
    data: Any
    volatile: bool = False


Deliver = Callable[[Push, "str | None"], Awaitable[None]]
Missed = list[tuple[str, Push]]


class Broker:
    """Carries pushes to every process's sockets, and keeps the log recovery replays.

    :param log_seconds: how long a push stays in the log (0: no log, no offsets).
    :param log_size: the most pushes the log holds.
    :param log_bytes: the most bytes (of the pushes' encoded bodies) the log holds.
    """

    def __init__(self, log_seconds: float = 0, log_size: int = 100_000, log_bytes: int = 256 * 1024 * 1024) -> None:
        self.log_seconds = log_seconds
        self.log_size = log_size
        self.log_bytes = log_bytes
        self._deliver: Deliver | None = None
        self.position = self.origin
        """The offset of the last push whose recipients this process has chosen."""

    @property
    def logging(self) -> bool:
        return self.log_seconds > 0

    @property
    def origin(self) -> str:
        """The offset before any push."""
        return "0"

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, push: Push) -> str | None:
        """Hand `push` over; its offset once accepted. Raises BrokerUnavailable when it cannot."""
        raise NotImplementedError

    async def replay(self, after: str, rooms: Collection[str]) -> Missed | None:
        """The logged pushes after offset `after` up to `position` that reach any of `rooms`, in order.

        None when the log no longer holds everything after `after` (the caller starts afresh).
        """
        raise NotImplementedError

    def order(self, offset: str) -> Any:
        """A value that sorts as `offset` does among this broker's offsets; ValueError if it is not one."""
        return int(offset)

    async def check(self) -> bool:
        """Whether a publish can be accepted now (readiness)."""
        return self._deliver is not None

    async def close(self) -> None:
        self._deliver = None


class PresenceStore:
    """Who is in each presence room: one meta per socket (see `presence.py` for the shapes).

    Each change returns the diff the caller broadcasts.

    :param node_id: this process's id, part of every `phx_ref` this store makes.
    """

    def __init__(self, node_id: str = "") -> None:
        self._refs = phx_refs(node_id)

    def _next_ref(self) -> str:
        return next(self._refs)

    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        raise NotImplementedError

    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        """None when the socket is not in the room."""
        raise NotImplementedError

    async def leave(self, room: str, sid: str) -> dict[str, State] | None:
        """None when the socket is not in the room."""
        raise NotImplementedError

    async def state(self, room: str) -> State:
        """The room's state (not a copy: send it before the next change)."""
        raise NotImplementedError


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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Session:
        data: dict[str, Any] = json.loads(raw)
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

    async def claim(self, pid: str) -> Session | None:
        """Take the session away for a reconnect: None when it is unknown or its window has passed."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the store holds."""


class Engine:
    """The broker, presence and sessions of one process, started and closed together.

    :param broker: carries pushes to the sockets, and keeps the log recovery replays.
    :param presence: who is in each room.
    :param sessions: recoverable sessions; None when recovery is off.
    :param node_id: this process's id.
    """

    def __init__(self, broker: Broker, presence: PresenceStore, sessions: SessionStore | None, node_id: str) -> None:
        self.broker = broker
        self.presence = presence
        self.sessions = sessions
        self.node_id = node_id

    async def start(self, deliver: Deliver) -> None:
        """Start delivering every push to `deliver`."""
        await self.broker.start(deliver)

    async def close(self) -> None:
        await self.broker.close()
        if self.sessions is not None:
            await self.sessions.close()


def new_node_id() -> str:
    """A fresh id for this process, never reused: its presence entries and sessions are marked with it."""
    return secrets.token_hex(6)


def log_seconds(settings: Settings) -> float:
    """How long the broker keeps a push: twice the recovery window (none when recovery is off).

    A client may come back up to a window after its drop, from an offset it received before the drop,
    so the log must reach further back than one window.
    """
    return settings.recovery_seconds * 2
