"""Connection state recovery, as Socket.IO 4.6 defines it, kept where any process can find it.

A session (private id `pid`) records what a socket needs back after a drop: its sid, its user, its
rooms, and where in the broker's log it began. The identity itself comes from the token, checked again
on every reconnect (an expired token is refused, not recovered). Sessions are saved whenever they
change, not only at disconnect, so a client whose process died recovers on another. A session can be
claimed once, within the recovery window after its end; a session still marked live can be claimed too
(its process died, or the client noticed the drop first) and its old connection is then closed.

Only the owner connection (`conn`) of a session may save or end it, so a late disconnect of an old
connection never overwrites the session that a reconnect took over.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Session:
    pid: str
    sid: str
    user_id: str
    rooms: tuple[str, ...]
    start: str
    conn: str
    node: str
    ended_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Session:
        data: dict[str, Any] = json.loads(raw)
        return cls(**{**data, "rooms": tuple(data["rooms"])})

    def ended(self, at: float) -> Session:
        return replace(self, ended_at=at)


class SessionStore:
    """The interface; `MemorySessions` is the reference.

    :param window: seconds a session can be claimed after it ends.
    """

    def __init__(self, window: float) -> None:
        self.window = window

    async def save(self, session: Session) -> None:
        """Record a live session (on connect, join, leave), unless another connection owns the pid."""
        raise NotImplementedError

    async def end(self, session: Session) -> None:
        """Mark the session ended now, if this connection still owns it; claimable for the window."""
        raise NotImplementedError

    async def claim(self, pid: str) -> Session | None:
        """Take the session away for a reconnect: None when it is unknown or its window has passed."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the store holds."""


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
