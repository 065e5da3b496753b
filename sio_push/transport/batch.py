"""Frames gathered per step of the event loop, so that several pushes to a socket share one write."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Flushable(Protocol):
    def flush(self) -> None: ...


class WriteBatch:
    """The sockets with frames gathered in this step of the event loop, flushed together at its end.

    A socket's first frame in a step is written at once; it adds itself here for the ones that follow
    (see `shims.engineio.DirectSocket`): under load several pushes share each system call, which is what
    a write per socket per push runs out of first.
    """

    def __init__(self) -> None:
        self._sockets: list[Flushable] = []

    def add(self, socket: Flushable) -> None:
        if not self._sockets:
            asyncio.get_running_loop().call_soon(self.flush)
        self._sockets.append(socket)

    def flush(self) -> None:
        sockets, self._sockets = self._sockets, []
        for socket in sockets:
            socket.flush()
