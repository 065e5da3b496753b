"""The engine's interfaces: the broker, and the engine that holds it with the stores of `rooms.py` and
`access.py` (re-exported here).

The broker is the one road every emit takes from the HTTP API (or presence) to the sockets: `publish`
hands it a `Push`, and it calls the `deliver` function it was started with, in every process that shares
it, in one order. A push that is not volatile gets an offset (a string that orders pushes) and is kept
in the broker's log, from which recovery replays what a socket missed.

`memory.py` is the default and the reference; `redis/` shares everything between processes.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .access import Command, CommandHandler, Control, Revocations, Session, SessionStore, UserSockets
from .rooms import Change, Counts, Occupancy, OnChange, PresenceStore, has_mode, large_bounds

__all__ = [
    "Broker",
    "Change",
    "Command",
    "CommandHandler",
    "Control",
    "Counts",
    "Deliver",
    "Engine",
    "Missed",
    "Occupancy",
    "OnChange",
    "PresenceStore",
    "Push",
    "Revocations",
    "Session",
    "SessionStore",
    "UserSockets",
    "has_mode",
    "large_bounds",
    "log_seconds",
    "new_node_id",
]

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
