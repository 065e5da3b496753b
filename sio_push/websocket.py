"""Socket.IO's websocket connections, served without aiohttp's per-connection machinery.

Every connection's first bytes are read by a `Front`. A plain websocket handshake on the Socket.IO path
(how a client with `transports: ["websocket"]` opens, and how one that starts on polling upgrades) is
answered there, and the connection becomes a `Connection`: a small asyncio protocol that parses websocket
frames and hands Engine.IO packets to the session (`wire.DirectSocket`), keeping no task, queue or HTTP
request per connection. Anything else (the push API, long polling, a handshake with anything unusual, a
refused origin) is handed untouched to aiohttp, which serves it as if it had been its own from the start.

Memory per idle socket is what this is for: aiohttp with python-engineio's websocket handler keeps about
15 KiB per connection (the request and its headers, parsers, a reader queue, the handler, reader and
writer tasks); a `Connection` keeps a few hundred bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs

from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet

from .wire import BINARY, CLOSE, MAX_BUFFER, PING, PONG, TEXT, DirectSocket, PushEngine, packet_frame, ws_frame

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024  # a longer request head is aiohttp's to judge
HEAD_SECONDS = 30.0  # for a new connection's request head to arrive
CLOSE_SECONDS = 5.0  # for the client to close its side after our close frame
INBOX_LIMIT = 64  # packets waiting for their handlers before the connection stops reading
MAX_FRAGMENTS = 1024  # frames of one message
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTINUATION = 0x0
# Close codes (RFC 6455 7.4.1)
NORMAL, PROTOCOL_ERROR, INVALID_DATA, POLICY, TOO_BIG, INTERNAL_ERROR = 1000, 1002, 1007, 1008, 1009, 1011


@dataclass(frozen=True)
class Handshake:
    """A websocket handshake for the Socket.IO path, as read from the request head."""

    key: str
    query: str
    sid: str | None
    headers: dict[str, str]  # the ones the origin check reads, lower-cased names

    def environ(self, peer: str) -> dict[str, Any]:
        """The WSGI-style environ python-engineio's handlers read (see server.KEPT_ENVIRON)."""
        return {"REQUEST_METHOD": "GET", "QUERY_STRING": self.query, "REMOTE_ADDR": peer}

    def origin_environ(self, scheme: str) -> dict[str, str]:
        """What python-engineio's origin check reads."""
        environ = {"wsgi.url_scheme": scheme}
        for name, key in _ORIGIN_HEADERS.items():
            if name in self.headers:
                environ[key] = self.headers[name]
        return environ


_ORIGIN_HEADERS = {
    "origin": "HTTP_ORIGIN",
    "host": "HTTP_HOST",
    "x-forwarded-proto": "HTTP_X_FORWARDED_PROTO",
    "x-forwarded-host": "HTTP_X_FORWARDED_HOST",
}
_READ_HEADERS = {
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "content-length",
    "transfer-encoding",
    *_ORIGIN_HEADERS,
}


def parse_handshake(head: bytes, path: str) -> Handshake | None:
    """The handshake in request head `head` (without its blank line), or None when it is anything else.

    Only a well-formed Engine.IO v4 websocket handshake for `path` is taken; None hands the connection to
    aiohttp, which answers everything else (and every malformed request) as it always does.
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        return None
    target, _, query = parts[1].partition("?")
    if target != path:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or not name.isascii():
            return None  # includes obsolete line folding
        name = name.lower()
        if name in _READ_HEADERS:
            if name in headers:
                return None
            headers[name] = value.strip(" \t")
    if headers.get("upgrade", "").lower() != "websocket" or headers.get("sec-websocket-version") != "13":
        return None
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        return None  # a handshake with a body: aiohttp's to judge
    if "upgrade" not in (token.strip().lower() for token in headers.get("connection", "").split(",")):
        return None
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    args = parse_qs(query)
    if args.get("transport") != ["websocket"] or "j" in args:
        return None
    sids = args.get("sid")
    if sids is None and args.get("EIO") != ["4"]:
        return None
    if sids is not None and len(sids) != 1:
        return None
    origin = {name: value for name, value in headers.items() if name in _ORIGIN_HEADERS}
    return Handshake(key=key, query=query, sid=sids[0] if sids else None, headers=origin)


def _accept(key: str) -> bytes:
    digest = hashlib.sha1(key.encode() + _GUID).digest()  # RFC 6455's accept key
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
    )


def _unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def _close_frame(code: int) -> bytes:
    return ws_frame(code.to_bytes(2, "big"), CLOSE)


def _peer_close_code(payload: bytes) -> int:
    """The code to answer a client's close frame with (RFC 6455 5.5.1, 7.4)."""
    if not payload:
        return NORMAL
    code = int.from_bytes(payload[:2], "big")
    if len(payload) == 1 or not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return PROTOCOL_ERROR
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        return INVALID_DATA
    return code


