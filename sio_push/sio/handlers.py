"""The client events of namespace "/": join, leave, user:typing, presence:get, refresh; anything else refused.

Clients never broadcast. Every handler answers bad input with an error acknowledgement
(`{"ok": false, "error": ...}`) and a log line; none lets an exception reach python-socketio, so a bad
client never costs a connection or the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..auth import Auth, Identity
from ..codec import encodable
from ..errors import BackendUnavailable
from ..metrics import Metrics
from ..rooms import Room, parse_room
from ..shims.socketio import PushServer
from .connect import Connector
from .members import Member, Members
from .presence import PresenceTracker

if TYPE_CHECKING:
    from .expiry import Expiry
    from .revocation import Revoked

log = logging.getLogger(__name__)

Ack = dict[str, Any]
PRESENCE_LIMIT = 100  # the most users presence:get answers with, and its default


def _error(code: str) -> Ack:
    return {"ok": False, "error": code}


class JoinRules:
    """The decision on a join, the same for a Socket.IO `join` and a Phoenix `phx_join`.

    :param auth: decides who may join which room.
    :param max_rooms: the most rooms one socket may be in, its user room included.
    :param revoked: refuses joins of rooms the backend took from the user.
    """

    def __init__(self, auth: Auth, max_rooms: int = 100, revoked: Revoked | None = None) -> None:
        self._auth = auth
        self._max_rooms = max_rooms
        self._revoked = revoked

    async def decide(self, who: str, identity: Identity, name: object, rooms: Collection[str]) -> Room | str:
        """The room `name` names if the socket `who` (in `rooms` now) may be in it, else the refusal code.

        A room the socket is in already is answered as allowed, whatever its room count.
        """
        room = parse_room(name)
        if room is None:
            log.info("join refused %s: invalid_room", who)
            return "invalid_room"
        if room.name in rooms:
            return room
        if len(rooms) >= self._max_rooms:
            log.info("join refused %s room=%s: too_many_rooms", who, room.name)
            return "too_many_rooms"
        revoked = self._revoked
        if not await self._auth.may_join(identity, room) or (
            revoked is not None and not await revoked.may_join(identity, room.name)
        ):
            log.info("join refused %s user=%s room=%s: unauthorized", who, identity.user_id, room.name)
            return "unauthorized"
        return room


def typing_changes(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The meta changes of a `user:typing` payload `{"typing": bool, "username": str}`; None if malformed."""
    typing, username = payload.get("typing"), payload.get("username")
    if not isinstance(typing, bool) or not isinstance(username, (str, type(None))):
        return None
    if username is not None and not encodable(username):
        return None
    changes: dict[str, Any] = {"typing": typing}
    if username is not None:
        changes["username"] = username[:128]
    return changes


def _room_name(args: tuple[Any, ...]) -> object:
    """`"<room>"` or `{"room": "<room>"}`, the one argument of join and leave."""
    if len(args) != 1:
        return None
    arg = args[0]
    return arg.get("room") if isinstance(arg, dict) else arg


