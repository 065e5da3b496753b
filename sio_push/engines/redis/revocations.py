"""The backend's revocations in Redis: one key per revocation, expiring after `seconds`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

from ..base import Revocations
from .errors import translated


class RedisRevocations(Revocations):
    """Revocations shared by every process on one Redis.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    """

    def __init__(self, seconds: float, client: redis.Redis, prefix: str) -> None:
        super().__init__(seconds)
        self._redis = client
        self._key_prefix = prefix + "revoked:"

    def _key(self, user_id: str, room: str = "") -> str:
        return f"{self._key_prefix}{user_id}:{room}"

    @translated
    async def _put(self, key: str, at: float) -> None:
        if self.seconds > 0:
            await self._redis.set(key, repr(at), px=max(int(self.seconds * 1000), 1))

    @translated
    async def _get(self, key: str) -> float | None:
        return _time(await self._redis.get(key))

    @translated
    async def _get_all(self, keys: list[str]) -> list[float | None]:
        return [_time(raw) for raw in await self._redis.mget(keys)] if keys else []

    async def revoke_user(self, user_id: str, at: float) -> None:
        await self._put(self._key(user_id), at)

    async def user_revoked(self, user_id: str) -> float | None:
        return await self._get(self._key(user_id))

    async def revoke_room(self, user_id: str, room: str, at: float) -> None:
        await self._put(self._key(user_id, room), at)

    async def room_revoked(self, user_id: str, room: str) -> float | None:
        return await self._get(self._key(user_id, room))

    async def rooms_revoked(self, user_id: str, rooms: Sequence[str]) -> list[float | None]:
        return await self._get_all([self._key(user_id, room) for room in rooms])


def _time(raw: Any) -> float | None:
    """A stored revocation time; None for none (or one that is not a number)."""
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
