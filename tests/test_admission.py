"""Admission (SPEC §6): new connections over the connect rate or the connection cap get 503 and Retry-After;
requests with a sid and the push API never do; socket.io-client retries and gets in."""

from __future__ import annotations

import asyncio
import base64
import os
import time

import aiohttp
import socketio

from .conftest import Server, make_token

WEBSOCKET_HEADERS = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
}


async def _websocket_handshake(server: Server) -> tuple[int, dict[str, str]]:
    """The status and headers of a raw websocket handshake on the Socket.IO path (the connection then closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = "".join(f"{name}: {value}\r\n" for name, value in WEBSOCKET_HEADERS.items())
        writer.write(f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    status_line, *lines = raw.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    return int(status_line.split()[1]), headers


async def _get(server: Server, path: str) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def test_handshakes_over_the_connect_rate_get_503_and_others_pass(make_server):
    server = await make_server(connect_rate=0.2)  # a burst of 1
    status, _ = await _websocket_handshake(server)
    assert status == 101
    status, headers = await _websocket_handshake(server)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    status, headers = await _get(server, "/socket.io/?EIO=4&transport=polling")
    assert status == 503 and int(headers["Retry-After"]) >= 1
    status, _ = await _get(server, "/socket.io/?EIO=4&transport=polling&sid=unknown")
    assert status == 400  # a request with a sid is python-engineio's to answer, never refused
    assert (await _get(server, "/api/health"))[0] == 200
    assert (await server.push("/api/channel", channel_id="c1"))[0] == 200


async def test_socket_io_client_refused_over_the_rate_retries_and_gets_in(make_server, node_clients):
    server = await make_server(connect_rate=1)  # a burst of 5
    for _ in range(5):
        assert (await _websocket_handshake(server))[0] == 101
    env = {"KEEP_TRYING": "1", "RECONNECTION_DELAY": "300", "TRANSPORTS": "websocket"}
    client = await node_clients(server.url, make_token("ann", rooms=["room:*"]), "room:lobby:c1", env=env)
    assert (await client.next("connect_error", "connect"))["event"] == "connect_error"
    await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True


async def test_connections_over_the_cap_get_503_until_one_closes(make_server, connect, node_clients):
    server = await make_server(max_connections=2)
    first = await connect(server, "ann")
    await connect(server, "bob")
    status, headers = await _websocket_handshake(server)
    assert status == 503 and headers["Retry-After"]
    env = {"KEEP_TRYING": "1", "RECONNECTION_DELAY": "300", "TRANSPORTS": "polling"}
    client = await node_clients(server.url, make_token("cal", rooms=["room:*"]), "room:lobby:c1", env=env)
    assert (await client.next("connect_error", "connect"))["event"] == "connect_error"
    await first.close()
    await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True


def _hold_the_loop(seconds: float) -> None:
    """Block the event loop, which the in-process server shares: a process too busy to keep up."""
    time.sleep(seconds)


async def test_handshakes_while_the_event_loop_runs_late_get_503_until_it_catches_up(make_server):
    server = await make_server(connect_max_lag_ms=100)
    assert (await _websocket_handshake(server))[0] == 101
    _hold_the_loop(0.3)
    status, headers = await _websocket_handshake(server)
    assert status == 503 and headers["Retry-After"] == "1"
    _hold_the_loop(0.3)
    assert (await _get(server, "/socket.io/?EIO=4&transport=polling"))[0] == 503
    assert (await server.push("/api/channel", channel_id="c1"))[0] == 200  # the push API never is refused
    for _ in range(50):  # a timer or two on time, and new connections are taken again
        await asyncio.sleep(0.02)
        status, _ = await _websocket_handshake(server)
        if status == 101:
            break
    assert status == 101


async def _open_websocket(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket on the Socket.IO path, handshake done and kept open, no Socket.IO CONNECT sent yet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in WEBSOCKET_HEADERS.items())
    writer.write(f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_handshakes_beyond_the_connections_being_set_up_get_503_until_one_is(make_server, client_factory):
    server = await make_server(max_connecting=2)
    first, second = await _open_websocket(server), await _open_websocket(server)  # no CONNECT sent: being set up
    status, headers = await _websocket_handshake(server)
    assert status == 503 and headers["Retry-After"] == "1"
    first[1].close()
    client = client_factory()
    for _ in range(100):  # refused until the server has seen the first one go
        try:
            await client.connect(server, make_token("una", rooms=["room:*"]))
            break
        except socketio.exceptions.ConnectionError:
            await asyncio.sleep(0.05)
    assert (await client.join("room:lobby:c1"))["ok"] is True
    # Its CONNECT answered, the client no longer counts: the second alone is being set up.
    assert (await _websocket_handshake(server))[0] == 101
    second[1].close()
