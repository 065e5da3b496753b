"""The servers of benchmarks/codecs.py: one websocket codec each, the least code around it, told what to do on stdin.

`python -m benchmarks.codec_servers CODEC` listens on a free loopback port and prints `port N`. Every
connection is held open and counted; a text message `end` is answered with `end` (the client's mark that
everything it sent before was parsed). Commands, one a line, each answered with one line:

- `count`: the number of open websocket connections;
- `cpu`: this process's CPU time so far (s);
- `fanout K`: K pushes, one per step of the event loop, each written to every connection; answers the
  CPU time the pushes took (s).

Each codec is driven the way its library means it to be for a server that pushes one message to many.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any, cast

PATH = "/socket.io/"
PAYLOAD = (  # a Linen-like push as Socket.IO frames it, ~500 bytes
    b'42["new_msg",{"channel_id":"3a1f6c3e-5b7d-4c9a-8f2e-1d0b9c8a7e6f",'
    b'"thread_id":"9c8b7a6f-5e4d-4c3b-2a1f-0e9d8c7b6a5f","message_id":"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",'
    b'"imitation_id":"imitation-1733227200000","is_thread":false,"is_reply":true,'
    b'"message":"{\\"body\\":\\"Deploy finished: 42 services green. Next window Thursday 14:00 UTC; ping #ops '
    b'if anything looks off, and keep an eye on the queue depth dashboards until Friday evening, thanks all!\\",'
    b'\\"author\\":\\"u-1234\\"}","seq":1}]'
)
END = "end"

Fanout = Callable[[bytes], None]  # writes one text message to every connection
Made = tuple[Callable[[], Any], Fanout, Callable[[], int]]  # connection factory, fan-out, connection count


def _ours() -> Made:
    """sio-push's codec: `frames.Parser` per connection; a push is framed once, then written to each."""
    from sio_push.transport.frames import Parser, Ping, ws_frame
    from sio_push.transport.handshake import accept_response, parse_handshake

    conns: set[Conn] = set()

    class Conn(asyncio.Protocol):
        __slots__ = ("head", "parser", "transport")

        def __init__(self) -> None:
            self.transport = cast(asyncio.Transport, None)
            self.head: bytearray | None = bytearray()
            self.parser = Parser(1 << 20)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            if self.head is not None:
                self.head += data
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    return
                handshake = parse_handshake(bytes(self.head[:end]), PATH)
                if handshake is None:
                    self.transport.close()
                    return
                self.transport.write(accept_response(handshake.key))
                conns.add(self)
                data, self.head = bytes(self.head[end + 4 :]), None
            for event in self.parser.receive_data(data):
                if event == END:
                    self.transport.write(ws_frame(END.encode()))
                elif type(event) is Ping:
                    self.transport.write(self.parser.data_to_send())

        def connection_lost(self, exc: Exception | None) -> None:
            conns.discard(self)

    def fanout(payload: bytes) -> None:
        frame = ws_frame(payload)
        for conn in conns:
            conn.transport.write(frame)

    return Conn, fanout, lambda: len(conns)


def _websockets() -> Made:
    """websockets' sans-I/O `ServerProtocol` per connection, fed by a small asyncio protocol."""
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    conns: set[Conn] = set()

    class Conn(asyncio.Protocol):
        __slots__ = ("protocol", "transport")

        def __init__(self) -> None:
            self.transport = cast(asyncio.Transport, None)
            self.protocol = ServerProtocol(max_size=1 << 20)

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            protocol = self.protocol
            protocol.receive_data(data)
            for event in protocol.events_received():
                if isinstance(event, Request):
                    protocol.send_response(protocol.accept(event))
                    conns.add(self)
                elif isinstance(event, Frame) and event.opcode is Opcode.TEXT and bytes(event.data).decode() == END:
                    protocol.send_text(END.encode())
            self.flush()

        def flush(self) -> None:
            for chunk in self.protocol.data_to_send():
                self.transport.write(chunk)

        def connection_lost(self, exc: Exception | None) -> None:
            conns.discard(self)

    def fanout(payload: bytes) -> None:
        for conn in conns:
            conn.protocol.send_text(payload)
            conn.flush()

    return Conn, fanout, lambda: len(conns)


def _picows() -> Made:
    """picows: its own (Cython) protocol per connection, with a minimal listener; `send` per connection."""
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    transports: set[WSTransport] = set()

    class Listener(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            transports.add(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT and frame.get_payload_as_utf8_text() == END:
                transport.send(WSMsgType.TEXT, END.encode())

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            transports.discard(transport)

    def fanout(payload: bytes) -> None:
        for transport in transports:
            transport.send(WSMsgType.TEXT, payload)

    return Listener, fanout, lambda: len(transports)


CODECS = {"ours": _ours, "websockets": _websockets, "picows": _picows, "picows-2k": _picows}
# picows reads into a buffer of its own per connection, 16 KiB by default: picows-2k is the smallest it takes
PICOWS_BUFFER = {"picows": 16 * 1024, "picows-2k": 2048}


async def serve(codec: str) -> None:
    factory, fanout, count = CODECS[codec]()
    loop = asyncio.get_running_loop()
    if codec in PICOWS_BUFFER:
        from picows import ws_create_server

        server = cast(
            asyncio.Server,
            await ws_create_server(
                lambda request: factory(), "127.0.0.1", 0, read_buffer_init_size=PICOWS_BUFFER[codec]
            ),
        )
    else:
        server = await loop.create_server(factory, "127.0.0.1", 0)
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    while line := (await commands.readline()).decode().split():
        if line[0] == "count":
            print(count(), flush=True)
        elif line[0] == "cpu":
            print(time.process_time(), flush=True)
        elif line[0] == "fanout":
            started = time.process_time()
            for _ in range(int(line[1])):
                fanout(PAYLOAD)
                await asyncio.sleep(0)  # one push per step, as pushes arrive
            print(time.process_time() - started, flush=True)
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
