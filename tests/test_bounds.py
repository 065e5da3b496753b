"""Nothing a client or a caller sends can exhaust the server, flood its log, or poison a room (SPEC §7).

Each test is one attack, scaled down through the settings, with a well-behaved client beside it that
must get every push without delay; the server runs in this process, so its memory is this process's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import pytest

from sio_push.keys import SOCKETS

from .conftest import TIMEOUT, Server, make_token
from .test_limits import RawSocket

PATH = "/socket.io/"
ROOM = "room:topic:t1"
MIB = 1024 * 1024


@pytest.fixture(params=["memory", "redis"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every bound holds on both engines."""
    return str(request.param)


def rss() -> int:
    """This process's resident memory, in bytes (the server under test runs in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """No log record carries a traceback: what clients send is logged in one line, if at all."""
    with_traces = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not with_traces, with_traces


async def bystander(server: Server, connect: Any) -> Any:
    """A well-behaved client in a room of its own; `served(n)` checks it gets push n within a second."""
    client = await connect(server, "bob")
    assert (await client.join("room:lobby:quiet"))["ok"]

    async def served(n: int) -> None:
        started = time.monotonic()
        status, _ = await server.push("/api/channel", channel_id="quiet", n=n)
        assert status == 200
        assert (await client.next_msg())["n"] == n
        assert time.monotonic() - started < 1.0, "the bystander was delayed"

    return served


class Polling:
    """An Engine.IO long-polling client written by hand, to send and not send what real clients would."""

    def __init__(self, server: Server, http: aiohttp.ClientSession, sid: str) -> None:
        self.url = f"{server.url}{PATH}?EIO=4&transport=polling&sid={sid}"
        self.http = http
        self.sid = sid

    @classmethod
    async def open(cls, server: Server, token: str | None = None) -> Polling:
        http = aiohttp.ClientSession()
        async with http.get(f"{server.url}{PATH}?EIO=4&transport=polling") as response:
            body = await response.text()
        polling = cls(server, http, json.loads(body[1:])["sid"])
        if token is not None:
            assert await polling.post("40" + json.dumps({"token": token})) == 200
            assert (await polling.get()).startswith("40{")
        return polling

    async def post(self, payload: str | bytes) -> int:
        async with self.http.post(self.url, data=payload) as response:
            await response.read()
            return response.status

    async def get(self) -> str:
        async with self.http.get(self.url, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as response:
            return await response.text()

    async def close(self) -> None:
        await self.http.close()


def _sockets(server: Server) -> dict[str, Any]:
    return server.app[SOCKETS].server.eio.sockets


async def _until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# 1. A binary packet announcing billions of attachments


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_binary_packet_announcing_endless_attachments_closes_the_connection(server, connect, caplog, transport):
    served = await bystander(server, connect)
    token = make_token("mallory", rooms=["room:*"])
    before = rss()
    announce = '459999999999-["join",{"_placeholder":true,"num":0}]'
    if transport == "websocket":
        raw = await RawSocket.open(server.url, token)
        try:
            await raw.ws.send_str(announce)
            for _ in range(200):
                await raw.ws.send_bytes(b"\x00" * 64 * 1024)
            assert await raw.closed()
        except (ConnectionError, aiohttp.ClientError):
            pass  # closed under the client's writes
        finally:
            await raw.close()
    else:
        polling = await Polling.open(server, token)
        try:
            await polling.post(announce)
            attachment = "b" + "A" * 64 * 1024
            for _ in range(20):
                if await polling.post(attachment) == 400:
                    break
            assert polling.sid not in _sockets(server) or _sockets(server)[polling.sid].closed
        finally:
            await polling.close()
    await served(1)
    assert rss() - before < 64 * MIB
    no_tracebacks(caplog)


# 2. A polling client that never polls


async def test_a_polling_session_that_never_polls_is_cut_off_at_the_buffer_bound(make_server, connect, caplog):
    server = await make_server(max_buffer_bytes=256 * 1024)
    served = await bystander(server, connect)
    polling = await Polling.open(server, make_token("lazy", rooms=["room:*"]))
    try:
        before = rss()
        body = "x" * 64 * 1024
        pushes = 0
        while polling.sid in _sockets(server) and not _sockets(server)[polling.sid].closed:
            assert pushes < 6, "the bound did not hold"  # 4 of 64 KiB fill 256 KiB
            status, _ = await server.push("/api/user", user_id="lazy", body=body)
            assert status == 200
            pushes += 1
            assert await polling.post("3") in (200, 400)  # it answers pings (400 once cut off), never polls
        await served(1)
        assert rss() - before < 32 * MIB
        cut = [r for r in caplog.records if "does not take what is sent" in r.getMessage()]
        assert len(cut) == 1
    finally:
        await polling.close()
    no_tracebacks(caplog)


async def test_memory_taken_by_large_pushes_comes_back_once_they_leave_the_log(make_server, connect):
    # The recovery log holds the pushes for twice the window; the heap is trimmed every 0.2 s.
    server = await make_server(recovery_seconds=0.5, heap_trim_seconds=0.2)
    reader = await connect(server, "ann")
    assert (await reader.join("room:lobby:big"))["ok"]
    for n in range(20):  # warm up: the allocations of an ordinary push are made once
        assert (await server.push("/api/channel", channel_id="big", n=n))[0] == 200
        assert (await reader.next_msg())["n"] == n
    before = rss()
    body = "x" * 64 * 1024
    for n in range(300):  # 19 MiB: logged, encoded, written to the reader
        assert (await server.push("/api/channel", channel_id="big", n=n, body=body))[0] == 200
    for n in range(300):
        assert (await reader.next_msg())["n"] == n
    assert rss() - before > 10 * MIB
    # Ordinary pushes go on: the log drops the large ones after its window, and the newest pushes kept
    # encoded for replays (and, on Redis, read) are ordinary ones again; then the heap is trimmed.
    deadline = time.monotonic() + 20
    while rss() - before > 8 * MIB:
        assert time.monotonic() < deadline, f"still {(rss() - before) // MIB} MiB above"
        for n in range(100):
            assert (await server.push("/api/channel", channel_id="big", n=n))[0] == 200
            assert (await reader.next_msg())["n"] == n


async def test_a_websocket_bound_comes_from_the_setting(make_server):
    server = await make_server(max_buffer_bytes=300_000)
    assert server.app[SOCKETS].server.eio.bounds.max_buffer == 300_000


# 3. Request heads and bodies that never arrive


async def _open(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Read until the server closes; how long it took (the test fails past `seconds`)."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), seconds):
        pass
    return time.monotonic() - started


@pytest.mark.parametrize(
    "head",
    [
        b"POST /api/message HTTP/1.1\r\nHost: x\r\nContent-Le",
        b"GET /api/health HTTP/1.1\r\n",
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n",
        b"",
    ],
    ids=["api-post", "api-get", "polling", "nothing"],
)
async def test_every_connection_sends_its_head_in_time(make_server, connect, head):
    server = await make_server(head_timeout_seconds=0.5)
    served = await bystander(server, connect)
    reader, writer = await _open(server)
    writer.write(head)
    assert await _closed_within(reader, 3) >= 0.3
    writer.close()
    await served(1)


async def test_the_second_head_on_a_keep_alive_connection_is_timed_too(make_server):
    server = await make_server(head_timeout_seconds=0.5)
    reader, writer = await _open(server)
    writer.write(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in await asyncio.wait_for(reader.readline(), TIMEOUT)
    writer.write(b"GET /api/health HTTP/1.1\r\nHo")
    await _closed_within(reader, 3)
    writer.close()


async def test_a_polling_body_that_never_arrives_is_given_up(make_server, connect, caplog):
    server = await make_server(body_timeout_seconds=0.5)
    served = await bystander(server, connect)
    polling = await Polling.open(server, make_token("slow", rooms=["room:*"]))
    try:
        reader, writer = await _open(server)
        writer.write(
            f"POST {PATH}?EIO=4&transport=polling&sid={polling.sid} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n42[".encode()
        )
        status_line = await asyncio.wait_for(reader.readline(), 3)
        assert b" 400 " in status_line
        writer.close()
        await _until(lambda: polling.sid not in _sockets(server) or _sockets(server)[polling.sid].closed, "the end")
    finally:
        await polling.close()
    await served(1)
    no_tracebacks(caplog)


# 7. Malformed Engine.IO payloads over polling


@pytest.mark.parametrize("payload", ["9", "", "\x1e\x1e", "b!!!", "4" + "\x1e9", "0"], ids=repr)
async def test_a_malformed_polling_payload_is_400_without_a_traceback(server, connect, caplog, payload):
    caplog.set_level(logging.INFO)
    served = await bystander(server, connect)
    polling = await Polling.open(server, make_token("mallory", rooms=["room:*"]))
    try:
        status = await polling.post(payload)
        assert status in (200, 400)
    finally:
        await polling.close()
    await served(1)
    no_tracebacks(caplog)


async def test_a_polling_post_of_too_many_packets_is_refused(make_server, connect, caplog):
    server = await make_server(events_per_second=5)  # 50 packets a second, a burst of 100
    served = await bystander(server, connect)
    polling = await Polling.open(server, make_token("mallory", rooms=["room:*"]))
    try:
        assert await polling.post("\x1e".join(["3"] * 500)) == 400
        assert polling.sid not in _sockets(server) or _sockets(server)[polling.sid].closed
    finally:
        await polling.close()
    await served(1)
    no_tracebacks(caplog)


# 10. Logs: no request text, no traceback, bounded


async def test_a_malformed_request_is_logged_in_one_line_without_its_text(server, caplog):
    caplog.set_level(logging.DEBUG)
    secret = make_token("victim")
    for request in (
        f"GET /api/health?token={secret} HTTP/1.1\r\nHost: x\r\nBad Header: {secret}\r\n\r\n",
        f"G\x01T /api/{secret} HTTP/1.1\r\n\r\n",
        f"GET /{'a' * 20000}{secret} HTTP/1.1\r\n\r\n",
    ):
        reader, writer = await _open(server)
        writer.write(request.encode())
        assert b" 400 " in await asyncio.wait_for(reader.readline(), TIMEOUT)
        writer.close()
    assert not [r for r in caplog.records if secret[:40] in r.getMessage() or r.exc_info]
    assert not [r for r in caplog.records if r.exc_text and secret[:40] in r.exc_text]


async def test_bad_requests_are_logged_a_bounded_number_of_times(server, caplog):
    for _ in range(50):
        reader, writer = await _open(server)
        writer.write(b"\x16\x03\x01garbage\r\n\r\n")
        await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) <= 6  # five a minute for one client, and one "suppressed" line at most
    no_tracebacks(caplog)


# 4 and 8. Recovery: a refused push poisons nothing; nothing from before a join, or of another room


async def _raw_connect(server: Server, auth: dict[str, Any]) -> tuple[RawSocket, str, dict[str, Any]]:
    """A hand-written Socket.IO client connected with `auth`: it, its Engine.IO sid, and the CONNECT reply."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.url + PATH + "?EIO=4&transport=websocket")
    raw = RawSocket(ws, http)
    opened = await raw.receive()
    assert opened.startswith("0{")
    await ws.send_str("40" + json.dumps(auth))
    reply = await raw.receive()
    assert reply.startswith("40{"), reply
    return raw, json.loads(opened[1:])["sid"], json.loads(reply[2:])


