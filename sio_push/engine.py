"""The engine: the broker, presence and session store, in memory by default or on Redis.

Memory serves one process and is the reference; `PUSH_REDIS_URL` switches all three to Redis (imported
only then), for several processes or hosts. The engine owns their resources and background work.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING

from . import background
from .broker import Broker, Deliver, MemoryBroker, Push
from .config import Settings
from .errors import BackendUnavailable
from .presence import MemoryPresence, Presence
from .recovery import MemorySessions, SessionStore

if TYPE_CHECKING:
    import redis.asyncio as redis

    from .redis_node import Nodes
    from .redis_presence import RedisPresence
    from .redis_sessions import RedisSessions

log = logging.getLogger(__name__)

REAP_EVERY = 2.0


class Engine:
    """Memory: everything in this process.

    :param broker: carries pushes to the sockets, and keeps the log recovery replays.
    :param presence: who is in each room.
    :param sessions: recoverable sessions; None when recovery is off.
    :param node_id: this process's id.
    """

    def __init__(self, broker: Broker, presence: Presence, sessions: SessionStore | None, node_id: str) -> None:
        self.broker = broker
        self.presence = presence
        self.sessions = sessions
        self.node_id = node_id

    async def start(self, deliver: Deliver) -> None:
        await self.broker.start(deliver)

    async def close(self) -> None:
        await self.broker.close()


class RedisEngine(Engine):
    """Redis: every process shares pushes, presence and sessions, and notices when another one dies."""

    def __init__(
        self,
        client: redis.Redis,
        nodes: Nodes,
        broker: Broker,
        presence: RedisPresence,
        sessions: RedisSessions | None,
    ) -> None:
        super().__init__(broker, presence, sessions, nodes.node_id)
        self._redis = client
        self._nodes = nodes
        self._redis_presence = presence
        self._redis_sessions = sessions
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, deliver: Deliver) -> None:
        await self._nodes.start()
        await super().start(deliver)
        if self._redis_sessions is not None:
            await self._redis_sessions.start()
        self._reaper = asyncio.create_task(self._reap())

    async def close(self) -> None:
        await background.stop(self._reaper)
        if self._redis_sessions is not None:
            await self._redis_sessions.close()
        await super().close()
        await self._nodes.close()
        await self._redis.aclose()

    async def _reap(self) -> None:
        """Remove the presence of processes that died, and tell their rooms."""
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(REAP_EVERY)
            try:
                for room, diff in await self._redis_presence.reap():
                    await self.broker.publish(Push((room,), "presence_diff", {"room": room, **diff}, volatile=True))
            except (RedisError, BackendUnavailable) as exc:
                log.debug("presence reaping failed: %s", type(exc).__name__)


def create_engine(settings: Settings) -> Engine:
    node_id = secrets.token_hex(6)
    window = settings.recovery_seconds
    log_seconds = window * 2
    if not settings.redis_url:
        sessions = MemorySessions(window) if window else None
        return Engine(MemoryBroker(log_seconds, settings.recovery_log_size), MemoryPresence(node_id), sessions, node_id)

    import redis.asyncio as redis

    from .redis_broker import RedisBroker
    from .redis_node import Nodes
    from .redis_presence import RedisPresence
    from .redis_sessions import RedisSessions

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    prefix = settings.redis_prefix
    nodes = Nodes(client, prefix, node_id, keep=window)
    broker = RedisBroker(client, prefix, log_seconds, settings.recovery_log_size)
    redis_sessions = RedisSessions(window, client, prefix, nodes) if window else None
    return RedisEngine(client, nodes, broker, RedisPresence(client, prefix, nodes), redis_sessions)
