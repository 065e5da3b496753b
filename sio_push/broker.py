"""The broker: the one road every emit takes from the HTTP API (or presence) to the sockets.

`publish` hands a `Push` to the broker; the broker calls the `deliver` function it was started with, in
every process that shares it, in one order. A push that is not volatile gets an offset (a string that
orders pushes) and is kept in the broker's log, from which recovery replays what a socket missed.

The memory broker is the default and the reference: one process, the log in a bounded deque. The Redis
broker (`redis_broker.py`, picked by `PUSH_REDIS_URL`) passes the same tests.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any


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
Missed = list[tuple[str, Push]]


class Broker:
    """The interface.

    :param log_seconds: how long a push stays in the log (0: no log, no offsets).
    :param log_size: the most pushes the log holds.
    """

    def __init__(self, log_seconds: float = 0, log_size: int = 100_000) -> None:
        self.log_seconds = log_seconds
        self.log_size = log_size
        self._deliver: Deliver | None = None
        self.position = self.origin
        """The offset of the last push whose recipients this process has chosen."""

    @property
    def logging(self) -> bool:
        return self.log_seconds > 0

    @property
    def origin(self) -> str:
        """The offset before any push."""
        return "0"

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, push: Push) -> str | None:
        """Hand `push` over; its offset once accepted. Raises BrokerUnavailable when it cannot."""
        raise NotImplementedError

    async def replay(self, after: str, rooms: Collection[str]) -> Missed | None:
        """The logged pushes after offset `after` up to `position` that reach any of `rooms`, in order.

        None when the log no longer holds everything after `after` (the caller starts afresh).
        """
        raise NotImplementedError

    async def check(self) -> bool:
        """Whether a publish can be accepted now (readiness)."""
        return self._deliver is not None

    async def close(self) -> None:
        self._deliver = None


class MemoryBroker(Broker):
    """One process: a push is delivered at once, in the order published."""

    def __init__(self, log_seconds: float = 0, log_size: int = 100_000) -> None:
        super().__init__(log_seconds, log_size)
        self._log: collections.deque[tuple[int, float, Push]] = collections.deque()
        self._counter = 0
        self._dropped = 0  # the highest offset trimmed from the log

    def _trim(self, now: float) -> None:
        horizon = now - self.log_seconds
        log = self._log
        while log and (len(log) > self.log_size or log[0][1] < horizon):
            self._dropped = log.popleft()[0]

    async def publish(self, push: Push) -> str | None:
        if self._deliver is None:
            raise RuntimeError("the broker is not started")
        offset: str | None = None
        if self.logging and not push.volatile:
            self._counter += 1
            now = time.monotonic()
            self._log.append((self._counter, now, push))
            self._trim(now)
            offset = self.position = str(self._counter)
        await self._deliver(push, offset)
        return offset

    async def replay(self, after: str, rooms: Collection[str]) -> Missed | None:
        try:
            start = int(after)
        except ValueError:
            return None
        self._trim(time.monotonic())
        if start < self._dropped or start > self._counter:
            return None
        wanted = set(rooms)
        missed = []
        for number, _, push in reversed(self._log):
            if number <= start:
                break
            if not wanted.isdisjoint(push.rooms):
                missed.append((str(number), push))
        missed.reverse()
        return missed