async def _pushes_until(raw: RawSocket, last: int) -> list[tuple[int, str]]:
    """The (n, offset) of each `new_msg` received, up to the one whose n is `last`."""
    received: list[tuple[int, str]] = []
    while not received or received[-1][0] != last:
        data = await raw.receive()
        if data.startswith('42["new_msg"'):
            _, body, offset = json.loads(data[2:])
            received.append((body["n"], offset))
    return received


async def test_recovery_replays_nothing_from_before_the_join_nor_of_other_rooms_nor_a_refused_push(server):
    token = make_token("rita", rooms=["room:*"])
    assert (await server.push("/api/channel", channel_id="c8", n=0))[0] == 200  # before anyone joined
    raw, eio_sid, reply = await _raw_connect(server, {"token": token})
    try:
        assert (await raw.ack('421["join","room:lobby:c8"]'))["ok"]
        assert (await server.push("/api/channel", channel_id="c8", n=1))[0] == 200
        [(_, offset)] = await _pushes_until(raw, 1)
    finally:
        await raw.close()
    await _until(lambda: eio_sid not in _sockets(server), "the old connection to end")
    assert (await server.push("/api/channel", channel_id="other", n=100))[0] == 200  # a room it never joined
    poisoned, _ = await server.push("/api/channel", channel_id="c8", n=99, text="\ud800")
    assert poisoned == 400
    assert (await server.push("/api/channel", channel_id="c8", n=2))[0] == 200

    for after in ("0", offset):  # "0": the very start, from before the join
        raw, eio_sid, again = await _raw_connect(server, {"token": token, "pid": reply["pid"], "offset": after})
        try:
            assert again["sid"] == reply["sid"]  # recovered
            assert (await server.push("/api/channel", channel_id="c8", n=3))[0] == 200
            received = [n for n, _ in await _pushes_until(raw, 3)]
            assert received == ([1, 2, 3] if after == "0" else [2, 3])
            reply = {**again, "pid": again["pid"]}
        finally:
            await raw.close()
        await _until(lambda eio_sid=eio_sid: eio_sid not in _sockets(server), "the connection to end")


