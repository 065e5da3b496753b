"""Where every room Change lands: this process's sockets entering and leaving rooms, and the reaped ones.

Every room membership (user rooms too) goes through `RoomWatch.enter` and `RoomWatch.exit`, which ask the
engine's `Occupancy` (counts over every process) and hand the `Change` to each listener; the engine's
reaper hands over the Changes of processes that died the same way. Listeners are the large-room mode and
`presence_count` (`sio/large.py`) and, where configured, webhooks.
"""

from __future__ import annotations

import logging

from ..engines import Change, Occupancy, OnChange
from ..errors import BackendUnavailable

log = logging.getLogger(__name__)


class RoomWatch:
    """Counts rooms through the engine's occupancy and tells the listeners of every Change.

    :param occupancy: the engine's occupancy; its reaped Changes come here too.
    """

    def __init__(self, occupancy: Occupancy) -> None:
        self.occupancy = occupancy
        self._listeners: list[OnChange] = []
        occupancy.watch(self.changed)

    def add_listener(self, callback: OnChange) -> None:
        """Call `callback` with every Change from now on (in the order they land)."""
        self._listeners.append(callback)

    async def enter(self, room: str, user_id: str, sid: str) -> Change | None:
        """`sid` of `user_id` is in `room`; the Change, or None when the backend could not count it."""
        try:
            change = await self.occupancy.enter(room, user_id, sid)
        except BackendUnavailable:
            log.warning("room=%s entry of sid=%s not counted: backend unavailable", room, sid)
            return None
        await self.changed(change)
        return change

    async def exit(self, room: str, sid: str) -> Change | None:
        """`sid` left `room`; the Change, or None when it was not counted there (or the backend failed)."""
        try:
            change = await self.occupancy.exit(room, sid)
        except BackendUnavailable:
            log.warning("room=%s exit of sid=%s not counted: backend unavailable", room, sid)
            return None
        if change is not None:
            await self.changed(change)
        return change

    async def changed(self, change: Change) -> None:
        """Hand `change` to every listener; one failing listener does not keep it from the others."""
        for listener in self._listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("a listener of room changes failed on room=%s", change.room)
