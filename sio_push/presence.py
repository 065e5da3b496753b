"""Who is in each `room:*` room, Phoenix.Presence shaped.

State is `{user_id: {"metas": [meta, ...]}}`, one meta per socket. A meta keeps `online_at` for as
long as its socket stays, a `phx_ref` unique to it (and `phx_ref_prev` after an update, as Phoenix
does, so Phoenix's JavaScript `syncDiff` applies our diffs), and `typing`/`username` once set. Each
change yields a diff `{"joins": ..., "leaves": ...}` of the same inner shape; the caller broadcasts it.

`MemoryPresence` is the reference; `RedisPresence` (`redis_presence.py`) shares it between processes.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

Meta = dict[str, Any]
State = dict[str, dict[str, list[Meta]]]


def diff(user_id: str, joined: Meta | None = None, left: Meta | None = None) -> dict[str, State]:
    return {
        "joins": {user_id: {"metas": [joined]}} if joined else {},
        "leaves": {user_id: {"metas": [left]}} if left else {},
    }


def new_meta(ref: str) -> Meta:
    return {"online_at": str(int(time.time())), "phx_ref": ref}


def updated_meta(old: Meta, changes: Meta, ref: str) -> Meta:
    return {**old, **changes, "phx_ref": ref, "phx_ref_prev": old["phx_ref"]}


class Presence:
    """The interface.

    :param ref_prefix: makes this process's `phx_ref`s unique among processes.
    """

    def __init__(self, ref_prefix: str = "") -> None:
        self._refs = itertools.count(1)
        self._prefix = f"{ref_prefix}{time.time_ns():x}"

    def _ref(self) -> str:
        return f"{self._prefix}-{next(self._refs)}"

    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        raise NotImplementedError

    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        raise NotImplementedError

    async def leave(self, room: str, sid: str) -> dict[str, State] | None:
        raise NotImplementedError

    async def state(self, room: str) -> State:
        raise NotImplementedError


class MemoryPresence(Presence):
    """Presence of one process's sockets."""

    def __init__(self, ref_prefix: str = "") -> None:
        super().__init__(ref_prefix)
        self._rooms: dict[str, dict[str, tuple[str, Meta]]] = {}  # room -> sid -> (user_id, meta)

    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        meta = new_meta(self._ref())
        self._rooms.setdefault(room, {})[sid] = (user_id, meta)
        return diff(user_id, joined=meta)

    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        entry = self._rooms.get(room, {}).get(sid)
        if entry is None:
            return None
        user_id, old = entry
        new = updated_meta(old, changes, self._ref())
        self._rooms[room][sid] = (user_id, new)
        return diff(user_id, joined=new, left=old)

    async def leave(self, room: str, sid: str) -> dict[str, State] | None:
        members = self._rooms.get(room)
        if not members or sid not in members:
            return None
        user_id, meta = members.pop(sid)
        if not members:
            del self._rooms[room]
        return diff(user_id, left=meta)

    async def state(self, room: str) -> State:
        state: State = {}
        for user_id, meta in self._rooms.get(room, {}).values():
            state.setdefault(user_id, {"metas": []})["metas"].append(meta)
        return state