class Front(asyncio.Protocol):
    """Reads a new connection's request head, then gives the connection to a `Connection` or to aiohttp."""

    __slots__ = ("_engine", "_head", "_http", "_lf_from", "_path", "_prefix", "_timer", "_transport")

    def __init__(self, http: Callable[[], asyncio.Protocol], engine: PushEngine, path: str) -> None:
        self._http = http
        self._engine = engine
        self._path = path
        self._prefix = b"GET " + path.encode()
        self._head = bytearray()
        self._lf_from = 0  # line ends before this offset have been checked
        self._transport: asyncio.Transport = cast(asyncio.Transport, None)  # set at once by the loop
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream server's transports are
        self._timer = asyncio.get_running_loop().call_later(HEAD_SECONDS, self._transport.close)

    def data_received(self, data: bytes) -> None:
        head = self._head
        head += data
        if head[: len(self._prefix)] != self._prefix[: len(head)]:
            self._hand_off()  # not a GET of the Socket.IO path: nothing to wait for
            return
        end = head.find(b"\r\n\r\n", max(self._lf_from - 3, 0))
        if end < 0:
            if len(head) > MAX_HEAD or self._bare_lf():
                self._hand_off()
            return
        handshake = parse_handshake(bytes(head[:end]), self._path)
        if handshake is None or not self._allowed(handshake):
            self._hand_off()
            return
        target = None
        if handshake.sid is not None:
            target = self._engine.upgrade_target(handshake.sid)
            if target is None:
                self._hand_off()  # python-engineio answers a bad or finished session with its 400
                return
        self._stop_timer()
        transport = self._transport
        conn = Connection(transport, self._engine)
        transport.set_protocol(conn)
        conn.open(handshake, target)
        if len(head) > end + 4:
            conn.data_received(bytes(head[end + 4 :]))

    def _bare_lf(self) -> bool:
        """Whether a line of the head ends in LF alone (aiohttp answers those; this parser does not)."""
        head = self._head
        at = head.find(b"\n", self._lf_from)
        while at >= 0:
            if at == 0 or head[at - 1] != 0x0D:
                return True
            at = head.find(b"\n", at + 1)
        self._lf_from = len(head)
        return False

    def _allowed(self, handshake: Handshake) -> bool:
        """python-engineio's origin check (and its transport list), which aiohttp's path applies too."""
        engine = self._engine
        if "websocket" not in engine.transports:
            return False
        origin = handshake.headers.get("origin")
        if engine.cors_allowed_origins == [] or not origin:
            return True
        scheme = "https" if self._transport.get_extra_info("sslcontext") else "http"
        allowed = engine._cors_allowed_origins(handshake.origin_environ(scheme))
        return allowed is None or origin in allowed

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _hand_off(self) -> None:
        self._stop_timer()
        data, self._head = bytes(self._head), bytearray()
        transport = self._transport
        protocol = self._http()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)

    def eof_received(self) -> bool | None:
        self._hand_off()
        protocol = cast(asyncio.Protocol, self._transport.get_protocol())
        return protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()


