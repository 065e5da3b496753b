"""Room counts shared by every process on one Redis: O(1) Redis work per enter and exit, reaped when a process dies.

Per room, a hash of counters (`s` sockets, `u` users, `m:<user>` the user's sockets, `L` when the room is
large) and a hash of its sockets (`<node>/<sid>` -> user id); a sorted set of the occupied rooms' names
(for listing by prefix); per process, a set of its entries (`<room>\\n<sid>`) so that another process can
reap them when it dies; per room, a hash of the webhook marks (`occ-hook:<room>`). Each enter and exit
is one Lua script: the counts, the large-room switch and the bookkeeping change together, so exactly one
Change reports each transition.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as redis

from ..base import Change, Counts, Occupancy, has_mode
from .errors import translated
from .nodes import Nodes

log = logging.getLogger(__name__)

# KEYS: room counters, room sockets, occupied rooms, the node's entries.
# ARGV: field, user, room, node entry, above (0: no mode), low.
# Returns {users, sockets, room_changed, member_changed, large, switched}.
_ENTER = """
local L = redis.call('HGET', KEYS[1], 'L') and 1 or 0
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  local c = redis.call('HMGET', KEYS[1], 'u', 's')
  return {tonumber(c[1]) or 0, tonumber(c[2]) or 0, 0, 0, L, 0}
end
local n = redis.call('HINCRBY', KEYS[1], 'm:' .. ARGV[2], 1)
local s = redis.call('HINCRBY', KEYS[1], 's', 1)
local u
if n == 1 then u = redis.call('HINCRBY', KEYS[1], 'u', 1) else u = tonumber(redis.call('HGET', KEYS[1], 'u')) end
if s == 1 then redis.call('ZADD', KEYS[3], 0, ARGV[3]) end
redis.call('SADD', KEYS[4], ARGV[4])
local switched = 0
if L == 0 and tonumber(ARGV[5]) > 0 and u > tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'L', 1)
  L = 1
  switched = 1
end
return {u, s, s == 1 and 1 or 0, n == 1 and 1 or 0, L, switched}
"""

# KEYS and ARGV as _ENTER (ARGV[2] unused). Returns false when the socket was not in the room, else
# {user, users, sockets, room_changed, member_changed, large, switched}.
_EXIT = """
local user = redis.call('HGET', KEYS[2], ARGV[1])
if not user then return false end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[4])
local n = redis.call('HINCRBY', KEYS[1], 'm:' .. user, -1)
local u
if n <= 0 then
  redis.call('HDEL', KEYS[1], 'm:' .. user)
  u = redis.call('HINCRBY', KEYS[1], 'u', -1)
else
  u = tonumber(redis.call('HGET', KEYS[1], 'u'))
end
local s = redis.call('HINCRBY', KEYS[1], 's', -1)
local L = redis.call('HGET', KEYS[1], 'L') and 1 or 0
local switched = 0
if s <= 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[3])
  u, s = 0, 0
end
if L == 1 and u <= tonumber(ARGV[6]) then
  if s > 0 then redis.call('HDEL', KEYS[1], 'L') end
  L = 0
  switched = 1
end
return {user, u, s, s == 0 and 1 or 0, n <= 0 and 1 or 0, L, switched}
"""

# KEYS: the room's announced marks, its counters. ARGV: the mark ('' for the room, else the user id).
_ANNOUNCE = "return redis.call('HSETNX', KEYS[1], ARGV[1], 1)"

# KEYS and ARGV as _ANNOUNCE. Clears the mark only when the room (or the user in it) has no socket.
_RETRACT = """
local counter = ARGV[1] == '' and 's' or ('m:' .. ARGV[1])
if (tonumber(redis.call('HGET', KEYS[2], counter)) or 0) > 0 then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


