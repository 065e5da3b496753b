"""The backend's revocations, on the Socket.IO side: who may connect or join, and the commands run here.

`POST /api/disconnect` and `POST /api/unsubscribe` record a revocation (shared by every process, for
`PUSH_REVOCATION_SECONDS`) and send a command over the engine's control channel; every process runs it
on its own sockets with `Revoker.handle` and answers how many it acted on. A token issued before a
revocation (its `iat` in whole seconds not later than the revocation's second, or no `iat`) is refused.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Protocol

from ..auth import Auth, Identity
from ..engines import Command, Revocations, Session, SessionStore
from ..errors import AuthError, BackendUnavailable
from ..rooms import Room, parse_room
from ..shims.socketio import PushServer
from .fanout import Fanout
from .members import Member, Members
from .presence import PresenceTracker

if TYPE_CHECKING:
    from .connect import Connector

log = logging.getLogger(__name__)

TOKEN_REVOKED = "token_revoked"


def issued_before(identity: Identity, at: float | None) -> bool:
    """Whether the token of `identity` was issued before a revocation made at `at` (None: no revocation)."""
    if at is None:
        return False
    return identity.issued_at is None or identity.issued_at <= math.floor(at)


class Revoked:
    """Reads the shared revocation records for the CONNECT path, joins and recovery.

    A backend outage never refuses anyone here: a record that cannot be read counts as none.
    """

    def __init__(self, revocations: Revocations) -> None:
        self._revocations = revocations

    async def _user(self, user_id: str) -> float | None:
        try:
            return await self._revocations.user_revoked(user_id)
        except BackendUnavailable:
            log.warning("revocations of user=%s not read: backend unavailable", user_id)
            return None

    async def _room(self, user_id: str, room: str) -> float | None:
        try:
            return await self._revocations.room_revoked(user_id, room)
        except BackendUnavailable:
            log.warning("revocations of user=%s not read: backend unavailable", user_id)
            return None

    async def admit(self, identity: Identity) -> float | None:
        """Raise `AuthError("token_revoked")` when the user was disconnected after this token was issued.

        Returns the user's revocation time, if any (for `recoverable`).
        """
        at = await self._user(identity.user_id)
        if issued_before(identity, at):
            raise AuthError(TOKEN_REVOKED)
        return at

    async def may_join(self, identity: Identity, room: str) -> bool:
        """False when the backend took `room` from this user after the token was issued."""
        return not issued_before(identity, await self._room(identity.user_id, room))

    @staticmethod
    def recoverable(session: Session, user_revoked: float | None) -> bool:
        """False for a session last changed before its user was disconnected (at `user_revoked`, as `admit` read)."""
        return _after(session, user_revoked)

    async def keeps(self, identity: Identity, session: Session, rooms: list[str]) -> list[bool]:
        """Whether a recovered session keeps each of `rooms`, read at once: not a room revoked after the
        session last saved it (a session saved after the revocation had its sockets taken out of the room
        then, or joined it again), nor one revoked after this token was issued."""
        try:
            records = await self._revocations.rooms_revoked(session.user_id, rooms)
        except BackendUnavailable:
            log.warning("revocations of user=%s not read: backend unavailable", session.user_id)
            return [True] * len(rooms)
        return [_after(session, at) and not issued_before(identity, at) for at in records]


def _after(session: Session, at: float | None) -> bool:
    """Whether `session` last changed after a revocation made at `at` (None: no revocation)."""
    changed = session.ended_at or session.saved_at
    return at is None or (changed is not None and changed > at)


class OtherSockets(Protocol):
    """The sockets of this process over another protocol (Phoenix Channels: `phoenix.channels.Channels`)."""

    async def disconnect(self, user_id: object, sid: object) -> int: ...
    async def unsubscribe(self, user_id: str, room: str) -> int: ...


class Revoker:
    """Applies the backend's revocations to this process's sockets (and, if set, to `others`).

    :param server: the Socket.IO server.
    :param auth: its cached callback decisions are forgotten on unsubscribe.
    :param members: the connected sockets of this process.
    :param tracker: presence leaves with a socket that leaves a room.
    :param fanout: sends `room_left`.
    :param connector: saves the sessions whose rooms changed.
    :param sessions: the recoverable sessions (None: recovery is off).
    """

    def __init__(
        self,
        server: PushServer,
        auth: Auth,
        members: Members,
        tracker: PresenceTracker,
        fanout: Fanout,
        connector: Connector,
        sessions: SessionStore | None,
    ) -> None:
        self._server = server
        self._auth = auth
        self._members = members
        self._tracker = tracker
        self._fanout = fanout
        self._connector = connector
        self._sessions = sessions
        self.others: OtherSockets | None = None  # set once, when Phoenix Channels are served

    async def remove(self, sid: str, member: Member, room: Room, reason: str) -> None:
        """Take `sid` out of `room` (presence leaves with it), tell it `room_left`, and save its session."""
        if not self._server.in_room(sid, room.name):
            return
        self._connector.exited(sid, member, room.name)
        await self._tracker.exited(room.name, sid)
        self._fanout.send_to(sid, "room_left", {"room": room.name, "reason": reason})
        await self._connector.save(sid)
        log.info("removed sid=%s from room=%s: %s", sid, room.name, reason)

    async def handle(self, command: Command) -> int:
        """Run a control command on this process's sockets; how many it acted on."""
        op = command.get("op")
        others = self.others
        if op == "disconnect":
            user_id, sid = command.get("user_id"), command.get("sid")
            count = await others.disconnect(user_id, sid) if others is not None else 0
            return count + await self._disconnect(user_id, sid)
        if op == "unsubscribe":
            user_id, room = str(command.get("user_id")), str(command.get("room"))
            count = await others.unsubscribe(user_id, room) if others is not None else 0
            return count + await self._unsubscribe(user_id, room)
        log.warning("unknown control command %r ignored", str(op)[:64])
        return 0

    async def _disconnect(self, user_id: object, sid: object) -> int:
        if isinstance(sid, str):
            targets = [sid] if sid in self._members else []
        else:
            targets = [s for s in self._members if (m := self._members.get(s)) and m.identity.user_id == user_id]
        for target in targets:
            member = self._members.get(target)
            if member is None:
                continue
            session, member.session = member.session, None  # not recoverable: never ended, dropped
            if session is not None and self._sessions is not None:
                try:
                    await self._sessions.drop(session.pid)
                except BackendUnavailable:
                    log.warning("session of sid=%s not dropped: backend unavailable", target)
            log.info("disconnecting sid=%s user=%s: revoked by the backend", target, member.identity.user_id)
            await self._server.disconnect(target)
        return len(targets)

    async def _unsubscribe(self, user_id: str, name: str) -> int:
        self._auth.forget(user_id, name)
        room = parse_room(name)
        if room is None:
            return 0
        count = 0
        for sid in self._members:
            member = self._members.get(sid)
            if member is not None and member.identity.user_id == user_id and self._server.in_room(sid, name):
                await self.remove(sid, member, room, "revoked")
                count += 1
        return count
