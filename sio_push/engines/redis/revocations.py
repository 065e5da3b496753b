"""The backend's revocations in Redis, and a copy of them in each process so that a connect reads none.

Every connect reads the user's revocation and every join the room's: read from Redis, those were two of
the commands a connect and a join cost. They are few and rare (the backend's disconnects and
unsubscribes of the last `seconds`), so each process keeps them all: loaded when it subscribes to their
channel, then kept up to date by what is published there. While that subscription is down (Redis is
unreachable, or it is being made again) the process reads from Redis as before, then loads them again.

In Redis: one hash (`revoked`: `[user, room]` -> `[recorded, at]`, room "" for the user's), a sorted set of
the same fields by the time each was recorded (so that a write deletes those older than `seconds`), both
expiring `seconds` after the last write, and a channel. Writing is one Lua script: record, prune, publish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

from ...codec import dumps, loads
from ..base import Revocations
from ..memory.access import MemoryRevocations
from .errors import translated
from .subscriber import Subscriber

log = logging.getLogger(__name__)

PRUNE_BATCH = 1000

# KEYS: the hash, the sorted set. ARGV: field, value, recorded (seconds), horizon (seconds), ttl ms,
# the channel, the message, how many old ones to delete at most.
_RECORD = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[8]))
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
"""


class RedisRevocations(Revocations):
    """Revocations shared by every process on one Redis, each process reading its own copy.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    :param subscriber: the process's subscriptions (started by the engine), control commands' too: a
                       revocation is known here before the command published after it runs.
    """

    def __init__(self, seconds: float, client: redis.Redis, prefix: str, subscriber: Subscriber) -> None:
        super().__init__(seconds)
        self._redis = client
        self._hash = prefix + "revoked"
        self._recorded = prefix + "revoked:recorded"
        self._channel = prefix + "revocations"
        self._record: Any = client.register_script(_RECORD)
        self._copy = MemoryRevocations(seconds)
        self._copied = False  # whether the copy holds every revocation (subscribed, and loaded since)
        if seconds > 0:
            subscriber.listen(self._channel, self._received, subscribed=self._load, lost=self._lost)

    @translated
    async def _load(self) -> None:
        """Copy every revocation in Redis (those published from now on arrive after it)."""
        entries: Any = await self._redis.hgetall(self._hash)
        found = []
        for field, value in entries.items():
            try:
                (user_id, room), (recorded, at) = loads(field), loads(value)
                found.append((str(user_id), str(room), float(recorded), float(at)))
            except (ValueError, TypeError):
                log.warning("revocations: an entry that is not ours; ignored")
        for user_id, room, recorded, at in sorted(found, key=lambda entry: entry[2]):
            self._copy.record(user_id, room, at, recorded)
        self._copied = True

    def _lost(self) -> None:
        self._copied = False

    def _received(self, channel: bytes, data: bytes) -> None:
        try:
            user_id, room, recorded, at = loads(data)
            self._copy.record(str(user_id), str(room), float(at), float(recorded))
        except (ValueError, TypeError):
            log.warning("revocations: a message that is not ours; ignored")

    @translated
    async def _put(self, user_id: str, room: str, at: float) -> None:
        if self.seconds <= 0:
            return
        recorded = time.time()
        field, value, news = dumps([user_id, room]), dumps([recorded, at]), dumps([user_id, room, recorded, at])
        ttl_ms = max(int(self.seconds * 1000), 1)
        args = [field, value, recorded, recorded - self.seconds, ttl_ms, self._channel, news, PRUNE_BATCH]
        await self._record(keys=[self._hash, self._recorded], args=args)
        self._copy.record(user_id, room, at, recorded)

    async def _get_all(self, user_id: str, rooms: Sequence[str]) -> list[float | None]:
        if self.seconds <= 0:  # none are kept
            return [None] * len(rooms)
        if self._copied:
            return [await self._copy.room_revoked(user_id, room) for room in rooms]
        return await self._read_all(user_id, rooms)

    @translated
    async def _read_all(self, user_id: str, rooms: Sequence[str]) -> list[float | None]:
        if not rooms:
            return []
        values: Any = await self._redis.hmget(self._hash, [dumps([user_id, room]) for room in rooms])
        horizon = time.time() - self.seconds
        found: list[float | None] = []
        for raw in values:
            try:
                recorded, at = loads(raw)
                found.append(float(at) if float(recorded) > horizon else None)
            except (ValueError, TypeError):  # none (None), or not ours
                found.append(None)
        return found

    async def revoke_user(self, user_id: str, at: float) -> None:
        await self._put(user_id, "", at)

    async def user_revoked(self, user_id: str) -> float | None:
        return (await self._get_all(user_id, [""]))[0]

    async def revoke_room(self, user_id: str, room: str, at: float) -> None:
        await self._put(user_id, room, at)

    async def room_revoked(self, user_id: str, room: str) -> float | None:
        return (await self._get_all(user_id, [room]))[0]

    async def rooms_revoked(self, user_id: str, rooms: Sequence[str]) -> list[float | None]:
        return await self._get_all(user_id, rooms)
