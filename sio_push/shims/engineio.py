"""python-engineio, adapted for the fan-out fast path; every private of it that sio-push uses is here.

python-engineio sends every packet through a per-socket queue and writer task, which encodes and frames
it again for each recipient: that is where a room emit spends its time. `DirectSocket` (the class of
every engineio socket here) lets a push skip all of it: the frame is built once per push and written
straight to each transport, in the caller's own step. The websocket under it is a
`transport.protocol.Connection`, or aiohttp's for the connections `Front` hands to aiohttp. Frames that
follow a socket's first in one step of the event loop are gathered and written together
(`transport.batch.WriteBatch`).

Order is kept: a packet goes direct only when the socket's queue is empty and its writer holds nothing
(`_writer_busy`); otherwise the gathered frames are written and the packet is queued behind them, as
before. Long-polling sockets always queue. A client whose unsent bytes pile up past `Bounds.max_buffer`
(in its transport's buffer, or in its queue: a polling client that does not poll) is cut off; it
reconnects and recovers. A polling POST is read within `Bounds.body_seconds`, its packets decoded here
(bad ones answered 400, one log line) and handled within the same packet budget as a websocket's frames.

The privates used (each pinned by tests/test_shims.py): `AsyncServer._trigger_event`, `_service_task`,
`start_service_task`, `service_task_handle`, `_cors_allowed_origins`, `AsyncSocket._websocket_handler`,
the `_sock` of engineio's aiohttp websocket, and the class of the sockets engineio makes itself.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import engineio
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_socket import AsyncSocket

from ..limits import TokenBucket
from ..logs import BadInputLog
from ..transport.batch import WriteBatch
from ..transport.frames import BINARY, NORMAL, ws_frame
from ..transport.protocol import Bounds, Connection
from .aiohttp import websocket_transport

log = logging.getLogger(__name__)


def packet_frame(pkt: eio_packet.Packet) -> bytes:
    """The websocket frame of one Engine.IO packet."""
    encoded = pkt.encode()
    return ws_frame(encoded.encode()) if isinstance(encoded, str) else ws_frame(encoded, BINARY)


_PING_FRAME = ws_frame(b"2")


def _size(item: Any) -> int:
    """About the bytes a queued packet will take to send (its data's length; a few for the rest)."""
    data = getattr(item, "data", None)
    return len(data) + 8 if isinstance(data, str | bytes) else 64


async def _read_body(stream: Any, length: int, limit: int) -> bytes:
    """A request body of `length` bytes (all of it: python-engineio takes whatever part has arrived), or,
    with no length given, up to its end; ContentTooLongError past `limit`."""
    if length >= 0:
        return bytes(await stream.readexactly(length))
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise eio_exceptions.ContentTooLongError()
    return b"".join(chunks)


def _decodable(data: Any) -> bool:
    """Whether python-engineio can take `data` as a packet (its handler decodes outside any `try`, and
    logs a packet of unknown type with a traceback)."""
    try:
        pkt = eio_packet.Packet(encoded_packet=data)
    except Exception:  # its decoder raises whatever it meets
        return False
    return 0 <= pkt.packet_type < len(eio_packet.packet_names)


class _CheckedWebSocket:
    """python-engineio's aiohttp websocket, less the messages it cannot decode (logged as bad input)."""

    def __init__(self, ws: Any, socket: DirectSocket) -> None:
        self._ws = ws
        self._socket = socket

    async def wait(self) -> Any:
        for _ in range(1_000_000):  # bounded; each round reads one message of the client's
            data = await self._ws.wait()
            if data is None or _decodable(data):
                return data
            self._socket.server.bad_input.warning(
                self._socket.sid, "sid=%s sent an undecodable Engine.IO packet", self._socket.sid
            )
        return None  # a client that sends nothing else: its connection ends

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)


class BadPayload(eio_exceptions.EngineIOError):
    """A polling POST that is not an Engine.IO payload (python-engineio answers it 400 and ends the session)."""


class LightQueue:
    """What python-engineio asks of a socket's queue, with storage made only when used.

    An idle `asyncio.Queue` holds four empty deques and an Event, 3 KiB per socket; the sockets of the
    fast path hardly ever queue anything.
    """

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished", "held")

    def __init__(self) -> None:
        self._items: collections.deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None
        self._joiners: list[asyncio.Future[None]] | None = None
        self._unfinished = 0
        self.held = 0  # about the bytes of the packets in the queue

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        self.held += _size(item)
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None
            self.held = 0
        else:
            self.held -= _size(item)
        return item

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif self._items:  # woken and cancelled at once: pass the wake-up on
                    self.put_nowait(self.get_nowait())
                    self._unfinished -= 1
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished and self._joiners:
            for joiner in self._joiners:
                if not joiner.done():
                    joiner.set_result(None)
            self._joiners = None

    async def join(self) -> None:
        if self._unfinished:
            joiner = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(joiner)
            await joiner


