"""The websocket path of `sio_push.transport`: handshakes, frames, upgrades, and what it hands to aiohttp.

A raw client writes the bytes itself, so that every frame a browser could send (fragments, control
frames, bad masks, bad UTF-8, oversized lengths) is tried against the real server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from sio_push.keys import SOCKETS
from sio_push.shims.engineio import DirectSocket
from sio_push.transport.handshake import parse_handshake
from sio_push.transport.protocol import Connection

from .conftest import Server, make_token

TIMEOUT = 5.0
PATH = "/socket.io/"


def _frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """A client frame: masked (as RFC 6455 requires of clients) unless told otherwise."""
    size = len(payload)
    if size < 126:
        length = bytes((size | (0x80 if masked else 0),))
    elif size < 1 << 16:
        length = bytes((126 | (0x80 if masked else 0),)) + size.to_bytes(2, "big")
    else:
        length = bytes((127 | (0x80 if masked else 0),)) + size.to_bytes(8, "big")
    head = bytes(((0x80 if fin else 0) | rsv | opcode,)) + length
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A websocket client writing its own bytes to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, server: Server, query: str = "EIO=4&transport=websocket", **headers: str) -> RawWs:
        ws, status, _ = await cls.handshake(server, query, **headers)
        assert status == 101
        return ws

    @classmethod
    async def handshake(
        cls, server: Server, query: str, key: str | None = None, **headers: str
    ) -> tuple[RawWs, int, dict[str, str]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {PATH}?{query} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                answer[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        if status == 101:
            expected = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            assert answer["sec-websocket-accept"] == expected.decode()
        return cls(reader, writer), status, answer

    def send(self, data: str | bytes) -> None:
        self.writer.write(_frame(0x1, data.encode()) if isinstance(data, str) else _frame(0x2, data))

    def raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def frame(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload). Server frames are never masked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        assert not second & 0x80
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), TIMEOUT)

    async def text(self, skip_pings: bool = True) -> str:
        """The next text message, answering the server's pings on the way."""
        while True:
            opcode, payload = await self.frame()
            assert opcode == 0x1, (opcode, payload)
            if skip_pings and payload == b"2":
                self.send("3")
                continue
            return payload.decode()

    async def ack(self) -> tuple[int, Any]:
        """The next Socket.IO ack (skipping events): its id and arguments."""
        while True:
            text = await self.text()
            if text.startswith("43"):
                ack_id, _, args = text[2:].partition("[")
                return int(ack_id), json.loads("[" + args)

    async def closed_with(self) -> int:
        """The code of the server's close frame, once the server has also closed the connection."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big")
                assert await asyncio.wait_for(self.reader.read(), TIMEOUT) == b""
                return code

    async def connect(self, sub: str = "wes") -> str:
        """Engine.IO open and Socket.IO CONNECT; the Engine.IO sid."""
        opened = json.loads((await self.text())[1:])
        self.send("40" + json.dumps({"token": make_token(sub, rooms=["room:*"])}))
        assert (await self.text()).startswith("40{")
        return str(opened["sid"])

    def close(self) -> None:
        self.writer.close()


async def _until(predicate: Callable[[], Any], what: str, wait: float = TIMEOUT) -> None:
    """Wait (bounded) for server-side state that no event announces."""
    deadline = time.monotonic() + wait
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _socket(server: Server, eio_sid: str) -> DirectSocket:
    socket = server.app[SOCKETS].server.eio.sockets[eio_sid]
    assert isinstance(socket, DirectSocket)
    return socket


async def test_websocket_clients_are_served_by_a_connection(server, connect):
    client = await connect(server, "cal", transports=["websocket"])
    await client.join("room:lobby:c1")
    eio_sid = server.app[SOCKETS].server.manager.eio_sid_from_sid(client.sio.get_sid("/"), "/")
    socket = _socket(server, eio_sid)
    assert isinstance(socket.conn, Connection)
    status, _ = await server.push("/api/message", channel_id="c1", message="hi")
    assert status == 200
    assert (await client.next_msg())["message"] == "hi"
    await client.sio.disconnect()
    await _until(lambda: eio_sid not in server.app[SOCKETS].server.eio.sockets, "the session to end")


async def test_socketio_client_upgrading_from_polling_moves_to_a_connection(server, node_clients):
    client = await node_clients(
        server.url, make_token("ugo", rooms=["room:*"]), "room:lobby:c1", env={"TRANSPORTS": "polling,websocket"}
    )
    await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    sockets = server.app[SOCKETS].server.eio.sockets
    await _until(lambda: any(isinstance(s.conn, Connection) for s in sockets.values()), "the upgrade")
    assert len(sockets) == 1
    for n in range(3):
        assert (await server.push("/api/message", channel_id="c1", message=f"m{n}"))[0] == 200
    for n in range(3):
        assert (await client.next("new_msg"))["args"][0]["message"] == f"m{n}"


async def test_handshake_opens_an_engineio_session(server):
    ws = await RawWs.open(server)
    opened = json.loads((await ws.text())[1:])
    assert opened["upgrades"] == []
    assert opened["pingInterval"] > 0 and opened["pingTimeout"] > 0 and opened["maxPayload"] > 0
    assert opened["sid"] in server.app[SOCKETS].server.eio.sockets
    ws.close()


async def test_fragmented_messages_and_control_frames(server):
    ws = await RawWs.open(server)
    await ws.connect()
    packet = b'420["join","room:lobby:c1"]'
    ws.raw(_frame(0x1, packet[:3], fin=False) + _frame(0x9, b"ping!") + _frame(0x0, packet[3:10], fin=False))
    ws.raw(_frame(0x0, packet[10:]))
    assert await ws.frame() == (0xA, b"ping!")  # a pong, between the fragments
    assert await ws.ack() == (0, [{"ok": True, "room": "room:lobby:c1"}])
    ws.raw(_frame(0xA, b"unasked"))  # an unsolicited pong is ignored
    ws.raw(_frame(0x8, (1000).to_bytes(2, "big")))
    assert await ws.closed_with() == 1000


async def test_many_packets_in_one_write_are_handled_in_order(make_server):
    server = await make_server(events_per_second=1000, max_rooms_per_socket=1000)
    ws = await RawWs.open(server)
    await ws.connect()
    count = 200  # more than the connection takes before it stops reading for a while
    ws.raw(b"".join(_frame(0x1, f'42{n}["join","room:lobby:c{n}"]'.encode()) for n in range(count)))
    for n in range(count):
        assert await ws.ack() == (n, [{"ok": True, "room": f"room:lobby:c{n}"}])


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (_frame(0x1, b"40", masked=False), 1002),
        (_frame(0x1, b"40", rsv=0x40), 1002),
        (_frame(0x3, b"x"), 1002),
        (_frame(0x0, b"x"), 1002),
        (_frame(0x9, b"x" * 126), 1002),
        (_frame(0x9, b"x", fin=False), 1002),
        (_frame(0x1, b"a", fin=False) + _frame(0x1, b"b"), 1002),
        (_frame(0x1, b"4\xff\xfe"), 1007),
        (bytes((0x81, 0xFF)) + (1 << 40).to_bytes(8, "big"), 1009),
    ],
    ids=[
        "unmasked",
        "reserved-bit",
        "reserved-opcode",
        "orphan-continuation",
        "long-control",
        "fragmented-control",
        "interleaved-message",
        "bad-utf8",
        "huge-length",
    ],
)
async def test_protocol_errors_close_with_their_code_and_the_session_ends(server, bad, code):
    ws = await RawWs.open(server)
    eio_sid = await ws.connect()
    ws.raw(bad)
    assert await ws.closed_with() == code
    await _until(lambda: eio_sid not in server.app[SOCKETS].server.eio.sockets, "the session to end")
    assert (await server.push("/api/message", channel_id="c1", message="still serving"))[0] == 200


async def test_oversized_fragmented_message_is_refused(make_server):
    server = await make_server(max_socket_message_bytes=1000)
    ws = await RawWs.open(server)
    await ws.connect()
    ws.raw(_frame(0x1, b"4" * 600, fin=False) + _frame(0x0, b"2" * 600))
    assert await ws.closed_with() == 1009


async def test_undecodable_and_unknown_engineio_packets_keep_the_connection(server):
    ws = await RawWs.open(server)
    await ws.text()
    ws.send("")
    ws.send("x")
    ws.send("9")
    ws.send("40" + json.dumps({"token": make_token("una", rooms=["room:*"])}))
    assert (await ws.text()).startswith("40{")


async def test_engineio_close_packet_ends_the_session(server):
    ws = await RawWs.open(server)
    eio_sid = await ws.connect()
    ws.send("1")
    assert await ws.closed_with() == 1000
    await _until(lambda: eio_sid not in server.app[SOCKETS].server.eio.sockets, "the session to end")


async def test_server_disconnect_closes_the_connection(server, connect):
    client = await connect(server, "dee", transports=["websocket"])
    sid = client.sio.get_sid("/")
    await server.app[SOCKETS].server.disconnect(sid)
    await _until(lambda: not client.sio.connected, "the client to see the disconnect")
    await _until(lambda: not server.app[SOCKETS].server.eio.sockets, "the session to end")


async def test_a_client_that_stops_answering_pings_is_dropped(make_server):
    server = await make_server(ping_interval=1, ping_timeout=1)
    ws = await RawWs.open(server)
    eio_sid = await ws.connect()
    assert await ws.frame() == (0x1, b"2")
    ws.send("3")
    assert await ws.frame() == (0x1, b"2")  # not answered: dropped after the ping timeout
    opcode, _ = await ws.frame()
    while opcode == 0x1:  # the Engine.IO CLOSE packet, maybe more
        opcode, _ = await ws.frame()
    assert opcode == 0x8
    await _until(lambda: eio_sid not in server.app[SOCKETS].server.eio.sockets, "the session to end")


async def _polling_session(server: Server) -> DirectSocket:
    """A new Engine.IO session on long polling, as its first GET opens it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {PATH}?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    body = response.partition(b"\r\n\r\n")[2]
    return _socket(server, json.loads(body[1:])["sid"])


