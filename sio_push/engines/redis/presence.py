"""Presence shared by every process on one Redis, gone when a process dies.

Each `room:*` room is a hash whose fields are `<node>/<sid>` and whose values are `[user_id, meta]`;
each process also lists the rooms it has entries in. When a process stops beating, another one reaps
its entries and hands back the leave diffs to broadcast.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as redis

from ...codec import dumps, loads
from ...presence import Meta, State, diff, new_meta, updated_meta
from ..base import PresenceStore
from .errors import translated
from .nodes import Nodes

log = logging.getLogger(__name__)


class RedisPresence(PresenceStore):
    """Presence of every process's sockets.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    :param nodes: this process's id, and who has died.
    """

    def __init__(self, client: redis.Redis, prefix: str, nodes: Nodes) -> None:
        super().__init__(nodes.node_id)
        self._redis = client
        self._key_prefix = prefix
        self._nodes = nodes
        self._next_read: dict[str, asyncio.Future[State]] = {}  # room -> the read that callers now will share
        self._readers: dict[str, asyncio.Task[None]] = {}

    def _room_key(self, room: str) -> str:
        return f"{self._key_prefix}presence:{room}"

    def _rooms_key(self, node_id: str) -> str:
        return f"{self._key_prefix}presence-rooms:{node_id}"

    def _field(self, sid: str) -> str:
        return f"{self._nodes.node_id}/{sid}"

    @translated
    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        meta = new_meta(self._next_ref())
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(self._room_key(room), self._field(sid), dumps([user_id, meta]))
            pipe.sadd(self._rooms_key(self._nodes.node_id), room)
            await pipe.execute()
        return diff(user_id, joined=meta)

    @translated
    async def _get(self, room: str, sid: str) -> tuple[str, Meta] | None:
        raw = await self._redis.hget(self._room_key(room), self._field(sid))
        if raw is None:
            return None
        user_id, meta = loads(raw)
        return user_id, meta

    @translated
    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        entry = await self._get(room, sid)
        if entry is None:
            return None
        user_id, old = entry
        new = updated_meta(old, changes, self._next_ref())
        await self._redis.hset(self._room_key(room), self._field(sid), dumps([user_id, new]))
        return diff(user_id, joined=new, left=old)

    @translated
    async def leave(self, room: str, sid: str) -> dict[str, State] | None:
        entry = await self._get(room, sid)
        if entry is None:
            return None
        await self._redis.hdel(self._room_key(room), self._field(sid))
        return diff(entry[0], left=entry[1])

    async def state(self, room: str) -> State:
        """The room's state, read after this call began (not a copy: send it before the next change).

        A crowd joining one room would read the whole room once per joiner; instead the callers that
        arrive while a read of the room runs share the one read that starts after it.
        """
        future = self._next_read.get(room)
        if future is None:
            future = self._next_read[room] = asyncio.get_running_loop().create_future()
            if room not in self._readers:
                self._readers[room] = asyncio.create_task(self._read_while_asked(room))
        return await asyncio.shield(future)

    async def _read_while_asked(self, room: str) -> None:
        future: asyncio.Future[State] | None = None
        try:
            while room in self._next_read:
                future = self._next_read.pop(room)
                try:
                    state = await self._read(room)
                except Exception as exc:  # the callers' to handle, as if each had read
                    future.set_exception(exc)
                else:
                    future.set_result(state)
        finally:
            del self._readers[room]
            for unanswered in (future, self._next_read.pop(room, None)):
                if unanswered is not None and not unanswered.done():
                    unanswered.cancel()

    @translated
    async def _read(self, room: str) -> State:
        entries = await self._redis.hgetall(self._room_key(room))
        state: State = {}
        for raw in entries.values():
            user_id, meta = loads(raw)
            state.setdefault(user_id, {"metas": []})["metas"].append(meta)
        return state

    @translated
    async def reap(self) -> list[tuple[str, dict[str, Any]]]:
        """Remove the entries of dead processes; the (room, leave diff) pairs to broadcast."""
        diffs: list[tuple[str, dict[str, Any]]] = []
        for node_id in await self._nodes.dead():
            rooms: Any = await self._redis.smembers(self._rooms_key(node_id))
            for raw_room in rooms:
                room = raw_room.decode()
                entries: Any = await self._redis.hgetall(self._room_key(room))
                mine = {f: v for f, v in entries.items() if f.decode().startswith(node_id + "/")}
                if mine and await self._redis.hdel(self._room_key(room), *mine):
                    for raw in mine.values():
                        user_id, meta = loads(raw)
                        diffs.append((room, diff(user_id, left=meta)))
            await self._redis.delete(self._rooms_key(node_id))
            await self._nodes.forget(node_id)
            log.info("reaped presence of stopped process %s (%d rooms)", node_id, len(rooms))
        return diffs