class Connection(asyncio.Protocol):
    """One websocket carrying one Engine.IO session: frames in, packets to the session, nothing kept idle.

    Packets go to the session in order through a task that lives only while some are waiting; pongs,
    which most of an idle socket's traffic is, are taken at once.
    """

    __slots__ = (
        "_buffer",
        "_engine",
        "_fragment_bytes",
        "_fragments",
        "_inbox",
        "_probing",
        "_task",
        "_timer",
        "closed",
        "socket",
        "transport",
    )

    def __init__(self, transport: asyncio.Transport, engine: PushEngine) -> None:
        self.transport = transport
        self._engine = engine
        self.socket: DirectSocket | None = None
        self.closed = False
        self._buffer: bytearray | None = None
        self._fragments: list[bytes] | None = None  # of a fragmented message; the first holds its opcode
        self._inbox: list[eio_packet.Packet] | None = None
        self._fragment_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._probing = 0  # of an upgrade from polling: 2 awaits the probe ping, 1 the UPGRADE packet
        self._timer: asyncio.TimerHandle | None = None  # a deadline: the upgrade's, then the close's

    def open(self, handshake: Handshake, target: DirectSocket | None) -> None:
        """Answer the handshake; then open a new session, or start the upgrade of polling session `target`."""
        transport = self.transport  # TCP_NODELAY is set already: asyncio's and uvloop's TCP transports do
        transport.write(_accept(handshake.key))
        if target is not None:
            target.upgrading = True  # as python-engineio: hold sends until the upgrade completes
            self.socket = target
            self._probing = 2
            deadline = self._engine.ping_interval + self._engine.ping_timeout
            self._timer = asyncio.get_running_loop().call_later(deadline, self._upgrade_overdue)
            return
        self.socket = self._engine.open_direct(self)
        peer = transport.get_extra_info("peername")
        environ = handshake.environ(str(peer[0]) if peer else "")
        self._start(self._connect(self.socket, environ))

    async def _connect(self, socket: DirectSocket, environ: dict[str, Any]) -> None:
        if not await self._engine.connect_event(socket, environ):
            socket.conn = None  # refused: no session to end
            self.close(POLICY)
            return
        await self._receive()

    def _start(self, work: Any) -> None:
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
            if len(self._inbox) == INBOX_LIMIT // 2 and not self.closed:
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
        if self.closed:
            return  # read on and dropped until the client closes its side too (see close)
        if self._buffer is not None:
            self._buffer += data
            buf: bytes | bytearray = self._buffer
        else:
            buf = data
        pos, size = 0, len(buf)
        limit = self._engine.max_http_buffer_size
        while size - pos >= 2 and not self.closed:
            first, second = buf[pos], buf[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length == 126:
                if size < start + 2:
                    break
                length, start = int.from_bytes(buf[start : start + 2], "big"), start + 2
            elif length == 127:
                if size < start + 8:
                    break
                length, start = int.from_bytes(buf[start : start + 8], "big"), start + 8
            if first & 0x70 or not second & 0x80 or length >> 63 or (first & 0x08 and length > 125):
                self._fail(PROTOCOL_ERROR, "an unmasked frame, reserved bits, or a long control frame")
                return
            if length > limit:
                self._fail(TOO_BIG, f"a frame of {length} bytes")
                return
            end = start + 4 + length
            if size < end:
                break
            payload = _unmask(bytes(buf[start + 4 : end]), bytes(buf[start : start + 4]))
            pos = end
            self._frame(bool(first & 0x80), first & 0x0F, payload)
        if self.closed or pos == size:
            self._buffer = None
        elif buf is self._buffer:
            del self._buffer[:pos]
        else:
            self._buffer = bytearray(buf[pos:])

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode >= CLOSE:
            if not fin or len(payload) > 125:
                self._fail(PROTOCOL_ERROR, "a fragmented or long control frame")
            elif opcode == CLOSE:
                self.close(_peer_close_code(payload))
            elif opcode == PING:
                if self.transport.get_write_buffer_size() > MAX_BUFFER:
                    log.warning("sid=%s pings but does not read; closing it", self.socket and self.socket.sid)
                    self.transport.abort()
                    return
                self.transport.write(ws_frame(payload, PONG))
            elif opcode != PONG:
                self._fail(PROTOCOL_ERROR, f"opcode {opcode}")
            return
        if opcode == _CONTINUATION:
            if self._fragments is None:
                self._fail(PROTOCOL_ERROR, "a continuation of nothing")
                return
            self._fragments.append(payload)
        elif opcode in (TEXT, BINARY):
            if self._fragments is not None:
                self._fail(PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            if fin:
                self._message(opcode, payload)
                return
            self._fragments = [bytes((opcode,)), payload]
            self._fragment_bytes = 0
        else:
            self._fail(PROTOCOL_ERROR, f"opcode {opcode}")
            return
        self._fragment_bytes += len(payload)
        if self._fragment_bytes > self._engine.max_http_buffer_size or len(self._fragments) > MAX_FRAGMENTS:
            self._fail(TOO_BIG, "a fragmented message too big or in too many frames")
        elif fin:
            fragments, self._fragments = self._fragments, None
            self._message(fragments[0][0], b"".join(fragments[1:]))

    def _message(self, opcode: int, payload: bytes) -> None:
        data: str | bytes = payload
        if opcode == TEXT:
            try:
                data = payload.decode()
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "text that is not UTF-8")
                return
        try:
            pkt = eio_packet.Packet(encoded_packet=data)
        except Exception:  # python-engineio's decoder raises what it meets; the client's mistake, not ours
            log.debug("sid=%s sent an undecodable Engine.IO packet", self.socket and self.socket.sid)
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

    def _upgrade(self, socket: DirectSocket, pkt: eio_packet.Packet) -> None:
        """The probe exchange of an upgrade from polling, as python-engineio's websocket handler does it."""
        if self._probing == 2 and pkt.packet_type == eio_packet.PING and pkt.data == "probe":
            self.transport.write(packet_frame(eio_packet.Packet(eio_packet.PONG, data="probe")))
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            self._probing = 1
        elif self._probing == 1 and pkt.packet_type == eio_packet.UPGRADE and not socket.closing and not socket.closed:
            self._probing = 0
            self._cancel_timer()
            socket.attach(self)
        else:
            log.info("sid=%s: failed websocket upgrade (%s)", socket.sid, eio_packet.packet_names[pkt.packet_type])
            self.close(POLICY)

    def _fail(self, code: int, what: str) -> None:
        log.info("sid=%s sent %s; closing its websocket", self.socket and self.socket.sid, what)
        self.close(code)

    def _upgrade_overdue(self) -> None:
        self._timer = None
        if self._probing:
            self._fail(POLICY, "no upgrade in time")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self, code: int = NORMAL) -> None:
        """Send a close frame and end the connection (the session ends with it).

        Our side of the TCP connection is shut after the frame; the client's is read (and dropped)
        until it closes it, so that nothing it still sends turns into a reset that could lose the
        close frame. A client that neither reads nor closes is cut off after `CLOSE_SECONDS`.
        """
        if self.closed:
            return
        transport = self.transport
        if transport.is_closing():  # aborted (a client that does not read): nothing more to say
            self._end()
            return
        transport.write(_close_frame(code))
        if transport.can_write_eof():
            transport.write_eof()
            transport.resume_reading()
            self._cancel_timer()
            self._timer = asyncio.get_running_loop().call_later(CLOSE_SECONDS, transport.abort)
        else:
            transport.close()
        self._end()

    def eof_received(self) -> bool | None:
        return False  # the client is done: close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._end()

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._inbox = None
        socket = self.socket
        if socket is None:
            return
        if self._probing:  # the upgrade failed: the session goes on polling
            socket.upgrading = False
        elif socket.conn is self:
            self._engine.start_background_task(self._close_session, socket)

    async def _close_session(self, socket: DirectSocket) -> None:
        """The session ends with its websocket, as python-engineio's websocket handler ends it."""
        await socket.close(wait=False, abort=True, reason=self._engine.reason.TRANSPORT_CLOSE)
        if self._engine.sockets.get(socket.sid) is socket:
            del self._engine.sockets[socket.sid]


class SocketSite(web.TCPSite):
    """aiohttp's TCP site, with every connection read first by a `Front`."""

    def __init__(self, runner: web.BaseRunner, engine: PushEngine, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(runner, *args, **kwargs)
        self._engine = engine
        self._path = path

    async def start(self) -> None:
        await web.BaseSite.start(self)
        http = self._runner.server
        if http is None:
            raise RuntimeError("Call runner.setup() before starting a site")
        self._server = await asyncio.get_running_loop().create_server(
            functools.partial(Front, http, self._engine, self._path),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