async def test_upgrade_from_polling_over_a_new_connection(server):
    socket = await _polling_session(server)
    ws = await RawWs.open(server, f"EIO=4&transport=websocket&sid={socket.sid}")
    ws.send("2probe")
    assert await ws.text() == "3probe"
    assert socket.upgrading and not socket.upgraded
    ws.send("5")
    await _until(lambda: socket.upgraded, "the upgrade")
    assert isinstance(socket.conn, Connection) and not socket.upgrading
    ws.send("40" + json.dumps({"token": make_token("upa", rooms=["room:*"])}))
    answer = await ws.text()
    while answer == "6":  # the NOOP that ends a pending poll, sent on if no poll took it
        answer = await ws.text()
    assert answer.startswith("40{")


async def test_failed_upgrade_leaves_the_session_polling(server):
    socket = await _polling_session(server)
    ws = await RawWs.open(server, f"EIO=4&transport=websocket&sid={socket.sid}")
    ws.send("2nope")
    assert await ws.closed_with() == 1008
    await _until(lambda: not socket.upgrading, "the upgrade to be given up")
    assert not socket.upgraded and not socket.closed


async def test_frames_after_a_failed_probe_in_the_same_write_are_dropped(server, caplog):
    socket = await _polling_session(server)
    ws = await RawWs.open(server, f"EIO=4&transport=websocket&sid={socket.sid}")
    ws.raw(_frame(0x1, b"2nope") + _frame(0x1, b"5") + _frame(0x1, b"2probe"))
    assert await ws.closed_with() == 1008
    await _until(lambda: not socket.upgrading, "the upgrade to be given up")
    assert not socket.upgraded and not socket.closed and socket.conn is None
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("EIO=4&transport=websocket&sid=nosuchsession", {}, 400),
        ("EIO=3&transport=websocket", {}, 400),
        ("EIO=4&transport=websocket", {"Origin": "http://elsewhere.example"}, 400),
    ],
    ids=["unknown-sid", "old-protocol", "foreign-origin"],
)
async def test_handshakes_it_does_not_take_get_aiohttps_answer(server, query, headers, status):
    ws, got, _ = await RawWs.handshake(server, query, **headers)
    assert got == status
    ws.close()


