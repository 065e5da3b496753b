"""The memory engine: broker, presence, sessions and occupancy of one process. The default, and the reference.

The Redis engine (`redis/`) passes the same tests (tests/test_engines.py).
"""

from __future__ import annotations

import bisect
import collections
import heapq
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from ..codec import dumps
from ..config import Settings
from ..presence import Meta, State, diff, new_meta, updated_meta
from .base import (
    Broker,
    Change,
    Command,
    Control,
    Counts,
    Engine,
    Missed,
    Occupancy,
    PresenceStore,
    Push,
    Revocations,
    Session,
    SessionStore,
    UserSockets,
    log_seconds,
    new_node_id,
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


class MemoryPresence(PresenceStore):
    """Presence of one process's sockets; each room's state is kept ready to send."""

    def __init__(self, node_id: str = "") -> None:
        super().__init__(node_id)
        self._members: dict[str, dict[str, tuple[str, Meta]]] = {}  # room -> sid -> (user_id, meta)
        self._states: dict[str, State] = {}  # room -> user_id -> {"metas": [...]}

    def _put(self, room: str, user_id: str, sid: str, meta: Meta, old: Meta | None = None) -> None:
        self._members.setdefault(room, {})[sid] = (user_id, meta)
        metas = self._states.setdefault(room, {}).setdefault(user_id, {"metas": []})["metas"]
        if old is not None:
            metas.remove(old)
        metas.append(meta)

    async def join(self, room: str, user_id: str, sid: str) -> dict[str, State]:
        meta = new_meta(self._next_ref())
        self._put(room, user_id, sid, meta)
        return diff(user_id, joined=meta)

    async def update(self, room: str, sid: str, changes: Meta) -> dict[str, State] | None:
        entry = self._members.get(room, {}).get(sid)
        if entry is None:
            return None
        user_id, old = entry
        new = updated_meta(old, changes, self._next_ref())
        self._put(room, user_id, sid, new, old)
        return diff(user_id, joined=new, left=old)

    async def leave(self, room: str, sid: str) -> dict[str, State] | None:
        members = self._members.get(room)
        if not members or sid not in members:
            return None
        user_id, meta = members.pop(sid)
        state = self._states[room]
        state[user_id]["metas"].remove(meta)
        if not state[user_id]["metas"]:
            del state[user_id]
        if not members:
            del self._members[room]
            del self._states[room]
        return diff(user_id, left=meta)

    async def state(self, room: str) -> State:
        return self._states.get(room, {})

    async def first(self, room: str, limit: int) -> State:
        state = self._states.get(room, {})
        return {user_id: {"metas": list(state[user_id]["metas"])} for user_id in heapq.nsmallest(limit, state)}


@dataclass(slots=True)
class _Occupied:
    sids: dict[str, str] = field(default_factory=dict)  # sid -> user_id
    users: collections.Counter[str] = field(default_factory=collections.Counter)  # user_id -> sockets
    large: bool = False


class MemoryOccupancy(Occupancy):
    """The rooms of one process's sockets; room names kept sorted for `rooms`."""

    def __init__(self, limit: int = 0) -> None:
        super().__init__(limit)
        self._rooms: dict[str, _Occupied] = {}
        self._names: list[str] = []  # sorted
        self._announced: set[tuple[str, str | None]] = set()

    async def enter(self, room: str, user_id: str, sid: str) -> Change:
        occupied = self._rooms.get(room)
        if occupied is None:
            occupied = self._rooms[room] = _Occupied()
            bisect.insort(self._names, room)
        if sid in occupied.sids:
            return Change(room, user_id, self._counts(occupied), False, False, occupied.large)
        occupied.sids[sid] = user_id
        occupied.users[user_id] += 1
        return self._changed(room, occupied, user_id, len(occupied.sids) == 1, occupied.users[user_id] == 1)

    async def exit(self, room: str, sid: str) -> Change | None:
        occupied = self._rooms.get(room)
        if occupied is None or sid not in occupied.sids:
            return None
        user_id = occupied.sids.pop(sid)
        occupied.users[user_id] -= 1
        member_changed = occupied.users[user_id] <= 0
        if member_changed:
            del occupied.users[user_id]
        if not occupied.sids:
            del self._rooms[room]
            del self._names[bisect.bisect_left(self._names, room)]
        return replace(self._changed(room, occupied, user_id, not occupied.sids, member_changed), entered=False)

    def _changed(
        self, room: str, occupied: _Occupied, user_id: str, room_changed: bool, member_changed: bool
    ) -> Change:
        was = occupied.large
        occupied.large = self._mode(room, len(occupied.users), was)
        counts = self._counts(occupied)
        return Change(room, user_id, counts, room_changed, member_changed, occupied.large, occupied.large != was)

    @staticmethod
    def _counts(occupied: _Occupied) -> Counts:
        return Counts(len(occupied.users), len(occupied.sids))

    async def counts(self, room: str) -> Counts:
        occupied = self._rooms.get(room)
        return self._counts(occupied) if occupied is not None else Counts(0, 0)

    async def rooms(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, Counts]]:
        names = self._names
        at = (
            bisect.bisect_right(names, after)
            if after is not None and after >= prefix
            else bisect.bisect_left(names, prefix)
        )
        found = []
        for name in names[at : at + limit]:
            if not name.startswith(prefix):
                break
            found.append((name, self._counts(self._rooms[name])))
        return found

    async def announce(self, room: str, user_id: str | None = None) -> bool:
        if (room, user_id) in self._announced:
            return False
        self._announced.add((room, user_id))
        return True

    async def retract(self, room: str, user_id: str | None = None) -> bool:
        occupied = self._rooms.get(room)
        if occupied is not None and (user_id is None or occupied.users[user_id] > 0):
            return False
        if (room, user_id) not in self._announced:
            return False
        self._announced.discard((room, user_id))
        return True


