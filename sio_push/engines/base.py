"""The engine's interfaces: the broker, the presence store, the session store, the occupancy, and the engine.

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
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..config import Settings
from ..presence import Meta, State, phx_refs

log = logging.getLogger(__name__)


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

    async def first(self, room: str, limit: int) -> State:
        """The state of the room's first `limit` users by user id: a bounded read, whatever the room's size."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Counts:
    """How many are in a room, over every process."""

    users: int  # distinct users with a socket in the room
    sockets: int  # sockets in the room


@dataclass(frozen=True, slots=True)
class Change:
    """What one enter or exit did to a room, over every process.

    `large` and `switched` are the large-room mode (SPEC §6) of a `room:*` room, decided in the same
    atomic step as the counts so that exactly one Change switches a room: `large` is the mode after the
    change, `switched` says this change flipped it. Always False when the occupancy has no limit.
    """

    room: str
    user_id: str
    counts: Counts  # after the change
    room_changed: bool  # enter: the room's first socket (occupied); exit: its last (vacated)
    member_changed: bool  # enter: the user's first socket in the room; exit: the user's last
    large: bool = False
    switched: bool = False
    entered: bool = True  # an enter's Change; False for an exit's (room_changed then means vacated)


OnChange = Callable[[Change], Awaitable[None]]


def large_bounds(limit: int) -> tuple[int, int]:
    """(above, low) of a presence limit: large above `above` users, small again at `low` users or fewer.

    low is floor(0.8 x limit), and at most limit - 1 (SPEC §6). A limit of 0 is never large.
    """
    if limit <= 0:
        return 0, 0
    return limit, min(limit * 4 // 5, limit - 1)


def has_mode(room: str) -> bool:
    """Whether a room can be large: presence rooms (`room:*`) only."""
    return room.startswith("room:")


class Occupancy:
    """How many users and sockets are in each room, over every process.

    Every room membership (user rooms too) enters and exits it; each call returns the `Change` it made.
    The entries of a process that died are reaped by the engine, and their exit Changes handed to the
    callback given to `watch`, so that every Change lands in one place whichever process made it.

    :param limit: the presence limit of `room:*` rooms (`PUSH_PRESENCE_MAX_USERS`; 0: never large).
    """

    def __init__(self, limit: int = 0) -> None:
        self.above, self.low = large_bounds(limit)
        self._watcher: OnChange | None = None

    def watch(self, callback: OnChange) -> None:
        """Give `callback` the Changes that no call of this process returns (reaped from dead processes)."""
        self._watcher = callback

    async def _reaped(self, change: Change) -> None:
        if self._watcher is not None:
            await self._watcher(change)

    def _mode(self, room: str, users: int, large: bool) -> bool:
        """The large-room mode of `room` with `users` now, from mode `large` before."""
        if not self.above or not has_mode(room):
            return False
        return users > self.low if large else users > self.above

    async def enter(self, room: str, user_id: str, sid: str) -> Change:
        raise NotImplementedError

    async def exit(self, room: str, sid: str) -> Change | None:
        """None: `sid` was not in the room."""
        raise NotImplementedError

    async def counts(self, room: str) -> Counts:
        raise NotImplementedError

    async def rooms(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, Counts]]:
        """Up to `limit` occupied rooms whose names start with `prefix`, in name order, after room `after`."""
        raise NotImplementedError

    # The webhook receiver's view (SPEC §8), shared by every process so that each event is sent once:
    # a mark per room (user_id None) and per member, set when its "occupied"/"added" event is sent and
    # cleared when its "vacated"/"removed" event is. Clearing checks the counts in the same atomic step.

    async def announce(self, room: str, user_id: str | None = None) -> bool:
        """Mark the room (or the user in it) as announced; True if it was not, i.e. the event is to be sent."""
        raise NotImplementedError

    async def retract(self, room: str, user_id: str | None = None) -> bool:
        """Clear the mark if the room (or the user in it) has no socket now; True if cleared (send the event)."""
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
    saved_at: float | None = None  # unix time of its last change (a revocation after it is not in it yet)

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


class Engine:
    """The broker, presence and sessions of one process, started and closed together.

    :param broker: carries pushes to the sockets, and keeps the log recovery replays.
    :param presence: who is in each room.
    :param sessions: recoverable sessions; None when recovery is off.
    :param node_id: this process's id.
    :param occupancy: how many are in each room, over every process.
    :param control: commands to every process.
    :param revocations: the backend's revocations.
    :param user_sockets: the sockets of each user, over every process.
    """

    def __init__(
        self,
        broker: Broker,
        presence: PresenceStore,
        sessions: SessionStore | None,
        node_id: str,
        occupancy: Occupancy,
        *,
        control: Control,
        revocations: Revocations,
        user_sockets: UserSockets,
    ) -> None:
        self.broker = broker
        self.presence = presence
        self.sessions = sessions
        self.node_id = node_id
        self.occupancy = occupancy
        self.control = control
        self.revocations = revocations
        self.user_sockets = user_sockets

    async def start(self, deliver: Deliver) -> None:
        """Start delivering every push to `deliver`."""
        await self.broker.start(deliver)
        await self.control.start()

    async def close(self) -> None:
        await self.control.close()
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