async def test_same_origin_and_configured_origins_are_taken(make_server):
    # Unset PUSH_CORS_ORIGINS: the server's own origin (scheme, host and port of the request) only.
    server = await make_server()
    ws = await RawWs.open(server, Origin=server.url)
    await ws.connect()
    ws.close()
    for foreign in ("http://other.example", server.url.replace("127.0.0.1", "localhost"), server.url + "1"):
        ws, status, _ = await RawWs.handshake(server, "EIO=4&transport=websocket", Origin=foreign)
        assert status == 400, foreign
        ws.close()

    configured = await make_server(cors_origins=("http://app.example",))
    ws = await RawWs.open(configured, Origin="http://app.example")
    await ws.connect()
    ws.close()
    ws, status, _ = await RawWs.handshake(configured, "EIO=4&transport=websocket", Origin="http://other.example")
    assert status == 400
    ws.close()


async def test_bad_websocket_key_is_aiohttps_to_refuse(server):
    ws, status, _ = await RawWs.handshake(server, "EIO=4&transport=websocket", key="not-base64!")
    assert status == 400
    ws.close()


async def test_http_requests_go_to_aiohttp_however_they_arrive(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for piece in (b"G", b"ET /api/hea", b"lth HTTP/1.1\r\nHost: x\r\n", b"\r\n"):  # one request in pieces
        writer.write(piece)
        await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"HTTP/1.1 200")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    await asyncio.wait_for(reader.readuntil(b"}"), TIMEOUT)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # the same connection
    rest = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert rest.startswith(b"HTTP/1.1 200")
    writer.close()