class PushEngine(engineio.AsyncServer):
    """python-engineio's server with light socket queues, and its websocket sessions over `Connection`s.

    `open_direct` and `upgrade_target` do what python-engineio's websocket connect and upgrade do, for
    the connections `transport.protocol.Front` serves itself (it sees this class as an `EioServer`).
    """

    start_service_task: bool
    bounds = Bounds()  # the app sets its own, from its settings

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch = WriteBatch()
        self.bad_input = BadInputLog(log)

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        """python-engineio's, with a request for a session that ended while it was handled answered 400.

        Its POST path looks the session up again (`_get_socket`) outside any `try`, and a session closed
        in between raises KeyError: the client's race, not a server error.
        """
        try:
            return await super().handle_request(*args, **kwargs)
        except (KeyError, UnboundLocalError):  # UnboundLocalError: its error path when the session is gone
            self.bad_input.warning("ended", "a request for a session that had ended; answered 400")
            return web.Response(status=400, content_type="text/plain", text='"Session is disconnected"')

    def create_queue(self, *args: Any, **kwargs: Any) -> LightQueue:
        return LightQueue()

    def adopt(self, sid: str) -> DirectSocket | None:
        """Session `sid`, which python-engineio made itself (a polling or aiohttp websocket one), as a DirectSocket.

        python-engineio builds its sockets with no hook for the class; this one class swap gives each
        the fan-out fast path.
        """
        socket = self.sockets.get(sid)
        if type(socket) is AsyncSocket:
            socket.__class__ = DirectSocket
            socket.batch = self.batch
        return socket if isinstance(socket, DirectSocket) else None

    def allowed_origin(self, environ: dict[str, str]) -> bool:
        """python-engineio's origin check for a request with WSGI-style `environ` (its HTTP_ORIGIN, HTTP_HOST...)."""
        origin = environ.get("HTTP_ORIGIN")
        if self.cors_allowed_origins == [] or not origin:
            return True
        allowed = self._cors_allowed_origins(environ)
        return allowed is None or origin in allowed

    def open_direct(self, conn: Connection) -> DirectSocket:
        """A new Engine.IO session on websocket `conn`: registered, its OPEN packet written, pinged.

        The caller awaits the session's `accept` before it hands the session any packet.
        """
        if self.start_service_task:  # python-engineio's sweep of timed-out sockets, started as its connect does
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        socket = DirectSocket(self, sid)
        socket.batch = self.batch
        socket.connected = socket.upgraded = True
        socket.conn = conn
        self.sockets[sid] = socket
        opening = {
            "sid": sid,
            "upgrades": [],
            "pingTimeout": int(self.ping_timeout * 1000),
            "pingInterval": int(self.ping_interval + self.ping_interval_grace_period) * 1000,
            "maxPayload": self.max_http_buffer_size,
        }
        opened = eio_packet.Packet(eio_packet.OPEN, opening)
        socket.push(packet_frame(opened), opened)
        socket.schedule_ping()
        return socket

    def upgrade_target(self, sid: str) -> DirectSocket | None:
        """The polling session `sid` if it may upgrade now (as python-engineio decides), else None.

        Whether websocket is an allowed transport at all is `Front`'s check, made before.
        """
        socket = self.sockets.get(sid)
        if not isinstance(socket, DirectSocket):
            return None
        if not socket.connected or socket.upgraded or socket.upgrading or socket.closing or socket.closed:
            return None
        return socket


