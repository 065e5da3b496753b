"""Sessions, commands, revocations and user sockets of one process."""

from __future__ import annotations

import time

from ..base import (
    Command,
    Control,
    Revocations,
    Session,
    SessionStore,
    UserSockets,
)


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
    """Revocations of one process, each forgotten `seconds` after it was recorded.

    Also the Redis engine's copy, in each process, of the revocations shared in Redis (`record` with the
    time each was recorded there).
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        # (user, room or "") -> (when recorded, the revocation's time), about in the order recorded
        self._records: dict[tuple[str, str], tuple[float, float]] = {}

    def _expire(self) -> None:
        horizon = time.time() - self.seconds
        while self._records:
            key, (recorded, _) = next(iter(self._records.items()))
            if recorded > horizon:
                break
            del self._records[key]

    def record(self, user_id: str, room: str, at: float, recorded: float | None = None) -> None:
        """Keep the revocation of `room` ("": of the user) made at `at`, recorded at `recorded` (now);
        an earlier record of the same one is replaced, a later one kept."""
        self._expire()
        recorded = time.time() if recorded is None else recorded
        key = (user_id, room)
        known = self._records.get(key)
        if self.seconds > 0 and (known is None or known[0] <= recorded):
            self._records.pop(key, None)
            self._records[key] = (recorded, at)

    def _get(self, key: tuple[str, str]) -> float | None:
        self._expire()
        record = self._records.get(key)
        if record is None or record[0] <= time.time() - self.seconds:  # one recorded out of order
            return None
        return record[1]

    async def revoke_user(self, user_id: str, at: float) -> None:
        self.record(user_id, "", at)

    async def user_revoked(self, user_id: str) -> float | None:
        return self._get((user_id, ""))

    async def revoke_room(self, user_id: str, room: str, at: float) -> None:
        self.record(user_id, room, at)

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
