"""The websocket path's limits and hand-offs, seen from a client's socket: slow readers, message size,
request heads, and the upgrade over a reused keep-alive connection that aiohttp serves."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path
from typing import cast

import aiohttp
import pytest

from .conftest import Server, make_token
from .eio_client import EioClient

TIMEOUT = 5.0
MIB = 1024 * 1024
DEFAULT_MAX_BUFFER = 8 * MIB  # README: "a client that stops reading is cut off at 8 MiB unsent"


def _masked(text: str, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A client's frame (masked, as RFC 6455 requires); a text frame unless told otherwise."""
    payload = text.encode()
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _frame(reader: asyncio.StreamReader, wait: float = TIMEOUT) -> tuple[int, bytes]:
    """The next server frame: (opcode, payload)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), wait)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(size), wait)


def _handshake(port: int, *extra: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        + "".join(line + "\r\n" for line in extra)
        + "\r\n"
    ).encode()


async def _head(reader: asyncio.StreamReader) -> dict[str, str]:
    """A response head: its status line under "" and its headers by lower-cased name."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status, *lines = raw.decode("latin-1").strip().split("\r\n")
    head = {"": status}
    for line in lines:
        name, _, value = line.partition(":")
        head[name.strip().lower()] = value.strip()
    return head


async def _socketio(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *rooms: str) -> dict:
    """On an open websocket: Engine.IO open, Socket.IO CONNECT, and a join of each room (acks awaited);
    the CONNECT reply's data (`sid`, `pid`)."""
    opcode, opened = await _frame(reader)
    assert opcode == 0x1 and opened.startswith(b"0{")
    writer.write(_masked("40" + json.dumps({"token": make_token("kim", rooms=["room:*"])})))
    _, reply = await _frame(reader)
    assert reply.startswith(b"40{")
    for n, room in enumerate(rooms):
        writer.write(_masked(f"42{n}" + json.dumps(["join", room])))
        while not (await _frame(reader))[1].startswith(f"43{n}".encode()):
            pass
    return dict(json.loads(reply[2:]))


async def _next_msg(reader: asyncio.StreamReader) -> object:
    """The payload of the next `new_msg`, skipping other frames (presence, pings: none goes unanswered
    long enough to matter here)."""
    while True:
        opcode, payload = await _frame(reader)
        if opcode == 0x1 and payload.startswith(b'42["new_msg"'):
            return json.loads(payload[2:])[1]