class DirectSocket(AsyncSocket):
    """An engineio AsyncSocket that can take a frame straight to its websocket transport.

    Its websocket is either a `Connection` (`conn`), or aiohttp's, run by python-engineio's websocket
    handler (`_ws`) for the connections `Front` hands to aiohttp. To a `Connection` it is an `EioSocket`.
    """

    conn: Connection | None = None
    _ws: Any = None  # engineio's aiohttp websocket wrapper, while upgraded
    _writer_busy = False  # the writer task holds packets it has not written yet
    batch: WriteBatch | None = None  # set when the socket opens; None writes each frame at once
    _out: list[bytes] | None = None  # frames gathered for the batch
    _ping_timer: asyncio.TimerHandle | None = None
    connect_timer: asyncio.TimerHandle | None = None  # until the Socket.IO CONNECT (server.PushServer)
    _close_code = NORMAL  # the websocket close code of a `Connection`'s close (see `shut`)
    last_ping: float | None
    server: PushEngine
    _cut = False  # over its bound of unsent bytes: being closed, and what is pushed to it dropped
    _allowance = 0  # bytes of a recovery replay it may hold beyond the bound until it has read them
    _replayed = False  # the replay is all written: the allowance ends once the socket is under the bound
    _budget: TokenBucket | None = None  # of the packets its polling POSTs carry, made by the first

    async def accept(self, environ: dict[str, Any]) -> bool:
        """Run the connect handler for a session of `open_direct`; False (and the session dropped) if it refused."""
        server = self.server
        accepted = await server._trigger_event("connect", self.sid, environ, run_async=False)
        if accepted is None or accepted is True:
            return True
        server.sockets.pop(self.sid, None)
        self.conn = None  # no session to end with the connection
        server.logger.warning("Application rejected connection")
        return False

    def start_upgrade(self) -> None:
        """A `Connection` starts the probe of an upgrade from polling: sends are held (as python-engineio)."""
        self.upgrading = True

    def end_poll(self) -> None:
        """Answer a pending poll (with a NOOP), as the probe of an upgrade does."""
        self.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))

    def cancel_upgrade(self) -> None:
        """The upgrade's websocket closed before it completed: the session goes on polling."""
        self.upgrading = False

    def attach(self, conn: Connection) -> bool:
        """Complete an upgrade from polling: `conn` is this socket's websocket from now on (False if closing).

        What was queued for the polling transport meanwhile is written to the websocket first, in order.
        """
        if self.closing or self.closed:
            return False
        queued = []
        while not self.queue.empty():
            queued.append(self.queue.get_nowait())
            self.queue.task_done()
        self.conn = conn
        self.upgraded = True
        self.upgrading = False
        for pkt in queued:
            if pkt is not None:
                self.push(packet_frame(pkt), pkt)
        return True

    def websocket_closed(self) -> None:
        """This socket's `Connection` closed: the session ends with it."""
        self.server.start_background_task(self._end_with_websocket)

    async def _end_with_websocket(self) -> None:
        # As python-engineio's websocket handler ends a session.
        server = self.server
        await self.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)
        if server.sockets.get(self.sid) is self:
            del server.sockets[self.sid]

    def schedule_ping(self) -> None:
        # Timers, where python-engineio starts a task per socket and ping: the same heartbeat, lighter.
        if self.last_ping:
            self.last_ping = None
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.server.ping_interval, self._send_ping_now)

    def _send_ping_now(self) -> None:
        self._ping_timer = None
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.push(_PING_FRAME, eio_packet.Packet(eio_packet.PING))
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.server.ping_timeout, self._pong_overdue)

    def _pong_overdue(self) -> None:
        self._ping_timer = None
        if not self.closing and not self.closed:
            log.info("sid=%s sent no pong within %gs; closing it", self.sid, self.server.ping_timeout)
            self.server.start_background_task(self.shut, self.server.reason.PING_TIMEOUT)

    async def _websocket_handler(self, ws: Any) -> Any:
        self._ws = ws
        try:
            return await super()._websocket_handler(_CheckedWebSocket(ws, self))
        finally:
            self._ws = None

    def _transport(self) -> asyncio.WriteTransport | None:
        """The transport of this socket's websocket, while it has an open one."""
        transport: asyncio.WriteTransport | None
        if self.conn is not None:
            transport = None if self.conn.closed else self.conn.transport
        elif self._ws is not None:
            transport = websocket_transport(self._ws._sock)
        else:
            return None
        return None if transport is None or transport.is_closing() else transport

    def _direct(self) -> asyncio.WriteTransport | None:
        """The transport to write to now, or None when the packet must be queued to keep order."""
        if not self.upgraded or self.upgrading or self._writer_busy or self.closed or not self.queue.empty():
            return None
        transport = self._transport()
        if transport is None:
            return None
        unsent = transport.get_write_buffer_size()
        if unsent > self._bound(unsent):
            log.warning("sid=%s reads too slowly (%d bytes unsent); closing it", self.sid, unsent)
            transport.abort()
            return None
        return transport

    def allow(self, replay_bytes: int, *, written: bool = False) -> None:
        """Let a recovery replay of `replay_bytes` be written at once (the client had no time to read it);
        `written=True` once it is, after which the allowance lasts until the socket is under its bound."""
        self._allowance, self._replayed = replay_bytes, written

    def _bound(self, unsent: int) -> int:
        """The unsent bytes this socket may hold now."""
        bound = self.server.bounds.max_buffer
        if self._allowance and self._replayed and unsent <= bound:
            self._allowance = 0
        return bound + self._allowance

    def _check_queue(self) -> None:
        """Cut off a socket whose queue holds more than the bound (a polling client that does not poll).

        The queue is emptied at once and the socket closed; it reconnects and recovers what it missed.
        """
        held = self.queue.held
        if held <= self._bound(held) or self._cut:
            return
        self._cut = True
        log.warning("sid=%s does not take what is sent to it (%d bytes queued); closing it", self.sid, held)
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        self.server.start_background_task(self.shut, self.server.reason.TRANSPORT_ERROR)

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        for timer in (self._ping_timer, self.connect_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self.connect_timer = None
        if self.conn is None:
            # Never waiting for the queue to drain: python-engineio's `disconnect` waits, and a polling
            # client that does not poll (one whose POST was just refused, say) would hold it for ever.
            await super().close(wait=False, abort=abort, reason=reason)
            return
        # No writer task drains the queue of a `Connection`'s socket: nothing to wait for.
        await super().close(wait=False, abort=abort, reason=reason)
        self.flush()
        self.conn.close(self._close_code)

    async def shut(self, reason: str, code: int = NORMAL) -> None:
        """Close this socket for good: disconnect handlers run, and the connection itself closes.

        Over websocket the client is told by the close (engine.io-client reads no CLOSE packet there;
        a `Connection` sends close frame `code` first), which socket.io-client answers by reconnecting;
        a polling client gets the CLOSE packet.
        """
        self._close_code = code
        await self.close(wait=False, abort=False, reason=reason)
        self.flush()
        transport = self._transport()
        if transport is not None:
            transport.close()

    def _write(self, transport: asyncio.WriteTransport, frame: bytes) -> None:
        if self.batch is None:
            transport.write(frame)
        elif self._out is None:
            # The first frame of this step goes out at once (no added latency); later ones are gathered.
            transport.write(frame)
            self._out = []
            self.batch.add(self)
        else:
            self._out.append(frame)

    def flush(self) -> None:
        """Write the gathered frames now, in one write."""
        out, self._out = self._out, None
        if not out:
            return
        transport = self._transport()
        if transport is not None:
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def push(self, frame: bytes, pkt: eio_packet.Packet) -> None:
        """Send one packet whose websocket frame is already built: direct if possible, else queued."""
        transport = self._direct()
        if transport is not None:
            self._write(transport, frame)
        elif not self.closed and not self._cut:
            self.flush()
            self.queue.put_nowait(pkt)
            self._check_queue()

    async def send(self, pkt: eio_packet.Packet) -> None:
        transport = self._direct()
        if transport is None:
            self.flush()
            await super().send(pkt)
            self._check_queue()
            return
        if await self.check_ping_timeout():
            self._write(transport, packet_frame(pkt))

    async def poll(self) -> list[eio_packet.Packet]:
        self._writer_busy = False
        if not self.upgraded:
            return await super().poll()
        # The websocket writer: wait for what had to be queued; the reader loop notices dead clients.
        pkt = await self.queue.get()
        self.queue.task_done()
        if pkt is None:
            return []
        packets = [pkt]
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is None:
                self.queue.put_nowait(None)
                break
            packets.append(pkt)
        self._writer_busy = True
        return packets

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        """python-engineio's, bounded: the body read within `body_seconds`, checked before any packet is
        handled (a bad one is BadPayload: 400 and the session ended, one log line, no traceback), and its
        packets taken from the socket's packet budget (more than the budget's burst in one POST is bad)."""
        server = self.server
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            raise self._bad("sent a bad Content-Length") from None
        limit = server.max_http_buffer_size
        if length > limit:
            raise eio_exceptions.ContentTooLongError()
        try:
            async with asyncio.timeout(server.bounds.body_seconds):
                body = await _read_body(environ["wsgi.input"], length, limit)
            packets = eio_payload.Payload(encoded_payload=body.decode("utf-8")).packets
        except TimeoutError:
            raise self._bad("sent its polling body too slowly") from None
        except Exception:  # an abandoned body, or python-engineio's decoder raising what it meets
            raise self._bad("sent an undecodable polling payload") from None
        if any(not 0 <= pkt.packet_type < len(eio_packet.packet_names) for pkt in packets):
            raise self._bad("sent an Engine.IO packet of unknown type")
        if self._budget is None:
            self._budget = server.bounds.packet_budget()
        budget = self._budget
        if len(packets) > budget.burst:
            raise self._bad(f"sent {len(packets)} packets in one polling request")
        for pkt in packets:
            if not budget.take():  # over the budget: wait for the token (at most a burst's worth of time)
                await asyncio.sleep(budget.wait_time())
                budget.take()
            await self.receive(pkt)

    def _bad(self, what: str) -> BadPayload:
        self.server.bad_input.warning(self.sid, "sid=%s %s; closing it", self.sid, what)
        return BadPayload(what)
