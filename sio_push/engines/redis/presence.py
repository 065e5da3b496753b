"""Presence shared by every process on one Redis, gone when a process dies.

Each `room:*` room is a hash whose fields are `<node>/<sid>` and whose values are `[user_id, meta]`, and
a sorted set of `<user_id>\n<node>/<sid>` (all of score 0, so in user id order) from which `first` reads
the first users without reading the whole room; each process also lists the rooms it has entries in.
When a process stops beating, another one reaps its entries and hands back the leave diffs to broadcast.
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

# KEYS: the room's index, the room's hash. ARGV: how many users. The `[user_id, meta]` of their sockets.
_FIRST = """
local out, users, last, at = {}, 0, nil, 0
while true do
  local batch = redis.call('ZRANGE', KEYS[1], at, at + 99)
  if #batch == 0 then return out end
  for _, entry in ipairs(batch) do
    local cut = string.find(entry, '\\n', 1, true)
    local user = string.sub(entry, 1, cut - 1)
    if user ~= last then
      users, last = users + 1, user
      if users > tonumber(ARGV[1]) then return out end
    end
    local value = redis.call('HGET', KEYS[2], string.sub(entry, cut + 1))
    if value then table.insert(out, value) end
  end
  at = at + 100
end
"""

# KEYS: the room's hash, the room's index. ARGV: the socket's field. Its `[user_id, meta]`, removed (nil: none).
_LEAVE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], cjson.decode(value)[1] .. '\\n' .. ARGV[1])
return value
"""


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
        self._first = client.register_script(_FIRST)
        self._leave = client.register_script(_LEAVE)

    def _room_key(self, room: str) -> str:
        return f"{self._key_prefix}presence:{room}"

    def _rooms_key(self, node_id: str) -> str:
        return f"{self._key_prefix}presence-rooms:{node_id}"

    def _index_key(self, room: str) -> str:
        return f"{self._key_prefix}presence-idx:{room}"

    def _field(self, sid: str) -> str:
        return f"{self._nodes.node_id}/{sid}"

    @translated
    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        meta = new_meta(self._next_ref())
        await asyncio.gather(  # sent together (the client auto-pipelines)
            self._redis.hset(self._room_key(room), self._field(sid), dumps([user_id, meta])),
            self._redis.zadd(self._index_key(room), {f"{user_id}\n{self._field(sid)}": 0}),
            self._redis.sadd(self._rooms_key(self._nodes.node_id), room),
        )
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
        raw = await self._leave(keys=[self._room_key(room), self._index_key(room)], args=[self._field(sid)])
        if raw is None:
            return None
        user_id, meta = loads(raw)
        return diff(user_id, left=meta)

    @translated
    async def first(self, room: str, limit: int) -> State:
        entries: Any = await self._first(keys=[self._index_key(room), self._room_key(room)], args=[limit])
        state: State = {}
        for raw in entries:
            user_id, meta = loads(raw)
            state.setdefault(user_id, {"metas": []})["metas"].append(meta)
        return state

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
                    left = [(field.decode(), *loads(raw)) for field, raw in mine.items()]
                    await self._redis.zrem(
                        self._index_key(room), *(f"{user_id}\n{field}" for field, user_id, _ in left)
                    )
                    diffs.extend((room, diff(user_id, left=meta)) for _, user_id, meta in left)
            await self._redis.delete(self._rooms_key(node_id))
            await self._nodes.forget(node_id)
            log.info("reaped presence of stopped process %s (%d rooms)", node_id, len(rooms))
        return diffs
