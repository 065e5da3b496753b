"""The Socket.IO side: connect with a token, join and leave rooms, typing. Clients never broadcast.

Every handler answers bad input with an error acknowledgement (`{"ok": false, "error": ...}`) and a log
line; none of them lets an exception reach python-socketio, so a bad client never costs a connection
or the server.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import socketio

from .auth import Auth, Identity
from .broker import Broker, Push
from .errors import AuthError, BrokerUnavailable
from .fanout import Fanout
from .presence import Presence
from .rooms import Room, parse_room, user_room

log = logging.getLogger(__name__)

Ack = dict[str, Any]


def _error(code: str) -> Ack:
    return {"ok": False, "error": code}


def _token(environ: dict[str, Any], auth: object) -> object:
    """The token from the CONNECT auth payload, else from the `token` query parameter."""
    if isinstance(auth, dict) and "token" in auth:
        return auth["token"]
    values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return values[0] if values else None


def _room_name(args: tuple[Any, ...]) -> object:
    """`"<room>"` or `{"room": "<room>"}`, the one argument of join and leave."""
    if len(args) != 1:
        return None
    arg = args[0]
    return arg.get("room") if isinstance(arg, dict) else arg


class Sockets:
    """The event handlers of namespace "/".

    :param sio: the server to register on.
    :param auth: decides connects and joins.
    :param presence: tracks who is in each `room:*` room.
    :param broker: carries presence diffs to every process.
    :param fanout: sends `presence_state` to one socket.
    """

    def __init__(self, sio: socketio.AsyncServer, auth: Auth, presence: Presence, broker: Broker, fanout: Fanout):
        self._sio = sio
        self._auth = auth
        self._presence = presence
        self._broker = broker
        self._fanout = fanout
        self._identities: dict[str, Identity] = {}

    def register(self) -> None:
        on = self._sio.on
        on("connect", self.connect)
        on("disconnect", self.disconnect)
        on("join", self.join)
        on("leave", self.leave)
        on("user:typing", self.typing)
        on("*", self.unknown)

    @property
    def connected(self) -> int:
        return len(self._identities)

    async def connect(self, sid: str, environ: dict[str, Any], auth: object = None) -> None:
        try:
            identity = await self._auth.authenticate(_token(environ, auth))
        except AuthError as exc:
            log.info("connect refused: %s", exc.code)
            raise socketio.exceptions.ConnectionRefusedError(exc.code, {"code": exc.code}) from None
        self._identities[sid] = identity
        await self._sio.enter_room(sid, user_room(identity.user_id))
        log.info("connected sid=%s user=%s", sid, identity.user_id)

    async def disconnect(self, sid: str, reason: object = None) -> None:
        identity = self._identities.pop(sid, None)
        if identity is None:
            return
        for name in self._sio.rooms(sid):
            room = parse_room(name)
            if room is not None and room.has_presence:
                await self._untrack(room, sid)
        log.info("disconnected sid=%s user=%s reason=%s", sid, identity.user_id, reason)

    async def join(self, sid: str, *args: Any) -> Ack:
        identity = self._identities.get(sid)
        room = parse_room(_room_name(args))
        if identity is None:
            return _error("not_connected")
        if room is None:
            log.info("join refused sid=%s: invalid_room", sid)
            return _error("invalid_room")
        if room.name in self._sio.rooms(sid):
            return {"ok": True, "room": room.name}
        if not await self._auth.may_join(identity, room):
            log.info("join refused sid=%s user=%s room=%s: unauthorized", sid, identity.user_id, room.name)
            return _error("unauthorized")
        if sid not in self._identities:  # gone while the backend was deciding
            return _error("not_connected")
        await self._sio.enter_room(sid, room.name)
        if room.has_presence:
            diff = await self._presence.join(room.name, identity.user_id, sid)
            state = await self._presence.state(room.name)
            await self._fanout.send_to(sid, "presence_state", {"room": room.name, "state": state})
            await self._broadcast_diff(room, diff)
        log.info("joined sid=%s user=%s room=%s", sid, identity.user_id, room.name)
        return {"ok": True, "room": room.name}

    async def leave(self, sid: str, *args: Any) -> Ack:
        room = parse_room(_room_name(args))
        if sid not in self._identities:
            return _error("not_connected")
        if room is None:
            return _error("invalid_room")
        if room.name in self._sio.rooms(sid):
            await self._sio.leave_room(sid, room.name)
            if room.has_presence:
                await self._untrack(room, sid)
            log.info("left sid=%s room=%s", sid, room.name)
        return {"ok": True, "room": room.name}

    async def typing(self, sid: str, *args: Any) -> Ack:
        payload = args[0] if len(args) == 1 else None
        if sid not in self._identities:
            return _error("not_connected")
        if not isinstance(payload, dict):
            return _error("invalid_payload")
        room = parse_room(payload.get("room"))
        typing, username = payload.get("typing"), payload.get("username")
        if room is None:
            return _error("invalid_room")
        if not isinstance(typing, bool) or not isinstance(username, (str, type(None))):
            return _error("invalid_payload")
        if room.name not in self._sio.rooms(sid):
            return _error("not_joined")
        if not room.has_presence:
            return _error("invalid_room")
        changes: dict[str, Any] = {"typing": typing}
        if username is not None:
            changes["username"] = username[:128]
        diff = await self._presence.update(room.name, sid, changes)
        if diff is not None:
            await self._broadcast_diff(room, diff)
        return {"ok": True}

    async def unknown(self, event: str, sid: str, *args: Any) -> Ack:
        log.warning("unknown event %r from sid=%s ignored", event[:64], sid)
        return _error("unknown_event")

    async def _untrack(self, room: Room, sid: str) -> None:
        diff = await self._presence.leave(room.name, sid)
        if diff is not None:
            await self._broadcast_diff(room, diff)

    async def _broadcast_diff(self, room: Room, diff: dict[str, Any]) -> None:
        try:
            await self._broker.publish(Push((room.name,), "presence_diff", {"room": room.name, **diff}, volatile=True))
        except BrokerUnavailable:
            log.warning("presence_diff for room=%s not sent: broker unavailable", room.name)