class Handlers:
    """The event handlers of namespace "/".

    :param server: the Socket.IO server to register on.
    :param auth: decides joins.
    :param members: the connected sockets of this process.
    :param connector: stores sessions as their rooms change, and ends them.
    :param tracker: counts rooms, and presence of `room:*` rooms.
    :param metrics: counts sockets.
    :param max_rooms: the most rooms one socket may be in, its user room included.
    :param revoked: refuses joins of rooms the backend took from the user.
    :param expiry: answers `refresh`.
    """

    def __init__(
        self,
        server: PushServer,
        auth: Auth,
        members: Members,
        connector: Connector,
        tracker: PresenceTracker,
        metrics: Metrics,
        max_rooms: int = 100,
        revoked: Revoked | None = None,
        expiry: Expiry | None = None,
    ) -> None:
        self._server = server
        self._auth = auth
        self._members = members
        self._connector = connector
        self._tracker = tracker
        self._metrics = metrics
        self.joins = JoinRules(auth, max_rooms, revoked)
        self._expiry = expiry

    def _admit(self, sid: str) -> tuple[Member | None, Ack | None]:
        """The member sending an event, or the error to answer: not connected, or over its event rate."""
        member = self._members.get(sid)
        if member is None:
            return None, _error("not_connected")
        if not member.events.take():
            self._server.bad_input.warning(sid, "sid=%s is over its event rate; event dropped", sid)
            return None, _error("rate_limited")
        return member, None

    def _object(self, sid: str, args: tuple[Any, ...]) -> tuple[dict[str, Any] | None, Ack]:
        """The one object argument of an event from an admitted member, or (None, the error to answer)."""
        member, refused = self._admit(sid)
        if member is None:
            return None, refused or _error("not_connected")
        payload = args[0] if len(args) == 1 else None
        if not isinstance(payload, dict):
            return None, _error("invalid_payload")
        return payload, {}

    def register(self) -> None:
        on = self._server.on
        on("disconnect", self.disconnect)
        on("join", self.join)
        on("leave", self.leave)
        on("user:typing", self.typing)
        on("presence:get", self.presence)
        if self._expiry is not None:
            on("refresh", self.refresh)
        on("*", self.unknown)

    async def disconnect(self, sid: str, reason: object = None) -> None:
        member = self._members.pop(sid)
        if member is None:
            return
        self._metrics.sockets.dec()
        for name in self._server.rooms_of(sid):
            await self._tracker.exited(name, sid)
        await self._connector.end(sid, member)
        log.debug("disconnected sid=%s user=%s reason=%s", sid, member.identity.user_id, reason)

    async def join(self, sid: str, *args: Any) -> Ack:
        member, refused = self._admit(sid)
        if member is None:
            return refused or _error("not_connected")
        rooms = self._server.rooms_of(sid)
        room = await self.joins.decide(f"sid={sid}", member.identity, _room_name(args), rooms)
        if not isinstance(room, Room):
            return _error(room)
        if room.name in rooms:
            return {"ok": True, "room": room.name}
        if sid not in self._members:  # gone while the backend was deciding
            return _error("not_connected")
        self._connector.entered(sid, member, room.name)
        await asyncio.gather(self._tracker.entered(room.name, sid, member.identity), self._connector.save(sid))
        log.debug("joined sid=%s user=%s room=%s", sid, member.identity.user_id, room.name)
        return {"ok": True, "room": room.name}

    async def leave(self, sid: str, *args: Any) -> Ack:
        member, refused = self._admit(sid)
        if member is None:
            return refused or _error("not_connected")
        room = parse_room(_room_name(args))
        if room is None:
            return _error("invalid_room")
        if self._server.in_room(sid, room.name):
            self._connector.exited(sid, member, room.name)
            await asyncio.gather(self._tracker.exited(room.name, sid), self._connector.save(sid))
            log.debug("left sid=%s room=%s", sid, room.name)
        return {"ok": True, "room": room.name}

    async def typing(self, sid: str, *args: Any) -> Ack:
        payload, refused = self._object(sid, args)
        if payload is None:
            return refused
        room = parse_room(payload.get("room"))
        if room is None:
            return _error("invalid_room")
        changes = typing_changes(payload)
        if changes is None:
            return _error("invalid_payload")
        if not self._server.in_room(sid, room.name):
            return _error("not_joined")
        if not room.has_presence:
            return _error("invalid_room")
        try:
            await self._tracker.typing(room, sid, changes)
        except BackendUnavailable:
            return _error("unavailable")
        return {"ok": True}

    async def presence(self, sid: str, *args: Any) -> Ack:
        """`presence:get` `{"room", "limit"}`: a joined room's counts and its first `limit` users (1-100)."""
        payload, refused = self._object(sid, args)
        if payload is None:
            return refused
        limit = payload.get("limit", PRESENCE_LIMIT)
        if type(limit) is not int or not 1 <= limit <= PRESENCE_LIMIT:
            return _error("invalid_payload")
        room = parse_room(payload.get("room"))
        if room is None:
            return _error("invalid_room")
        if not self._server.in_room(sid, room.name):
            return _error("not_joined")
        try:
            counts, state = await self._tracker.snapshot(room.name, limit)
        except BackendUnavailable:
            return _error("unavailable")
        count = {"users": counts.users, "sockets": counts.sockets}
        return {"ok": True, "room": room.name, "count": count, "state": state}

    async def refresh(self, sid: str, *args: Any) -> Ack:
        member, refused = self._admit(sid)
        if member is None or self._expiry is None:
            return refused or _error("not_connected")
        payload = args[0] if len(args) == 1 else None
        if not isinstance(payload, dict):
            return _error("invalid_payload")
        return await self._expiry.refresh(sid, member, payload.get("token"))

    async def unknown(self, event: str, sid: str, *args: Any) -> Ack:
        member, refused = self._admit(sid)
        if member is None:
            return refused or _error("not_connected")
        self._server.bad_input.warning(sid, "unknown event %r from sid=%s ignored", event[:64], sid)
        return _error("unknown_event")
