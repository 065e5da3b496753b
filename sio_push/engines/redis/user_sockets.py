"""The sockets of each user over every process, in Redis, for `PUSH_MAX_SOCKETS_PER_USER`.

One hash per user (sid -> "node conn") counts the user's sockets; one set per process lists the
(user, sid) pairs it counted, so that when the process dies the reaper releases them. Acquiring and
releasing are Lua scripts: the check of the limit and the count are one step.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from ..base import UserSockets
from .errors import translated

# KEYS: the user's hash, the node's set; ARGV: sid, "node conn", limit (0: none), the node set's member.
_ACQUIRE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and tonumber(ARGV[3]) > 0
   and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[4])
return 1
"""

# KEYS: the user's hash, the node's set; ARGV: sid, "node conn", the node set's member.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[3])
end
return 1
"""

# KEYS: the dead node's set; ARGV: the users' hash prefix, the node's id followed by a space.
_REAP = """
local released = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local space = string.find(member, ' ', 1, true)
  if space then
    local hash = ARGV[1] .. string.sub(member, 1, space - 1)
    local sid = string.sub(member, space + 1)
    local owner = redis.call('HGET', hash, sid)
    if owner and string.sub(owner, 1, #ARGV[2]) == ARGV[2] then
      redis.call('HDEL', hash, sid)
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
    :param node_id: this process's id, recorded with each socket it counts.
    """

    def __init__(self, client: redis.Redis, prefix: str, node_id: str) -> None:
        self._user_prefix = prefix + "user-sockets:"
        self._node_prefix = prefix + "node-sockets:"
        self._node_id = node_id
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._release: Any = client.register_script(_RELEASE)
        self._reap: Any = client.register_script(_REAP)

    def _keys(self, user_id: str, node_id: str) -> list[str]:
        return [self._user_prefix + user_id, self._node_prefix + node_id]

    @translated
    async def acquire(self, user_id: str, sid: str, conn: str, limit: int) -> bool:
        owner = f"{self._node_id} {conn}"
        args = [sid, owner, limit, f"{user_id} {sid}"]
        return bool(await self._acquire(keys=self._keys(user_id, self._node_id), args=args))

    @translated
    async def release(self, user_id: str, sid: str, conn: str) -> None:
        owner = f"{self._node_id} {conn}"
        await self._release(keys=self._keys(user_id, self._node_id), args=[sid, owner, f"{user_id} {sid}"])

    @translated
    async def reap(self, node_id: str) -> int:
        """Release every socket process `node_id` (dead) counted; how many."""
        return int(await self._reap(keys=[self._node_prefix + node_id], args=[self._user_prefix, node_id + " "]))
