"""Presence and occupancy of one process's sockets."""

from __future__ import annotations

import bisect
import collections
import heapq
from dataclasses import dataclass, field, replace

from ...presence import Meta, State, diff, new_meta, updated_meta
from ..base import (
    Change,
    Counts,
    Occupancy,
    PresenceStore,
)


class MemoryPresence(PresenceStore):
    """Presence of one process's sockets; each room's state is kept ready to send."""

    def __init__(self, node_id: str = "") -> None:
        super().__init__(node_id)
        self._members: dict[str, dict[str, tuple[str, Meta]]] = {}  # room -> sid -> (user_id, meta)
        self._states: dict[str, State] = {}  # room -> user_id -> {"metas": [...]}

    def _put(self, room: str, user_id: str, sid: str, meta: Meta, old: Meta | None = None) -> None:
        self._members.setdefault(room, {})[sid] = (user_id, meta)
        metas = self._states.setdefault(room, {}).setdefault(user_id, {"metas": []})["metas"]
        if old is not None:
            metas.remove(old)
        metas.append(meta)

    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        meta = new_meta(self._next_ref())
        self._put(room, user_id, sid, meta)
        return diff(user_id, joined=meta)

    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        entry = self._members.get(room, {}).get(sid)
        if entry is None:
            return None
        user_id, old = entry
        new = updated_meta(old, changes, self._next_ref())
        self._put(room, user_id, sid, new, old)
        return diff(user_id, joined=new, left=old)

    async def leave(self, room: str, sid: str) -> dict[str, State] | None:
        members = self._members.get(room)
        if not members or sid not in members:
            return None
        user_id, meta = members.pop(sid)
        state = self._states[room]
        state[user_id]["metas"].remove(meta)
        if not state[user_id]["metas"]:
            del state[user_id]
        if not members:
            del self._members[room]
            del self._states[room]
        return diff(user_id, left=meta)

    async def state(self, room: str) -> State:
        return self._states.get(room, {})

    async def first(self, room: str, limit: int) -> State:
        state = self._states.get(room, {})
        return {user_id: {"metas": list(state[user_id]["metas"])} for user_id in heapq.nsmallest(limit, state)}


@dataclass(slots=True)
class _Occupied:
    sids: dict[str, str] = field(default_factory=dict)  # sid -> user_id
    users: collections.Counter[str] = field(default_factory=collections.Counter)  # user_id -> sockets
    large: bool = False


class MemoryOccupancy(Occupancy):
    """The rooms of one process's sockets; room names kept sorted for `rooms`."""

    def __init__(self, limit: int = 0) -> None:
        super().__init__(limit)
        self._rooms: dict[str, _Occupied] = {}
        self._names: list[str] = []  # sorted
        self._announced: set[tuple[str, str | None]] = set()

    async def enter(self, room: str, user_id: str, sid: str) -> Change:
        occupied = self._rooms.get(room)
        if occupied is None:
            occupied = self._rooms[room] = _Occupied()
            bisect.insort(self._names, room)
        if sid in occupied.sids:
            return Change(room, user_id, self._counts(occupied), False, False, occupied.large)
        occupied.sids[sid] = user_id
        occupied.users[user_id] += 1
        return self._changed(room, occupied, user_id, len(occupied.sids) == 1, occupied.users[user_id] == 1)

    async def exit(self, room: str, sid: str) -> Change | None:
        occupied = self._rooms.get(room)
        if occupied is None or sid not in occupied.sids:
            return None
        user_id = occupied.sids.pop(sid)
        occupied.users[user_id] -= 1
        member_changed = occupied.users[user_id] <= 0
        if member_changed:
            del occupied.users[user_id]
        if not occupied.sids:
            del self._rooms[room]
            del self._names[bisect.bisect_left(self._names, room)]
        return replace(self._changed(room, occupied, user_id, not occupied.sids, member_changed), entered=False)

    def _changed(
        self, room: str, occupied: _Occupied, user_id: str, room_changed: bool, member_changed: bool
    ) -> Change:
        was = occupied.large
        occupied.large = self._mode(room, len(occupied.users), was)
        counts = self._counts(occupied)
        return Change(room, user_id, counts, room_changed, member_changed, occupied.large, occupied.large != was)

    @staticmethod
    def _counts(occupied: _Occupied) -> Counts:
        return Counts(len(occupied.users), len(occupied.sids))

    async def counts(self, room: str) -> Counts:
        occupied = self._rooms.get(room)
        return self._counts(occupied) if occupied is not None else Counts(0, 0)

    async def rooms(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, Counts]]:
        names = self._names
        at = (
            bisect.bisect_right(names, after)
            if after is not None and after >= prefix
            else bisect.bisect_left(names, prefix)
        )
        found = []
        for name in names[at : at + limit]:
            if not name.startswith(prefix):
                break
            found.append((name, self._counts(self._rooms[name])))
        return found

    async def announce(self, room: str, user_id: str | None = None) -> bool:
        if (room, user_id) in self._announced:
            return False
        self._announced.add((room, user_id))
        return True

    async def retract(self, room: str, user_id: str | None = None) -> bool:
        occupied = self._rooms.get(room)
        if occupied is not None and (user_id is None or occupied.users[user_id] > 0):
            return False
        if (room, user_id) not in self._announced:
            return False
        self._announced.discard((room, user_id))
        return True
