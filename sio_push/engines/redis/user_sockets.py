"""The sockets of each user over every process, in Redis, for `PUSH_MAX_SOCKETS_PER_USER`.

One hash per user (conn -> node) counts the user's sockets; one set per process lists the
(user, conn) pairs it counted, and one set lists the processes that counted any, so that when a process
dies the reaper releases its counts. Acquiring and releasing are Lua scripts: the check of the limit
and the count are one step.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as redis

from ..base import UserSockets
from .errors import translated
from .nodes import DEAD_AFTER, Nodes

# KEYS: the user's hash, the node's set, the set of counting nodes.
# ARGV: conn, node id, limit (0: none), the conn it replaces ("": none), the node set's member.
_ACQUIRE = """
local others = redis.call('HLEN', KEYS[1]) - redis.call('HEXISTS', KEYS[1], ARGV[1])
if ARGV[4] ~= '' then others = others - redis.call('HEXISTS', KEYS[1], ARGV[4]) end
if tonumber(ARGV[3]) > 0 and others >= tonumber(ARGV[3]) then return 0 end
if ARGV[4] ~= '' then redis.call('HDEL', KEYS[1], ARGV[4]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
"""

# KEYS: the user's hash, the node's set; ARGV: conn, node id, the node set's member.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
"""

# KEYS: the dead node's set; ARGV: the users' hash prefix, the node's id.
_REAP = """
local released = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local space = string.find(member, ' ', 1, true)
  if space then
    local hash = ARGV[1] .. string.sub(member, 1, space - 1)
    local conn = string.sub(member, space + 1)
    if redis.call('HGET', hash, conn) == ARGV[2] then
      redis.call('HDEL', hash, conn)
      released = released + 1
    end
  end
end
redis.call('DEL', KEYS[1])
return released
"""


class RedisUserSockets(UserSockets):
    """Per-user socket counts shared by every process on one Redis.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    :param nodes: the heartbeats: this process's id, recorded with each socket it counts, and which died.
    """

    def __init__(self, client: redis.Redis, prefix: str, nodes: Nodes) -> None:
        self._redis = client
        self._user_prefix = prefix + "user-sockets:"
        self._node_prefix = prefix + "node-sockets:"
        self._counting = prefix + "counting-nodes"
        self._nodes = nodes
        self._node_id = nodes.node_id
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._release: Any = client.register_script(_RELEASE)
        self._reap: Any = client.register_script(_REAP)

    def _keys(self, user_id: str, node_id: str) -> list[str]:
        return [self._user_prefix + user_id, self._node_prefix + node_id]

    @translated
    async def acquire(self, user_id: str, conn: str, limit: int, replaces: str | None = None) -> bool:
        keys = [*self._keys(user_id, self._node_id), self._counting]
        args = [conn, self._node_id, limit, replaces or "", f"{user_id} {conn}"]
        return bool(await self._acquire(keys=keys, args=args))

    @translated
    async def release(self, user_id: str, conn: str) -> None:
        await self._release(keys=self._keys(user_id, self._node_id), args=[conn, self._node_id, f"{user_id} {conn}"])

    @translated
    async def reap(self) -> int:
        """Release every socket that processes which died had counted; how many.

        The processes that counted are listed apart from the heartbeats' own list, which the presence
        reaper empties: a process is forgotten here only once its counts are released.
        """
        released = 0
        now = time.time()
        members: Any = await self._redis.smembers(self._counting)
        for raw in members:
            node_id = raw.decode()
            if node_id == self._node_id:
                continue
            beat = await self._nodes.last_beat(node_id)
            if beat is None or now - beat > DEAD_AFTER:
                keys = [self._node_prefix + node_id]
                released += int(await self._reap(keys=keys, args=[self._user_prefix, node_id]))
                await self._redis.srem(self._counting, node_id)
        return released
