"""A light asyncio queue for the Engine.IO sockets: what python-engineio asks of a socket's queue, with
storage made only when used, and the bytes held counted (a socket whose queue holds too much is cut off)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any


def _size(item: Any) -> int:
    """About the bytes a queued packet will take to send (its data's length; a few for the rest)."""
    data = getattr(item, "data", None)
    return len(data) + 8 if isinstance(data, str | bytes) else 64


class LightQueue:
    """What python-engineio asks of a socket's queue, with storage made only when used.

    An idle `asyncio.Queue` holds four empty deques and an Event, 3 KiB per socket; the sockets of the
    fast path hardly ever queue anything.
    """

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished", "held")

    def __init__(self) -> None:
        self._items: collections.deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self.held = 0  # about the bytes of the packets in the queue

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        self.held += _size(item)
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None
            self.held = 0
        else:
            self.held -= _size(item)
        return item

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif self._items:  # woken and cancelled at once: pass the wake-up on
                    self.put_nowait(self.get_nowait())
                    self._unfinished -= 1
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished and self._joiners:
            for joiner in self._joiners:
                if not joiner.done():
                    joiner.set_result(None)
            self._joiners = None

    async def join(self) -> None:
        if self._unfinished:
            joiner = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(joiner)
            await joiner
