"""The backend decides who stays connected: /api/disconnect, /api/unsubscribe, the per-user limit, stolen pids.

The multi-process cases run two servers on one Redis (each its own engine and node id, as two processes).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import socketio
from aiohttp import web

from sio_push.keys import ENGINE, SOCKETS

from .conftest import (
    ALL_ROOMS,
    SERVICE_KEY,
    TIMEOUT,
    Client,
    RedisServer,
    Server,
    base_settings,
    make_token,
    serve_app,
    start_server,
)
from .node_client import NodeClient
from .processes import ServerProcess
from .test_callback_auth import FakeLinen


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


async def _next_second(at: float) -> int:
    """Wait until the clock is past the whole second of `at`; a token issued now counts as after it."""
    for _ in range(100):
        now = time.time()
        if math.floor(now) > math.floor(at):
            return int(now)
        await asyncio.sleep(min(0.05, math.floor(at) + 1 - now + 0.01))
    raise AssertionError("the clock did not move")


async def _two(make_server: Callable[..., Awaitable[Server]], engine: str, **settings: object) -> tuple[Server, Server]:
    """Two servers sharing the engine (two processes on Redis; on memory, one server twice)."""
    first = await make_server(**settings)
    return (first, await make_server(**settings)) if engine == "redis" else (first, first)


async def test_disconnect_a_user_on_every_process(make_server, engine, node_clients, client_factory):
    a, b = await _two(make_server, engine)
    env = {"RECONNECTION_DELAY": "200"}
    dan_a = await node_clients(a.url, make_token("dan", rooms=ALL_ROOMS), env=env)
    dan_b = await node_clients(b.url, make_token("dan", rooms=ALL_ROOMS), env=env)
    for client in (dan_a, dan_b):
        await client.next("connect")
    other: Client = client_factory()
    await other.connect(a, make_token("eli"))
    pids = [m.session.pid for s in (a, b) for sid in s.app[SOCKETS].members if (m := s.app[SOCKETS].members.get(sid))]

    status, body = await a.push("/api/disconnect", user_id="dan")
    at = time.time()
    assert (status, body) == (200, {"status": 200, "sockets": 2})
    for client in (dan_a, dan_b):
        assert (await client.next("disconnect"))["reason"] == "io server disconnect"
    with pytest.raises(TimeoutError):  # socket.io-client does not reconnect after a server disconnect
        await dan_a.next("connect", "connect_error", wait=1.0)
    assert other.sio.connected
    sessions = a.app[ENGINE].sessions
    assert sessions is not None
    for pid in pids:  # dan's sessions cannot be recovered (eli's is still live)
        claimed = await sessions.claim(pid, "dan")
        assert claimed is None

    old = client_factory()
    assert await old.refused(b, make_token("dan")) == {"code": "token_revoked"}
    issued_before = client_factory()
    assert await issued_before.refused(a, make_token("dan", iat=math.floor(at))) == {"code": "token_revoked"}
    newer = client_factory()
    await newer.connect(b, make_token("dan", iat=await _next_second(at)))
    assert newer.sio.connected
    assert await a.push("/api/disconnect", user_id="nobody") == (200, {"status": 200, "sockets": 0})


async def test_disconnect_one_socket_by_sid(server, connect):
    one, two = await connect(server, "fox"), await connect(server, "fox")
    closed = asyncio.Event()
    one.sio.on("disconnect", lambda *args: closed.set())
    sid = one.sio.get_sid("/")
    assert await server.push("/api/disconnect", sid=sid) == (200, {"status": 200, "sockets": 1})
    await asyncio.wait_for(closed.wait(), TIMEOUT)
    assert two.sio.connected
    again = await connect(server, "fox")  # a sid is no user revocation: older tokens still connect
    assert again.sio.connected


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"token": SERVICE_KEY, "user_id": "a", "sid": "b"}, 400),
        ({"token": SERVICE_KEY}, 400),
        ({"token": SERVICE_KEY, "user_id": "bad id!"}, 400),
        ({"token": "wrong", "user_id": "a"}, 401),
    ],
)
async def test_disconnect_needs_the_key_and_exactly_one_id(server, body, status):
    assert (await server.post("/api/disconnect", body))[0] == status


async def test_unsubscribe_takes_the_room_on_every_process(make_server, engine, client_factory, connect):
    a, b = await _two(make_server, engine)
    token = make_token("gil", rooms=ALL_ROOMS)
    gils = []
    for server in (a, b):
        client: Client = client_factory()
        await client.connect(server, token)
        assert (await client.join("room:topic:t1"))["ok"] is True
        gils.append(client)
    watcher = await connect(a, "hal")
    assert (await watcher.join("room:topic:t1"))["ok"] is True
    await watcher.presence_until("room:topic:t1", lambda view: len(view.get("gil", [])) == 2)

    status, body = await b.push("/api/unsubscribe", user_id="gil", room="room:topic:t1")
    at = time.time()
    assert (status, body) == (200, {"status": 200, "sockets": 2})
    for client in gils:
        assert (await client.next("room_left"))[1] == ({"room": "room:topic:t1", "reason": "revoked"},)
    await watcher.presence_until("room:topic:t1", lambda view: "gil" not in view)

    await a.push("/api/message", thread_id="t1", n=1)
    assert (await watcher.next_msg())["n"] == 1
    await a.push("/api/user", user_id="gil", n=2)
    for client in gils:
        assert (await client.next_msg())["n"] == 2  # not n=1: out of the room
        assert await client.join("room:topic:t1") == {"ok": False, "error": "unauthorized"}
        assert (await client.join("room:topic:t2"))["ok"] is True  # other rooms are still allowed

    newer: Client = client_factory()
    await newer.connect(b, make_token("gil", rooms=ALL_ROOMS, iat=await _next_second(at)))
    assert (await newer.join("room:topic:t1"))["ok"] is True


async def test_an_unsubscribed_room_is_not_recovered(server, node_clients):
    env = {"RECONNECTION_DELAY": "1000"}
    client: NodeClient = await node_clients(server.url, make_token("ida", rooms=ALL_ROOMS), "room:lobby:c1", env=env)
    first = await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    assert (await server.push("/api/unsubscribe", user_id="ida", room="room:lobby:c1"))[1]["sockets"] == 1
    assert (await client.next("room_left"))["args"] == [{"room": "room:lobby:c1", "reason": "revoked"}]

    await client.send(cmd="drop")
    await client.next("disconnect")
    again = await client.next("connect")
    assert again["recovered"] is True and again["id"] == first["id"]
    await server.push("/api/channel", channel_id="c1", n=1)
    await server.push("/api/user", user_id="ida", n=2)
    assert (await client.next("new_msg"))["args"][0]["n"] == 2


async def test_the_per_user_limit_spans_processes(make_server, engine, client_factory):
    a, b = await _two(make_server, engine, max_sockets_per_user=2)
    token = make_token("jon")
    first: Client = client_factory()
    await first.connect(a, token)
    second: Client = client_factory()
    await second.connect(b, token)
    assert await client_factory().refused(a, token) == {"code": "too_many_connections"}
    assert await client_factory().refused(b, token) == {"code": "too_many_connections"}
    other: Client = client_factory()
    await other.connect(a, make_token("kim"))  # another user is not counted with jon

    await second.close()
    for _ in range(50):  # the count is released when the server has seen the disconnect
        retry = client_factory()
        try:
            await retry.connect(b, token)
            break
        except socketio.exceptions.ConnectionError:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the released socket was never counted out")


async def test_a_recovering_socket_takes_its_old_place_in_the_limit(make_server, node_clients):
    server = await make_server(max_sockets_per_user=1)
    client = await node_clients(server.url, make_token("kai", rooms=ALL_ROOMS), env={"RECONNECTION_DELAY": "300"})
    first = await client.next("connect")
    await client.send(cmd="drop")
    await client.next("disconnect")
    again = await client.next("connect", "connect_error")
    assert again["event"] == "connect" and again["recovered"] is True and again["id"] == first["id"]


async def test_a_stolen_pid_neither_recovers_nor_disturbs_the_session(server, node_clients, client_factory):
    owner = await node_clients(server.url, make_token("lea", rooms=ALL_ROOMS), env={"RECONNECTION_DELAY": "300"})
    first = await owner.next("connect")
    member = server.app[SOCKETS].members.get(first["id"])
    assert member is not None and member.session is not None
    pid, offset = member.session.pid, member.session.start

    thief: Client = client_factory()
    await thief.sio.connect(
        server.url,
        auth={"token": make_token("max"), "pid": pid, "offset": offset},
        transports=["websocket"],
        wait_timeout=TIMEOUT,
    )
    assert thief.sio.get_sid("/") != first["id"]
    await server.push("/api/user", user_id="lea", n=1)
    assert (await owner.next("new_msg"))["args"][0]["n"] == 1

    await owner.send(cmd="drop")
    await owner.next("disconnect")
    again = await owner.next("connect")
    assert again["recovered"] is True and again["id"] == first["id"]


@pytest.fixture
async def killable(tmp_path: Path, redis_server) -> AsyncIterator[Callable[[], Awaitable[ServerProcess]]]:
    """Real server processes on one Redis, with a limit of one socket per user."""
    env = {
        "PUSH_REDIS_URL": redis_server.url,
        "PUSH_REDIS_PREFIX": f"limit-{uuid.uuid4().hex[:8]}:",
        "PUSH_MAX_SOCKETS_PER_USER": "1",
    }
    started: list[ServerProcess] = []

    async def start() -> ServerProcess:
        server = ServerProcess(tmp_path / f"server-{len(started)}.log", env=env)
        started.append(server)
        return await server.start()

    yield start
    for server in started:
        await server.stop()


async def test_a_process_that_dies_releases_its_counts(killable, client_factory):
    a, b = await killable(), await killable()
    token = make_token("ned")
    first: Client = client_factory()
    await first.sio.connect(a.url, auth={"token": token}, transports=["websocket"], wait_timeout=TIMEOUT)
    refused: Client = client_factory()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.sio.connect(b.url, auth={"token": token}, transports=["websocket"], wait_timeout=TIMEOUT)
    a.kill()
    deadline = time.monotonic() + 15  # a process is dead 3 s after its last beat; the reaper runs every 2 s
    while time.monotonic() < deadline:
        retry: Client = client_factory()
        try:
            await retry.sio.connect(b.url, auth={"token": token}, transports=["websocket"], wait_timeout=TIMEOUT)
            return
        except socketio.exceptions.ConnectionError:
            await asyncio.sleep(0.25)
    raise AssertionError("the dead process's count was never released")


async def test_unsubscribe_forgets_a_cached_callback_decision(make_server, client_factory):
    linen = FakeLinen()
    app = web.Application()
    app.router.add_post("/api/jwt/who", linen.who)
    app.router.add_post("/api/jwt/can", linen.can)
    runner, linen.url = await serve_app(app)
    try:
        # No revocation records (0 s): what is left to check is the cache itself.
        server = await make_server(jwt_secret=None, auth_service_url=linen.url, revocation_seconds=0)
        client: Client = client_factory()
        await client.connect(server, "session-alice")
        assert (await client.join("room:lobby:c1"))["ok"] is True
        assert (await client.call("leave", "room:lobby:c1"))["ok"] is True
        asked = sum(1 for path, _, _ in linen.calls if path == "/api/jwt/can")
        assert (await client.join("room:lobby:c1"))["ok"] is True  # from the cache
        assert sum(1 for path, _, _ in linen.calls if path == "/api/jwt/can") == asked

        assert (await server.push("/api/unsubscribe", user_id="alice", room="room:lobby:c1"))[1]["sockets"] == 1
        assert (await client.join("room:lobby:c1"))["ok"] is True
        assert sum(1 for path, _, _ in linen.calls if path == "/api/jwt/can") == asked + 1  # asked again
    finally:
        await runner.cleanup()


async def test_unsubscribe_reaches_a_session_waiting_for_its_client(server, node_clients):
    env = {"RECONNECTION_DELAY": "1500"}
    client: NodeClient = await node_clients(server.url, make_token("ivo", rooms=ALL_ROOMS), "room:lobby:c1", env=env)
    first = await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    await client.send(cmd="drop")
    await client.next("disconnect")
    # No socket to act on: the stored session, ended before the revocation, loses the room on recovery.
    assert (await server.push("/api/unsubscribe", user_id="ivo", room="room:lobby:c1"))[1]["sockets"] == 0
    await server.push("/api/channel", channel_id="c1", n=1)
    again = await client.next("connect")
    assert again["recovered"] is True and again["id"] == first["id"]
    await server.push("/api/channel", channel_id="c1", n=2)
    await server.push("/api/user", user_id="ivo", n=3)
    assert (await client.next("new_msg"))["args"][0]["n"] == 3


async def test_revocations_answer_503_while_redis_is_down():
    redis = RedisServer()
    redis.start()
    server = await start_server(base_settings(redis_url=redis.url))
    try:
        assert (await server.push("/api/disconnect", user_id="oto"))[0] == 200
        redis.kill()
        for path, body in (
            ("/api/disconnect", {"user_id": "oto"}),
            ("/api/unsubscribe", {"user_id": "oto", "room": "room:x"}),
        ):
            assert await server.push(path, **body) == (503, {"status": 503, "error": "backend_unavailable"})
    finally:
        redis.kill()
        await server.runner.cleanup()
