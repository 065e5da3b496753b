"""Several processes on one Redis: pushes cross processes, workers share a port, Redis and workers may die."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest
import socketio

from .conftest import SERVICE_KEY, Client, RedisServer, make_token
from .node_client import NodeClient
from .proxy import Proxy

TIMEOUT = 15


async def _joined_client(client_factory, url: str, sub: str, room: str, **kwargs) -> Client:
    client = client_factory(**kwargs)
    await client.sio.connect(url, auth={"token": make_token(sub, rooms=["room:*"])}, transports=["websocket"])
    assert (await client.join(room))["ok"]
    return client


async def _until(predicate, seconds: float = TIMEOUT, step: float = 0.05):
    """Poll `predicate` (a coroutine function) until it returns a true value; bounded in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(step)
    raise TimeoutError("condition not met in time")


async def test_push_to_one_process_reaches_sockets_on_another_once(processes, redis_env, client_factory):
    a = await processes(**redis_env)
    b = await processes(**redis_env)
    client = await _joined_client(client_factory, a.url, "ann", "room:lobby:c1")
    await client.join("room:topic:t1")
    for n in range(3):
        status, answer = await b.push("/api/message", channel_id="c1", thread_id="t1", n=n)
        assert status == 200 and isinstance(answer["offset"], str)
    assert [(await client.next_msg())["n"] for _ in range(3)] == [0, 1, 2]
    status, _ = await a.push("/api/channel", channel_id="c1", n=3)
    assert (await client.next_msg())["n"] == 3
    await b.push("/api/channel", channel_id="c1", n=4)  # a second copy of anything would come before it
    assert (await client.next_msg())["n"] == 4


async def test_presence_spans_processes_and_leaves_when_a_process_dies(processes, redis_env, client_factory):
    a = await processes(**redis_env)
    b = await processes(**redis_env)
    watcher = await _joined_client(client_factory, a.url, "watcher", "room:k1")
    await _joined_client(client_factory, b.url, "bea", "room:k1")
    await watcher.presence_until("room:k1", lambda v: "bea" in v)
    late = await _joined_client(client_factory, a.url, "cal", "room:k1")
    _, (state,) = await late.next("presence_state")
    assert set(state["state"]) == {"watcher", "bea", "cal"}
    b.kill()
    await watcher.presence_until("room:k1", lambda v: "bea" not in v)


async def test_phx_refs_differ_between_processes(processes, redis_env, client_factory):
    a = await processes(**redis_env)
    b = await processes(**redis_env)
    # One user on both processes: Phoenix's syncDiff tells the two metas apart by phx_ref alone.
    watcher = await _joined_client(client_factory, a.url, "ann", "room:r1")
    await _joined_client(client_factory, b.url, "ann", "room:r1")
    view = await watcher.presence_until("room:r1", lambda v: len(v.get("ann", [])) == 2)
    refs = [meta["phx_ref"] for meta in view["ann"]]
    assert len(set(refs)) == 2
    assert not any(ref.startswith(redis_env["PUSH_REDIS_PREFIX"]) for ref in refs)


async def test_workers_share_one_port_and_survive_a_killed_worker(processes, redis_env, client_factory):
    server = await processes("--workers", "2", **redis_env)
    workers = await server.workers(2)
    clients = [
        await _joined_client(client_factory, server.url, f"u{i}", "room:lobby:w", reconnection=True) for i in range(16)
    ]
    dropped: set[int] = set()
    for i, client in enumerate(clients):
        client.sio.on("disconnect", lambda *_, i=i: dropped.add(i))
    status, _ = await server.push("/api/channel", channel_id="w", n=1)
    assert status == 200
    for client in clients:
        assert (await client.next_msg())["n"] == 1

    os.kill(workers[0], signal.SIGKILL)
    await _until(lambda: _ready(dropped))
    # Every client answers a join again: those of the killed worker once they have reconnected.
    for client in clients:
        await _until(lambda client=client: _rejoined(client, "room:lobby:w"))
    assert 0 < len(dropped) < len(clients), "SO_REUSEPORT spread the clients over both workers"
    status, _ = await server.push("/api/channel", channel_id="w", n=2)
    assert status == 200
    for client in clients:
        assert (await client.next_msg())["n"] == 2
    restarted = await server.workers(2)
    assert workers[0] not in restarted
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/metrics", headers={"Authorization": "Bearer " + SERVICE_KEY}) as resp,
    ):
        assert "sio_push_sockets 16.0" in await resp.text()  # summed over the live workers


async def _ready(items: set[int]) -> bool:
    return bool(items)


async def _rejoined(client: Client, room: str) -> bool:
    try:
        answer = await client.sio.call("join", room, timeout=1)
    except (socketio.exceptions.SocketIOError, TimeoutError):
        return False
    return bool(answer["ok"])


async def test_redis_outage_answers_503_keeps_sockets_and_resumes(processes, client_factory, tmp_path):
    redis = RedisServer()
    redis.start()
    try:
        server = await processes(PUSH_REDIS_URL=redis.url)
        client = await _joined_client(client_factory, server.url, "dee", "room:lobby:c1")
        redis.kill()

        async def refused() -> bool:
            status, answer = await server.push("/api/channel", channel_id="c1", n=0)
            return status == 503 and answer["error"] == "broker_unavailable"

        await _until(refused)
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/api/ready") as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "1"
            body = {"token": SERVICE_KEY, "channel_id": "c1"}
            async with http.post(server.url + "/api/channel", json=body) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "1"  # clients know when to retry
            async with http.get(server.url + "/api/health") as resp:
                assert resp.status == 200
        assert client.sio.connected

        redis.start()

        async def ready() -> bool:
            async with aiohttp.ClientSession() as http, http.get(server.url + "/api/ready") as resp:
                return resp.status == 200

        await _until(ready)
        status, _ = await server.push("/api/channel", channel_id="c1", n=1)
        assert status == 200
        assert (await client.next_msg())["n"] == 1
        assert server.process is not None and server.process.returncode is None
    finally:
        redis.kill()


