"""Socket.IO's websocket connections as two small asyncio protocols, doing the I/O around `frames.Parser`.

Every connection's first bytes are read by a `Front`. A plain websocket handshake on the Socket.IO path
(how a client with `transports: ["websocket"]` opens, and how one that starts on polling upgrades) is
answered there, and the connection becomes a `Connection`, which feeds what it reads to the codec and
hands Engine.IO packets to the session (`shims.engineio.DirectSocket`), keeping no task, queue or HTTP
request per connection. Anything else (the push API, long polling, a handshake with anything unusual, a
refused origin) is handed untouched to aiohttp, which serves it as if it had been its own from the start.

Memory per idle socket is what this is for: aiohttp with python-engineio's websocket handler keeps about
15 KiB per connection (the request and its headers, parsers, a reader queue, the handler, reader and
writer tasks); a `Connection` keeps a few hundred bytes.

The Engine.IO side is seen through `EioServer` and `EioSocket`, which `shims.engineio` implements: this
package imports nothing of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet

from ..limits import TokenBucket
from .frames import INTERNAL_ERROR, NORMAL, POLICY, Close, Event, Parser, Ping, ProtocolError, ws_frame
from .handshake import Handshake, accept_response

log = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0  # for the client to close its side after our close frame
INBOX_LIMIT = 64  # packets waiting for their handlers before the connection stops reading
_PROBE_ANSWER = ws_frame(b"3probe")  # Engine.IO's PONG "probe"


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one connection may cost the server (SPEC §7); the app sets them from its settings.

    :param head_seconds: for a connection's request head to arrive.
    :param body_seconds: for a request body (a polling POST's) to arrive.
    :param max_buffer: unsent bytes to a client (websocket or polling) before it is cut off as one that
        does not read.
    :param packets_per_second: frames (websocket) or Engine.IO packets (polling) a connection may have
        read per second, with a burst of twice that; past it, reading waits (backpressure, not a close).
    """

    head_seconds: float = 10.0
    body_seconds: float = 30.0
    max_buffer: int = 8 * 1024 * 1024
    packets_per_second: float = 200.0

    def packet_budget(self) -> TokenBucket:
        return TokenBucket(self.packets_per_second, 2 * self.packets_per_second)


class EioSocket(Protocol):
    """The Engine.IO session a `Connection` carries."""

    @property
    def sid(self) -> str: ...
    @property
    def conn(self) -> Connection | None: ...
    async def receive(self, pkt: eio_packet.Packet) -> None: ...
    async def accept(self, environ: dict[str, Any]) -> bool: ...
    def schedule_ping(self) -> None: ...
    def start_upgrade(self) -> None: ...
    def end_poll(self) -> None: ...
    def attach(self, conn: Connection) -> bool: ...
    def cancel_upgrade(self) -> None: ...
    def websocket_closed(self) -> None: ...


class EioServer(Protocol):
    """The Engine.IO server whose sessions `Connection`s carry."""

    @property
    def transports(self) -> list[str]: ...
    @property
    def max_http_buffer_size(self) -> int: ...
    @property
    def ping_interval(self) -> float: ...
    @property
    def ping_timeout(self) -> float: ...
    @property
    def bounds(self) -> Bounds: ...
    def allowed_origin(self, environ: dict[str, str]) -> bool: ...
    def upgrade_target(self, sid: str) -> EioSocket | None: ...
    def open_direct(self, conn: Connection) -> EioSocket: ...


class Gate(Protocol):
    """Admission of new connections (`sio_push.admission.Admission`): counts open ones, refuses over a limit."""

    def opened(self) -> None: ...
    def closed(self) -> None: ...
    def retry_after(self) -> int: ...


def answer_ping(transport: asyncio.Transport, parser: Parser, max_buffer: int) -> bool:
    """Write the pong `parser` queued; False (and the connection aborted) for a client that does not read."""
    if transport.get_write_buffer_size() > max_buffer:
        transport.abort()
        return False
    transport.write(parser.data_to_send())
    return True


