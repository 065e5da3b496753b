"""The broker: the one road every emit takes from the HTTP API (or presence) to the sockets.

`publish` hands a `Push` to the broker; the broker calls the `deliver` function it was started with,
in every process that shares it, in one order. The memory broker is the default and the reference: it
delivers in-process. A Redis broker, picked by `PUSH_REDIS_URL`, passes the same tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .config import Settings


@dataclass(frozen=True, slots=True)
class Push:
    """One emit of `event` with `data` as its single argument to the union of `rooms`.

    A volatile push (presence) gets no offset and is never replayed.
    """

    rooms: tuple[str, ...]
    event: str
    data: Any
    volatile: bool = False


Deliver = Callable[[Push, "str | None"], Awaitable[None]]


class Broker:
    """The interface. `deliver(push, offset)` is called once per push in each process."""

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, push: Push) -> str | None:
        """Hand `push` over; its offset once accepted. Raises BrokerUnavailable when it cannot."""
        raise NotImplementedError

    async def close(self) -> None:
        self._deliver = None

    @property
    def ready(self) -> bool:
        """Whether a publish can be accepted now (readiness)."""
        return self._deliver is not None


class MemoryBroker(Broker):
    """One process: a push is delivered at once, in the order published."""

    async def publish(self, push: Push) -> str | None:
        if self._deliver is None:
            raise RuntimeError("the broker is not started")
        await self._deliver(push, None)
        return None


def create_broker(settings: Settings) -> Broker:
    return MemoryBroker()
