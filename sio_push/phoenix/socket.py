"""One Phoenix Channels websocket: the asyncio protocol doing its I/O around the project's frame codec.

The handshake is decided first (reading paused while the token is checked), then answered 101 or 403.
Frames go through `transport.frames.Parser` as in `transport.protocol.Connection`; each message is
decoded by `serializer` and handed to `channels.Channels` in order (a task lives only while some wait).
Heartbeats are answered at once; a socket that sends nothing for the timeout is closed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING

from ..auth import Identity
from ..errors import AuthError
from ..limits import TokenBucket
from ..transport.frames import GOING_AWAY, NORMAL, UNSUPPORTED, Close, Parser, Ping, ProtocolError, ws_frame
from ..transport.handshake import accept_response
from ..transport.protocol import INBOX_LIMIT, Gate, answer_ping, close_websocket
from .hub import SID_PREFIX
from .serializer import Message, decode, encode, reply

if TYPE_CHECKING:
    from .channels import Channels

log = logging.getLogger(__name__)

FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class PhoenixSocket(asyncio.Protocol):
    """One Phoenix socket: its identity, serializer version, channels (topic -> join_ref) and event budget.

    `gate` (admission) counted the connection open; it is told when the connection is lost.
    """

    def __init__(self, transport: asyncio.Transport, channels: Channels, vsn: str, gate: Gate) -> None:
        self.transport = transport
        self._gate = gate
        self.sid = SID_PREFIX + secrets.token_urlsafe(12)
        self.vsn = vsn
        self.identity: Identity | None = None  # set once the handshake is accepted
        self.channels: dict[str, str | None] = {}
        rate = channels.events_per_second
        self.events = TokenBucket(rate, 2 * rate)
        self.closed = False
        self._channels = channels
        self._parser = Parser(channels.max_message_bytes)
        self._pending = b""  # bytes read before the handshake was decided
        self._inbox: list[Message] | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen = 0.0  # loop time of the last bytes received
        self._timer: asyncio.TimerHandle | None = None  # the idle check, then the close's deadline
        self._expiry: asyncio.TimerHandle | None = None  # when the token's exp passes, or the next recheck
        self._recheck_token: str | None = None  # callback mode only: the token the backend is asked about

    # -- the handshake

    def open(self, key: str, token: object, protocol: str | None, rest: bytes) -> None:
        """Take the connection over and decide its handshake (key `key`) on `token`."""
        self.transport.set_protocol(self)
        self.transport.pause_reading()
        self._pending = rest
        task = asyncio.get_running_loop().create_task(self._open(key, token, protocol))
        task.add_done_callback(self._opened)

    async def _open(self, key: str, token: object, protocol: str | None) -> None:
        try:
            identity = await self._channels.connect(token, self.sid)
        except AuthError as exc:
            log.info("phoenix connect refused: %s", exc.code)
            self.refuse()
            return
        if self.closed or self.transport.is_closing():
            self._channels.release(identity.user_id, self.sid)
            return
        self.identity = identity
        self.transport.write(accept_response(key, protocol))
        self._channels.opened(self)
        loop = asyncio.get_running_loop()
        self._seen = loop.time()
        self._timer = loop.call_later(self._channels.timeout, self._check_idle)
        if identity.expires_at is not None:  # SPEC §7: closed (1001) when the token expires; phoenix.js reconnects
            self._expiry = loop.call_later(max(identity.expires_at - time.time(), 0), self._expired)
        elif self._channels.recheck_seconds and isinstance(token, str):  # callback mode: the backend is asked again
            self._recheck_token = token
            delay = self._channels.recheck_seconds * random.uniform(0.5, 1.0)  # a spread, not a secret
            self._expiry = loop.call_later(delay, self._start_recheck)
        self.transport.resume_reading()
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)

    def _opened(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: opening failed", self.sid, exc_info=task.exception())
            self.refuse()

    def refuse(self) -> None:
        """Answer the handshake 403 (as Phoenix does when `connect/3` refuses) and close."""
        if not self.closed and self.identity is None:
            self.closed = True
            self.transport.write(FORBIDDEN)
            self.transport.close()

    # -- reading

    def data_received(self, data: bytes) -> None:
        if self.identity is None:
            self._pending += data  # the handshake is being decided
            return
        self._seen = asyncio.get_running_loop().time()
        for event in self._parser.receive_data(data):
            if self.closed:
                return
            if type(event) is str:
                self._text(event)
            elif type(event) is bytes:
                self._channels.bad_input.warning(self.sid, "%s sent a binary frame; closing it", self.sid)
                self.close(UNSUPPORTED)
            elif type(event) is Ping:
                if not answer_ping(self.transport, self._parser, self._channels.max_buffer):
                    log.warning("%s pings but does not read; closing it", self.sid)
                    return
            elif type(event) is Close:
                self.close()
            elif type(event) is ProtocolError:
                log.info("%s sent %s; closing its websocket", self.sid, event.what)
                self.close()

    def _text(self, text: str) -> None:
        message = decode(text, self.vsn)
        if message is None:
            self._channels.bad_input.warning(self.sid, "%s sent a malformed Phoenix message; ignored", self.sid)
            return
        if message.topic == "phoenix" and message.event == "heartbeat":
            self.send(reply(message, "ok", {}))
            return
        if not self.events.take():
            self._channels.bad_input.warning(self.sid, "%s is over its event rate; message dropped", self.sid)
            self.send(reply(message, "error", {"reason": "rate_limited"}))
            return
        if self._inbox is None:
            self._inbox = []
        self._inbox.append(message)
        if len(self._inbox) == INBOX_LIMIT:
            self.transport.pause_reading()
        if self._task is None:
            self._start()

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._receive())
        self._task.add_done_callback(self._done)

    async def _receive(self) -> None:
        while self._inbox and not self.closed:
            message = self._inbox.pop(0)
            if len(self._inbox) == INBOX_LIMIT // 2:
                self.transport.resume_reading()
            try:
                await self._channels.handle(self, message)
            except Exception:
                log.exception("%s: error handling %s", self.sid, message.event[:64])
        self._inbox = None

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if self._inbox and not self.closed:
            self._start()

    def _expired(self) -> None:
        self._expiry = None
        log.info("%s: its token expired; closing it", self.sid)
        self.close(GOING_AWAY)

    def _start_recheck(self) -> None:
        self._expiry = None
        if not self.closed:
            self._channels.spawn(self._recheck())

    async def _recheck(self) -> None:
        """Ask the backend again; close only on a definite refusal, never on a timeout or a 5xx."""
        if self.identity is None or self._recheck_token is None:
            return
        still = await self._channels.recheck(self._recheck_token, self.identity.user_id)
        if self.closed:
            return
        if still is False:
            log.info("%s: the backend no longer accepts its token; closing it", self.sid)
            self.close(GOING_AWAY)
            return
        self._expiry = asyncio.get_running_loop().call_later(self._channels.recheck_seconds, self._start_recheck)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        left = self._seen + self._channels.timeout - loop.time()
        if left > 0:
            self._timer = loop.call_later(left, self._check_idle)
            return
        self._timer = None
        log.info("%s sent nothing for %.0f s; closing it", self.sid, self._channels.timeout)
        self.close(GOING_AWAY)

    # -- writing

    def send(self, message: Message) -> None:
        self.write(ws_frame(encode(message, self.vsn)))

    def write(self, frame: bytes) -> None:
        """Write one frame, unless closed; a client that does not read is cut off (as Socket.IO's are)."""
        transport = self.transport
        if self.closed or transport.is_closing():
            return
        limit = self._channels.max_buffer
        if transport.get_write_buffer_size() > limit:
            log.warning("%s reads too slowly (%d bytes unsent); closing it", self.sid, limit)
            transport.abort()
            return
        transport.write(frame)

    # -- closing

    def close(self, code: int = NORMAL) -> None:
        """Send a close frame (`transport.protocol.close_websocket`) and end the socket."""
        if self.closed:
            return
        self._cancel_timer()
        self._timer = close_websocket(self.transport, self._parser, code)
        self._end()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._gate.closed()
        self._end()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._inbox = None
        if self.identity is not None:
            self._channels.gone(self)
