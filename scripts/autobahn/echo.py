"""A websocket echo server that speaks through sio-push's own RFC 6455 codec, for Autobahn|Testsuite.

Every text or binary message is sent back as it came; pings are answered and closes ended as the codec
(`sio_push.transport.frames.Parser`: bytes in, events and the bytes to answer with out) says. Run it
alone to point another fuzzing client at it:

    .venv/bin/python scripts/autobahn/echo.py --host 0.0.0.0 --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import cast

from sio_push.transport.frames import BINARY, TEXT, Close, Parser, Ping, Pong, ProtocolError, ws_frame
from sio_push.transport.handshake import accept_response

CODEC = "sio_push.transport.frames.Parser"

log = logging.getLogger("autobahn.echo")

MAX_SIZE = 16 * 1024 * 1024  # the largest message of cases 1-7 and 10 is 64 KiB
MAX_HEAD = 16 * 1024
CLOSE_SECONDS = 5.0  # for the client to close its side after the close handshake


def accept(head: bytes) -> bytes | None:
    """The 101 answer to a websocket handshake for any path, or None when `head` is not one.

    sio-push's `parse_handshake` takes only Engine.IO's handshakes; its answer is used as it is.
    """
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("GET ") or not lines[0].endswith(" HTTP/1.1"):
        return None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key", "")
    if headers.get("upgrade", "").lower() != "websocket" or headers.get("sec-websocket-version") != "13" or not key:
        return None
    return accept_response(key)


class Echo(asyncio.Protocol):
    """One connection: the request head, then frames through `frames.Parser`, every message echoed."""

    def __init__(self) -> None:
        self.transport = cast(asyncio.Transport, None)
        self.head: bytearray | None = bytearray()  # None once the handshake is done
        self.parser = Parser(MAX_SIZE)
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > MAX_HEAD:
                    self.transport.close()
                return
            answer = accept(bytes(self.head[:end]))
            if answer is None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.close()
                return
            self.transport.write(answer)
            data, self.head = bytes(self.head[end + 4 :]), None
            if not data:
                return
        closed = self.parser.closed
        for event in self.parser.receive_data(data):
            if isinstance(event, str):
                self.transport.write(ws_frame(event.encode(), TEXT))
            elif isinstance(event, bytes):
                self.transport.write(ws_frame(event, BINARY))
            elif isinstance(event, Ping):
                # The pong goes out now, before the echo of a message the ping came in the middle of
                # (as transport.protocol.Connection does it): data_to_send() holds only the codec's answers.
                self.transport.write(self.parser.data_to_send())
            elif isinstance(event, ProtocolError):
                log.info("protocol error: %s (closing with %d)", event.what, event.code)
            elif not isinstance(event, Pong | Close):
                raise TypeError(event)
        out = self.parser.data_to_send()  # the close frame, after the echoes it follows
        if out:
            self.transport.write(out)
        if self.parser.closed and not closed:
            self._shut()

    def _shut(self) -> None:
        """After the close frame: our side of the TCP connection ends; the client's is awaited, bounded."""
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.timer = asyncio.get_running_loop().call_later(CLOSE_SECONDS, self.transport.abort)
        else:
            self.transport.close()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


async def serve(host: str, port: int) -> asyncio.Server:
    return await asyncio.get_running_loop().create_server(Echo, host, port)


async def _main(host: str, port: int) -> None:
    server = await serve(host, port)
    log.info("echo server on ws://%s:%d/", host, server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(_main(args.host, args.port))
