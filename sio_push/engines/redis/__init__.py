"""The Redis engine: every process on one Redis shares pushes, presence and sessions.

Picked by `PUSH_REDIS_URL`, for several processes or hosts; redis-py is imported only then. Each process
beats a heartbeat (`nodes.py`), so that the others notice when it dies: they reap its presence, and its
sessions count as ended at its last beat.
"""

from __future__ import annotations

import redis.asyncio as redis

from ...config import Settings
from ...tasks import Periodic
from ..base import Deliver, Engine, Push, log_seconds, new_node_id
from .batching import Batching
from .broker import RedisBroker
from .control import RedisControl
from .nodes import Nodes
from .occupancy import RedisOccupancy
from .presence import RedisPresence
from .revocations import RedisRevocations
from .sessions import RedisSessions
from .subscriber import Subscriber
from .user_sockets import RedisUserSockets

REAP_EVERY = 2.0
# A storm of connects and joins asks more of Redis than it can answer at once: the pool is bounded, and a
# caller over it waits its turn (BlockingConnectionPool) rather than failing, for up to POOL_WAIT seconds;
# a reply may take SOCKET_TIMEOUT while Redis or this event loop is busy. Backpressure, not errors.
MAX_CONNECTIONS = 32  # the auto-pipelined commands'
READER_CONNECTIONS = 8  # the blocking reads' and the subscriptions' (a few, each held long)
POOL_WAIT = 20.0
SOCKET_TIMEOUT = 15.0


class RedisEngine(Engine):
    """Redis: every process shares pushes, presence and sessions, and notices when another one dies.

    :param client: the auto-pipelined client most commands go through; the engine closes it and its pool.
    :param reader: the plain client of blocking reads and subscriptions; the engine closes it and its pool.
    :param nodes: this process's heartbeat.
    """

    def __init__(
        self,
        client: Batching,
        reader: redis.Redis,
        nodes: Nodes,
        broker: RedisBroker,
        presence: RedisPresence,
        sessions: RedisSessions | None,
        occupancy: RedisOccupancy,
        revocations: RedisRevocations,
        user_sockets: RedisUserSockets,
        subscriber: Subscriber,
    ) -> None:
        super().__init__(
            broker,
            presence,
            sessions,
            nodes.node_id,
            occupancy,
            control=RedisControl(client, nodes.prefix, nodes.node_id, subscriber),
            revocations=revocations,
            user_sockets=user_sockets,
        )
        self._redis = client
        self._reader = reader
        self._user_sockets = user_sockets
        self._nodes = nodes
        self._redis_presence = presence
        self._redis_sessions = sessions
        self._redis_occupancy = occupancy
        self._subscriber = subscriber
        self._reaper = Periodic("presence reaper", REAP_EVERY, self._reap)

    async def start(self, deliver: Deliver) -> None:
        await self._nodes.start()
        # The subscriptions (control commands, revocations) first: a request right after start reaches this process.
        await self._subscriber.start()
        await super().start(deliver)
        if self._redis_sessions is not None:
            await self._redis_sessions.start()
        self._reaper.start()

    async def close(self) -> None:
        await self._reaper.stop()
        await super().close()
        await self._subscriber.close()
        await self._nodes.close()
        await self._redis.aclose()
        await self._reader.aclose()

    async def _reap(self) -> None:
        """Release what processes that died held: their sockets' counts, room counts and presence; tell their rooms.

        Room counts before presence: reaping presence forgets the dead process.
        """
        await self._user_sockets.reap()
        await self._redis_occupancy.reap()
        for room, diff in await self._redis_presence.reap():
            await self.broker.publish(Push((room,), "presence_diff", {"room": room, **diff}, volatile=True))


def create_redis_engine(settings: Settings) -> RedisEngine:
    """The Redis engine of `settings.redis_url`, its keys under `settings.redis_prefix`."""
    url = settings.redis_url
    if not url:
        raise ValueError("the Redis engine needs a Redis URL")
    node_id = new_node_id()
    window = settings.recovery_seconds

    def pool(connections: int, socket_timeout: float | None) -> redis.BlockingConnectionPool:
        return redis.BlockingConnectionPool.from_url(
            url,
            max_connections=connections,
            timeout=POOL_WAIT,
            socket_timeout=socket_timeout,
            socket_connect_timeout=2,
        )

    reader = redis.Redis.from_pool(pool(READER_CONNECTIONS, SOCKET_TIMEOUT))  # blocking reads, subscriptions
    # Every other command, auto-pipelined; each batch bounded as a whole (its replies have no timeout each).
    client = Batching(connection_pool=pool(MAX_CONNECTIONS, None), timeout=POOL_WAIT + SOCKET_TIMEOUT, owns_pool=True)
    prefix = settings.redis_prefix
    nodes = Nodes(client, prefix, node_id, keep=window)
    broker = RedisBroker(
        client, prefix, log_seconds(settings), settings.recovery_log_size, settings.recovery_max_bytes, reader=reader
    )
    sessions = RedisSessions(window, client, prefix, nodes) if window else None
    presence = RedisPresence(client, prefix, nodes)
    occupancy = RedisOccupancy(client, prefix, nodes, settings.presence_max_users)
    subscriber = Subscriber(reader)
    revocations = RedisRevocations(settings.revocation_seconds, client, prefix, subscriber)
    user_sockets = RedisUserSockets(client, prefix, nodes)
    return RedisEngine(
        client, reader, nodes, broker, presence, sessions, occupancy, revocations, user_sockets, subscriber
    )
