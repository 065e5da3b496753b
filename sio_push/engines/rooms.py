"""The engine's interfaces for rooms: who is in them (the presence store) and how many (the occupancy).

The presence store keeps Phoenix-shaped metas per socket; the occupancy keeps counts per room over every
process, and decides, in the same atomic step as the counts, when a room becomes large (SPEC §6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..presence import Meta, State, phx_refs


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