def close_websocket(transport: asyncio.Transport, parser: Parser, code: int) -> asyncio.TimerHandle | None:
    """Send our close frame (or the answer to the client's) and shut our side; the deadline's timer, if any.

    Our side of the TCP connection is shut after the frame; the client's is read (and dropped) until it
    closes it, so that nothing it still sends turns into a reset that could lose the close frame. A
    client that neither reads nor closes is cut off after `CLOSE_SECONDS`.
    """
    parser.send_close(code)  # nothing if the parser has answered a close or an error already
    if transport.is_closing():  # aborted (a client that does not read): nothing more to say
        return None
    transport.write(parser.data_to_send())
    if not transport.can_write_eof():
        transport.close()
        return None
    try:
        transport.write_eof()
    except OSError:  # the client's side is already gone (reset before the loop noticed): nothing to shut
        transport.abort()
        return None
    transport.resume_reading()
    return asyncio.get_running_loop().call_later(CLOSE_SECONDS, transport.abort)


class Connection(asyncio.Protocol):
    """One websocket carrying one Engine.IO session: frames in, packets to the session, nothing kept idle.

    Packets go to the session in order through a task that lives only while some are waiting; pongs,
    which most of an idle socket's traffic is, are taken at once.
    """

    __slots__ = (
        "_budget",
        "_eio",
        "_gate",
        "_held",
        "_inbox",
        "_parser",
        "_probing",
        "_refill",
        "_task",
        "_timer",
        "closed",
        "socket",
        "transport",
    )

    def __init__(self, transport: asyncio.Transport, eio: EioServer, gate: Gate | None = None) -> None:
        self.transport = transport
        self._eio = eio
        self._gate = gate
        self._parser = Parser(eio.max_http_buffer_size)
        self.socket: EioSocket | None = None
        self.closed = False
        self._inbox: list[eio_packet.Packet] | None = None
        self._task: asyncio.Task[None] | None = None
        self._probing = 0  # of an upgrade from polling: 2 awaits the probe ping, 1 the UPGRADE packet
        self._timer: asyncio.TimerHandle | None = None  # a deadline: the upgrade's, then the close's
        self._budget = eio.bounds.packet_budget()
        self._held: list[Event] | None = None  # events read past the budget, handled once it refills
        self._refill: asyncio.TimerHandle | None = None

    def open(self, handshake: Handshake, target: EioSocket | None) -> None:
        """Answer the handshake; then open a new session, or start the upgrade of polling session `target`."""
        transport = self.transport  # TCP_NODELAY is set already: asyncio's and uvloop's TCP transports do
        transport.write(accept_response(handshake.key))
        if target is not None:
            target.start_upgrade()
            self.socket = target
            self._probing = 2
            deadline = self._eio.ping_interval + self._eio.ping_timeout
            self._timer = asyncio.get_running_loop().call_later(deadline, self._upgrade_overdue)
            return
        self.socket = self._eio.open_direct(self)
        peer = transport.get_extra_info("peername")
        environ = handshake.environ(str(peer[0]) if peer else "")
        self._start(self._connect(self.socket, environ))

    async def _connect(self, socket: EioSocket, environ: dict[str, Any]) -> None:
        if not await socket.accept(environ):
            self.close(POLICY)
            return
        await self._receive()

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.get_running_loop().create_task(work)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("sid=%s: opening failed", self.socket and self.socket.sid, exc_info=task.exception())
            self.close(INTERNAL_ERROR)
        if self._inbox and not self.closed:
            self._start(self._receive())

    async def _receive(self) -> None:
        while self._inbox and self.socket is not None:
            pkt = self._inbox.pop(0)
            if len(self._inbox) == INBOX_LIMIT // 2 and not self.closed and self._held is None:
                self.transport.resume_reading()
            try:
                await self.socket.receive(pkt)
            except eio_exceptions.UnknownPacketError:
                log.debug("sid=%s sent an unknown Engine.IO packet", self.socket.sid)
            except eio_exceptions.SocketIsClosedError:
                self._inbox = None
            except Exception:
                log.exception("sid=%s: error handling a packet", self.socket.sid)
        self._inbox = None

    def data_received(self, data: bytes) -> None:
        events = self._parser.receive_data(data)
        if self._held is not None:  # reading resumed by the close or the inbox: handled in turn
            self._held.extend(events)
            return
        self._handle(events)

    def _handle(self, events: list[Event]) -> None:
        """Handle `events` while the budget lasts; the rest are held, and reading paused, until it refills.

        Every frame costs a token, pings and garbage too: that bounds the CPU one connection costs,
        whatever it sends. A client over the budget is slowed down, not closed.
        """
        budget = self._budget
        for at, event in enumerate(events):
            if self.closed:
                return  # by an event before this one (a failed upgrade): the rest is dropped, as after a close
            if not budget.take():
                self._held = events[at:]
                self.transport.pause_reading()
                want = min(len(self._held), max(1.0, budget.rate / 10))  # handled in tenths of a second
                delay = budget.wait_time() + (want - 1) / budget.rate
                self._refill = asyncio.get_running_loop().call_later(delay, self._refilled)
                return
            self._event(event)

    def _refilled(self) -> None:
        self._refill = None
        held, self._held = self._held, None
        if held is None or self.closed:
            return
        self._handle(held)
        if self._held is None and not self.closed and (self._inbox is None or len(self._inbox) < INBOX_LIMIT):
            self.transport.resume_reading()

    def _event(self, event: Event) -> None:
        if type(event) is str or type(event) is bytes:
            self._message(event)
        elif type(event) is Ping:
            if not answer_ping(self.transport, self._parser, self._eio.bounds.max_buffer):
                log.warning("sid=%s pings but does not read; closing it", self.socket and self.socket.sid)
                self._end()
        elif type(event) is Close:
            self.close()
        elif type(event) is ProtocolError:
            log.info("sid=%s sent %s; closing its websocket", self.socket and self.socket.sid, event.what)
            self.close()
        # a Pong: unsolicited (this server sends Engine.IO pings, not websocket ones), and ignored

    def _message(self, data: str | bytes) -> None:
        try:
            pkt = eio_packet.Packet(encoded_packet=data)
        except Exception:  # python-engineio's decoder raises what it meets; the client's mistake, not ours
            log.debug("sid=%s sent an undecodable Engine.IO packet", self.socket and self.socket.sid)
            return
        if not 0 <= pkt.packet_type < len(eio_packet.packet_names):  # python-engineio would index past its names
            log.debug("sid=%s sent an Engine.IO packet of unknown type", self.socket and self.socket.sid)
            return
        if self._probing and self.socket is not None:
            self._upgrade(self.socket, pkt)
        elif pkt.packet_type == eio_packet.PONG and self.socket is not None:
            self.socket.schedule_ping()
        else:
            if self._inbox is None:
                self._inbox = []
            self._inbox.append(pkt)
            if len(self._inbox) == INBOX_LIMIT:
                self.transport.pause_reading()
            if self._task is None:
                self._start(self._receive())

    def _upgrade(self, socket: EioSocket, pkt: eio_packet.Packet) -> None:
        """The probe exchange of an upgrade from polling, as python-engineio's websocket handler does it."""
        if self._probing == 2 and pkt.packet_type == eio_packet.PING and pkt.data == "probe":
            self.transport.write(_PROBE_ANSWER)
            socket.end_poll()
            self._probing = 1
        elif self._probing == 1 and pkt.packet_type == eio_packet.UPGRADE and socket.attach(self):
            self._probing = 0
            self._cancel_timer()
        else:
            log.info("sid=%s: failed websocket upgrade (%s)", socket.sid, eio_packet.packet_names[pkt.packet_type])
            self.close(POLICY)

    def _upgrade_overdue(self) -> None:
        self._timer = None
        if self._probing:
            log.info("sid=%s made no upgrade in time; closing its websocket", self.socket and self.socket.sid)
            self.close(POLICY)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self, code: int = NORMAL) -> None:
        """Send a close frame (`close_websocket`) and end the connection, and the session with it."""
        if self.closed:
            return
        self._cancel_timer()
        self._timer = close_websocket(self.transport, self._parser, code)
        self._end()

    def eof_received(self) -> bool | None:
        return False  # the client is done: close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._end()
        if self._gate is not None:
            self._gate.closed()

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._inbox = None
        self._held = None
        if self._refill is not None:
            self._refill.cancel()
            self._refill = None
        socket = self.socket
        if socket is None:
            return
        if self._probing:  # the upgrade failed: the session goes on polling
            socket.cancel_upgrade()
        elif socket.conn is self:
            socket.websocket_closed()
