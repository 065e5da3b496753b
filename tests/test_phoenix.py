"""Phoenix Channels (SPEC §9) with the npm `phoenix` package driving the original frontend's hook logic
(client_examples/phoenix-listen.js), beside real Socket.IO clients on the same rooms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from .conftest import ALL_ROOMS, Client, Server, make_token
from .node_client import NodeClient

Phoenix = Callable[..., Awaitable[NodeClient]]


@pytest.fixture
async def phoenix() -> AsyncIterator[Phoenix]:
    """Starts phoenix.js clients: `await phoenix(url, token, *topics, VSN="1.0.0", ...)`."""
    clients: list[NodeClient] = []

    async def start(url: str, token: str, *topics: str, **env: str) -> NodeClient:
        client = await NodeClient.start(url, token, *topics, env=env, script="phoenix-listen.js")
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def _joined(phoenix: Phoenix, server: Server, sub: str, *topics: str, **env: str) -> NodeClient:
    client = await phoenix(server.url, make_token(sub, rooms=ALL_ROOMS), *topics, **env)
    assert (await client.next("open"))["event"] == "open"
    for topic in topics:
        assert (await client.next("joined", "join_error")) == {"event": "joined", "topic": topic, "response": {}}
    return client


async def _sync_until(client: NodeClient, topic: str, predicate: Callable[[dict[str, Any]], bool]) -> dict:
    """The first Presence.onSync view of `topic` (user id -> metas) that satisfies `predicate`."""
    for _ in range(50):
        line = await client.next("sync")
        view = {entry["id"]: entry["metas"] for entry in line["list"]}
        if line["topic"] == topic and predicate(view):
            return view
    raise AssertionError("presence never reached the expected view")


async def test_the_hook_joins_and_gets_new_msg_posted_over_http_without_the_token(server, phoenix):
    client = await _joined(phoenix, server, "ann", "room:lobby:c1", "user:ann")
    body = {"channel_id": "c1", "thread_id": "t1", "is_thread": True, "thread": '{"id": "t1"}'}
    assert (await server.push("/api/channel", **body))[0] == 200
    assert await client.next("new_msg") == {"event": "new_msg", "topic": "room:lobby:c1", "payload": body}
    await server.push("/api/user", user_id="ann", is_mention=True)
    line = await client.next("new_msg")
    assert line["topic"] == "user:ann" and line["payload"] == {"user_id": "ann", "is_mention": True}


async def test_a_refused_join_answers_its_reason(server, phoenix):
    client = await phoenix(server.url, make_token("ann", rooms=["room:lobby:c1"]), "room:lobby:c2", "lobby", "user:bob")
    reasons = {}
    for _ in range(3):
        line = await client.next("join_error")
        reasons[line["topic"]] = line["response"]["reason"]
    assert reasons == {"room:lobby:c2": "unauthorized", "lobby": "invalid_room", "user:bob": "unauthorized"}


async def test_the_room_limit_counts_phoenix_channels(make_server, phoenix):
    server = await make_server(max_rooms_per_socket=2)
    client = await _joined(phoenix, server, "ann", "user:ann", "room:lobby:c1")
    await client.send(cmd="join", topic="room:lobby:c2")
    assert (await client.next("join_error"))["response"] == {"reason": "too_many_rooms"}


async def test_a_refused_token_is_a_403_and_the_socket_errors(server, phoenix):
    client = await phoenix(server.url, "not-a-token", "room:lobby:c1")
    assert (await client.next("error", "open"))["event"] == "error"
    expired = await phoenix(server.url, make_token("ann", ttl=-10), "room:lobby:c1")
    assert (await expired.next("error", "open"))["event"] == "error"


async def test_presence_shows_phoenix_and_socketio_members_to_each_other(server, phoenix, connect):
    sio: Client = await connect(server, "bob")
    assert (await sio.join("room:c1"))["ok"]
    client = await _joined(phoenix, server, "ann", "room:c1", PRESENCE="1")
    view = await _sync_until(client, "room:c1", lambda view: set(view) == {"ann", "bob"})
    assert all("online_at" in meta for metas in view.values() for meta in metas)
    await sio.presence_until("room:c1", lambda view: "ann" in view)

    await client.send(cmd="push", topic="room:c1", event="user:typing", payload={"typing": True, "username": "Ann"})
    assert await client.next("reply") == {"event": "reply", "status": "ok", "response": {}}
    typed = await sio.presence_until("room:c1", lambda view: view.get("ann", [{}])[0].get("typing") is True)
    assert typed["ann"][0]["username"] == "Ann" and typed["ann"][0]["online_at"] == view["ann"][0]["online_at"]
    await _sync_until(client, "room:c1", lambda view: view["ann"][0].get("typing") is True)

    await client.send(cmd="leave", topic="room:c1")
    assert (await client.next("left"))["topic"] == "room:c1"
    await sio.presence_until("room:c1", lambda view: "ann" not in view)


async def test_a_silent_socket_is_closed_with_1001(make_server, phoenix):
    server = await make_server(phoenix_timeout_seconds=1)
    client = await _joined(phoenix, server, "ann", "room:lobby:c1", HEARTBEAT_MS="60000")
    assert await client.next("close", wait=5) == {"event": "close", "code": 1001}


async def test_heartbeats_keep_a_socket_open(make_server, phoenix):
    server = await make_server(phoenix_timeout_seconds=1)
    client = await _joined(phoenix, server, "ann", "room:lobby:c1", HEARTBEAT_MS="200")
    with pytest.raises(TimeoutError):
        await client.next("close", wait=2)
    await server.push("/api/channel", channel_id="c1", n=1)
    assert (await client.next("new_msg"))["payload"]["n"] == 1


async def test_the_v1_serializer(server, phoenix):
    client = await _joined(phoenix, server, "ann", "room:lobby:c1", VSN="1.0.0")
    await server.push("/api/channel", channel_id="c1", n=1)
    assert (await client.next("new_msg"))["payload"] == {"channel_id": "c1", "n": 1}


async def test_the_auth_token_subprotocol(server, phoenix):
    client = await _joined(phoenix, server, "ann", "room:lobby:c1", AUTH_TOKEN="1")
    await server.push("/api/channel", channel_id="c1", n=1)
    assert (await client.next("new_msg"))["payload"]["n"] == 1


async def test_pushes_arrive_in_the_order_socketio_clients_see(server, phoenix, connect):
    sio: Client = await connect(server, "bob")
    assert (await sio.join("room:lobby:c1"))["ok"] and (await sio.join("room:topic:t1"))["ok"]
    client = await _joined(phoenix, server, "ann", "room:lobby:c1", "room:topic:t1")
    sent = []
    for n in range(30):
        if n % 3:
            await server.push("/api/channel", channel_id="c1", n=n)
        else:
            await server.push("/api/message", channel_id="c1", thread_id="t1", n=n)
        sent.append(n)
    seen_sio = [(await sio.next_msg())["n"] for _ in sent]
    seen_phx = []
    for _ in range(40):  # a push to both rooms arrives once per channel
        line = await client.next("new_msg")
        if line["topic"] == "room:lobby:c1":
            seen_phx.append(line["payload"]["n"])
        if len(seen_phx) == len(sent):
            break
    assert seen_phx == seen_sio == sent


async def test_two_processes_on_redis(processes, redis_env, phoenix, client_factory):
    a, b = await processes(**redis_env), await processes(**redis_env)
    sio: Client = client_factory()
    await sio.sio.connect(b.url, auth={"token": make_token("bob", rooms=ALL_ROOMS)}, transports=["websocket"])
    assert (await sio.join("room:c1"))["ok"]
    client = await phoenix(a.url, make_token("ann", rooms=ALL_ROOMS), "room:c1", PRESENCE="1")
    assert (await client.next("joined"))["topic"] == "room:c1"
    await _sync_until(client, "room:c1", lambda view: set(view) == {"ann", "bob"})
    await sio.presence_until("room:c1", lambda view: "ann" in view)
    await b.push("/api/community", community_id="c1", n=1)
    assert (await client.next("new_msg"))["payload"] == {"community_id": "c1", "n": 1}
    assert (await sio.next_msg())["n"] == 1
    await asyncio.wait_for(client.send(cmd="exit"), 5)
    await sio.presence_until("room:c1", lambda view: "ann" not in view)