async def test_half_a_request_then_eof_harms_nothing(server):
    for partial in (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost:", b"POST /api/mess", b"\x16\x03\x01"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(partial)
        writer.write_eof()
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    ws = await RawWs.open(server)
    await ws.connect()
    ws.close()


def test_parse_handshake_takes_only_plain_engineio_handshakes():
    base = [
        "GET /socket.io/?EIO=4&transport=websocket&token=t HTTP/1.1",
        "Host: h",
        "Upgrade: WebSocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Origin: http://h",
    ]

    def parse(lines: list[str]) -> Any:
        return parse_handshake("\r\n".join(lines).encode(), PATH)

    handshake = parse(base)
    assert handshake is not None
    assert handshake.sid is None and handshake.query == "EIO=4&transport=websocket&token=t"
    assert handshake.headers == {"host": "h", "origin": "http://h"}
    assert parse([base[0].replace("EIO=4&", "EIO=4&sid=abc&"), *base[1:]]).sid == "abc"
    refused = [
        [base[0].replace("GET", "POST"), *base[1:]],
        [base[0].replace("HTTP/1.1", "HTTP/1.0"), *base[1:]],
        [base[0].replace("/socket.io/", "/other/"), *base[1:]],
        [base[0].replace("transport=websocket", "transport=polling"), *base[1:]],
        [base[0].replace("EIO=4", "EIO=3"), *base[1:]],
        [base[0] + "&j=1", *base[1:]],
        [base[0].replace("EIO=4&", "EIO=4&sid=a&sid=b&"), *base[1:]],
        [*base[:2], *base[3:]],  # no Upgrade
        [*base[:3], "Connection: keep-alive", *base[4:]],
        [*base[:4], "Sec-WebSocket-Key: c2hvcnQ=", *base[5:]],
        [*base[:5], "Sec-WebSocket-Version: 8", *base[6:]],
        [*base, "Origin: http://h"],  # twice
        [*base, " folded"],
        [*base, "Content-Length: 5"],
        [*base, "Transfer-Encoding: chunked"],
        [*base, "no colon"],
    ]
    for lines in refused:
        assert parse(lines) is None, lines


async def test_a_flood_of_empty_fragments_is_refused(server):
    ws = await RawWs.open(server)
    await ws.connect()
    ws.raw(_frame(0x1, b"4", fin=False) + _frame(0x0, b"", fin=False) * 2000)
    assert await ws.closed_with() == 1009


async def test_a_fragmented_message_of_exactly_the_limit_is_taken(make_server):
    server = await make_server(max_socket_message_bytes=1000)
    ws = await RawWs.open(server)
    await ws.connect()
    event = b'42["unheard","' + b"a" * (1000 - 16) + b'"]'
    assert len(event) == 1000
    ws.raw(_frame(0x1, event[:500], fin=False) + _frame(0x0, event[500:]))
    ws.send('420["join","room:lobby:c1"]')
    assert await ws.ack() == (0, [{"ok": True, "room": "room:lobby:c1"}])


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (b"", 1000),
        ((1000).to_bytes(2, "big") + b"bye", 1000),
        ((4000).to_bytes(2, "big"), 4000),
        (b"\x03", 1002),
        ((1005).to_bytes(2, "big"), 1002),
        ((999).to_bytes(2, "big"), 1002),
        ((1001).to_bytes(2, "big") + b"\xff", 1007),
    ],
    ids=["no-code", "normal", "private", "one-byte", "reserved-1005", "below-range", "bad-reason"],
)
async def test_client_close_frames_are_answered_by_the_rules(server, payload, answer):
    ws = await RawWs.open(server)
    await ws.connect()
    ws.raw(_frame(0x8, payload))
    assert await ws.closed_with() == answer