def _send_buffer_max() -> int:
    """The most the kernel lets a loopback sender buffer (tcp_wmem's maximum)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return 16 * MIB


async def test_a_client_that_never_reads_is_cut_off_while_pushes_flow_then_recovers(server: Server, connect):
    reader_ok = await connect(server, "ray")
    await reader_ok.join("room:lobby:flow")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep the kernel's share small
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(_handshake(server.port))
    assert (await _head(reader))[""].startswith("HTTP/1.1 101")
    session = await _socketio(reader, writer, "room:lobby:flow")
    transport = cast(asyncio.Transport, writer.transport)
    transport.pause_reading()  # from here on it reads nothing

    # Enough to pass the limit with what the kernel holds on both sides (the receiver's share is small).
    blob = "x" * (MIB - 1024)
    kernel = _send_buffer_max() + sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    pushes = (DEFAULT_MAX_BUFFER + kernel) // len(blob) + 3
    for n in range(pushes):
        status, _ = await server.push("/api/channel", channel_id="flow", n=n, blob=blob)
        assert status == 200
    assert (await reader_ok.next_msg())["n"] == 0  # the others are served all along

    # Reading again, it finds its connection closed before every push reached it.
    transport.resume_reading()
    received: list[tuple[int, str]] = []  # (n, offset) of each new_msg that arrived whole
    deadline = time.monotonic() + 30
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        while time.monotonic() < deadline:
            opcode, payload = await _frame(reader)
            if opcode == 0x8:
                break
            if payload.startswith(b'42["new_msg"'):
                _, body, offset = json.loads(payload[2:])
                received.append((body["n"], offset))
        else:
            pytest.fail("still connected: the client was never cut off")
        await _frame(reader)  # after a close frame, the end of the connection
    writer.close()
    assert [n for n, _ in received] == list(range(len(received))) and len(received) < pushes
    for n in range(1, pushes):
        assert (await reader_ok.next_msg())["n"] == n

    # It reconnects with its session and the last offset it got: the rest arrives, in order.
    auth = {"token": make_token("kim", rooms=["room:*"]), "pid": session["pid"]}
    if received:
        auth["offset"] = received[-1][1]
    again = await EioClient.connect(server.url, auth)
    try:
        assert (again.sid, again.pid) == (session["sid"], session["pid"])
        missed = await again.messages(pushes - len(received), wait=30)  # megabytes: give a loaded machine time
        assert [payload["n"] for payload, _ in missed] == list(range(len(received), pushes))
    finally:
        await again.close()


async def test_a_message_over_64_kib_is_refused_with_1009(server: Server):
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
        opened = json.loads((await ws.receive(timeout=TIMEOUT)).data[1:])
        assert opened["maxPayload"] == 64 * 1024
        await ws.send_str("40" + json.dumps({"token": make_token("lou", rooms=["room:*"])}))
        assert (await ws.receive(timeout=TIMEOUT)).data.startswith("40{")
        fill = 64 * 1024 - len('42["unheard",""]')
        await ws.send_str('42["unheard","' + "a" * fill + '"]')  # exactly 64 KiB: taken
        await ws.send_str('420["join","user:lou"]')
        assert (await ws.receive(timeout=TIMEOUT)).data.startswith("430")  # still served
        await ws.send_str('42["unheard","' + "a" * (fill + 1) + '"]')  # one byte more: refused
        message = await ws.receive(timeout=TIMEOUT)
        while message.type == aiohttp.WSMsgType.TEXT:  # a ping or a presence event may come first
            message = await ws.receive(timeout=TIMEOUT)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1009
        await ws.close()


@pytest.mark.parametrize(
    "half",
    [b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n", b"POST /api/channel HTTP/1.1\r\nHo"],
    ids=["socketio-path", "push-api"],
)
async def test_a_connection_that_sends_half_a_request_head_is_closed_after_the_head_timeout(make_server, half):
    server = await make_server(head_timeout_seconds=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    writer.write(half)
    answer = await asyncio.wait_for(reader.read(), 2.5)  # the connection ends, perhaps after a 408
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    assert 0.4 <= time.monotonic() - started < 2.5
    writer.close()


async def test_an_upgrade_over_a_reused_keep_alive_connection_is_served_by_aiohttp(server: Server):
    # aiohttp's answers carry its Server header; sio-push's own 101 has none: that tells who answered.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await _head(reader)
    assert head[""].startswith("HTTP/1.1 200")
    await asyncio.wait_for(reader.readexactly(int(head["content-length"])), TIMEOUT)
    writer.write(_handshake(server.port))  # the same connection, as python-socketio's client does
    upgraded = await _head(reader)
    assert upgraded[""].startswith("HTTP/1.1 101") and "aiohttp" in upgraded.get("server", "")
    await _socketio(reader, writer, "room:lobby:ka")
    assert (await server.push("/api/channel", channel_id="ka", n=1))[0] == 200
    assert await _next_msg(reader) == {"channel_id": "ka", "n": 1}
    writer.close()

    fresh_reader, fresh_writer = await asyncio.open_connection("127.0.0.1", server.port)
    fresh_writer.write(_handshake(server.port))
    own = await _head(fresh_reader)
    assert own[""].startswith("HTTP/1.1 101") and "server" not in own
    fresh_writer.close()


async def _opened(server: Server, *extra: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, str]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(_handshake(server.port, *extra))
    head = await _head(reader)
    assert head[""].startswith("HTTP/1.1 101")
    return reader, writer, head


async def test_permessage_deflate_is_not_negotiated(server: Server):
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    reader, writer, head = await _opened(server, offer)
    assert "sec-websocket-extensions" not in head
    await _socketio(reader, writer, "room:lobby:z")
    assert (await server.push("/api/channel", channel_id="z", n=1))[0] == 200
    assert await _next_msg(reader) == {"channel_id": "z", "n": 1}  # read as plain frames, RSV1 clear
    writer.close()


async def _in_frames(server: Server, frames: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connected socket that sends one event split over `frames` frames (the last holding the rest)."""
    reader, writer, _ = await _opened(server)
    await _socketio(reader, writer)
    event = '420["join","user:kim"]'
    pieces = [event[0]] + [""] * (frames - 2) + [event[1:]]
    writer.write(_masked(pieces[0], fin=False))
    writer.write(b"".join(_masked(piece, opcode=0x0, fin=False) for piece in pieces[1:-1]))
    writer.write(_masked(pieces[-1], opcode=0x0))
    return reader, writer


async def test_a_message_in_1024_frames_is_taken_and_in_1025_refused(server: Server):
    reader, writer = await _in_frames(server, 1024)
    while not (payload := (await _frame(reader))[1]).startswith(b"430"):
        pass
    assert json.loads(payload[3:]) == [{"ok": True, "room": "user:kim"}]
    writer.close()

    reader, writer = await _in_frames(server, 1025)
    opcode, payload = await _frame(reader)
    while opcode != 0x8:
        opcode, payload = await _frame(reader)
    assert int.from_bytes(payload[:2], "big") == 1009
    writer.close()
