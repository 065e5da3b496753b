"""The Socket.IO side: connect with a token (recovering a dropped session), join and leave rooms, typing.

Clients never broadcast. Every handler answers bad input with an error acknowledgement
(`{"ok": false, "error": ...}`) and a log line; none lets an exception reach python-socketio, so a bad
client never costs a connection or the server.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs

from socketio import exceptions

from .auth import Auth, Identity
from .broker import Broker, Missed, Push
from .errors import AuthError, BackendUnavailable
from .fanout import NAMESPACE, Fanout
from .metrics import Metrics
from .presence import DiffBatcher, Presence, State
from .recovery import Session, SessionStore
from .rooms import Room, parse_room, user_room
from .server import PushServer
from .shims.engineio import DirectSocket

log = logging.getLogger(__name__)

Ack = dict[str, Any]


def _error(code: str) -> Ack:
    return {"ok": False, "error": code}


def _token(environ: dict[str, Any], auth: dict[str, Any]) -> object:
    """The token from the CONNECT auth payload, else from the `token` query parameter."""
    if "token" in auth:
        return auth["token"]
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


def _room_name(args: tuple[Any, ...]) -> object:
    """`"<room>"` or `{"room": "<room>"}`, the one argument of join and leave."""
    if len(args) != 1:
        return None
    arg = args[0]
    return arg.get("room") if isinstance(arg, dict) else arg


@dataclass(slots=True)
class _Conn:
    identity: Identity
    session: Session | None  # None when recovery is off, or once a reconnect took the session over


@dataclass(frozen=True, slots=True)
class _Restored:
    session: Session
    rooms: list[Room]
    missed: Missed


class Sockets:
    """The connect path and the event handlers of namespace "/".

    :param sio: the server to register on.
    :param auth: decides connects and joins.
    :param presence: tracks who is in each `room:*` room.
    :param broker: carries presence diffs to every process, and holds the log recovery replays.
    :param fanout: writes to this process's sockets.
    :param metrics: counts connects and sockets.
    :param sessions: where recoverable sessions are kept; None turns recovery off.
    :param node: this process's id, recorded in its sessions.
    :param presence_batch: seconds a room's presence diffs wait to be merged into one broadcast.
    :param connect_timeout: seconds an Engine.IO session may stay open without a Socket.IO CONNECT.
    """

    def __init__(
        self,
        sio: PushServer,
        auth: Auth,
        presence: Presence,
        broker: Broker,
        fanout: Fanout,
        metrics: Metrics | None = None,
        sessions: SessionStore | None = None,
        node: str = "",
        presence_batch: float = 0.1,
        connect_timeout: float = 45.0,
    ) -> None:
        self._sio = sio
        self._auth = auth
        self._presence = presence
        self._broker = broker
        self._fanout = fanout
        self._metrics = metrics or Metrics()
        self._sessions = sessions
        self._node = node
        self._conns: dict[str, _Conn] = {}
        self._diffs = DiffBatcher(self._publish_diff, presence_batch)
        self._connect_timeout = connect_timeout

    def register(self) -> None:
        self._sio.attach_sockets(self, self._connect_timeout)
        on = self._sio.on
        on("disconnect", self.disconnect)
        on("join", self.join)
        on("leave", self.leave)
        on("user:typing", self.typing)
        on("*", self.unknown)

    async def open(self, eio_sid: str, environ: dict[str, Any], auth: dict[str, Any]) -> None:
        """Authenticate a CONNECT, restore its session if it brings one, and set the socket up.

        Raises `ConnectionRefusedError` with `{"code": ...}` for the client's `connect_error`.
        """
        try:
            identity = await self._auth.authenticate(_token(environ, auth))
        except AuthError as exc:
            log.info("connect refused: %s", exc.code)
            self._metrics.connects.labels(exc.code).inc()
            raise exceptions.ConnectionRefusedError(exc.code, {"code": exc.code}) from None
        sessions = self._sessions
        restored = await self._restore(sessions, auth, identity) if sessions is not None else None
        # No await from here to the end of the replay: the broker's position cannot move meanwhile, so
        # every push is either in the replay or delivered live to the rooms joined here, never both.
        if eio_sid not in self._sio.eio.sockets:
            return
        sid = restored.session.sid if restored else self._sio.eio.generate_id()
        rooms = [room.name for room in restored.rooms] if restored else [user_room(identity.user_id)]
        session = None
        if sessions is not None:
            pid = restored.session.pid if restored else secrets.token_urlsafe(16)
            session = Session(
                pid, sid, identity.user_id, tuple(rooms), self._broker.position, secrets.token_hex(8), self._node
            )
        self._sio.register(eio_sid, sid)
        self._fanout.reply_connect(eio_sid, {"sid": sid, "pid": session.pid} if session else {"sid": sid})
        for name in rooms:
            self._sio.manager.basic_enter_room(sid, NAMESPACE, name)
        for offset, push in restored.missed if restored else ():
            self._fanout.write(eio_sid, self._fanout.encode(push.event, push.data, offset))
        self._conns[sid] = _Conn(identity, session)
        self._metrics.sockets.inc()
        self._metrics.connects.labels("recovered" if restored else "connected").inc()

        if restored:
            for room in restored.rooms:
                if room.has_presence:
                    await self._track(room, sid, identity)
            log.info("recovered sid=%s user=%s missed=%d", sid, identity.user_id, len(restored.missed))
        else:
            log.info("connected sid=%s user=%s", sid, identity.user_id)
        if session is not None and sessions is not None:
            await self._store(sessions.save, session)

    async def _restore(self, sessions: SessionStore, auth: dict[str, Any], identity: Identity) -> _Restored | None:
        """The session a reconnect brings back with `{pid, offset}`, and what it missed; None for a fresh one."""
        pid, offset = auth.get("pid"), auth.get("offset")
        if not isinstance(pid, str) or not pid:
            return None
        session = await sessions.claim(pid)
        if session is None or session.user_id != identity.user_id:
            log.info("recovery: no session to restore for user=%s", identity.user_id)
            return None
        if session.sid in self._conns:
            await self._take_over(session.sid)
        rooms = []
        for name in session.rooms:
            room = parse_room(name)
            if room is not None and await self._auth.may_join(identity, room):
                rooms.append(room)
        after = offset if isinstance(offset, str) and offset else session.start
        missed = await self._broker.replay(after, [room.name for room in rooms])
        if missed is None:
            log.info("recovery: the log no longer holds what sid=%s missed", session.sid)
            return None
        return _Restored(session, rooms, missed)

    async def _take_over(self, sid: str) -> None:
        """Close the old connection of a session that a reconnect claimed, without ending the session."""
        self._conns[sid].session = None
        eio_sid = self._sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        socket = self._sio.eio.sockets.get(eio_sid) if eio_sid else None
        if isinstance(socket, DirectSocket):
            await socket.shut(self._sio.reason.SERVER_DISCONNECT)

    def _rooms(self, sid: str) -> list[str]:
        return [room for room in self._sio.manager.get_rooms(sid, NAMESPACE) if room != sid]

    async def _save(self, sid: str) -> None:
        conn = self._conns.get(sid)
        if conn is not None and conn.session is not None and self._sessions is not None:
            conn.session = replace(conn.session, rooms=tuple(self._rooms(sid)))
            await self._store(self._sessions.save, conn.session)

    async def _store(self, write: Callable[[Session], Awaitable[None]], session: Session) -> None:
        try:
            await write(session)
        except BackendUnavailable:
            log.warning("session of sid=%s not stored: backend unavailable", session.sid)

    async def disconnect(self, sid: str, reason: object = None) -> None:
        conn = self._conns.pop(sid, None)
        if conn is None:
            return
        self._metrics.sockets.dec()
        for name in self._rooms(sid):
            room = parse_room(name)
            if room is not None and room.has_presence:
                await self._untrack(room, sid)
        if conn.session is not None and self._sessions is not None:
            await self._store(self._sessions.end, replace(conn.session, rooms=tuple(self._rooms(sid))))
        log.info("disconnected sid=%s user=%s reason=%s", sid, conn.identity.user_id, reason)

    async def join(self, sid: str, *args: Any) -> Ack:
        conn = self._conns.get(sid)
        room = parse_room(_room_name(args))
        if conn is None:
            return _error("not_connected")
        if room is None:
            log.info("join refused sid=%s: invalid_room", sid)
            return _error("invalid_room")
        if room.name in self._rooms(sid):
            return {"ok": True, "room": room.name}
        if not await self._auth.may_join(conn.identity, room):
            log.info("join refused sid=%s user=%s room=%s: unauthorized", sid, conn.identity.user_id, room.name)
            return _error("unauthorized")
        if sid not in self._conns:  # gone while the backend was deciding
            return _error("not_connected")
        self._sio.manager.basic_enter_room(sid, NAMESPACE, room.name)
        if room.has_presence:
            await self._track(room, sid, conn.identity)
        await self._save(sid)
        log.info("joined sid=%s user=%s room=%s", sid, conn.identity.user_id, room.name)
        return {"ok": True, "room": room.name}

    async def leave(self, sid: str, *args: Any) -> Ack:
        room = parse_room(_room_name(args))
        if sid not in self._conns:
            return _error("not_connected")
        if room is None:
            return _error("invalid_room")
        if room.name in self._rooms(sid):
            self._sio.manager.basic_leave_room(sid, NAMESPACE, room.name)
            if room.has_presence:
                await self._untrack(room, sid)
            await self._save(sid)
            log.info("left sid=%s room=%s", sid, room.name)
        return {"ok": True, "room": room.name}

    async def typing(self, sid: str, *args: Any) -> Ack:
        payload = args[0] if len(args) == 1 else None
        if sid not in self._conns:
            return _error("not_connected")
        if not isinstance(payload, dict):
            return _error("invalid_payload")
        room = parse_room(payload.get("room"))
        typing, username = payload.get("typing"), payload.get("username")
        if room is None:
            return _error("invalid_room")
        if not isinstance(typing, bool) or not isinstance(username, (str, type(None))):
            return _error("invalid_payload")
        if room.name not in self._rooms(sid):
            return _error("not_joined")
        if not room.has_presence:
            return _error("invalid_room")
        changes: dict[str, Any] = {"typing": typing}
        if username is not None:
            changes["username"] = username[:128]
        try:
            diff = await self._presence.update(room.name, sid, changes)
        except BackendUnavailable:
            return _error("unavailable")
        if diff is not None:
            await self._broadcast_diff(room, diff)
        return {"ok": True}

    async def unknown(self, event: str, sid: str, *args: Any) -> Ack:
        log.warning("unknown event %r from sid=%s ignored", event[:64], sid)
        return _error("unknown_event")

    async def _track(self, room: Room, sid: str, identity: Identity) -> None:
        try:
            diff = await self._presence.join(room.name, identity.user_id, sid)
            state = await self._presence.state(room.name)
        except BackendUnavailable:
            log.warning("presence in room=%s not tracked: backend unavailable", room.name)
            return
        self._fanout.send_to(sid, "presence_state", {"room": room.name, "state": state})
        await self._broadcast_diff(room, diff)

    async def _untrack(self, room: Room, sid: str) -> None:
        try:
            diff = await self._presence.leave(room.name, sid)
        except BackendUnavailable:
            log.warning("presence in room=%s not untracked: backend unavailable", room.name)
            return
        if diff is not None:
            await self._broadcast_diff(room, diff)

    async def _broadcast_diff(self, room: Room, diff: dict[str, State]) -> None:
        await self._diffs.add(room.name, diff)

    async def _publish_diff(self, room: str, diff: dict[str, State]) -> None:
        try:
            await self._broker.publish(Push((room,), "presence_diff", {"room": room, **diff}, volatile=True))
        except BackendUnavailable:
            log.warning("presence_diff for room=%s not sent: broker unavailable", room)

    async def close(self) -> None:
        """Send the presence diffs still waiting (at shutdown, after the sockets are closed)."""
        await self._diffs.close()
