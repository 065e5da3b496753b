"""The engine: the broker, presence and session store, in memory by default or on Redis.

Memory serves one process and is the reference; a Redis URL (`PUSH_REDIS_URL`) switches all three to
Redis, imported only then, for several processes or hosts. The engine owns their resources and
background work. (The shape of encode/broadcaster: one interface module, one module per backend.)
"""

from __future__ import annotations

from ..config import Settings
from .base import (
    Broker,
    Change,
    Command,
    Control,
    Counts,
    Deliver,
    Engine,
    Missed,
    Occupancy,
    OnChange,
    PresenceStore,
    Push,
    Revocations,
    Session,
    SessionStore,
    UserSockets,
    has_mode,
    large_bounds,
)
from .memory import (
    MemoryBroker,
    MemoryEngine,
    MemoryOccupancy,
    MemoryPresence,
    MemorySessions,
    create_memory_engine,
)

__all__ = [
    "Broker",
    "Change",
    "Command",
    "Control",
    "Counts",
    "Deliver",
    "Engine",
    "MemoryBroker",
    "MemoryEngine",
    "MemoryOccupancy",
    "MemoryPresence",
    "MemorySessions",
    "Missed",
    "Occupancy",
    "OnChange",
    "PresenceStore",
    "Push",
    "Revocations",
    "Session",
    "SessionStore",
    "UserSockets",
    "create_engine",
    "has_mode",
    "large_bounds",
]


def create_engine(settings: Settings) -> Engine:
    """The Redis engine when `settings.redis_url` is set, else the memory engine."""
    if settings.redis_url:
        from .redis import create_redis_engine  # redis-py is loaded only by those who use it

        return create_redis_engine(settings)
    return create_memory_engine(settings)
