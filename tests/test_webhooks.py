"""Webhooks end to end: a real receiver (a small aiohttp app) that checks every signature and counts the events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
import time
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web

from sio_push.keys import ENGINE, METRICS

from .conftest import RedisServer, free_port, make_token
from .processes import ServerProcess

SECRET = "webhook-secret-for-tests"
TIMEOUT = 15
FAST = {
    "webhook_secret": SECRET,
    "webhook_grace_seconds": 0.4,
    "webhook_backoff_seconds": 0.05,
}


class Receiver:
    """The backend's webhook route: refuses a bad signature, fails the first `fail` requests, queues events."""

    def __init__(self, fail: int = 0, hang: bool = False) -> None:
        self.fail = fail
        self.hang = hang
        self.requests: list[bytes] = []
        self.accepted: list[bytes] = []
        self.bad_signatures = 0
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(raw)
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Sio-Push-Signature", ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.hang:
            await self._release.wait()
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=500)
        self.accepted.append(raw)
        body = json.loads(raw)
        assert isinstance(body["time_ms"], int) and 1 <= len(body["events"]) <= 100
        for event in body["events"]:
            self.seen.append(event)
            self.events.put_nowait(event)
        return web.Response(status=204)

    async def until(self, *wanted: dict[str, Any]) -> list[dict[str, Any]]:
        """Events as they come until each of `wanted` has come; all of them, in order."""
        missing = list(wanted)
        got = []
        deadline = time.monotonic() + TIMEOUT
        while missing:
            event = await asyncio.wait_for(self.events.get(), max(deadline - time.monotonic(), 0.001))
            got.append(event)
            if event in missing:
                missing.remove(event)
        return got


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


@pytest.fixture
async def receivers():
    started: list[Receiver] = []

    async def start(**kwargs: Any) -> Receiver:
        receiver = await Receiver(**kwargs).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


def occupied(room: str) -> dict[str, str]:
    return {"name": "room_occupied", "room": room}


def vacated(room: str) -> dict[str, str]:
    return {"name": "room_vacated", "room": room}


def added(room: str, user: str) -> dict[str, str]:
    return {"name": "member_added", "room": room, "user_id": user}


def removed(room: str, user: str) -> dict[str, str]:
    return {"name": "member_removed", "room": room, "user_id": user}


async def _visit(connect, server, user: str, room: str) -> None:
    """A socket that joins `room` and goes: the room's marker, sent after everything before it."""
    client = await connect(server, user)
    assert (await client.join(room))["ok"]
    await client.close()


async def test_events_of_joins_and_leaves_once_each_after_the_grace_and_none_for_a_bounce(
    make_server, connect, receivers
):
    receiver = await receivers()
    server = await make_server(webhook_url=receiver.url, **FAST)
    tab1 = await connect(server, "ann")
    assert (await tab1.join("room:c1"))["ok"]
    assert await receiver.until(occupied("room:c1"), added("room:c1", "ann")) == [
        occupied("room:c1"),
        added("room:c1", "ann"),
    ]
    tab2 = await connect(server, "ann")
    assert (await tab2.join("room:c1"))["ok"]  # a second tab: not a new member
    await tab1.close()
    bounce = await connect(server, "ann")  # the last tab drops and comes back within the grace
    await tab2.close()
    assert (await bounce.join("room:c1"))["ok"]
    await bounce.close()  # gone for good now
    assert await receiver.until(vacated("room:c1")) == [removed("room:c1", "ann"), vacated("room:c1")]
    await _visit(connect, server, "bob", "room:marker")
    await receiver.until(vacated("room:marker"))
    assert receiver.seen.count(occupied("room:c1")) == 1 and receiver.seen.count(added("room:c1", "ann")) == 1
    assert receiver.seen.count(vacated("room:c1")) == 1 and receiver.bad_signatures == 0
    assert not any(event["room"].startswith("user:") for event in receiver.seen)