class MemorySessions(SessionStore):
    """The sessions of one process."""

    def __init__(self, window: float) -> None:
        super().__init__(window)
        self._sessions: dict[str, Session] = {}
        self._ended: dict[str, float] = {}  # pid -> ended_at, in the order they ended

    def _expire(self) -> None:
        horizon = time.time() - self.window
        while self._ended:
            pid, ended_at = next(iter(self._ended.items()))
            if ended_at > horizon:
                break
            del self._ended[pid]
            self._sessions.pop(pid, None)

    async def save(self, session: Session) -> None:
        self._expire()
        current = self._sessions.get(session.pid)
        if current is None or current.conn == session.conn:
            self._sessions[session.pid] = session
            self._ended.pop(session.pid, None)

    async def end(self, session: Session) -> None:
        self._expire()
        current = self._sessions.get(session.pid)
        if current is not None and current.conn == session.conn:
            now = time.time()
            self._sessions[session.pid] = session.ended(now)
            self._ended.pop(session.pid, None)
            self._ended[session.pid] = now

    async def claim(self, pid: str, user_id: str | None = None) -> Session | None:
        self._expire()
        session = self._sessions.get(pid)
        if session is None or (user_id is not None and session.user_id != user_id):
            return None
        await self.drop(pid)
        return session

    async def drop(self, pid: str) -> None:
        self._ended.pop(pid, None)
        self._sessions.pop(pid, None)


class MemoryControl(Control):
    """One process: a command is run here, and its count is the answer."""

    async def request(self, command: Command) -> int:
        return await self._run(command)


class MemoryRevocations(Revocations):
    """Revocations of one process, each forgotten `seconds` after it was recorded."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        # (user, room or "") -> (when recorded, the revocation's time), in the order recorded
        self._records: dict[tuple[str, str], tuple[float, float]] = {}

    def _expire(self) -> None:
        horizon = time.time() - self.seconds
        while self._records:
            key, (recorded, _) = next(iter(self._records.items()))
            if recorded > horizon:
                break
            del self._records[key]

    def _put(self, key: tuple[str, str], at: float) -> None:
        self._expire()
        self._records.pop(key, None)
        if self.seconds > 0:
            self._records[key] = (time.time(), at)

    def _get(self, key: tuple[str, str]) -> float | None:
        self._expire()
        record = self._records.get(key)
        return record[1] if record is not None else None

    async def revoke_user(self, user_id: str, at: float) -> None:
        self._put((user_id, ""), at)

    async def user_revoked(self, user_id: str) -> float | None:
        return self._get((user_id, ""))

    async def revoke_room(self, user_id: str, room: str, at: float) -> None:
        self._put((user_id, room), at)

    async def room_revoked(self, user_id: str, room: str) -> float | None:
        return self._get((user_id, room))


class MemoryUserSockets(UserSockets):
    """The sockets of each user of this process."""

    def __init__(self) -> None:
        self._conns: dict[str, set[str]] = {}  # user -> the connections counted

    async def acquire(self, user_id: str, conn: str, limit: int, replaces: str | None = None) -> bool:
        conns = self._conns.setdefault(user_id, set())
        others = len(conns) - (replaces in conns) - (conn in conns)
        if limit and others >= limit:
            if not conns:
                del self._conns[user_id]
            return False
        conns.discard(replaces or "")
        conns.add(conn)
        return True

    async def release(self, user_id: str, conn: str) -> None:
        conns = self._conns.get(user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._conns[user_id]


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
