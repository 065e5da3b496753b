"""What a client sends python-engineio, checked before python-engineio reads it: polling bodies read
whole and bounded, and websocket messages it could not decode dropped as bad input (not tracebacks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet

if TYPE_CHECKING:
    from .socket import DirectSocket


async def read_body(stream: Any, length: int, limit: int) -> bytes:
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


class CheckedWebSocket:
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
