"""The CONNECT path: authenticate a socket, restore its session if it brings one, and set it up.

Recovery (Socket.IO 4.6's connection state recovery) is here: a reconnect that presents `{pid,
offset}` gets its old sid and rooms back, then every push it missed, before anything newer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs

from socketio import exceptions

from ..auth import Auth, Identity
from ..engines import Broker, Missed, Session, SessionStore
from ..errors import AuthError, BackendUnavailable
from ..limits import TokenBucket
from ..metrics import Metrics
from ..rooms import Room, parse_room, user_room
from ..shims.engineio import DirectSocket
from ..shims.socketio import PushServer
from .counting import UserCount
from .fanout import Fanout
from .members import Member, Members
from .presence import PresenceTracker
from .revocation import Revoked

if TYPE_CHECKING:
    from .expiry import Expiry

log = logging.getLogger(__name__)


def _token(environ: dict[str, Any], auth: dict[str, Any]) -> object:
    """The token from the CONNECT auth payload, else from the `token` query parameter."""
    if "token" in auth:
        return auth["token"]
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


@dataclass(frozen=True, slots=True)
class _Claimed:
    session: Session
    rooms: list[Room]


@dataclass(frozen=True, slots=True)
class _Restored:
    session: Session
    rooms: list[Room]
    missed: Missed


def _with_rooms(session: Session, member: Member) -> Session:
    return replace(session, rooms=tuple(member.joined), since=tuple(member.joined.values()), saved_at=time.time())


class Connector:
    """Decides each Socket.IO CONNECT of namespace "/" and sets the socket up.

    :param server: the Socket.IO server.
    :param auth: decides connects (and, on recovery, the rooms kept).
    :param members: the connected sockets of this process.
    :param tracker: counts the rooms a socket is in, and presence in those that have it.
    :param broker: where a new session starts, and the log recovery replays.
    :param fanout: writes the CONNECT reply and the missed pushes.
    :param metrics: counts connects and sockets.
    :param sessions: where recoverable sessions are kept; None turns recovery off.
    :param node: this process's id, recorded in its sessions.
    :param events_per_second: the rate of each socket's client events (burst twice that).
    :param revoked: refuses tokens and sessions the backend revoked.
    :param user_count: each user's sockets over every process, up to the limit.
    """

    expiry: Expiry | None = None  # watches each socket's token (set once the socket layer is built)

    def __init__(
        self,
        server: PushServer,
        auth: Auth,
        members: Members,
        tracker: PresenceTracker,
        broker: Broker,
        fanout: Fanout,
        metrics: Metrics,
        sessions: SessionStore | None = None,
        node: str = "",
        events_per_second: float = 20.0,
        revoked: Revoked | None = None,
        user_count: UserCount | None = None,
    ) -> None:
        self._server = server
        self._auth = auth
        self._members = members
        self._tracker = tracker
        self._broker = broker
        self._fanout = fanout
        self._metrics = metrics
        self._sessions = sessions
        self._node = node
        self._events_per_second = events_per_second
        self._revoked = revoked
        self._user_count = user_count

    async def open(self, eio_sid: str, environ: dict[str, Any], auth: dict[str, Any]) -> None:
        """Authenticate a CONNECT, restore its session if it brings one, and set the socket up.

        Raises `ConnectionRefusedError` with `{"code": ...}` for the client's `connect_error`.
        """
        token = _token(environ, auth)
        user_revoked = None
        try:
            identity = await self._auth.authenticate(token)
            if self._revoked is not None:
                user_revoked = await self._revoked.admit(identity)
        except AuthError as exc:
            self._refuse(exc.code)
        sessions = self._sessions
        claimed = await self._claim(sessions, auth, identity, user_revoked) if sessions is not None else None
        conn = secrets.token_hex(8)
        if not await self._count(identity.user_id, conn, claimed.session.conn if claimed else None):
            if claimed and sessions is not None:
                await self._put_back(sessions, claimed.session)
            self._refuse("too_many_connections")
        restored = await self._replay(claimed, auth.get("offset")) if claimed else None
        server = self._server
        sid = restored.session.sid if restored else server.new_sid()
        # No await from here to the end of the replay: the broker's position cannot move meanwhile, so
        # every push is either in the replay or delivered live to the rooms joined here, never both.
        if server.socket_of(eio_sid) is None:  # the client went while this was being decided
            await self._uncount(identity.user_id, conn)
            if claimed and sessions is not None:  # its next try recovers the session
                await self._put_back(sessions, claimed.session)
            return
        position = self._broker.position
        if restored:
            since = restored.session.joined_at()
            joined = {room.name: since.get(room.name, restored.session.start) for room in restored.rooms}
        else:
            joined = {user_room(identity.user_id): position}
        rooms = list(joined)
        session = None
        if sessions is not None:
            pid = restored.session.pid if restored else secrets.token_urlsafe(16)
            session = Session(
                pid,
                sid,
                identity.user_id,
                tuple(rooms),
                position,
                conn,
                self._node,
                since=tuple(joined.values()),
                saved_at=time.time(),
            )
        server.register(eio_sid, sid)
        self._fanout.reply_connect(eio_sid, {"sid": sid, "pid": session.pid} if session else {"sid": sid})
        for name in rooms:
            server.enter(sid, name)
        if restored:
            self._fanout.replay(eio_sid, restored.missed)
        rate = self._events_per_second
        kept_token = token if identity.expires_at is None and isinstance(token, str) else None  # callback mode
        member = Member(identity, session, TokenBucket(rate, 2 * rate), joined, conn, kept_token)
        self._members.add(sid, member)
        if self.expiry is not None:
            self.expiry.watch(sid, member)
        self._metrics.sockets.inc()
        self._metrics.connects.labels("recovered" if restored else "connected").inc()

        if restored:
            log.debug("recovered sid=%s user=%s missed=%d", sid, identity.user_id, len(restored.missed))
        else:
            log.debug("connected sid=%s user=%s", sid, identity.user_id)
        # Independent writes (room counts, presence, the session): on Redis they go out together.
        work = [self._tracker.entered(name, sid, identity) for name in rooms]
        if session is not None and sessions is not None:
            work.append(self._store(sessions.save, session))
        await asyncio.gather(*work)

    async def _claim(
        self, sessions: SessionStore, auth: dict[str, Any], identity: Identity, user_revoked: float | None
    ) -> _Claimed | None:
        """The session a reconnect brings back with `{pid}`, and the rooms it keeps; None for a fresh one.

        `user_revoked`: when the backend last disconnected the user, if it did (as `Revoked.admit` read it).
        """
        pid = auth.get("pid")
        if not isinstance(pid, str) or not pid:
            return None
        session = await sessions.claim(pid, identity.user_id)
        if session is None or session.user_id != identity.user_id:
            log.info("recovery: no session to restore for user=%s", identity.user_id)
            return None
        if self._revoked is not None and not self._revoked.recoverable(session, user_revoked):
            log.info("recovery: the session of sid=%s was revoked by the backend", session.sid)
            return None
        if session.sid in self._members or self._server.departing(session.sid):
            await self._take_over(session.sid)
        rooms = []
        for name in session.rooms:  # still allowed by the token (in callback mode, the backend decides)
            room = parse_room(name)
            if room is not None and await self._auth.may_join(identity, room):
                rooms.append(room)
        if self._revoked is not None and rooms:  # and not revoked since it was saved
            kept = await self._revoked.keeps(identity, session, [room.name for room in rooms])
            rooms = [room for room, keep in zip(rooms, kept, strict=True) if keep]
        return _Claimed(session, rooms)

    async def _replay(self, claimed: _Claimed, offset: object) -> _Restored | None:
        """What a claimed session missed since `offset` (else since it began); None if the log lost some."""
        session, rooms = claimed.session, claimed.rooms
        after = offset if isinstance(offset, str) and self._is_offset(offset) else session.start
        missed = await self._broker.replay(after, [room.name for room in rooms])
        if missed is None:
            log.info("recovery: the log no longer holds what sid=%s missed", session.sid)
            return None
        return _Restored(session, rooms, self._since_joined(session, missed))

    def _refuse(self, code: str) -> NoReturn:
        log.info("connect refused: %s", code)
        self._metrics.connects.labels(code).inc()
        raise exceptions.ConnectionRefusedError(code, {"code": code}) from None

    async def _count(self, user_id: str, conn: str, replaces: str | None) -> bool:
        """Count the connection for its user, in place of `replaces`; False when the user is at the limit."""
        return await self._user_count.acquire(user_id, conn, replaces) if self._user_count is not None else True

    async def _uncount(self, user_id: str, conn: str) -> None:
        if self._user_count is not None:
            await self._user_count.release(user_id, conn)

    def _is_offset(self, offset: str) -> bool:
        try:
            self._broker.order(offset)
        except ValueError:
            return False
        return True

    def _since_joined(self, session: Session, missed: Missed) -> Missed:
        """What the session may be sent: each push only if one of its rooms was joined before it was sent.

        The client chooses the offset it recovers from; without this, an older offset would replay
        pushes sent to a room before the session was in it.
        """
        order = self._broker.order
        since = {room: order(offset) for room, offset in session.joined_at().items()}
        start = order(session.start)
        kept = []
        for offset, push in missed:
            at = order(offset)
            if any(at > since.get(room, start) for room in push.rooms if room in session.rooms):
                kept.append((offset, push))
        return kept

    async def _take_over(self, sid: str) -> None:
        """Close the old connection of a session that a reconnect claimed, without ending the session.

        Returns once that connection's disconnect is over, however it began (a take-over, or the old
        connection noticed gone just before): until then it is still leaving the rooms the session takes back.
        """
        member = self._members.get(sid)
        if member is not None:
            member.session = None
        socket = self._server.socket_of(self._server.eio_sid_of(sid))
        if isinstance(socket, DirectSocket):
            await socket.shut(self._server.reason.SERVER_DISCONNECT)
        await self._server.departed(sid)

    def entered(self, sid: str, member: Member, room: str) -> None:
        """`sid` is in `room` from now on: pushes to it from here are delivered live, none replayed from before."""
        self._server.enter(sid, room)
        member.joined[room] = self._broker.position

    def exited(self, sid: str, member: Member, room: str) -> None:
        self._server.exit(sid, room)
        member.joined.pop(room, None)

    async def save(self, sid: str) -> None:
        """Store `sid`'s session with the rooms it is in now (after a join or a leave)."""
        member = self._members.get(sid)
        if member is not None and member.session is not None and self._sessions is not None:
            member.session = _with_rooms(member.session, member)
            await self._store(self._sessions.save, member.session)

    async def end(self, sid: str, member: Member) -> None:
        """Mark the session of a socket that went as ended: recoverable for the window from now."""
        if self.expiry is not None:
            self.expiry.unwatch(member)
        await self._uncount(member.identity.user_id, member.conn)
        if member.session is not None and self._sessions is not None:
            await self._store(self._sessions.end, _with_rooms(member.session, member))

    async def _put_back(self, sessions: SessionStore, session: Session) -> None:
        """Return a claimed session, as it was, for a later reconnect to claim."""
        await self._store(sessions.save, session)
        await self._store(sessions.end, session)

    async def _store(self, write: Callable[[Session], Awaitable[None]], session: Session) -> None:
        try:
            await write(session)
        except BackendUnavailable:
            log.warning("session of sid=%s not stored: backend unavailable", session.sid)
