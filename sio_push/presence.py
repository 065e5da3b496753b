"""Who is in each `room:*` room, Phoenix.Presence shaped.

State is `{user_id: {"metas": [meta, ...]}}`, one meta per socket. A meta keeps `online_at` for as
long as its socket stays, a `phx_ref` unique to it (and `phx_ref_prev` after an update, as Phoenix
does, so Phoenix's JavaScript `syncDiff` applies our diffs), and `typing`/`username` once set. Each
change yields a diff `{"joins": ..., "leaves": ...}` of the same inner shape; the caller broadcasts it.

`MemoryPresence` is the reference; `RedisPresence` (`redis_presence.py`) shares it between processes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
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
    """Presence of one process's sockets; each room's state is kept ready to send."""

    def __init__(self, ref_prefix: str = "") -> None:
        super().__init__(ref_prefix)
        self._members: dict[str, dict[str, tuple[str, Meta]]] = {}  # room -> sid -> (user_id, meta)
        self._states: dict[str, State] = {}  # room -> user_id -> {"metas": [...]}

    def _put(self, room: str, user_id: str, sid: str, meta: Meta, old: Meta | None = None) -> None:
        self._members.setdefault(room, {})[sid] = (user_id, meta)
        metas = self._states.setdefault(room, {}).setdefault(user_id, {"metas": []})["metas"]
        if old is not None:
            metas.remove(old)
        metas.append(meta)

    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        meta = new_meta(self._ref())
        self._put(room, user_id, sid, meta)
        return diff(user_id, joined=meta)

    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        entry = self._members.get(room, {}).get(sid)
        if entry is None:
            return None
        user_id, old = entry
        new = updated_meta(old, changes, self._ref())
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
        """The room's state as it stands (not a copy: send it before the next change)."""
        return self._states.get(room, {})


def merge(into: dict[str, State], diff: dict[str, State]) -> None:
    """Fold `diff` into the pending diff `into`, as if both had been applied in turn.

    A meta that leaves is dropped from the pending joins and always listed in the leaves: a client that
    saw it (in a `presence_state` sent meanwhile) removes it, one that did not ignores the unknown ref.
    Phoenix's `syncDiff` (joins, then leaves) then ends in the same state as with every diff sent.
    """
    joins, leaves = into["joins"], into["leaves"]
    for user_id, entry in diff["joins"].items():
        joins.setdefault(user_id, {"metas": []})["metas"].extend(entry["metas"])
    for user_id, entry in diff["leaves"].items():
        for meta in entry["metas"]:
            if user_id in joins:
                kept = [m for m in joins[user_id]["metas"] if m["phx_ref"] != meta["phx_ref"]]
                if kept:
                    joins[user_id]["metas"] = kept
                else:
                    del joins[user_id]
            leaves.setdefault(user_id, {"metas": []})["metas"].append(meta)


class DiffBatcher:
    """Broadcasts each room's presence diffs at most once per `delay` seconds, merged.

    Without it, N sockets joining a room cost N² messages; Phoenix's tracker batches its deltas the same
    way. A delay of 0 sends every diff at once.

    :param publish: sends one room's merged diff.
    :param delay: seconds a diff may wait for others to merge with.
    """

    def __init__(self, publish: Callable[[str, dict[str, State]], Awaitable[None]], delay: float) -> None:
        self._publish = publish
        self._delay = delay
        self._pending: dict[str, dict[str, State]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, room: str, diff: dict[str, State]) -> None:
        if self._delay <= 0:
            await self._publish(room, diff)
            return
        pending = self._pending.get(room)
        if pending is not None:
            merge(pending, diff)
            return
        self._pending[room] = {"joins": {}, "leaves": {}}
        merge(self._pending[room], diff)
        task = asyncio.create_task(self._flush_later(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, room: str) -> None:
        await asyncio.sleep(self._delay)
        diff = self._pending.pop(room, None)
        if diff is not None and (diff["joins"] or diff["leaves"]):
            await self._publish(room, diff)

    async def close(self) -> None:
        """Send what is pending now."""
        for task in list(self._tasks):
            task.cancel()
        pending, self._pending = self._pending, {}
        for room, diff in pending.items():
            if diff["joins"] or diff["leaves"]:
                await self._publish(room, diff)
