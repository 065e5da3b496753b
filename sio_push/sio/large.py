"""Large rooms (SPEC §6): counts instead of full presence above `PUSH_PRESENCE_MAX_USERS`.

The engine's occupancy decides the switch, atomically with the counts, so exactly one Change switches a
room; the process that made it announces the switch to every process through the broker (an internal
volatile push), and each process tells its own members: the large `presence_state` form, or the full
state again. Every process keeps the mode of the rooms its members are in; one that has not heard of a
room takes the mode its first Change there reports.

`presence_count`: every Change of a large room is announced the same way (coalesced while a publish is
under way); each process then reads the room's counts afresh and writes them to its members, at most once
per `COUNT_EVERY` per room, and always again after the last change, so the latest count arrives within
about a second of it. Reading afresh rather than trusting the announced numbers keeps the order of
announcements from different processes from mattering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..engines import Broker, Change, Counts, Occupancy, PresenceStore, Push, has_mode
from ..errors import BackendUnavailable
from .fanout import INTERNAL, Fanout

log = logging.getLogger(__name__)

MODE_EVENT = INTERNAL + "mode"
COUNT_EVENT = INTERNAL + "count"
COUNT_EVERY = 1.0


def large_state(room: str, counts: Counts) -> dict[str, Any]:
    """The `presence_state` of a large room: no members, their counts."""
    return {"room": room, "state": {}, "large": True, "count": {"users": counts.users, "sockets": counts.sockets}}


class LargeRooms:
    """The large-room mode of each room this process has members in, and its `presence_count`s.

    :param broker: carries the announcements to every process.
    :param occupancy: the counts, read afresh before each `presence_count`.
    :param store: the presence store, for the full state when a room stops being large.
    :param fanout: writes to this process's members.
    :param drop_diffs: forgets a room's pending presence diffs (a room that became large sends none).
    :param batch_seconds: how long `presence_typing`s wait to be merged (the latest of each user is sent).
    """

    def __init__(
        self,
        broker: Broker,
        occupancy: Occupancy,
        store: PresenceStore,
        fanout: Fanout,
        drop_diffs: Callable[[str], None],
        batch_seconds: float = 0.0,
    ) -> None:
        self._broker = broker
        self._occupancy = occupancy
        self._store = store
        self._fanout = fanout
        self._drop_diffs = drop_diffs
        self._mode: dict[str, bool] = {}
        self._announcing: dict[str, bool] = {}  # room -> another count announcement is wanted
        self._counting: dict[str, asyncio.Task[None]] = {}
        self._stale: set[str] = set()  # rooms whose counts changed while being read
        self._last_sent: dict[str, float] = {}
        self._last_counts: dict[str, Counts] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch_seconds = batch_seconds
        self._typing: dict[str, dict[str, dict[str, Any]]] = {}  # room -> user_id -> presence_typing pending
        fanout.intercept(self._intercept)

    def is_large(self, room: str) -> bool:
        return self._mode.get(room, False)

    def _intercept(self, push: Push) -> bool:
        """Take the announcements between processes, and a presence diff that reaches a room once it is large
        (made before the switch, delivered after it, as through Redis behind a crowd's joins): a large room
        gets no diffs, its members got its counts."""
        if push.event.startswith(INTERNAL):
            self._received(push)
            return True
        return push.event == "presence_diff" and len(push.rooms) == 1 and self.is_large(push.rooms[0])

    async def changed(self, change: Change) -> None:
        """A `RoomWatch` listener: announce a switch, note an unknown room's mode, announce a count change."""
        room = change.room
        if not has_mode(room):
            return
        if change.switched:
            counts = {"users": change.counts.users, "sockets": change.counts.sockets}
            await self._publish(Push((room,), MODE_EVENT, {"room": room, "large": change.large, **counts}, True))
        elif room not in self._mode and self._fanout.has_members(room):
            self._mode[room] = change.large
        if change.large:
            self._announce_count(room)

    async def typing(self, room: str, user_id: str, username: str | None, typing: bool) -> None:
        """Send `presence_typing` to large room `room` (the sender too), merged over the batch time."""
        data = {"room": room, "user_id": user_id, "username": username, "typing": typing}
        if self._batch_seconds <= 0:
            await self._publish(Push((room,), "presence_typing", data, True))
            return
        pending = self._typing.get(room)
        if pending is None:
            pending = self._typing[room] = {}
            self._spawn(self._send_typing_later(room))
        pending[user_id] = data

    async def _send_typing_later(self, room: str) -> None:
        await asyncio.sleep(self._batch_seconds)
        for data in self._typing.pop(room, {}).values():
            await self._publish(Push((room,), "presence_typing", data, True))

    def left(self, room: str) -> None:
        """A member of this process left `room`: forget the room once none is left here."""
        if not self._fanout.has_members(room):
            self._forget(room)

    def _forget(self, room: str) -> None:
        self._mode.pop(room, None)
        self._last_sent.pop(room, None)
        self._last_counts.pop(room, None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _publish(self, push: Push) -> None:
        try:
            await self._broker.publish(push)
        except BackendUnavailable:
            log.warning("%s for room=%s not announced: broker unavailable", push.event, push.rooms[0])

    def _announce_count(self, room: str) -> None:
        if room in self._announcing:
            self._announcing[room] = True
            return
        self._announcing[room] = False
        self._spawn(self._announce_while_changed(room))

    async def _announce_while_changed(self, room: str) -> None:
        try:
            while True:
                await self._publish(Push((room,), COUNT_EVENT, {"room": room}, True))
                if not self._announcing.get(room):
                    return
                self._announcing[room] = False
        finally:
            self._announcing.pop(room, None)

    def _received(self, push: Push) -> None:
        """An announcement from any process (this one included), in the broker's order."""
        data = push.data if isinstance(push.data, dict) else {}
        room = data.get("room")
        if not isinstance(room, str) or not self._fanout.has_members(room):
            if isinstance(room, str):
                self._forget(room)
            return
        if push.event == MODE_EVENT:
            self._switch(room, bool(data.get("large")), Counts(int(data["users"]), int(data["sockets"])))
        elif push.event == COUNT_EVENT and self._mode.get(room):
            if room in self._counting:
                self._stale.add(room)
            else:
                self._counting[room] = self._spawn(self._send_counts(room))

    def _switch(self, room: str, large: bool, counts: Counts) -> None:
        if self._mode.get(room) == large:
            return
        self._mode[room] = large
        if large:
            log.info("room=%s is large (%d users): counts instead of presence", room, counts.users)
            self._drop_diffs(room)
            self._last_counts[room] = counts
            self._fanout.write_push(Push((room,), "presence_state", large_state(room, counts), True))
        else:
            log.info("room=%s is no longer large (%d users): presence again", room, counts.users)
            self._last_counts.pop(room, None)
            self._spawn(self._send_state(room))

    async def _send_state(self, room: str) -> None:
        try:
            state = await self._store.state(room)
        except BackendUnavailable:
            log.warning("presence_state of room=%s not sent: backend unavailable", room)
            return
        if self._mode.get(room) is False:
            self._fanout.write_push(Push((room,), "presence_state", {"room": room, "state": state}, True))

    async def _send_counts(self, room: str) -> None:
        """Write the room's counts to its members here: at most once per COUNT_EVERY, again while they change."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                wait = self._last_sent.get(room, -COUNT_EVERY) + COUNT_EVERY - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._stale.discard(room)
                counts = await self._occupancy.counts(room)
                if self._mode.get(room) and counts != self._last_counts.get(room):
                    self._last_sent[room] = loop.time()
                    self._last_counts[room] = counts
                    data = {"room": room, "users": counts.users, "sockets": counts.sockets}
                    self._fanout.write_push(Push((room,), "presence_count", data, True))
                if room not in self._stale:
                    return
        except BackendUnavailable:
            log.warning("presence_count of room=%s not sent: backend unavailable", room)
        finally:
            self._counting.pop(room, None)
            self._stale.discard(room)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        pending, self._typing = self._typing, {}
        for room, typing in pending.items():
            for data in typing.values():
                await self._publish(Push((room,), "presence_typing", data, True))
