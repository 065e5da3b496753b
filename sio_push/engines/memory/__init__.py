"""The memory engine: broker, presence, sessions and occupancy of one process. The default, and the reference.

The Redis engine (`redis/`) passes the same tests (tests/test_engines.py).
"""

from __future__ import annotations

from ...config import Settings
from ..base import Engine, log_seconds, new_node_id
from .access import MemoryControl, MemoryRevocations, MemorySessions, MemoryUserSockets
from .broker import MemoryBroker, push_size
from .rooms import MemoryOccupancy, MemoryPresence

__all__ = [
    "MemoryBroker",
    "MemoryControl",
    "MemoryEngine",
    "MemoryOccupancy",
    "MemoryPresence",
    "MemoryRevocations",
    "MemorySessions",
    "MemoryUserSockets",
    "create_memory_engine",
    "push_size",
]


class MemoryEngine(Engine):
    """Everything in this process: one process serves every client."""


def create_memory_engine(settings: Settings) -> MemoryEngine:
    node_id = new_node_id()
    window = settings.recovery_seconds
    sessions = MemorySessions(window) if window else None
    broker = MemoryBroker(log_seconds(settings), settings.recovery_log_size, settings.recovery_max_bytes)
    return MemoryEngine(
        broker,
        MemoryPresence(node_id),
        sessions,
        node_id,
        MemoryOccupancy(settings.presence_max_users),
        control=MemoryControl(),
        revocations=MemoryRevocations(settings.revocation_seconds),
        user_sockets=MemoryUserSockets(),
    )