async def test_a_receiver_that_fails_twice_gets_the_batch_once(make_server, connect, receivers):
    receiver = await receivers(fail=2)
    server = await make_server(webhook_url=receiver.url, **FAST)
    client = await connect(server, "ann")
    assert (await client.join("room:c1"))["ok"]
    await receiver.until(occupied("room:c1"), added("room:c1", "ann"))
    assert len(receiver.requests) == 3 and len(set(receiver.requests)) == 1  # the same signed body each time
    await client.close()
    await receiver.until(vacated("room:c1"))
    assert receiver.seen == [
        occupied("room:c1"),
        added("room:c1", "ann"),
        removed("room:c1", "ann"),
        vacated("room:c1"),
    ]
    metrics = server.app[METRICS].registry
    assert metrics.get_sample_value("sio_push_webhook_requests_total", {"result": "failed"}) == 2
    assert metrics.get_sample_value("sio_push_webhook_requests_total", {"result": "sent"}) == 2


async def test_a_request_still_failing_after_the_retry_time_is_dropped_and_counted(make_server, connect, receivers):
    receiver = await receivers(fail=1_000_000)
    server = await make_server(webhook_url=receiver.url, webhook_retry_seconds=0.3, **FAST)
    client = await connect(server, "ann")
    assert (await client.join("room:c1"))["ok"]
    metrics = server.app[METRICS].registry
    deadline = time.monotonic() + TIMEOUT
    while not metrics.get_sample_value("sio_push_webhook_requests_total", {"result": "dropped"}):
        assert time.monotonic() < deadline, "the request was never dropped"
        await asyncio.sleep(0.05)
    assert metrics.get_sample_value("sio_push_webhook_events_dropped_total", {"reason": "gave_up"}) == 2
    assert receiver.fail > 0 and 2 <= len(receiver.requests) <= 10


@pytest.mark.parametrize("hang", [True, False], ids=["hanging", "down"])
async def test_a_receiver_that_hangs_or_is_down_does_not_slow_sockets_or_pushes(make_server, connect, receivers, hang):
    url = (await receivers(hang=True)).url if hang else f"http://127.0.0.1:{free_port()}/hook"
    server = await make_server(webhook_url=url, webhook_timeout_seconds=60, **FAST)
    clients = [await connect(server, f"u{n}") for n in range(10)]
    started = time.monotonic()
    for n, client in enumerate(clients):
        assert (await client.join(f"room:r{n}"))["ok"]
        assert (await client.join("room:all"))["ok"]
    for n in range(50):
        status, answer = await server.push("/api/emit", rooms=["room:all"], event="tick", data=n)
        assert status == 200, answer
    for client in clients:
        assert [(await client.next("tick"))[1][0] for _ in range(50)] == list(range(50))
    assert time.monotonic() - started < 5


async def test_two_processes_racing_on_one_room_send_each_event_once(processes, redis_env, client_factory, receivers):
    receiver = await receivers()
    env = {
        **redis_env,
        "PUSH_WEBHOOK_URL": receiver.url,
        "PUSH_WEBHOOK_SECRET": SECRET,
        "PUSH_WEBHOOK_GRACE_SECONDS": "0.5",
    }
    servers = [await processes(**env), await processes(**env)]
    users = [f"u{n}" for n in range(6)]

    async def join(server, user: str, room: str):
        client = client_factory()
        await client.sio.connect(
            server.url, auth={"token": make_token(user, rooms=["room:*"])}, transports=["websocket"]
        )
        assert (await client.join(room))["ok"]
        return client

    clients = await asyncio.gather(*(join(server, user, "room:race") for server in servers for user in users))
    await receiver.until(occupied("room:race"), *(added("room:race", user) for user in users))
    await asyncio.gather(*(client.close() for client in clients))
    await receiver.until(vacated("room:race"), *(removed("room:race", user) for user in users))
    markers = await asyncio.gather(*(join(server, "m", f"room:marker{n}") for n, server in enumerate(servers)))
    await asyncio.gather(*(client.close() for client in markers))
    await receiver.until(vacated("room:marker0"), vacated("room:marker1"))
    race = [event for event in receiver.seen if event["room"] == "room:race"]
    assert sorted(race, key=json.dumps) == sorted(
        [occupied("room:race"), vacated("room:race")]
        + [added("room:race", user) for user in users]
        + [removed("room:race", user) for user in users],
        key=json.dumps,
    )
    assert receiver.bad_signatures == 0


