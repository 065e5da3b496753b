"""Connection state recovery with the stock npm socket.io-client: nothing lost, nothing twice, in order."""

from __future__ import annotations

import pytest

from .conftest import make_token
from .node_client import NodeClient


@pytest.fixture(params=["memory", "redis"])
def engine(request) -> str:
    return str(request.param)


# The client reconnects by itself 1.5 s after a drop (no jitter): time enough to push while it is down.
SLOW_RECONNECT = {"RECONNECTION_DELAY": "1500"}


async def _joined(client: NodeClient) -> dict:
    connected = await client.next("connect")
    assert (await client.next("ack"))["answer"]["ok"] is True
    return connected


async def test_missed_pushes_arrive_once_in_order_before_newer_ones(server, node_clients):
    client = await node_clients(server.url, make_token("rita", rooms=["room:*"]), "room:lobby:c1", env=SLOW_RECONNECT)
    first = await _joined(client)
    assert first["recovered"] is False
    await server.push("/api/channel", channel_id="c1", n=0)
    before = await client.next("new_msg")
    assert before["args"][0]["n"] == 0 and isinstance(before["args"][1], str)

    await client.send(cmd="drop")
    await client.next("disconnect")
    for n in range(1, 21):
        status, _ = await server.push("/api/channel", channel_id="c1", n=n)
        assert status == 200
    again = await client.next("connect")
    assert again["recovered"] is True and again["id"] == first["id"]
    await server.push("/api/channel", channel_id="c1", n=21)
    received = [(await client.next("new_msg"))["args"][0]["n"] for _ in range(21)]
    assert received == list(range(1, 22))

    # Still in its room without joining again, and in its personal room.
    await server.push("/api/user", user_id="rita", n=22)
    assert (await client.next("new_msg"))["args"][0]["n"] == 22


async def test_pid_without_offset_recovers_from_the_session_start(server, node_clients):
    client = await node_clients(server.url, make_token("sam", rooms=["room:*"]), "room:topic:t1", env=SLOW_RECONNECT)
    await _joined(client)
    await client.send(cmd="drop")
    await client.next("disconnect")
    for n in range(3):
        await server.push("/api/message", thread_id="t1", n=n)
    assert (await client.next("connect"))["recovered"] is True
    assert [(await client.next("new_msg"))["args"][0]["n"] for _ in range(3)] == [0, 1, 2]


async def test_recovered_socket_gets_a_fresh_presence_state(server, node_clients):
    client = await node_clients(server.url, make_token("tia", rooms=["room:*"]), "room:topic:t1", env=SLOW_RECONNECT)
    await _joined(client)
    await client.send(cmd="drop")
    await client.next("disconnect")
    assert (await client.next("connect"))["recovered"] is True
    state = await client.next("presence_state")
    assert list(state["args"][0]["state"]) == ["tia"] and len(state["args"]) == 1  # no offset on presence


async def test_past_the_window_the_session_is_fresh(make_server, node_clients):
    server = await make_server(recovery_seconds=0.5)
    client = await node_clients(server.url, make_token("uma", rooms=["room:*"]), "room:lobby:c1", env=SLOW_RECONNECT)
    first = await _joined(client)
    await client.send(cmd="drop")
    await client.next("disconnect")
    await server.push("/api/channel", channel_id="c1", n=1)
    again = await client.next("connect")
    assert again["recovered"] is False and again["id"] != first["id"]


async def test_expired_token_is_refused_not_recovered(server, node_clients):
    client = await node_clients(
        server.url, make_token("vic", rooms=["room:*"], ttl=2), "room:lobby:c1", env={"RECONNECTION_DELAY": "3000"}
    )
    await _joined(client)
    await client.send(cmd="drop")
    await client.next("disconnect")
    error = await client.next("connect_error")
    assert error["data"] == {"code": "token_expired"}


async def test_recovery_off_sends_no_pid_and_no_offsets(make_server, node_clients):
    server = await make_server(recovery_seconds=0)
    client = await node_clients(server.url, make_token("wes", rooms=["room:*"]), "room:lobby:c1")
    connected = await _joined(client)
    assert connected["recovered"] is None  # no pid in the CONNECT reply
    await server.push("/api/channel", channel_id="c1", n=1)
    assert (await client.next("new_msg"))["args"] == [{"channel_id": "c1", "n": 1}]


async def test_log_trimmed_past_the_offset_gives_a_fresh_session(make_server, node_clients):
    # Redis trims a stream by whole nodes of 100 entries ("MAXLEN ~"), so push well past that.
    server = await make_server(recovery_log_size=5)
    client = await node_clients(
        server.url, make_token("xia", rooms=["room:*"]), "room:lobby:c1", env={"RECONNECTION_DELAY": "4000"}
    )
    await _joined(client)
    await server.push("/api/channel", channel_id="c1", n=0)
    await client.next("new_msg")
    await client.send(cmd="drop")
    await client.next("disconnect")
    for n in range(1, 301):
        await server.push("/api/channel", channel_id="c1", n=n)
    assert (await client.next("connect"))["recovered"] is False
