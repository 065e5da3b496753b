"""The Engine.IO socket of every session: `DirectSocket`, python-engineio's `AsyncSocket` with the fan-out
fast path, timers for heartbeats, bounded queues and checked polling bodies."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_socket import AsyncSocket

from ...limits import TokenBucket
from ...transport.batch import WriteBatch
from ...transport.frames import BINARY, NORMAL, ws_frame
from ...transport.protocol import Connection
from ..aiohttp import websocket_transport
from .checks import BadPayload, CheckedWebSocket, read_body

if TYPE_CHECKING:
    from .server import PushEngine

log = logging.getLogger(__name__)


def packet_frame(pkt: eio_packet.Packet) -> bytes:
    """The websocket frame of one Engine.IO packet."""
    encoded = pkt.encode()
    return ws_frame(encoded.encode()) if isinstance(encoded, str) else ws_frame(encoded, BINARY)


_PING_FRAME = ws_frame(b"2")


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
            return await super()._websocket_handler(CheckedWebSocket(ws, self))
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

    def drop(self) -> bool:
        """Close this socket's `Connection` now (what is gathered goes first): the client sees it go at once,
        and the session ends in the background, as when a client goes. False when it has no open one."""
        if self.conn is None or self.conn.closed:
            return False
        self.flush()
        self.conn.close(NORMAL)
        return True

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

    def push_all(self, frames: list[bytes], packets: list[eio_packet.Packet]) -> None:
        """Send packets whose frames are built, in order: in one write if possible, else each as `push` does."""
        transport = self._direct()
        if transport is None:
            for frame, pkt in zip(frames, packets, strict=True):
                self.push(frame, pkt)
            return
        self.flush()  # what was gathered for the batch goes first
        transport.write(b"".join(frames))

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
                body = await read_body(environ["wsgi.input"], length, limit)
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