async def test_a_server_stopping_reports_the_members_it_had_once_their_grace_ends(tmp_path, receivers):
    receiver = await receivers()
    env = {"PUSH_WEBHOOK_URL": receiver.url, "PUSH_WEBHOOK_SECRET": SECRET, "PUSH_WEBHOOK_GRACE_SECONDS": "0.5"}
    server = await ServerProcess(tmp_path / "server.log", env=env).start()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(server.url, auth={"token": make_token("ann", rooms=["room:*"])}, transports=["websocket"])
    assert (await client.call("join", "room:c1", timeout=TIMEOUT))["ok"]
    await receiver.until(added("room:c1", "ann"))
    assert await server.stop() == 0  # SIGTERM: sockets closed, then the graces end before the process does
    assert receiver.seen == [
        occupied("room:c1"),
        added("room:c1", "ann"),
        removed("room:c1", "ann"),
        vacated("room:c1"),
    ]


async def test_the_members_of_a_process_that_died_are_reported_by_the_one_that_reaps_it(
    processes,
    redis_env,
    client_factory,
    receivers,
):
    receiver = await receivers()
    env = {**redis_env, "PUSH_WEBHOOK_URL": receiver.url, "PUSH_WEBHOOK_SECRET": SECRET}
    dying = await processes(**env, PUSH_WEBHOOK_GRACE_SECONDS="0.5")
    survivor = await processes(**env, PUSH_WEBHOOK_GRACE_SECONDS="0.5")
    client = client_factory()
    await client.sio.connect(dying.url, auth={"token": make_token("ann", rooms=["room:*"])}, transports=["websocket"])
    assert (await client.join("room:c1"))["ok"]
    await receiver.until(occupied("room:c1"), added("room:c1", "ann"))
    dying.kill(signal.SIGKILL)
    assert await receiver.until(vacated("room:c1")) == [removed("room:c1", "ann"), vacated("room:c1")]
    assert survivor.process is not None and survivor.process.returncode is None


async def test_the_pending_events_are_bounded_and_the_excess_counted(make_server, connect, receivers):
    receiver = await receivers(hang=True)  # the first request never ends: everything after it waits
    server = await make_server(
        webhook_url=receiver.url, webhook_max_pending=100, webhook_timeout_seconds=60, events_per_second=1000, **FAST
    )
    for user in ("ann", "bob", "cat"):
        client = await connect(server, user)
        for n in range(60):
            assert (await client.join(f"room:r{n}"))["ok"]
    metrics = server.app[METRICS].registry
    deadline = time.monotonic() + TIMEOUT
    # 240 events (60 rooms occupied, 180 members added): 100 at most in the request, 100 waiting, the rest dropped
    while not metrics.get_sample_value("sio_push_webhook_events_dropped_total", {"reason": "queue_full"}):
        assert time.monotonic() < deadline, "nothing was dropped"
        await asyncio.sleep(0.05)
    assert len(receiver.requests) == 1


async def test_redis_going_away_during_a_grace_loses_the_event_counted_and_breaks_nothing(
    make_server, connect, receivers, engine
):
    if engine != "redis":
        pytest.skip("the shared backend is Redis")
    redis = RedisServer()
    redis.start()
    try:
        receiver = await receivers()
        settings = {**FAST, "webhook_grace_seconds": 2.0}
        server = await make_server(webhook_url=receiver.url, redis_url=redis.url, **settings)
        client = await connect(server, "ann")
        assert (await client.join("room:c1"))["ok"]
        await receiver.until(occupied("room:c1"), added("room:c1", "ann"))
        await client.close()
        occupancy = server.app[ENGINE].occupancy
        deadline = time.monotonic() + TIMEOUT
        while (await occupancy.counts("room:c1")).sockets:  # the exit is counted: its grace has begun
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        redis.kill()  # the grace ends with Redis gone: its events cannot be checked, so they are dropped
        metrics = server.app[METRICS].registry
        while not metrics.get_sample_value("sio_push_webhook_events_dropped_total", {"reason": "backend"}):
            assert time.monotonic() < deadline + 5, "no loss was counted"
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http, http.get(server.url + "/api/health") as resp:
            assert resp.status == 200
    finally:
        redis.kill()
