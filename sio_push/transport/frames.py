"""A sans-I/O RFC 6455 codec for the server side: bytes in, events and the bytes to answer with out.

`Parser.receive_data(data)` returns what the client's bytes completed: messages (`str` for text, already
checked as UTF-8, `bytes` for binary), `Ping`, `Pong`, `Close`, or a `ProtocolError` carrying the close
code to use. The answers the protocol requires (a pong to each ping, the close frame) are queued for
`data_to_send()`; after a close, either side's, the parser reads nothing more. Nothing here does I/O, so
it is tested with bytes alone (tests/test_frames.py); `transport.protocol.Connection` drives it.

Messages are handed over as the bare `str` / `bytes` rather than wrapped: a client's pongs and events
are nearly all the traffic, and this is their path.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA  # opcodes
# Close codes (RFC 6455 7.4.1)
NORMAL, PROTOCOL_ERROR, INVALID_DATA, POLICY, TOO_BIG, INTERNAL_ERROR = 1000, 1002, 1007, 1008, 1009, 1011
NO_STATUS = 1005  # the code of a close frame that carries none; never sent
GOING_AWAY = 1001  # the server closes a socket whose token expired: the client reconnects with a fresh one
MAX_FRAGMENTS = 1024  # frames of one message
MAX_CONTROL = 125  # payload bytes of a control frame


def ws_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One unmasked, final websocket frame (server to client) carrying `payload`, uncompressed.

    Uncompressed frames are valid even where permessage-deflate was negotiated (RSV1 unset).
    """
    first = 0x80 | opcode
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 1 << 16:
        header = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + size.to_bytes(8, "big")
    return header + payload


def close_frame(code: int) -> bytes:
    return ws_frame(code.to_bytes(2, "big"), CLOSE)


def _valid_close_code(code: int) -> bool:
    """Whether a client may send `code` (RFC 6455 7.4.1, 7.4.2: 1004-1006 and 1015 are reserved)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The client closed, with `code` (NO_STATUS if it gave none) and `reason`; the answer is queued."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The client broke the protocol (`what`); a close frame with `code` is queued."""

    code: int
    what: str


Event = str | bytes | Ping | Pong | Close | ProtocolError


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    # XOR as two big integers: far faster in CPython than a loop over the bytes.
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


class Parser:
    """The frames of one client connection: `receive_data` as bytes arrive, then `data_to_send`.

    `max_size` bounds a message (and so each frame): a longer one is refused from its header with
    TOO_BIG, before its payload is read.
    """

    __slots__ = ("_buffer", "_fragment_bytes", "_fragments", "_opcode", "_out", "closed", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.closed = False  # a close frame was received or sent: nothing more is read
        self._buffer: bytearray | None = None  # the start of a frame not complete yet
        self._fragments: list[bytes] | None = None  # of a fragmented message, whose opcode is `_opcode`
        self._opcode = TEXT
        self._fragment_bytes = 0
        self._out: list[bytes] = []

    def data_to_send(self) -> bytes:
        """The frames the protocol answers with (pongs, the close frame), once each."""
        out, self._out = self._out, []
        return b"".join(out)

    def send_close(self, code: int = NORMAL) -> None:
        """Queue our close frame, unless a close was already sent or answered; nothing is read after it."""
        if not self.closed:
            self.closed = True
            self._buffer = self._fragments = None
            self._out.append(close_frame(code))

    def receive_data(self, data: bytes) -> list[Event]:
        """The events the frames completed by `data` make, in order."""
        events: list[Event] = []
        if self.closed:
            return events  # read on and dropped until the client closes its side too
        if self._buffer is not None:
            self._buffer += data
            buf: bytes | bytearray = self._buffer
        else:
            buf = data
        pos, size = 0, len(buf)
        limit = self.max_size
        while size - pos >= 2:
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
            if first & 0x70 or not second & 0x80 or length >> 63 or (first & 0x08 and length > MAX_CONTROL):
                self._fail(events, PROTOCOL_ERROR, "an unmasked frame, reserved bits, or a long control frame")
                return events
            if length > limit:
                self._fail(events, TOO_BIG, f"a frame of {length} bytes")
                return events
            end = start + 4 + length
            if size < end:
                break
            payload = _unmask(buf[start + 4 : end], buf[start : start + 4])
            pos = end
            if first == 0x81 and self._fragments is None:  # a whole text message: nearly all the traffic
                try:
                    events.append(payload.decode())
                except UnicodeDecodeError:
                    self._fail(events, INVALID_DATA, "text that is not UTF-8")
            else:
                self._frame(events, first, payload)
            if self.closed:
                return events
        if pos == size:
            self._buffer = None
        elif buf is self._buffer:
            del self._buffer[:pos]
        else:
            self._buffer = bytearray(buf[pos:])
        return events

    def _frame(self, events: list[Event], first: int, payload: bytes) -> None:
        fin, opcode = first & 0x80, first & 0x0F
        if opcode >= CLOSE:
            if not fin:
                self._fail(events, PROTOCOL_ERROR, "a fragmented control frame")
            elif opcode == PING:
                self._out.append(ws_frame(payload, PONG))
                events.append(Ping(payload))
            elif opcode == PONG:
                events.append(Pong(payload))
            elif opcode == CLOSE:
                self._close(events, payload)
            else:
                self._fail(events, PROTOCOL_ERROR, f"opcode {opcode}")
            return
        fragments = self._fragments
        if opcode == CONTINUATION:
            if fragments is None:
                self._fail(events, PROTOCOL_ERROR, "a continuation of nothing")
                return
            fragments.append(payload)
            self._fragment_bytes += len(payload)
        elif opcode in (TEXT, BINARY):
            if fragments is not None:
                self._fail(events, PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            if fin:
                self._message(events, opcode, payload)
                return
            self._fragments = fragments = [payload]
            self._opcode = opcode
            self._fragment_bytes = len(payload)
        else:
            self._fail(events, PROTOCOL_ERROR, f"opcode {opcode}")
            return
        if self._fragment_bytes > self.max_size or len(fragments) > MAX_FRAGMENTS:
            self._fail(events, TOO_BIG, "a fragmented message too big or in too many frames")
        elif fin:
            self._fragments = None
            self._message(events, self._opcode, b"".join(fragments))

    def _message(self, events: list[Event], opcode: int, payload: bytes) -> None:
        if opcode == BINARY:
            events.append(payload)
            return
        try:
            events.append(payload.decode())
        except UnicodeDecodeError:
            self._fail(events, INVALID_DATA, "text that is not UTF-8")

    def _close(self, events: list[Event], payload: bytes) -> None:
        """A client's close frame: answered with its own code if it is valid (RFC 6455 5.5.1, 7.4)."""
        if not payload:
            self.send_close(NORMAL)
            events.append(Close(NO_STATUS, ""))
            return
        code = int.from_bytes(payload[:2], "big")
        if len(payload) == 1 or not _valid_close_code(code):
            self._fail(events, PROTOCOL_ERROR, "a close frame with no valid code")
            return
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            self._fail(events, INVALID_DATA, "a close reason that is not UTF-8")
            return
        self.send_close(code)
        events.append(Close(code, reason))

    def _fail(self, events: list[Event], code: int, what: str) -> None:
        self.send_close(code)
        events.append(ProtocolError(code, what))
