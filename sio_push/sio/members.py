"""The connected Socket.IO sockets of this process: who each one is, and the session it may recover."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..auth import Identity
from ..engines import Session
from ..limits import TokenBucket


@dataclass(slots=True)
class Member:
    """One connected socket of namespace "/".

    :param identity: who the token says it is.
    :param session: its recoverable session; None when recovery is off, or once a reconnect took it over.
    :param events: the budget of its client events.
    :param joined: room -> the broker's position when it joined (recovery replays nothing older).
    :param conn: this connection's own id (its count in the per-user limit is its own, see `UserSockets`).
    :param token: its token, kept only where the backend is asked again (callback mode).
    :param timer: the token's expiry, or the next recheck with the backend.
    """

    identity: Identity
    session: Session | None
    events: TokenBucket
    joined: dict[str, str] = field(default_factory=dict)
    conn: str = ""
    token: str | None = None
    timer: asyncio.TimerHandle | None = None


class Members:
    """sid -> `Member`, for the sockets connected to this process."""

    def __init__(self) -> None:
        self._by_sid: dict[str, Member] = {}

    def get(self, sid: str) -> Member | None:
        return self._by_sid.get(sid)

    def add(self, sid: str, member: Member) -> None:
        self._by_sid[sid] = member

    def pop(self, sid: str) -> Member | None:
        return self._by_sid.pop(sid, None)

    def __contains__(self, sid: object) -> bool:
        return sid in self._by_sid

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._by_sid))
