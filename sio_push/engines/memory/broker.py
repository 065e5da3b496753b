"""The memory broker: pushes delivered in this process in the order published; the log a bounded deque."""

from __future__ import annotations

import collections
import time
from collections.abc import Collection

from ...codec import dumps
from ..base import (
    Broker,
    Missed,
    Push,
)


def push_size(push: Push) -> int:
    """The bytes a push takes in the recovery log: its encoded body, rooms and event."""
    return len(dumps(push.data)) + sum(len(room) for room in push.rooms) + len(push.event)


class MemoryBroker(Broker):
    """One process: a push is delivered at once, in the order published; the log is a deque bounded in
    pushes, bytes and age."""

    def __init__(self, log_seconds: float = 0, log_size: int = 100_000, log_bytes: int = 256 * 1024 * 1024) -> None:
        super().__init__(log_seconds, log_size, log_bytes)
        self._log: collections.deque[tuple[int, float, Push, int]] = collections.deque()  # offset, time, push, size
        self._counter = 0
        self._dropped = 0  # the highest offset trimmed from the log
        self.held = 0  # the bytes of the pushes in the log

    def _trim(self, now: float) -> None:
        horizon = now - self.log_seconds
        log = self._log
        while log and (len(log) > self.log_size or self.held > self.log_bytes or log[0][1] < horizon):
            self._dropped, _, _, size = log.popleft()
            self.held -= size

    async def publish(self, push: Push) -> str | None:
        if self._deliver is None:
            raise RuntimeError("the broker is not started")
        offset: str | None = None
        if self.logging and not push.volatile:
            self._counter += 1
            now = time.monotonic()
            size = push_size(push)
            self._log.append((self._counter, now, push, size))
            self.held += size
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
        for number, _, push, _ in reversed(self._log):
            if number <= start:
                break
            if not wanted.isdisjoint(push.rooms):
                missed.append((str(number), push))
        missed.reverse()
        return missed