async def test_a_long_control_frame_is_refused_from_its_header(server):
    ws = await RawWs.open(server)
    await ws.connect()
    ws.raw(bytes((0x89, 0x80 | 126)) + (60000).to_bytes(2, "big"))  # a ping declaring 60,000 bytes, none sent
    assert await ws.closed_with() == 1002


async def test_an_upgrade_that_never_completes_is_given_up(make_server):
    server = await make_server(ping_interval=1, ping_timeout=1)
    socket = await _polling_session(server)
    ws = await RawWs.open(server, f"EIO=4&transport=websocket&sid={socket.sid}")
    opened = time.monotonic()
    assert await asyncio.wait_for(ws.closed_with(), 10) == 1008
    assert 1.9 <= time.monotonic() - opened < 6  # given up after the ping interval plus timeout (2 s)
    assert not socket.upgrading


async def test_a_request_head_that_never_ends_is_dropped(make_server):
    server = await make_server(head_timeout_seconds=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()


async def test_line_feeds_alone_go_to_aiohttp_at_once(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\nHost: x\n")
    assert b" 400 " in await asyncio.wait_for(reader.readline(), TIMEOUT)
    writer.close()


async def test_a_client_that_pings_but_never_reads_is_cut_off(make_server):
    server = await make_server(events_per_second=100_000)  # a frame budget out of the way of the flood
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=1024)
    ws = RawWs(reader, writer)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    eio_sid = await ws.connect()
    writer.transport.pause_reading()  # from here on it reads nothing
    pings = _frame(0x9, b"p" * 125) * 1000
    with pytest.raises(ConnectionError):
        for _ in range(400):  # 50 MB of pings at most; the server gives up after 8 MiB of unread pongs
            writer.write(pings)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
    await _until(lambda: eio_sid not in server.app[SOCKETS].server.eio.sockets, "the session to end")