async def test_a_connect_with_someone_elses_pid_and_offset_zero_replays_nothing(server):
    owner, _, reply = await _raw_connect(server, {"token": make_token("ann", rooms=["room:*"])})
    try:
        assert (await owner.ack('421["join","room:lobby:secret"]'))["ok"]
        assert (await server.push("/api/channel", channel_id="secret", n=1))[0] == 200
        await _pushes_until(owner, 1)
        token = make_token("eve", rooms=["room:*"])
        eve, _, answer = await _raw_connect(server, {"token": token, "pid": reply["pid"], "offset": "0"})
        try:
            assert answer["sid"] != reply["sid"]
            assert (await server.push("/api/user", user_id="eve", n=2))[0] == 200
            assert [n for n, _ in await _pushes_until(eve, 2)] == [2]
        finally:
            await eve.close()
    finally:
        await owner.close()


# 5. Presence amplification


async def test_presence_spam_reaches_the_room_at_the_event_rate(make_server, connect):
    server = await make_server(events_per_second=5, presence_batch_seconds=0)  # a burst of 10
    member = await connect(server, "bob")
    assert (await member.join(ROOM))["ok"]
    spammer = await connect(server, "mallory")
    assert (await spammer.join(ROOM))["ok"]
    await member.presence_until(ROOM, lambda view: "mallory" in view)
    member.drain()
    started = time.monotonic()
    for n in range(300):
        kind = n % 4
        if kind == 0:
            await spammer.sio.emit("user:typing", {"room": ROOM, "typing": True})
        elif kind == 1:
            await spammer.sio.emit("user:typing", {"room": ROOM, "typing": False})
        elif kind == 2:
            await spammer.sio.emit("leave", ROOM)
        else:
            await spammer.sio.emit("join", ROOM)
    deadline = time.monotonic() + TIMEOUT
    while not (answer := await spammer.join(ROOM))["ok"]:  # served again: the spam is over
        assert answer == {"ok": False, "error": "rate_limited"}, answer
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    marker = await connect(server, "zed")
    assert (await marker.join(ROOM))["ok"]
    await member.presence_until(ROOM, lambda view: "zed" in view)  # everything before it has arrived
    elapsed = time.monotonic() - started
    diffs = [args[0] for event, args in member.drain("presence_diff") if "zed" not in args[0]["joins"]]
    allowed = 10 + 5 * elapsed + 1  # the burst, the rate, the last call
    assert len(diffs) <= allowed, (len(diffs), elapsed)
    assert sum(len(json.dumps(diff)) for diff in diffs) <= allowed * 400


# 9. CPU: frames past a connection's budget wait


async def test_a_frame_flood_is_slowed_down_not_served_at_once(make_server, connect, caplog):
    server = await make_server(events_per_second=20)  # 200 frames a second, a burst of 400
    served = await bystander(server, connect)
    raw = await RawSocket.open(server.url, make_token("mallory", rooms=["room:*"]))
    try:
        started = time.monotonic()
        for _ in range(800):
            await raw.ws.send_str("3")  # Engine.IO pongs nobody asked for: the cheapest frame there is
        await served(1)  # while the flood waits, others are served at once
        assert (await raw.ack('421["join","room:lobby:a"]'))["ok"]  # the connection survives
        assert time.monotonic() - started >= 1.5  # (800 - 400) / 200 = 2 s of waiting, less timing slack
    finally:
        await raw.close()
    await served(2)
    no_tracebacks(caplog)