@pytest.fixture
async def behind_proxy(processes, redis_env, node_clients):
    """Two processes on one Redis, a proxy in front of the first, and a function that starts a Node
    client through the proxy, joined to a room (it retries every 0.2 s after a drop, and gets through
    only while the proxy is not paused)."""
    a = await processes(**redis_env)
    b = await processes(**redis_env)
    proxy = await Proxy(a.port).start()

    async def client(sub: str, room: str) -> tuple[NodeClient, dict]:
        node = await node_clients(
            f"http://127.0.0.1:{proxy.port}",
            make_token(sub, rooms=["room:*"]),
            room,
            env={"RECONNECTION_DELAY": "200", "TRANSPORTS": "websocket"},
        )
        first = await node.next("connect")
        await node.next("ack")
        return node, first

    yield a, b, proxy, client
    await proxy.close()


async def test_recovery_survives_the_crash_of_the_clients_process(behind_proxy):
    a, b, proxy, start_client = behind_proxy
    client, first = await start_client("eve", "room:lobby:c1")
    await a.push("/api/channel", channel_id="c1", n=0)
    assert (await client.next("new_msg"))["args"][0]["n"] == 0

    proxy.paused = True
    a.kill()
    await client.next("disconnect")
    proxy.target = b.port
    for n in range(1, 11):
        status, _ = await b.push("/api/channel", channel_id="c1", n=n)
        assert status == 200
    proxy.paused = False  # the client gets back only now: 1-10 can only reach it as a replay
    again = await client.next("connect", wait=TIMEOUT)
    assert again["recovered"] is True and again["id"] == first["id"]
    await b.push("/api/channel", channel_id="c1", n=11)
    assert [(await client.next("new_msg"))["args"][0]["n"] for _ in range(11)] == list(range(1, 12))


async def test_rolling_restart_drains_to_another_process_and_recovers(behind_proxy):
    a, b, proxy, start_client = behind_proxy
    client, first = await start_client("fay", "room:topic:t1")
    proxy.target = b.port
    proxy.paused = True
    a.kill(signal.SIGTERM)
    assert (await client.next("disconnect"))["reason"] == "transport close"
    assert await a.stop() == 0
    for n in range(5):
        await b.push("/api/message", thread_id="t1", n=n)
    proxy.paused = False  # the pushes were all made while the client was kept out: replayed, not live
    again = await client.next("connect", wait=TIMEOUT)
    assert again["recovered"] is True and again["id"] == first["id"]
    assert [(await client.next("new_msg"))["args"][0]["n"] for _ in range(5)] == list(range(5))


async def test_drain_spreads_closes_over_the_window_and_every_client_recovers_elsewhere(
    processes, redis_env, node_clients
):
    window = 2.0
    a = await processes(PUSH_DRAIN_SECONDS=str(window), **redis_env)
    b = await processes(**redis_env)
    proxy = await Proxy(a.port).start()
    try:
        env = {"RECONNECTION_DELAY": "200", "TRANSPORTS": "websocket"}
        clients, firsts = [], []
        for n in range(5):
            token = make_token(f"d{n}", rooms=["room:*"])
            node = await node_clients(f"http://127.0.0.1:{proxy.port}", token, "room:lobby:dr", env=env)
            firsts.append(await node.next("connect"))
            await node.next("ack")
            clients.append(node)
        proxy.target = b.port
        start = time.monotonic()
        a.kill(signal.SIGTERM)

        async def dropped(node: NodeClient) -> float:
            await node.next("disconnect", wait=TIMEOUT)
            return time.monotonic() - start

        times = sorted(await asyncio.gather(*(dropped(node) for node in clients)))
        assert times[-1] - times[0] > window / 2, times  # spread, not all at once
        assert times[-1] < window + 1.5, times
        for node, first in zip(clients, firsts, strict=True):
            again = await node.next("connect", wait=TIMEOUT)
            assert again["recovered"] is True and again["id"] == first["id"]
        assert await a.stop() == 0
        await b.push("/api/channel", channel_id="dr", n=1)
        for node in clients:
            assert (await node.next("new_msg"))["args"][0]["n"] == 1
    finally:
        await proxy.close()


async def test_counts_span_processes_and_drop_when_a_process_dies(processes, redis_env, client_factory):
    a = await processes(**redis_env)
    b = await processes(**redis_env)
    asker = await _joined_client(client_factory, a.url, "ann", "room:n1")
    await _joined_client(client_factory, b.url, "bob", "room:n1")
    await _joined_client(client_factory, b.url, "bob", "room:n1")

    async def counted(users: int, sockets: int) -> bool:
        answer = await asker.call("presence:get", {"room": "room:n1", "limit": 10})
        return bool(answer["count"] == {"users": users, "sockets": sockets} and len(answer["state"]) == users)

    await _until(lambda: counted(2, 3))
    b.kill()
    await _until(lambda: counted(1, 1))
