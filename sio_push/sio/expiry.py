"""Tokens that run out while connected: `refresh`, the close at `exp`, and callback mode's recheck.

JWT mode: each socket has a timer at its token's `exp`; a `refresh` with a newer token of the same user
moves it. When it fires, the socket's transport is closed (websocket close code 1001), not the Socket.IO
session: socket.io-client reconnects by itself (with `auth` given as a function it fetches a fresh token)
and recovers its session, which the transport close left recoverable.

Callback mode: no `exp` to read, so the backend's `/api/jwt/who` is asked again every
`PUSH_AUTH_RECHECK_SECONDS` for each socket (the first time at a random point of the period, so that
sockets that connected together are not asked together; a few at a time). Only a definite refusal
closes the socket; a timeout or a 5xx changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from ..auth import TOKEN_EXPIRED, TOKEN_INVALID, Auth
from ..errors import AuthError
from ..rooms import RoomKind, parse_room
from ..shims.engineio import DirectSocket
from ..shims.socketio import PushServer
from ..transport.frames import GOING_AWAY
from .members import Member, Members
from .revocation import Revoked, Revoker

log = logging.getLogger(__name__)

RECHECKS_AT_ONCE = 8


def _error(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


class Expiry:
    """Watches each socket's token, and answers `refresh`.

    :param server: the Socket.IO server.
    :param auth: checks refreshed tokens, and rechecks callback-mode ones.
    :param members: the connected sockets of this process.
    :param revoked: a refreshed token issued before a revocation is refused.
    :param revoker: takes a socket out of the rooms a refreshed token no longer allows.
    :param recheck_seconds: how often callback mode asks the backend again.
    """

    def __init__(
        self,
        server: PushServer,
        auth: Auth,
        members: Members,
        revoked: Revoked,
        revoker: Revoker,
        recheck_seconds: float,
    ) -> None:
        self._server = server
        self._auth = auth
        self._members = members
        self._revoked = revoked
        self._revoker = revoker
        self._recheck_seconds = recheck_seconds
        self._rechecks = asyncio.Semaphore(RECHECKS_AT_ONCE)

    def watch(self, sid: str, member: Member, first: bool = True) -> None:
        """Start (or move) `sid`'s timer: its token's expiry, or its next recheck with the backend."""
        self.unwatch(member)
        loop = asyncio.get_running_loop()
        expires_at = member.identity.expires_at
        if expires_at is not None:
            member.timer = loop.call_later(max(expires_at - time.time(), 0), self._expired, sid, member)
        elif member.token is not None:
            delay = self._recheck_seconds * (random.uniform(0.5, 1.0) if first else 1.0)  # a spread, not a secret
            member.timer = loop.call_later(delay, self._start_recheck, sid, member)

    def unwatch(self, member: Member) -> None:
        if member.timer is not None:
            member.timer.cancel()
            member.timer = None

    def _expired(self, sid: str, member: Member) -> None:
        member.timer = None
        if self._members.get(sid) is member:
            log.info("token of sid=%s user=%s expired; closing its transport", sid, member.identity.user_id)
            self._server.start_background_task(self._close, sid)

    async def _close(self, sid: str) -> None:
        """Close `sid`'s transport with close code 1001; its session stays recoverable."""
        socket = self._server.socket_of(self._server.eio_sid_of(sid))
        if isinstance(socket, DirectSocket):
            await socket.shut(self._server.reason.SERVER_DISCONNECT, GOING_AWAY)

    def _start_recheck(self, sid: str, member: Member) -> None:
        member.timer = None
        if self._members.get(sid) is member:
            self._server.start_background_task(self._recheck, sid, member)

    async def _recheck(self, sid: str, member: Member) -> None:
        async with self._rechecks:
            if self._members.get(sid) is not member or member.token is None:
                return
            still = await self._auth.recheck(member.token, member.identity.user_id)
        if self._members.get(sid) is not member:
            return
        if still is False:
            log.info("the backend no longer accepts the token of sid=%s; closing its transport", sid)
            await self._close(sid)
        else:
            self.watch(sid, member, first=False)

    async def refresh(self, sid: str, member: Member, token: object) -> dict[str, Any]:
        """A new token for a connected socket: same user, not expired; its rooms claim replaces the old one."""
        try:
            identity = await self._auth.authenticate(token)
            await self._revoked.admit(identity)
        except AuthError as exc:
            log.info("refresh refused sid=%s: %s", sid, exc.code)
            return _error(TOKEN_EXPIRED if exc.code == TOKEN_EXPIRED else TOKEN_INVALID)
        if identity.user_id != member.identity.user_id:
            log.info("refresh refused sid=%s: a token of another user", sid)
            return _error(TOKEN_INVALID)
        if self._members.get(sid) is not member:
            return _error("not_connected")
        member.identity = identity
        if member.token is not None and isinstance(token, str):
            member.token = token
        self.watch(sid, member, first=False)
        for name in self._server.rooms_of(sid):
            room = parse_room(name)
            if room is None or room.kind is RoomKind.USER:
                continue
            if not await self._auth.may_join(identity, room) and self._members.get(sid) is member:
                await self._revoker.remove(sid, member, room, "token")
        log.info("refreshed sid=%s user=%s exp=%s", sid, identity.user_id, identity.expires_at)
        return {"ok": True, "exp": identity.expires_at}
