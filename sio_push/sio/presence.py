"""The sending side of presence: a socket's presence tracked as it joins and leaves, and the diffs sent.

The rules (state, diffs, merging) are `sio_push.presence`, and the store is the engine's; this module
decides what each socket is told and when. Presence events are volatile: no offset, never replayed.
Every room a socket enters or leaves is counted here too (`sio/occupancy.py`), and a room over the
presence limit gets counts instead of members (`sio/large.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..auth import Identity
from ..engines import Broker, Change, Counts, PresenceStore, Push
from ..errors import BackendUnavailable
from ..presence import Meta, State, merge
from ..rooms import Room, parse_room
from .fanout import Fanout
from .large import LargeRooms, large_state
from .occupancy import RoomWatch

log = logging.getLogger(__name__)

Diff = dict[str, State]


class DiffBatcher:
    """Broadcasts each room's presence diffs at most once per `delay` seconds, merged.

    Without it, N sockets joining a room cost N² messages; Phoenix's tracker batches its deltas the same
    way. A delay of 0 sends every diff at once.

    :param publish: sends one room's merged diff.
    :param delay: seconds a diff may wait for others to merge with.
    """

    def __init__(self, publish: Callable[[str, Diff], Awaitable[None]], delay: float) -> None:
        self._publish = publish
        self._delay = delay
        self._pending: dict[str, Diff] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, room: str, diff: Diff) -> None:
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

    def drop(self, room: str) -> None:
        """Forget `room`'s pending diff (a room that became large sends none)."""
        self._pending.pop(room, None)

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