class RedisOccupancy(Occupancy):
    """Room counts of every process's sockets.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    :param nodes: this process's id, and who has died.
    :param limit: the presence limit of `room:*` rooms (0: never large).
    """

    def __init__(self, client: redis.Redis, prefix: str, nodes: Nodes, limit: int = 0) -> None:
        super().__init__(limit)
        self._redis = client
        self._key_prefix = prefix
        self._nodes = nodes
        self._enter = client.register_script(_ENTER)
        self._exit = client.register_script(_EXIT)
        self._announce = client.register_script(_ANNOUNCE)
        self._retract = client.register_script(_RETRACT)

    def _keys(self, room: str, node_id: str) -> list[str]:
        p = self._key_prefix
        return [f"{p}occ:{room}", f"{p}occ-sids:{room}", f"{p}occ-rooms", f"{p}occ-node:{node_id}"]

    def _args(self, room: str, sid: str, node_id: str, user_id: str = "") -> list[Any]:
        above = self.above if has_mode(room) else 0
        return [f"{node_id}/{sid}", user_id, room, f"{room}\n{sid}", above, self.low]

    @translated
    async def enter(self, room: str, user_id: str, sid: str) -> Change:
        node_id = self._nodes.node_id
        users, sockets, occupied, first, large, switched = await self._enter(
            keys=self._keys(room, node_id), args=self._args(room, sid, node_id, user_id)
        )
        return Change(room, user_id, Counts(users, sockets), bool(occupied), bool(first), bool(large), bool(switched))

    async def exit(self, room: str, sid: str) -> Change | None:
        return await self._exit_of(room, sid, self._nodes.node_id)

    @translated
    async def _exit_of(self, room: str, sid: str, node_id: str) -> Change | None:
        done = await self._exit(keys=self._keys(room, node_id), args=self._args(room, sid, node_id))
        if not done:
            return None
        user, users, sockets, vacated, last, large, switched = done
        counts = Counts(users, sockets)
        return Change(
            room, user.decode(), counts, bool(vacated), bool(last), bool(large), bool(switched), entered=False
        )

    @translated
    async def counts(self, room: str) -> Counts:
        users, sockets = await self._redis.hmget(f"{self._key_prefix}occ:{room}", ["u", "s"])
        return Counts(int(users or 0), int(sockets or 0))

    @translated
    async def rooms(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, Counts]]:
        start = f"({after}" if after is not None and after >= prefix else f"[{prefix}"
        names: Any = await self._redis.zrangebylex(f"{self._key_prefix}occ-rooms", start, "+", start=0, num=limit)
        found = [name.decode() for name in names]
        found = [name for name in found if name.startswith(prefix)]
        if not found:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in found:
                pipe.hmget(f"{self._key_prefix}occ:{name}", ["u", "s"])
            counted = await pipe.execute()
        return [(name, Counts(int(u or 0), int(s or 0))) for name, (u, s) in zip(found, counted, strict=True)]

    def _marks(self, room: str) -> list[str]:
        return [f"{self._key_prefix}occ-hook:{room}", f"{self._key_prefix}occ:{room}"]

    @translated
    async def announce(self, room: str, user_id: str | None = None) -> bool:
        return bool(await self._announce(keys=self._marks(room), args=[user_id or ""]))

    @translated
    async def retract(self, room: str, user_id: str | None = None) -> bool:
        return bool(await self._retract(keys=self._marks(room), args=[user_id or ""]))

    async def reap(self) -> None:
        """Exit every entry of the processes that died; their Changes go to the watcher."""
        for node_id in await self._nodes.dead():
            await self._reap_node(node_id)

    @translated
    async def _reap_node(self, node_id: str) -> None:
        key = f"{self._key_prefix}occ-node:{node_id}"
        entries: Any = await self._redis.smembers(key)
        for raw in entries:
            room, _, sid = raw.decode().partition("\n")
            change = await self._exit_of(room, sid, node_id)
            if change is not None:
                await self._reaped(change)
        await self._redis.delete(key)
        if entries:
            log.info("reaped room counts of stopped process %s (%d entries)", node_id, len(entries))
