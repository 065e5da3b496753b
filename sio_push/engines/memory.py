"""The memory engine: broker, presence and sessions of one process. The default, and the reference.

The Redis engine (`redis/`) passes the same tests (tests/test_engines.py).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Collection

from ..codec import dumps
from ..config import Settings
from ..presence import Meta, State, diff, new_meta, updated_meta
from .base import Broker, Engine, Missed, PresenceStore, Push, Session, SessionStore, log_seconds, new_node_id


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

    async def claim(self, pid: str) -> Session | None:
        self._expire()
        self._ended.pop(pid, None)
        return self._sessions.pop(pid, None)


class MemoryEngine(Engine):
    """Everything in this process: one process serves every client."""


def create_memory_engine(settings: Settings) -> MemoryEngine:
    node_id = new_node_id()
    window = settings.recovery_seconds
    sessions = MemorySessions(window) if window else None
    broker = MemoryBroker(log_seconds(settings), settings.recovery_log_size, settings.recovery_max_bytes)
    return MemoryEngine(broker, MemoryPresence(node_id), sessions, node_id)