class PresenceTracker:
    """Who is in each `room:*` room, kept in the engine's store and told to the room.

    :param store: the engine's presence store (this process's, or shared through Redis).
    :param broker: carries the diffs to every process.
    :param fanout: writes the joiner's `presence_state`.
    :param batch_seconds: how long a room's diffs wait to be merged into one broadcast.
    :param typing_seconds: how long a `typing: true` lasts unless renewed.
    :param watch: counts every room entered and left, over every process.
    """

    def __init__(
        self,
        store: PresenceStore,
        broker: Broker,
        fanout: Fanout,
        batch_seconds: float,
        typing_seconds: float,
        watch: RoomWatch,
    ) -> None:
        self._store = store
        self._broker = broker
        self._fanout = fanout
        self._watch = watch
        self._diffs = DiffBatcher(self._publish, batch_seconds)
        self.large = LargeRooms(broker, watch.occupancy, store, fanout, self._diffs.drop, batch_seconds)
        watch.add_listener(self.large.changed)
        self._typing_seconds = typing_seconds
        self._typing: dict[tuple[str, str], Meta] = {}  # (room, sid) -> the typing/username last set
        self._expiry: dict[tuple[str, str], asyncio.TimerHandle] = {}  # of the typing: true ones
        self._tasks: set[asyncio.Task[None]] = set()

    async def entered(self, name: str, sid: str, identity: Identity) -> None:
        """`sid` is in room `name` (any room): counted, and in a `room:*` room its presence tracked.

        The count and the presence entry are independent writes: on Redis they go out together.
        """
        room = parse_room(name)
        if room is None or not room.has_presence:
            await self._watch.enter(name, identity.user_id, sid)
            return
        change, diff = await asyncio.gather(
            self._watch.enter(name, identity.user_id, sid), self._join(room, identity.user_id, sid)
        )
        if diff is not None:
            await self._track(room, sid, change, diff)

    async def _join(self, room: Room, user_id: str, sid: str) -> Diff | None:
        try:
            return await self._store.join(room.name, user_id, sid)
        except BackendUnavailable:
            log.warning("presence in room=%s not tracked: backend unavailable", room.name)
            return None

    async def _track(self, room: Room, sid: str, change: Change | None, diff: Diff) -> None:
        """`sid` joined `room`: it gets the room's state (or its counts, if large), the room gets the diff."""
        large = change.large if change is not None else self.large.is_large(room.name)
        try:
            if large:
                if change is None:
                    self._fanout.send_to(sid, "presence_state", large_state(room.name, await self._counts(room.name)))
                elif not change.switched:  # else the switch's announcement tells every member, this one too
                    self._fanout.send_to(sid, "presence_state", large_state(room.name, change.counts))
                return
            state = await self._store.state(room.name)
        except BackendUnavailable:
            log.warning("presence_state of room=%s not sent: backend unavailable", room.name)
            return
        above = self._watch.occupancy.above
        if self.large.is_large(room.name) or (above and len(state) > above):
            # The room became large while its state was read (a crowd joining), or is about to (its switch
            # not announced yet): the switch tells this member too, and a full state sent after it would
            # undo it (and be as large as the crowd).
            return
        self._fanout.send_to(sid, "presence_state", {"room": room.name, "state": state})
        await self._diffs.add(room.name, diff)

    async def _counts(self, name: str) -> Counts:
        return await self._watch.occupancy.counts(name)

    async def exited(self, name: str, sid: str) -> None:
        """`sid` left room `name`: counted, and in a `room:*` room the room told (typing false if it was typing)."""
        room = parse_room(name)
        diff = None
        if room is not None and room.has_presence:
            was_typing = self._typing.get((name, sid), {}).get("typing", False)
            self._forget_typing((name, sid))
            try:
                diff = await self._store.leave(name, sid)
            except BackendUnavailable:
                log.warning("presence in room=%s not untracked: backend unavailable", name)
        change = await self._watch.exit(name, sid)
        if diff is not None:
            if not (change.large if change is not None else self.large.is_large(name)):
                await self._diffs.add(name, diff)
            elif was_typing:
                await self._publish_typing(name, diff["leaves"], typing=False)
        self.large.left(name)

    async def snapshot(self, name: str, limit: int) -> tuple[Counts, State]:
        """The counts of room `name` and the state of its first `limit` users. Raises BackendUnavailable."""
        counts = await self._counts(name)
        room = parse_room(name)
        state = await self._store.first(name, limit) if room is not None and room.has_presence else {}
        return counts, state

    async def typing(self, room: Room, sid: str, changes: Meta) -> None:
        """Set `sid`'s typing (and username) in `room`; nothing is sent unless it changes the meta.

        A `typing: true` not renewed within `typing_seconds` turns itself to false. Raises
        BackendUnavailable when the store can't take the change.
        """
        key = (room.name, sid)
        self._cancel_expiry(key)
        if changes["typing"]:
            loop = asyncio.get_running_loop()
            self._expiry[key] = loop.call_later(self._typing_seconds, self._expire, room, sid)
        last = self._typing.get(key, {"typing": False})
        if all(last.get(name) == value for name, value in changes.items()):
            return
        diff = await self._store.update(room.name, sid, changes)
        if diff is None:
            return
        self._typing[key] = {**last, **changes}
        if self.large.is_large(room.name):
            await self._publish_typing(room.name, diff["joins"], bool(changes["typing"]))
        else:
            await self._diffs.add(room.name, diff)

    async def _publish_typing(self, room: str, entries: State, typing: bool) -> None:
        """`presence_typing` to a large room, for the one user of `entries` (a diff's joins or leaves)."""
        for user_id, entry in entries.items():
            await self.large.typing(room, user_id, entry["metas"][-1].get("username"), typing)

    def _expire(self, room: Room, sid: str) -> None:
        self._expiry.pop((room.name, sid), None)
        task = asyncio.create_task(self._stop_typing(room, sid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop_typing(self, room: Room, sid: str) -> None:
        try:
            await self.typing(room, sid, {"typing": False})
        except BackendUnavailable:
            log.warning("typing in room=%s not cleared: backend unavailable", room.name)

    def _cancel_expiry(self, key: tuple[str, str]) -> None:
        timer = self._expiry.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _forget_typing(self, key: tuple[str, str]) -> None:
        self._cancel_expiry(key)
        self._typing.pop(key, None)

    async def _publish(self, room: str, diff: Diff) -> None:
        try:
            await self._broker.publish(Push((room,), "presence_diff", {"room": room, **diff}, volatile=True))
        except BackendUnavailable:
            log.warning("presence_diff for room=%s not sent: broker unavailable", room)

    async def close(self) -> None:
        """Send the diffs still waiting (at shutdown, after the sockets are closed)."""
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        for task in list(self._tasks):
            task.cancel()
        await self.large.close()
        await self._diffs.close()
