"""The sending side of presence: each room's diffs are merged and broadcast at most once per delay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..presence import State, merge


class DiffBatcher:
    """Broadcasts each room's presence diffs at most once per `delay` seconds, merged.

    Without it, N sockets joining a room cost N² messages; Phoenix's tracker batches its deltas the same
    way. A delay of 0 sends every diff at once.

    :param publish: sends one room's merged diff.
    :param delay: seconds a diff may wait for others to merge with.
    """

    def __init__(self, publish: Callable[[str, dict[str, State]], Awaitable[None]], delay: float) -> None:
        self._publish = publish
        self._delay = delay
        self._pending: dict[str, dict[str, State]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, room: str, diff: dict[str, State]) -> None:
        if self._delay <= 0:
            await self._publish(room, diff)
            return
        pending = self._pending.get(room)
        if pending is not None:
            merge(pending, diff)
            return
        self._pending[room] = {"joins": {}, "leaves": {}}
        merge(self._pending[room], diff)
        task = asyncio.create_task(self._flush_later(room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self, room: str) -> None:
        await asyncio.sleep(self._delay)
        diff = self._pending.pop(room, None)
        if diff is not None and (diff["joins"] or diff["leaves"]):
            await self._publish(room, diff)

    async def close(self) -> None:
        """Send what is pending now."""
        for task in list(self._tasks):
            task.cancel()
        pending, self._pending = self._pending, {}
        for room, diff in pending.items():
            if diff["joins"] or diff["leaves"]:
                await self._publish(room, diff)
