"""Which processes are alive, for the Redis-backed parts: each beats once a second under its own key.

A process whose beat is older than `DEAD_AFTER` is dead: its presence is reaped, and its sessions were
ended at its last beat (so the recovery window runs from there). The last beat stays readable for
`keep` seconds after it stops, long enough for a recovery window.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis.asyncio as redis

from ...errors import BackendUnavailable
from ...tasks import Periodic
from .errors import translated

BEAT = 1.0
DEAD_AFTER = 3.0


class Nodes:
    """This process's heartbeat, and what the others' say.

    :param client: the Redis connection pool (owned by the caller).
    :param prefix: the prefix of every key.
    :param node_id: this process's id.
    :param keep: seconds a last beat stays readable after the process stops.
    """

    def __init__(self, client: redis.Redis, prefix: str, node_id: str, keep: float) -> None:
        self._redis = client
        self._key_prefix = prefix
        self.prefix = prefix
        self.node_id = node_id
        self._keep_ms = int((keep + 2 * DEAD_AFTER) * 1000)
        self._heartbeat = Periodic("heartbeat", BEAT, self._beat)

    def _key(self, node_id: str) -> str:
        return f"{self._key_prefix}node:{node_id}"

    async def start(self) -> None:
        with contextlib.suppress(BackendUnavailable):
            await self._beat()
        self._heartbeat.start()

    async def close(self) -> None:
        await self._heartbeat.stop()

    @translated
    async def _beat(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key(self.node_id), repr(time.time()), px=self._keep_ms)
            pipe.sadd(self._key_prefix + "nodes", self.node_id)
            await pipe.execute()

    @translated
    async def last_beat(self, node_id: str) -> float | None:
        raw = await self._redis.get(self._key(node_id))
        return float(raw) if raw is not None else None

    @translated
    async def dead(self) -> list[str]:
        """The processes that stopped beating (this one never counts)."""
        members: Any = await self._redis.smembers(self._key_prefix + "nodes")
        now = time.time()
        dead = []
        for raw in members:
            node_id = raw.decode()
            if node_id == self.node_id:
                continue
            beat = await self.last_beat(node_id)
            if beat is None or now - beat > DEAD_AFTER:
                dead.append(node_id)
        return dead

    @translated
    async def forget(self, node_id: str) -> None:
        await self._redis.srem(self._key_prefix + "nodes", node_id)
